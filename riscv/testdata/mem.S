/* Loads and stores of every width: extension, misalignment, page crossing. */
#include "test.h"
	.section .text.init
	.globl _start
_start:
	INSTALL_MTRAP
	la s0, buf
	li a0, 0x8877665544332211
	sd a0, 0(s0)
	li a0, 0x00ff7f80fffe0102
	sd a0, 8(s0)
	/* sign and zero extension */
	lb a1, 7(s0)
	CHECK(a1, 0xffffffffffffff88)
	lbu a1, 7(s0)
	CHECK(a1, 0x88)
	lb a1, 0(s0)
	CHECK(a1, 0x11)
	lh a1, 6(s0)
	CHECK(a1, 0xffffffffffff8877)
	lhu a1, 6(s0)
	CHECK(a1, 0x8877)
	lw a1, 4(s0)
	CHECK(a1, 0xffffffff88776655)
	lwu a1, 4(s0)
	CHECK(a1, 0x88776655)
	lw a1, 0(s0)
	CHECK(a1, 0x44332211)
	ld a1, 0(s0)
	CHECK(a1, 0x8877665544332211)
	lb a1, 12(s0)	/* 0x80 */
	CHECK(a1, -128)
	lb a1, 13(s0)	/* 0x7f */
	CHECK(a1, 127)
	lh a1, 10(s0)	/* 0xfffe */
	CHECK(a1, -2)
	/* negative offsets */
	addi s1, s0, 16
	ld a1, -8(s1)
	CHECK(a1, 0x00ff7f80fffe0102)
	/* stores write exactly their width */
	li a0, -1
	sd a0, 16(s0)
	sb zero, 16(s0)
	ld a1, 16(s0)
	CHECK(a1, 0xffffffffffffff00)
	li a2, 0x1234
	sh a2, 18(s0)
	ld a1, 16(s0)
	CHECK(a1, 0xffffffff1234ff00)
	li a2, 0xabcdef0123456789
	sw a2, 20(s0)
	ld a1, 16(s0)
	CHECK(a1, 0x234567891234ff00)
	sd a2, 16(s0)
	ld a1, 16(s0)
	CHECK(a1, 0xabcdef0123456789)
	/* misaligned accesses within a page */
	ld a1, 1(s0)
	CHECK(a1, 0x0288776655443322)
	lw a1, 3(s0)
	CHECK(a1, 0x77665544)
	lwu a1, 5(s0)
	CHECK(a1, 0x02887766)
	lh a1, 7(s0)
	CHECK(a1, 0x0288)
	lhu a1, 11(s0)	/* bytes ff 80 -> 0x80ff */
	CHECK(a1, 0x80ff)
	lh a1, 11(s0)
	CHECK(a1, 0xffffffffffff80ff)
	li a2, 0x1122334455667788
	sd a2, 33(s0)
	ld a1, 33(s0)
	CHECK(a1, 0x1122334455667788)
	lb a1, 33(s0)
	CHECK(a1, 0xffffffffffffff88)
	lbu a1, 40(s0)
	CHECK(a1, 0x11)
	sw a2, 45(s0)
	lw a1, 45(s0)
	CHECK(a1, 0x55667788)
	sh a2, 51(s0)
	lhu a1, 51(s0)
	CHECK(a1, 0x7788)
	/* misaligned across the page boundary at buf + 4096 */
	li t0, 4096
	add s2, s0, t0
	sd zero, -8(s2)
	sd zero, 0(s2)
	li a2, 0x0102030405060708
	sd a2, -3(s2)
	ld a1, -3(s2)
	CHECK(a1, 0x0102030405060708)
	ld a1, -8(s2)
	CHECK(a1, 0x0607080000000000)
	ld a1, 0(s2)
	CHECK(a1, 0x0000000102030405)
	lw a1, -2(s2)
	CHECK(a1, 0x04050607)
	lwu a1, -1(s2)
	CHECK(a1, 0x03040506)
	lh a1, -1(s2)
	CHECK(a1, 0x0506)
	li a2, 0xfedc
	sh a2, -1(s2)
	lh a1, -1(s2)
	CHECK(a1, 0xfffffffffffffedc)
	lbu a1, -1(s2)
	CHECK(a1, 0xdc)
	lbu a1, 0(s2)
	CHECK(a1, 0xfe)
	li a2, 0x89abcdef
	sw a2, -2(s2)
	lw a1, -2(s2)
	CHECK(a1, 0xffffffff89abcdef)
	lwu a1, -2(s2)
	CHECK(a1, 0x89abcdef)
	/* compressed loads and stores */
	mv a3, s0
	li a4, 0x5555aaaa5555aaaa
	c.sd a4, 64(a3)
	c.ld a5, 64(a3)
	CHECK(a5, 0x5555aaaa5555aaaa)
	c.lw a5, 64(a3)
	CHECK(a5, 0x000000005555aaaa)
	c.lw a5, 68(a3)
	CHECK(a5, 0x000000005555aaaa)
	lw a5, 66(a3)	/* misaligned: bytes 55 55 aa aa */
	CHECK(a5, 0xffffffffaaaa5555)
	li a4, 0x80000001
	c.sw a4, 72(a3)
	c.lw a5, 72(a3)
	CHECK(a5, 0xffffffff80000001)
	mv t1, sp
	mv sp, s0
	c.sdsp a4, 80(sp)
	c.ldsp a5, 80(sp)
	CHECK(a5, 0x80000001)
	c.lwsp a5, 80(sp)
	CHECK(a5, 0xffffffff80000001)
	c.swsp zero, 80(sp)
	c.ldsp a5, 80(sp)
	CHECK(a5, 0)
	mv sp, t1
	/* loads into x0 do nothing */
	lw zero, 0(s0)
	CHECK(zero, 0)
	/* accesses outside RAM and devices: access faults */
	EXPECT_TRAP(1f)
	li t0, 0x20000000
	lw a1, 0(t0)
1:	CHECK(s2, 5)
	CHECK(s4, 0x20000000)
	EXPECT_TRAP(1f)
	li t0, 0x20000000
	sd a1, 8(t0)
1:	CHECK(s2, 7)
	CHECK(s4, 0x20000008)
	/* device registers must be naturally aligned */
	EXPECT_TRAP(1f)
	li t0, CTRL
	ld a1, 0x11(t0)
1:	CHECK(s2, 4)
	CHECK(s4, CTRL + 0x11)
	/* a device load */
	li t0, CTRL
	ld a1, 0x10(t0)
	CHECK(a1, 0x1234)
	PASS
	TRAP_HANDLERS

	.data
	.align 12
buf:
	.skip 8192
