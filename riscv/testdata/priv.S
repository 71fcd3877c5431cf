/* Privileged rules: ecall causes, delegation, xRET, illegal instructions. */
#include "test.h"
#define MPP_MASK (3 << 11)
#define MPRV (1 << 17)
	.section .text.init
	.globl _start
_start:
	INSTALL_MTRAP
	INSTALL_STRAP
	/* ecall from M: cause 11, mepc = the ecall, mtval 0 */
	EXPECT_TRAP(1f)
2:	ecall
1:	CHECK(s2, 11)
	la a0, 2b
	bne s3, a0, fail
	CHECK(s4, 0)
	/* ebreak: cause 3, mtval = pc (or 0) */
	EXPECT_TRAP(1f)
2:	ebreak
1:	CHECK(s2, 3)
	la a0, 2b
	bne s3, a0, fail
	EXPECT_TRAP(1f)
2:	c.ebreak
1:	CHECK(s2, 3)
	la a0, 2b
	bne s3, a0, fail
	/* ecall from U: cause 8, MPP = U */
	EXPECT_TRAP(1f)
	ENTER(0, 2f)
2:	ecall
1:	CHECK(s2, 8)
	srli a0, s5, 11
	andi a0, a0, 3
	CHECK(a0, 0)
	/* ecall from S: cause 9, MPP = S */
	EXPECT_TRAP(1f)
	ENTER(1, 2f)
2:	ecall
1:	CHECK(s2, 9)
	srli a0, s5, 11
	andi a0, a0, 3
	CHECK(a0, 1)
	/* illegal instruction from U: tval is the encoding */
	EXPECT_TRAP(1f)
	ENTER(0, 2f)
2:	.word 0x0000707f
1:	CHECK(s2, 2)
	CHECK(s4, 0x707f)
	la a0, 2b
	bne s3, a0, fail
	/* U cannot touch M or S CSRs, or execute MRET/SRET/WFI/SFENCE.VMA */
	EXPECT_TRAP(1f)
	ENTER(0, 2f)
2:	csrr a0, sscratch
1:	CHECK(s2, 2)
	EXPECT_TRAP(1f)
	ENTER(0, 2f)
2:	mret
1:	CHECK(s2, 2)
	EXPECT_TRAP(1f)
	ENTER(0, 2f)
2:	sret
1:	CHECK(s2, 2)
	EXPECT_TRAP(1f)
	ENTER(0, 2f)
2:	wfi
1:	CHECK(s2, 2)
	EXPECT_TRAP(1f)
	ENTER(0, 2f)
2:	sfence.vma
1:	CHECK(s2, 2)
	/* S cannot touch M CSRs or execute MRET */
	EXPECT_TRAP(1f)
	ENTER(1, 2f)
2:	csrr a0, mstatus
1:	CHECK(s2, 2)
	EXPECT_TRAP(1f)
	ENTER(1, 2f)
2:	mret
1:	CHECK(s2, 2)
	/* TSR makes SRET illegal in S; TVM makes satp and sfence.vma illegal */
	li a0, 1 << 22
	csrs mstatus, a0
	EXPECT_TRAP(1f)
	ENTER(1, 2f)
2:	sret
1:	CHECK(s2, 2)
	li a0, 1 << 22
	csrc mstatus, a0
	li a0, 1 << 20
	csrs mstatus, a0
	EXPECT_TRAP(1f)
	ENTER(1, 2f)
2:	csrr a1, satp
1:	CHECK(s2, 2)
	EXPECT_TRAP(1f)
	ENTER(1, 2f)
2:	sfence.vma
1:	CHECK(s2, 2)
	li a0, 1 << 20
	csrc mstatus, a0
	/* S can use the counters only if mcounteren allows */
	EXPECT_TRAP(1f)
	ENTER(1, 2f)
2:	csrr a1, cycle
1:	CHECK(s2, 2)
	csrwi mcounteren, 5	/* CY, IR */
	EXPECT_TRAP(1f)
	ENTER(1, 2f)
2:	csrr a1, instret
	csrr a1, time	/* TM not set */
1:	CHECK(s2, 2)
	/* ...and U only if scounteren allows too */
	EXPECT_TRAP(1f)
	ENTER(0, 2f)
2:	csrr a1, cycle
1:	CHECK(s2, 2)
	csrwi scounteren, 1
	EXPECT_TRAP(1f)
	ENTER(0, 2f)
2:	csrr a1, cycle
	ecall
1:	CHECK(s2, 8)
	csrw mcounteren, zero
	csrw scounteren, zero

	/* delegation: ecall from U and illegal instruction go to S */
	li a0, (1 << 8) | (1 << 2)
	csrw medeleg, a0
	csrsi sstatus, 2	/* SIE = 1 */
	EXPECT_STRAP(3f)
	ENTER(0, 2f)
2:	ecall
3:	/* in S now */
	CHECK(s2, 8)
	la a0, 2b
	bne s3, a0, fail
	CHECK(s4, 0)
	andi a0, s5, 1 << 8	/* SPP = U */
	CHECK(a0, 0)
	andi a0, s5, 1 << 5	/* SPIE = old SIE = 1 */
	CHECK(a0, 1 << 5)
	andi a0, s5, 2	/* SIE cleared */
	CHECK(a0, 0)
	/* a delegated illegal instruction in S stays in S: SPP = S */
	EXPECT_STRAP(3f)
2:	.word 0xfff0707f
3:	CHECK(s2, 2)
	CHECK(s4, 0xfff0707f)
	la a0, 2b
	bne s3, a0, fail
	andi a0, s5, 1 << 8
	CHECK(a0, 1 << 8)
	andi a0, s5, 1 << 5	/* SPIE = SIE, which the first trap cleared */
	CHECK(a0, 0)
	/* ecall from S is not delegated: it goes to M */
	EXPECT_TRAP(1f)
	ecall
1:	CHECK(s2, 9)
	/* exceptions in M are never delegated */
	EXPECT_TRAP(1f)
	.word 0xfff0707f
1:	CHECK(s2, 2)
	csrr a0, scause	/* unchanged from the S trap */
	CHECK(a0, 2)
	csrw medeleg, zero

	/* MRET: MIE = MPIE, MPIE = 1, MPP = U; MRET to U clears MPRV */
	li a0, MPRV | (1 << 7)	/* MPRV, MPIE */
	csrs mstatus, a0
	csrci mstatus, 8
	EXPECT_TRAP(1f)
	ENTER(0, 2f)
2:	ecall
1:	CHECK(s2, 8)
	li a0, MPRV
	and a0, s5, a0
	CHECK(a0, 0)
	andi a0, s5, 1 << 7	/* MPIE = the MIE that MRET set */
	CHECK(a0, 1 << 7)
	/* MRET to M keeps MPRV */
	li a0, MPRV | (1 << 7) | MPP_MASK
	csrs mstatus, a0
	csrci mstatus, 8
	la a0, 2f
	csrw mepc, a0
	mret
2:	csrr a1, mstatus
	li a0, MPRV
	and a0, a1, a0
	CHECK(a0, MPRV)
	andi a0, a1, 8	/* MIE = 1 */
	CHECK(a0, 8)
	andi a0, a1, 1 << 7	/* MPIE = 1 */
	CHECK(a0, 1 << 7)
	li a0, MPP_MASK	/* MPP = U */
	and a0, a1, a0
	CHECK(a0, 0)
	csrci mstatus, 8
	li a0, MPRV
	csrc mstatus, a0
	/* SRET: SIE = SPIE, SPIE = 1, SPP = U, and goes to SPP */
	EXPECT_TRAP(1f)
	ENTER(1, 2f)
2:	li a0, 1 << 8	/* SPP = U */
	csrc sstatus, a0
	li a1, 1 << 5	/* SPIE */
	csrs sstatus, a1
	csrci sstatus, 2	/* SIE = 0 */
	la a0, 3f
	csrw sepc, a0
	sret
3:	ecall	/* from U */
1:	CHECK(s2, 8)
	andi a0, s5, 2	/* SIE = 1 */
	CHECK(a0, 2)
	andi a0, s5, 1 << 5	/* SPIE = 1 */
	CHECK(a0, 1 << 5)
	/* SRET to S (SPP = 1) */
	csrci sstatus, 2
	EXPECT_TRAP(1f)
	ENTER(1, 2f)
2:	li a0, 1 << 8
	csrs sstatus, a0
	la a0, 3f
	csrw sepc, a0
	sret
3:	ecall	/* from S */
1:	CHECK(s2, 9)
	li a0, 1 << 8
	and a0, s5, a0
	CHECK(a0, 0)	/* SPP cleared */
	PASS
fail:
	FAIL
	TRAP_HANDLERS
