/* A extension: LR/SC and every AMO. */
#include "test.h"
	.section .text.init
	.globl _start
_start:
	INSTALL_MTRAP
	la s0, buf
	/* LR/SC success */
	li a0, 0x1111111122222222
	sd a0, 0(s0)
	lr.d a1, (s0)
	CHECK(a1, 0x1111111122222222)
	li a2, 77
	sc.d a3, a2, (s0)
	CHECK(a3, 0)
	ld a1, 0(s0)
	CHECK(a1, 77)
	/* the reservation is consumed: a second SC fails and writes nothing */
	li a2, 88
	sc.d a3, a2, (s0)
	bnez a3, 1f
	FAIL
1:	ld a1, 0(s0)
	CHECK(a1, 77)
	/* SC to another address than the reservation fails */
	lr.d a1, (s0)
	addi a5, s0, 8
	sc.d a3, a2, (a5)
	beqz a3, fail
	/* SC without any LR fails */
	addi a5, s0, 16
	sc.w a3, a2, (a5)
	beqz a3, fail
	lw a1, 16(s0)
	CHECK(a1, 0)
	/* LR.W sign-extends; SC.W writes a word */
	li a0, 0x80000000
	sw a0, 24(s0)
	sw a0, 28(s0)
	addi a4, s0, 24
	lr.w a1, (a4)
	CHECK(a1, 0xffffffff80000000)
	li a2, 0x1234567812345678
	sc.w a3, a2, (a4)
	CHECK(a3, 0)
	ld a1, 24(s0)
	CHECK(a1, 0x8000000012345678)
	/* a trap between LR and SC clears the reservation */
	lr.d a1, (s0)
	EXPECT_TRAP(1f)
	ecall
1:	sc.d a3, a2, (s0)
	beqz a3, fail

	/* AMO.D */
	li a0, 0x00000000000000ff
	sd a0, 32(s0)
	addi a4, s0, 32
	li a2, 0x0f
	amoswap.d a1, a2, (a4)
	CHECK(a1, 0xff)
	amoadd.d a1, a2, (a4)
	CHECK(a1, 0x0f)
	ld a1, 0(a4)
	CHECK(a1, 0x1e)
	li a2, 0x33
	amoxor.d a1, a2, (a4)
	ld a1, 0(a4)
	CHECK(a1, 0x2d)
	li a2, 0x0f
	amoand.d a1, a2, (a4)
	ld a1, 0(a4)
	CHECK(a1, 0x0d)
	li a2, 0xf00
	amoor.d a1, a2, (a4)
	ld a1, 0(a4)
	CHECK(a1, 0xf0d)
	li a2, -5
	amomin.d a1, a2, (a4)
	ld a1, 0(a4)
	CHECK(a1, -5)
	li a2, 3
	amomax.d a1, a2, (a4)
	CHECK(a1, -5)
	ld a1, 0(a4)
	CHECK(a1, 3)
	li a2, -1
	amominu.d a1, a2, (a4)
	ld a1, 0(a4)
	CHECK(a1, 3)
	amomaxu.d a1, a2, (a4)
	ld a1, 0(a4)
	CHECK(a1, -1)
	/* rd = x0 still writes memory */
	li a2, 42
	amoswap.d zero, a2, (a4)
	ld a1, 0(a4)
	CHECK(a1, 42)
	CHECK(zero, 0)
	/* rd == rs2: the old value lands in rd, the new one in memory */
	li a2, 8
	amoadd.d a2, a2, (a4)
	CHECK(a2, 42)
	ld a1, 0(a4)
	CHECK(a1, 50)

	/* AMO.W: results and loaded values sign-extend; the upper word of
	   memory is untouched */
	li a0, 0x5555555580000000
	addi a4, s0, 40
	sd a0, 0(a4)
	li a2, 0xffffffff00000001	/* low word 1 */
	amoadd.w a1, a2, (a4)
	CHECK(a1, 0xffffffff80000000)
	ld a1, 0(a4)
	CHECK(a1, 0x5555555580000001)
	li a2, 0x7fffffff
	amoswap.w a1, a2, (a4)
	CHECK(a1, 0xffffffff80000001)
	ld a1, 0(a4)
	CHECK(a1, 0x555555557fffffff)
	li a2, 1
	amoadd.w a1, a2, (a4)	/* wraps to 0x80000000 */
	CHECK(a1, 0x7fffffff)
	lw a1, 0(a4)
	CHECK(a1, 0xffffffff80000000)
	li a2, 0xffff0000
	amoxor.w a1, a2, (a4)
	lw a1, 0(a4)
	CHECK(a1, 0x7fff0000)
	li a2, 0x0ff00000
	amoand.w a1, a2, (a4)
	lw a1, 0(a4)
	CHECK(a1, 0x0ff00000)
	li a2, 0x8000000f
	amoor.w a1, a2, (a4)
	lw a1, 0(a4)
	CHECK(a1, 0xffffffff8ff0000f)
	/* signed vs unsigned word min/max: memory holds 0x8ff0000f (negative) */
	li a2, 0x0000000000000005	/* positive */
	amomin.w a1, a2, (a4)
	CHECK(a1, 0xffffffff8ff0000f)
	lw a1, 0(a4)
	CHECK(a1, 0xffffffff8ff0000f)	/* negative is smaller */
	amominu.w a1, a2, (a4)
	lw a1, 0(a4)
	CHECK(a1, 5)	/* 5 < 0x8ff0000f unsigned */
	li a2, 0xffffffff90000000	/* negative word */
	amomax.w a1, a2, (a4)
	CHECK(a1, 5)
	lw a1, 0(a4)
	CHECK(a1, 5)
	amomaxu.w a1, a2, (a4)
	lw a1, 0(a4)
	CHECK(a1, 0xffffffff90000000)
	/* upper garbage in rs2 must not matter for the word compare */
	li a2, 0x00000001a0000000	/* low word 0xa0000000: negative */
	amomin.w a1, a2, (a4)
	lw a1, 0(a4)
	CHECK(a1, 0xffffffff90000000)
	amomaxu.w a1, a2, (a4)
	lw a1, 0(a4)
	CHECK(a1, 0xffffffffa0000000)
	li a2, 0x7fffffff00000001	/* low word 1 */
	amominu.w a1, a2, (a4)
	lw a1, 0(a4)
	CHECK(a1, 1)
	ld a1, 0(a4)
	CHECK(a1, 0x5555555500000001)

	/* misaligned AMO and SC: store/AMO misaligned; LR: load misaligned */
	addi a4, s0, 2
	EXPECT_TRAP(1f)
	amoadd.w a1, a2, (a4)
1:	CHECK(s2, 6)
	bne s4, a4, fail
	EXPECT_TRAP(1f)
	lr.w a1, (a4)
1:	CHECK(s2, 4)
	addi a4, s0, 4
	EXPECT_TRAP(1f)
	sc.d a1, a2, (a4)
1:	CHECK(s2, 6)
	EXPECT_TRAP(1f)
	amoswap.d a1, a2, (a4)
1:	CHECK(s2, 6)
	/* AMO on a device or outside memory: store/AMO access fault */
	li a4, 0x20000000
	EXPECT_TRAP(1f)
	amoor.d a1, a2, (a4)
1:	CHECK(s2, 7)
	EXPECT_TRAP(1f)
	lr.d a1, (a4)
1:	CHECK(s2, 5)
	PASS
fail:
	FAIL
	TRAP_HANDLERS

	.data
	.align 12
buf:
	.skip 4096
