/* Self-modifying code: the hart must execute what memory holds. */
#include "test.h"
#define ADDI_A0(imm) (0x00000513 | ((imm) << 20))	/* addi a0, zero, imm */
	.section .text.init
	.globl _start
_start:
	.option norvc	/* every instruction 4 bytes: patch sites are aligned */
	INSTALL_MTRAP
	/* run the patch site once so its decode is cached */
	li s1, 0
1:	jal ra, site1
	addi s1, s1, 1
	li t0, 1
	bne s1, t0, 2f
	CHECK(a0, 1)
	/* patch it, fence.i, run it again */
	la t0, site1
	li t1, ADDI_A0(42)
	sw t1, 0(t0)
	fence.i
	j 1b
2:	CHECK(a0, 42)

	/* store-then-execute on the same page, no fence.i: the store is to
	   the very next instruction */
	la t0, 3f
	li t1, ADDI_A0(7)
	sw t1, 0(t0)
3:	addi a0, zero, 3
	CHECK(a0, 7)
	/* the same inside a loop, so the site is decoded before each store */
	li s1, 0
	li s2, 0
4:	la t0, 5f
	li t1, ADDI_A0(0)
	add t1, t1, s1
	slli t2, s1, 20
	add t1, t1, t2	/* addi a0, zero, s1 */
	sub t1, t1, s1
	sw t1, 0(t0)
5:	addi a0, zero, 99
	add s2, s2, a0
	addi s1, s1, 1
	li t0, 10
	bne s1, t0, 4b
	CHECK(s2, 45)
	/* two compressed instructions replace a 32-bit one */
	la t0, 6f
	li t1, 0x4515 | (0x0505 << 16)	/* c.li a0, 5; c.addi a0, 1 */
	sw t1, 0(t0)
6:	addi a0, zero, 1
	CHECK(a0, 6)
	/* a patch through an AMO */
	la t0, 7f
	li t1, ADDI_A0(11)
	amoswap.w zero, t1, (t0)
7:	addi a0, zero, 1
	CHECK(a0, 11)
	/* a 32-bit instruction straddling a page boundary, patched in its
	   second half (on the next page) */
	jal ra, cross
	CHECK(a0, 0x123)
	la t0, cross_insn + 2
	li t1, ADDI_A0(0x456) >> 16
	sh t1, 0(t0)
	jal ra, cross
	CHECK(a0, 0x456)
	/* and in its first half */
	la t0, cross_insn
	li t1, 0x0513	/* addi a0, x0, ... -> addi a0, x0 with rd a0: unchanged; use a1 */
	li t1, 0x0593	/* addi a1, zero, imm */
	sh t1, 0(t0)
	li a1, 0
	jal ra, cross
	CHECK(a1, 0x456)
	PASS
fail:
	FAIL

	.align 2
site1:
	addi a0, zero, 1
	ret

	.align 12
	.skip 4096 - 8
cross:
	addi a0, zero, 0	/* 4 bytes, then the straddling one at page - 4 + ... */
	.option rvc
	c.nop
cross_insn:	/* at page boundary - 2 */
	.option norvc
	addi a0, zero, 0x123
	ret
	.option rvc
	TRAP_HANDLERS
