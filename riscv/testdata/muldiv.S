/* M extension, including division by zero and overflow (table 7.1). */
#include "test.h"
	.section .text.init
	.globl _start
_start:
	INSTALL_MTRAP
	li a0, 0x123456789abcdef0
	li a1, 0xfedcba9876543210
	mul a2, a0, a1
	CHECK(a2, 0x236d88fe5618cf00)
	mulhu a2, a0, a1
	CHECK(a2, 0x121fa00ad77d7422)
	mulh a2, a0, a1
	CHECK(a2, 0xffeb49923cc09532)
	mulhsu a2, a0, a1
	CHECK(a2, 0x121fa00ad77d7422)
	mulhsu a2, a1, a0
	CHECK(a2, 0xffeb49923cc09532)
	li a0, 0x8000000000000000
	li a1, -1
	mulh a2, a0, a0
	CHECK(a2, 0x4000000000000000)
	mulhsu a2, a0, a1
	CHECK(a2, 0x8000000000000000)
	mulhsu a2, a1, a1
	CHECK(a2, -1)
	mulhu a2, a1, a1
	CHECK(a2, -2)
	mulh a2, a1, a1
	CHECK(a2, 0)
	mul a2, a0, a1
	CHECK(a2, 0x8000000000000000)
	li a3, 0x7fffffff
	li a4, 2
	mulw a2, a3, a4
	CHECK(a2, -2)
	li a3, 0xdeadbeef00010001
	mulw a2, a3, a3	/* 0x10001^2 = 0x100020001 -> low word 0x00020001 */
	CHECK(a2, 0x20001)
	/* signed division truncates towards zero */
	li a3, -7
	li a4, 2
	div a2, a3, a4
	CHECK(a2, -3)
	rem a2, a3, a4
	CHECK(a2, -1)
	li a5, -2
	li a6, 7
	div a2, a6, a5
	CHECK(a2, -3)
	rem a2, a6, a5
	CHECK(a2, 1)
	divu a2, a3, a4
	CHECK(a2, 0x7ffffffffffffffc)
	remu a2, a3, a4
	CHECK(a2, 1)
	/* division by zero */
	div a2, a3, zero
	CHECK(a2, -1)
	divu a2, a3, zero
	CHECK(a2, -1)
	rem a2, a3, zero
	CHECK(a2, -7)
	remu a2, a3, zero
	CHECK(a2, -7)
	/* overflow */
	div a2, a0, a1
	CHECK(a2, 0x8000000000000000)
	rem a2, a0, a1
	CHECK(a2, 0)
	/* W forms use the low words and sign-extend */
	li a3, 0xdeadbeeffffffff9	/* low word -7 */
	li a4, 0x1234567800000002	/* low word 2 */
	divw a2, a3, a4
	CHECK(a2, -3)
	remw a2, a3, a4
	CHECK(a2, -1)
	divuw a2, a3, a4	/* 0xfffffff9 / 2 = 0x7ffffffc */
	CHECK(a2, 0x7ffffffc)
	remuw a2, a3, a4
	CHECK(a2, 1)
	li a4, 1
	divuw a2, a3, a4	/* 0xfffffff9 sign-extends */
	CHECK(a2, 0xfffffffffffffff9)
	li a4, 0xffffffff00000000	/* low word zero */
	divw a2, a3, a4
	CHECK(a2, -1)
	divuw a2, a3, a4
	CHECK(a2, -1)
	remw a2, a3, a4
	CHECK(a2, -7)
	remuw a2, a3, a4
	CHECK(a2, -7)
	li a3, 0x123456789
	remuw a2, a3, zero
	CHECK(a2, 0x23456789)
	li a3, 0x180000005
	remw a2, a3, zero
	CHECK(a2, 0xffffffff80000005)
	li a3, 0x0000000180000000	/* low word -2^31 */
	li a4, 0x00000000ffffffff	/* low word -1 */
	divw a2, a3, a4
	CHECK(a2, 0xffffffff80000000)
	remw a2, a3, a4
	CHECK(a2, 0)
	divuw a2, a3, a4
	CHECK(a2, 0)
	remuw a2, a3, a4
	CHECK(a2, 0xffffffff80000000)
	/* rd == rs1 == rs2 */
	li a3, 12
	mul a3, a3, a3
	CHECK(a3, 144)
	div a3, a3, a3
	CHECK(a3, 1)
	PASS
	TRAP_HANDLERS
