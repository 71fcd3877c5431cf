/* Sv39: mappings of every size, faults, U/SUM/MXR, A/D, SFENCE.VMA, MPRV. */
#include "test.h"
#define V 1
#define R 2
#define W 4
#define X 8
#define U 16
#define A 64
#define D 128
#define SUM (1 << 18)
#define MXR (1 << 19)

/* setpte table, index, register holding the physical address, flags */
.macro setpte table, idx, pa, flags
	la t0, \table
	srli t1, \pa, 12
	slli t1, t1, 10
	li t2, \flags
	or t1, t1, t2
	li t2, (\idx) * 8
	add t0, t0, t2
	sd t1, 0(t0)
.endm

	.section .text.init
	.globl _start
_start:
	INSTALL_MTRAP
	INSTALL_STRAP
	/* root[2]: VA 0x80000000 -> identity gigapage (code, data, tables) */
	li a0, 0x80000000
	setpte root, 2, a0, V|R|W|X|A|D
	/* root[1]: VA 0x40000000 -> the same gigapage (an alias) */
	setpte root, 1, a0, V|R|W|A|D
	/* root[3]: gigapage with a PPN that is not 1 GiB aligned */
	li a0, 0x80200000
	setpte root, 3, a0, V|R|W|A|D
	/* root[0] -> l1 */
	la a0, l1
	setpte root, 0, a0, V
	/* l1[0x80]: VA 0x10000000 -> the control device, megapage */
	li a0, CTRL
	setpte l1, 0x80, a0, V|R|W|A|D
	/* l1[1]: VA 0x200000 -> PA 0x80200000, megapage */
	li a0, 0x80200000
	setpte l1, 1, a0, V|R|W|A|D
	/* l1[2]: megapage with a PPN that is not 2 MiB aligned */
	li a0, 0x80201000
	setpte l1, 2, a0, V|R|W|A|D
	/* l1[0] -> l0 */
	la a0, l0
	setpte l1, 0, a0, V
	/* l0: 4 KiB pages at VA 0x0000.. */
	la a0, page_a
	setpte l0, 0, a0, V|R|W	/* A and D clear */
	setpte l0, 1, a0, V|R|A	/* read-only */
	la a0, page_b
	setpte l0, 2, a0, V|R|W|U|A|D	/* user page */
	la a0, page_x
	setpte l0, 3, a0, V|X|A	/* execute-only */
	setpte l0, 4, a0, 0	/* invalid */
	setpte l0, 6, a0, V|W|A|D	/* W without R: reserved */
	la a0, page_a
	setpte l0, 7, a0, V|R|W|A|D	/* remapped later */
	la a0, page_u
	setpte l0, 8, a0, V|R|X|U|A	/* user code */

	/* data */
	li a0, 0x1111
	la t0, page_a
	sd a0, 0(t0)
	li a0, 0x2222
	la t0, page_b
	sd a0, 0(t0)
	li a0, 0x3333
	la t0, page_x
	sd a0, 0(t0)
	li a0, 0x4444
	li t0, 0x80200000 + 0x1238
	sd a0, 0(t0)

	/* page faults go to S */
	li a0, (1 << 12) | (1 << 13) | (1 << 15)
	csrw medeleg, a0
	la a0, root
	srli a0, a0, 12
	li a1, 8 << 60
	or a0, a0, a1
	csrw satp, a0
	/* Sv48 and Sv57 are not supported: satp stays */
	li a2, 9 << 60
	csrw satp, a2
	csrr a1, satp
	bne a0, a1, fail
	li a2, 10 << 60
	or a2, a2, a0
	csrw satp, a2
	csrr a1, satp
	bne a0, a1, fail
	sfence.vma
	/* M-mode ignores translation */
	la t0, page_a
	ld a1, 0(t0)
	CHECK(a1, 0x1111)

	ENTER(1, smode)
smode:
	/* identity gigapage: we are running through it */
	la t0, page_b
	ld a1, 0(t0)
	CHECK(a1, 0x2222)
	/* 4K page with A = D = 0: the load sets A only */
	li t0, 0
	ld a1, 0(t0)
	CHECK(a1, 0x1111)
	la t0, l0
	ld a1, 0(t0)
	andi a1, a1, A|D
	CHECK(a1, A)
	/* the store sets D */
	li t0, 8
	li a1, 0x5555
	sd a1, 0(t0)
	la t0, l0
	ld a1, 0(t0)
	andi a1, a1, A|D
	CHECK(a1, A|D)
	la t0, page_a
	ld a1, 8(t0)
	CHECK(a1, 0x5555)
	/* alias gigapage at VA 0x40000000 */
	la t0, page_b
	li t1, 0x40000000
	sub t0, t0, t1	/* page_b - 0x80000000 + 0x40000000 */
	ld a1, 0(t0)
	CHECK(a1, 0x2222)
	/* megapage */
	li t0, 0x200000 + 0x1238
	ld a1, 0(t0)
	CHECK(a1, 0x4444)
	/* store to a read-only page: store page fault, tval = address */
	li t0, 0x1010
	EXPECT_STRAP(1f)
2:	sd a1, 0(t0)
1:	CHECK(s2, 15)
	CHECK(s4, 0x1010)
	la a0, 2b
	bne s3, a0, fail
	/* but loads work */
	li t0, 0x1000
	ld a1, 0(t0)
	CHECK(a1, 0x1111)
	/* invalid PTE: load and fetch page faults */
	li t0, 0x4abc
	EXPECT_STRAP(1f)
	lw a1, 0(t0)
1:	CHECK(s2, 13)
	CHECK(s4, 0x4abc)
	EXPECT_STRAP(1f)
	jr t0
1:	CHECK(s2, 12)
	CHECK(s4, 0x4abc)
	CHECK(s3, 0x4abc)
	/* store to an invalid page */
	EXPECT_STRAP(1f)
	sb a1, 0(t0)
1:	CHECK(s2, 15)
	/* fetch from a page without X */
	li t0, 0x0
	EXPECT_STRAP(1f)
	jalr t0
1:	CHECK(s2, 12)
	CHECK(s4, 0)
	/* W without R is reserved: even a load page-faults */
	li t0, 0x6000
	EXPECT_STRAP(1f)
	ld a1, 0(t0)
1:	CHECK(s2, 13)
	EXPECT_STRAP(1f)
	sd a1, 0(t0)
1:	CHECK(s2, 15)
	/* misaligned superpages */
	li t0, 0x400000
	EXPECT_STRAP(1f)
	ld a1, 0(t0)
1:	CHECK(s2, 13)
	CHECK(s4, 0x400000)
	li t0, 0xc0000000
	EXPECT_STRAP(1f)
	ld a1, 0(t0)
1:	CHECK(s2, 13)
	/* non-canonical address: bits 63..39 must equal bit 38 */
	li t0, 0x0000004000000000
	EXPECT_STRAP(1f)
	ld a1, 0(t0)
1:	CHECK(s2, 13)
	CHECK(s4, 0x0000004000000000)
	li t0, 0xffffffc000000000	/* canonical, but unmapped (root[256]) */
	EXPECT_STRAP(1f)
	sd a1, 0(t0)
1:	CHECK(s2, 15)
	/* a load crossing into an invalid page faults on the second page */
	li t0, 0x3ffc
	EXPECT_STRAP(1f)
	ld a1, 0(t0)	/* 0x3000 is X-only, so the first page faults */
1:	CHECK(s2, 13)
	li t0, 0x2ffc	/* user page: faults in S without SUM */
	EXPECT_STRAP(1f)
	ld a1, 0(t0)
1:	CHECK(s2, 13)
	/* U pages: S needs SUM to load and store, and may never execute */
	li t0, 0x2000
	EXPECT_STRAP(1f)
	ld a1, 0(t0)
1:	CHECK(s2, 13)
	li a0, SUM
	csrs sstatus, a0
	ld a1, 0(t0)
	CHECK(a1, 0x2222)
	sd a1, 8(t0)
	li t0, 0x8000
	EXPECT_STRAP(1f)
	jalr t0
1:	CHECK(s2, 12)
	li a0, SUM
	csrc sstatus, a0
	/* SUM is part of how the TLB answers: clearing it faults again */
	li t0, 0x2000
	EXPECT_STRAP(1f)
	ld a1, 0(t0)
1:	CHECK(s2, 13)
	/* MXR makes execute-only pages readable */
	li t0, 0x3000
	EXPECT_STRAP(1f)
	ld a1, 0(t0)
1:	CHECK(s2, 13)
	li a0, MXR
	csrs sstatus, a0
	ld a1, 0(t0)
	CHECK(a1, 0x3333)
	EXPECT_STRAP(1f)
	sd a1, 0(t0)	/* but not writable */
1:	CHECK(s2, 15)
	li a0, MXR
	csrc sstatus, a0
	EXPECT_STRAP(1f)
	ld a1, 0(t0)
1:	CHECK(s2, 13)
	/* SFENCE.VMA makes a changed PTE visible */
	li t0, 0x7000
	ld a1, 0(t0)
	CHECK(a1, 0x1111)
	la a0, page_b
	setpte l0, 7, a0, V|R|W|A|D
	sfence.vma
	li t0, 0x7000
	ld a1, 0(t0)
	CHECK(a1, 0x2222)
	/* and an invalidated one */
	la a0, page_b
	setpte l0, 7, a0, 0
	sfence.vma zero, zero
	li t0, 0x7000
	EXPECT_STRAP(1f)
	ld a1, 0(t0)
1:	CHECK(s2, 13)
	/* code written through one mapping executes through another */
	la t0, patch
	li t1, 0x40000000
	sub t0, t0, t1	/* alias of patch */
	li a1, 0x02a00593	/* addi a1, zero, 42 */
	sw a1, 0(t0)
	fence.i
	.option push
	.option norvc
patch:
	addi a1, zero, 1
	.option pop
	CHECK(a1, 42)
	/* U mode: loads from non-U pages fault; U code runs from U pages */
	la a0, page_u
	la a1, ucode
	ld a2, 0(a1)
	sd a2, 0(a0)
	ld a2, 8(a1)
	sd a2, 8(a0)
	fence.i
	li a0, 1 << 8	/* SPP = U */
	csrc sstatus, a0
	li a0, 0x8000
	csrw sepc, a0
	EXPECT_STRAP(1f)
	li a3, 0x2000	/* user page: readable */
	li a4, 0	/* supervisor page: not */
	sret
1:	CHECK(s2, 13)
	CHECK(s4, 0)
	CHECK(a1, 0x2222)
	li a0, 0x8004
	bne s3, a0, fail
	/* back to M: MPRV makes M loads translate with MPP's mode */
	EXPECT_TRAP(1f)
	ecall
1:	CHECK(s2, 9)
	li a0, (1 << 17) | (1 << 11)	/* MPRV, MPP = S */
	csrs mstatus, a0
	li t0, 0x1000
	ld a1, 0(t0)
	CHECK(a1, 0x1111)
	li a0, 1 << 17
	csrc mstatus, a0
	csrw satp, zero
	PASS
fail:
	FAIL

	/* copied to page_u (VA 0x8000), executed in U mode */
ucode:
	.option push
	.option norvc
	ld a1, 0(a3)
	ld a1, 0(a4)
	j .
	nop
	.option pop

	TRAP_HANDLERS

	.data
	.align 12
root:	.skip 4096
l1:	.skip 4096
l0:	.skip 4096
page_a:	.skip 4096
page_b:	.skip 4096
page_x:	.skip 4096
page_u:	.skip 4096
