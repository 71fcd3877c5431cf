/* Interrupts: enabling, priority, delegation, vectoring, WFI. */
#include "test.h"
#define MCAUSE_INT (1 << 63)
	.section .text.init
	.globl _start
_start:
	INSTALL_MTRAP
	INSTALL_STRAP
	/* a pending MTIP is not taken while mie.MTIE or mstatus.MIE is 0 */
	SETIRQ(7, 1)
	CHECKCSR(mip, 1 << 7)
	csrsi mstatus, 8
	nop
	csrci mstatus, 8
	li a0, 1 << 7
	csrs mie, a0
	nop
	/* enabling MIE takes it before the next instruction */
	EXPECT_TRAP(1f)
	csrsi mstatus, 8
2:	j fail
1:	li a0, MCAUSE_INT | 7
	bne s2, a0, fail
	la a0, 2b
	bne s3, a0, fail
	CHECK(s4, 0)
	andi a0, s5, 8	/* MIE cleared by the trap */
	CHECK(a0, 0)
	andi a0, s5, 1 << 7	/* MPIE = 1 */
	CHECK(a0, 1 << 7)
	SETIRQ(7, 0)
	CHECKCSR(mip, 0)
	csrw mie, zero

	/* priority: MEI > MSI > MTI > SEI > SSI > STI */
	la t0, prio_handler
	csrw mtvec, t0
	la s8, order
	SETIRQ(11, 1)
	SETIRQ(3, 1)
	SETIRQ(7, 1)
	SETIRQ(9, 1)
	csrsi mip, 2	/* SSIP */
	li a0, 1 << 5	/* STIP */
	csrs mip, a0
	li a0, 0xaaa
	csrs mie, a0
	csrsi mstatus, 8
	nop
	csrci mstatus, 8
	la s8, order
	ld a0, 0(s8)
	CHECK(a0, 11)
	ld a0, 8(s8)
	CHECK(a0, 3)
	ld a0, 16(s8)
	CHECK(a0, 7)
	ld a0, 24(s8)
	CHECK(a0, 9)
	ld a0, 32(s8)
	CHECK(a0, 1)
	ld a0, 40(s8)
	CHECK(a0, 5)
	ld a0, 48(s8)
	CHECK(a0, 0)
	CHECKCSR(mip, 0)
	la t0, mtrap_record
	csrw mtvec, t0

	/* delegated interrupts are not taken in M, even with MIE set */
	li a0, 1 << 5
	csrw mideleg, a0
	csrs mip, a0	/* STIP */
	csrsi mstatus, 8
	nop
	nop
	csrci mstatus, 8
	/* nor in S with SIE clear */
	csrci sstatus, 2
	EXPECT_TRAP(1f)
	ENTER(1, 2f)
2:	nop
	nop
	ecall
1:	CHECK(s2, 9)
	/* in S with SIE set they are */
	EXPECT_STRAP(3f)
	ENTER(1, 2f)
2:	csrsi sstatus, 2
4:	j fail
3:	li a0, MCAUSE_INT | 5
	bne s2, a0, fail
	la a0, 4b
	bne s3, a0, fail
	EXPECT_TRAP(1f)
	ecall
1:	CHECK(s2, 9)
	/* and in U regardless of SIE */
	csrci sstatus, 2
	EXPECT_STRAP(3f)
	ENTER(0, 2f)
2:	j fail
3:	li a0, MCAUSE_INT | 5
	bne s2, a0, fail
	andi a0, s5, 1 << 8	/* SPP = U */
	CHECK(a0, 0)
	EXPECT_TRAP(1f)
	ecall
1:	CHECK(s2, 9)
	/* a non-delegated interrupt is taken from S even with MIE clear */
	csrw mideleg, zero
	csrci mstatus, 8
	EXPECT_TRAP(1f)
	ENTER(1, 2f)
2:	j fail
1:	li a0, MCAUSE_INT | 5
	bne s2, a0, fail
	srli a0, s5, 11
	andi a0, a0, 3
	CHECK(a0, 1)
	li a0, 1 << 5
	csrc mip, a0

	/* vectored mtvec: interrupts go to base + 4 * cause */
	la t0, vectors
	ori t0, t0, 1
	csrw mtvec, t0
	li s9, 0
	csrw mie, zero
	li a0, 1 << 3
	csrs mie, a0
	csrsi mstatus, 8
	SETIRQ(3, 1)
	nop
	CHECK(s9, 3)
	/* exceptions still go to base */
	EXPECT_TRAP(1f)
	ecall
1:	CHECK(s2, 11)
	la t0, mtrap_record
	csrw mtvec, t0
	csrw mie, zero

	/* WFI with nothing enabled pending: the hart idles (the harness sees
	   StopIdle, then raises MTIP). MIE = 0: it wakes but does not trap. */
	csrci mstatus, 8
	li a0, 1 << 7
	csrw mie, a0
	SETIRQ(3, 1)	/* pending but not enabled: does not wake */
	MARK(1)
	wfi
	MARK(2)
	csrr a0, mip
	li a1, (1 << 7) | (1 << 3)
	bne a0, a1, fail
	SETIRQ(7, 0)
	SETIRQ(3, 0)
	/* WFI with an enabled interrupt already pending does not idle */
	SETIRQ(7, 1)
	wfi
	MARK(3)
	SETIRQ(7, 0)
	csrw mie, zero
	PASS
fail:
	FAIL

	.align 2
prio_handler:
	csrr t0, mcause
	slli t0, t0, 1
	srli t0, t0, 1
	sd t0, 0(s8)
	addi s8, s8, 8
	li t1, 1
	sll t1, t1, t0
	csrc mip, t1
	li t6, CTRL
	sd t0, 0x18(t6)	/* drop line t0 */
	mret

	.align 6
	.option push
	.option norvc
vectors:
	j mtrap_record	/* exceptions */
	.rept 2
	j fail
	.endr
	j msi_vector
	.rept 12
	j fail
	.endr
	.option pop
msi_vector:
	li s9, 3
	SETIRQ(3, 0)
	mret

	TRAP_HANDLERS

	.data
	.align 3
order:
	.skip 64
