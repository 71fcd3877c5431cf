/*
 * Shared macros for the hart test programs (see harness_test.go).
 *
 * The test system has a control device at CTRL:
 *   CTRL+0x00  store: the test passed; the hart halts
 *   CTRL+0x08  store: the test failed at the source line stored; halts
 *   CTRL+0x10  load: the machine timer
 *   CTRL+0x18  store: v drives interrupt line v&63 to level (v>>8)&1
 *   CTRL+0x20  store: marker, recorded by the harness in order
 *
 * CHECK and friends clobber t5 and t6 (x30, x31).
 */
#define CTRL 0x10000000

#define PASS	li t6, CTRL; sw zero, 0(t6); 1: j 1b
#define FAIL	li t5, __LINE__; li t6, CTRL; sd t5, 8(t6)

.macro check_ r, v, line
	li t6, \v
	beq \r, t6, .Lok\@
	li t5, \line
	li t6, CTRL
	sd t5, 8(t6)
.Lok\@:
.endm

/* CHECK(reg, value): fail unless reg == value (64-bit compare). */
#define CHECK(r, v) check_ r, v, __LINE__

/* CHECKF(freg, bits): fail unless the raw 64 bits of freg == bits. */
#define CHECKF(f, v) fmv.x.d t5, f; check_ t5, v, __LINE__

/* CHECKCSR(csr, value): fail unless the CSR reads value. */
#define CHECKCSR(c, v) csrr t5, c; check_ t5, v, __LINE__

/* SETIRQ(bit, level) drives an interrupt line through the control device. */
#define SETIRQ(bit, level) li t5, (bit) | ((level) << 8); li t6, CTRL; sd t5, 0x18(t6)

/* MARK(v) records v with the harness. */
#define MARK(v) li t5, v; li t6, CTRL; sd t5, 0x20(t6)

/*
 * Trap catching. The M-mode handler mtrap_record stores mcause, mepc,
 * mtval and mstatus in s2..s5 and resumes in M-mode at the address in s6
 * (set it with EXPECT_TRAP before the trapping instruction). The S-mode
 * handler strap_record stores scause, sepc, stval, sstatus in s2..s5, and
 * resumes in S-mode at s7. A trap with s6 (or s7) == 0 fails the test.
 */
#define EXPECT_TRAP(label) la s6, label; li s2, -1
#define EXPECT_STRAP(label) la s7, label; li s2, -1

#define TRAP_HANDLERS \
	.balign 4; \
mtrap_record: \
	csrr s2, mcause; csrr s3, mepc; csrr s4, mtval; csrr s5, mstatus; \
	beqz s6, mtrap_unexpected; mv t5, s6; li s6, 0; jr t5; \
mtrap_unexpected: \
	li t5, 0xdead0000; add t5, t5, s2; li t6, CTRL; sd t5, 8(t6); \
	.balign 4; \
strap_record: \
	csrr s2, scause; csrr s3, sepc; csrr s4, stval; csrr s5, sstatus; \
	beqz s7, strap_unexpected; mv t5, s7; li s7, 0; jr t5; \
strap_unexpected: \
	li t5, 0xbeef0000; add t5, t5, s2; li t6, CTRL; sd t5, 8(t6)

#define INSTALL_MTRAP la t0, mtrap_record; csrw mtvec, t0; li s6, 0
#define INSTALL_STRAP la t0, strap_record; csrw stvec, t0; li s7, 0

/*
 * ENTER(mode, label) mret's into mode (0 U, 1 S, 3 M) at label, with MPIE
 * left as it was.
 */
#define ENTER(mode, label) \
	li t0, 3 << 11; csrc mstatus, t0; li t0, (mode) << 11; csrs mstatus, t0; \
	la t0, label; csrw mepc, t0; mret
