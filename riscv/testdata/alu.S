/* Integer ALU, W forms, shifts, LUI/AUIPC, branches and jumps. */
#include "test.h"
	.section .text.init
	.globl _start
_start:
	INSTALL_MTRAP
	/* add/sub wrap */
	li a0, 0x7fffffffffffffff
	addi a1, a0, 1
	CHECK(a1, 0x8000000000000000)
	sub a2, zero, a1
	CHECK(a2, 0x8000000000000000)
	li a3, -1
	add a4, a3, a3
	CHECK(a4, -2)
	/* addi with the extreme immediates */
	li a0, 0
	addi a1, a0, -2048
	CHECK(a1, -2048)
	addi a1, a0, 2047
	CHECK(a1, 2047)
	/* slt/sltu/slti/sltiu */
	li a0, -1
	li a1, 1
	slt a2, a0, a1
	CHECK(a2, 1)
	sltu a2, a0, a1
	CHECK(a2, 0)
	slti a2, a0, 0
	CHECK(a2, 1)
	sltiu a2, a1, -1	/* immediate sign-extends, then compares unsigned */
	CHECK(a2, 1)
	sltiu a2, a0, -1
	CHECK(a2, 0)
	sltiu a2, zero, 1	/* seqz */
	CHECK(a2, 1)
	/* logic */
	li a0, 0xff00ff00ff00ff00
	xori a1, a0, -1
	CHECK(a1, 0x00ff00ff00ff00ff)
	ori a1, a0, 0x0ff
	CHECK(a1, 0xff00ff00ff00ffff)
	andi a1, a0, -256
	CHECK(a1, 0xff00ff00ff00ff00)
	andi a1, a0, 0x7ff
	CHECK(a1, 0x700)
	li a2, 0x0f0f0f0f0f0f0f0f
	and a3, a0, a2
	CHECK(a3, 0x0f000f000f000f00)
	or a3, a0, a2
	CHECK(a3, 0xff0fff0fff0fff0f)
	xor a3, a0, a2
	CHECK(a3, 0xf00ff00ff00ff00f)
	/* 64-bit shifts by 0, 1, 31, 32, 63 and by register (low 6 bits) */
	li a0, 0x8000000080000001
	slli a1, a0, 31
	CHECK(a1, 0x4000000080000000)
	slli a1, a0, 32
	CHECK(a1, 0x8000000100000000)
	slli a1, a0, 63
	CHECK(a1, 0x8000000000000000)
	srli a1, a0, 31
	CHECK(a1, 0x0000000100000001)
	srli a1, a0, 32
	CHECK(a1, 0x80000000)
	srli a1, a0, 63
	CHECK(a1, 1)
	srai a1, a0, 31
	CHECK(a1, 0xffffffff00000001)
	srai a1, a0, 32
	CHECK(a1, 0xffffffff80000000)
	srai a1, a0, 63
	CHECK(a1, -1)
	srai a1, a0, 0
	CHECK(a1, 0x8000000080000001)
	li a2, 0x7ff	/* shift amount uses the low 6 bits: 63 */
	sll a1, a0, a2
	CHECK(a1, 0x8000000000000000)
	srl a1, a0, a2
	CHECK(a1, 1)
	sra a1, a0, a2
	CHECK(a1, -1)
	li a2, 32 + 64
	sra a1, a0, a2
	CHECK(a1, 0xffffffff80000000)
	/* W forms: operate on the low 32 bits and sign-extend the result */
	li a0, 0x123456787fffffff
	addiw a1, a0, 1
	CHECK(a1, 0xffffffff80000000)
	addiw a1, a0, 0	/* sext.w */
	CHECK(a1, 0x7fffffff)
	li a2, 0xffffffff00000001
	addw a1, a0, a2
	CHECK(a1, 0xffffffff80000000)
	subw a1, zero, a2
	CHECK(a1, -1)
	li a0, 0xfedcba9880000001
	slliw a1, a0, 31
	CHECK(a1, 0xffffffff80000000)
	slliw a1, a0, 1
	CHECK(a1, 2)
	srliw a1, a0, 31
	CHECK(a1, 1)
	srliw a1, a0, 0
	CHECK(a1, 0xffffffff80000001)
	srliw a1, a0, 1
	CHECK(a1, 0x40000000)
	sraiw a1, a0, 31
	CHECK(a1, -1)
	sraiw a1, a0, 1
	CHECK(a1, 0xffffffffc0000000)
	li a2, 63	/* W register shifts use the low 5 bits: 31 */
	sllw a1, a0, a2
	CHECK(a1, 0xffffffff80000000)
	srlw a1, a0, a2
	CHECK(a1, 1)
	sraw a1, a0, a2
	CHECK(a1, -1)
	li a2, 32	/* shift by 32 is shift by 0 */
	sllw a1, a0, a2
	CHECK(a1, 0xffffffff80000001)
	srlw a1, a0, a2
	CHECK(a1, 0xffffffff80000001)
	sraw a1, a0, a2
	CHECK(a1, 0xffffffff80000001)
	/* LUI sign-extends; AUIPC adds to its own pc */
	lui a0, 0x80000
	CHECK(a0, 0xffffffff80000000)
	lui a0, 0x7ffff
	CHECK(a0, 0x7ffff000)
1:	auipc a0, 0
	la a1, 1b
	bne a0, a1, fail
2:	auipc a0, 0xfffff
	la a1, 2b
	li a2, -4096
	add a1, a1, a2
	bne a0, a1, fail
	/* x0 stays zero */
	addi zero, zero, 5
	lui zero, 1
	CHECK(zero, 0)
	/* branches, taken and not taken, signed vs unsigned */
	li a0, -1
	li a1, 1
	blt a1, a0, fail
	bge a0, a1, fail
	bltu a0, a1, fail
	bgeu a1, a0, fail
	beq a0, a1, fail
	bne a0, a0, fail
	blt a0, a1, 3f
	j fail
3:	bltu a1, a0, 3f
	j fail
3:	bge a1, a0, 3f
	j fail
3:	bgeu a0, a1, 3f
	j fail
3:	bge a0, a0, 3f
	j fail
3:	bgeu a0, a0, 3f
	j fail
3:	beq a1, a1, 3f
	j fail
3:	bne a0, a1, 3f
	j fail
3:	/* backward branch: a loop */
	li a2, 0
	li a3, 10
4:	addi a2, a2, 3
	addi a3, a3, -1
	bnez a3, 4b
	CHECK(a2, 30)
	/* jal links pc+4 (pc+2 for c.jal does not exist on RV64, c.j links nothing) */
	jal ra, 5f
6:	j fail
5:	la a0, 6b
	bne ra, a0, fail
	/* jalr with rd == rs1: the target uses the old value */
	la a0, 7f
	jalr a0, 0(a0)
8:	j fail
7:	la a1, 8b
	bne a0, a1, fail
	/* jalr clears bit 0 of the target, and adds the immediate first */
	la a0, 9f - 1
	jalr ra, 2(a0)	/* target 9f + 1 -> 9f */
	j fail
9:	la a0, 10f + 1
	jalr zero, 0(a0)
	j fail
	.option push
	.option norvc
10:	/* compressed jumps: c.jalr links pc + 2 */
	la a0, 11f
	.option rvc
	c.jalr a0
12:	c.j fail
	.option pop
11:	la a1, 12b
	bne ra, a1, fail
	/* c.jalr ra: rd == rs1 */
	la ra, 13f
	c.jalr ra
14:	j fail
13:	la a1, 14b
	bne ra, a1, fail
	/* c.jr, c.mv, c.add */
	la a0, 15f
	c.jr a0
	j fail
15:	li a1, 5
	c.mv a2, a1
	c.add a2, a1
	CHECK(a2, 10)
	PASS
fail:
	FAIL
	TRAP_HANDLERS
