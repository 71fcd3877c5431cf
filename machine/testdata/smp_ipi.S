// Inter-processor interrupts through the CLINT, in M-mode. Every hart but
// 0 enables its machine software interrupt and sleeps in WFI; its trap
// handler clears its msip and counts. Hart 0 first sends a storm of IPIs to
// everyone without waiting (ITERS each), then ITERS rounds in which it
// interrupts each hart in turn and waits for the count to move. It exits
// 0 when every hart counted at least the ITERS rounds (1: a trap with an
// unexpected cause).
#include "smp.h"
	.section .text.init
	.globl _start
_start:
	csrr a0, mhartid
	li   t0, HARTS
	bgeu a0, t0, park
	la   t0, trap
	csrw mtvec, t0
	bnez a0, sleeper

	// the storm: msip of every other hart, ITERS times, no waiting
	li   t2, ITERS
1:	li   t3, 1
2:	li   t4, 0x2000000
	slli t5, t3, 2
	add  t4, t4, t5
	li   t5, 1
	sw   t5, 0(t4)
	addi t3, t3, 1
	li   t5, HARTS
	blt  t3, t5, 2b
	addi t2, t2, -1
	bnez t2, 1b

	// wait until every hart has counted at least one interrupt
	li   t3, 1
3:	la   t4, counts
	slli t5, t3, 3
	add  t4, t4, t5
4:	ld   t5, 0(t4)
	bnez t5, 5f
	PAUSE
	j    4b
5:	addi t3, t3, 1
	li   t5, HARTS
	blt  t3, t5, 3b

	// ITERS rounds: interrupt hart j, wait for its count to move
	li   t2, ITERS
6:	li   t3, 1
7:	la   t4, counts
	slli t5, t3, 3
	add  t4, t4, t5
	ld   s1, 0(t4)
	li   t6, 0x2000000
	slli t5, t3, 2
	add  t6, t6, t5
	li   t5, 1
	sw   t5, 0(t6)
8:	ld   t5, 0(t4)
	bne  t5, s1, 9f
	PAUSE
	j    8b
9:	addi t3, t3, 1
	li   t5, HARTS
	blt  t3, t5, 7b
	addi t2, t2, -1
	bnez t2, 6b

	la   t0, errors
	ld   t1, 0(t0)
	bnez t1, fail
	EXIT(0)
fail:
	EXIT(1)

sleeper:
	li   t0, 1 << 3          # MSIE
	csrw mie, t0
	csrsi mstatus, 1 << 3    # MIE
10:	wfi
	j    10b

	.align 2
trap:
	csrr t0, mcause
	li   t1, (1 << 63) | 3
	beq  t0, t1, 11f
	la   t0, errors
	li   t1, 1
	amoadd.d zero, t1, (t0)
	mret
11:	csrr t0, mhartid
	li   t1, 0x2000000
	slli t2, t0, 2
	add  t1, t1, t2
	sw   zero, 0(t1)
	la   t1, counts
	slli t2, t0, 3
	add  t1, t1, t2
	li   t2, 1
	amoadd.d zero, t2, (t1)
	mret

park:
	wfi
	j    park

	.data
	.align 6
errors:	.dword 0
	.align 6
counts:	.space 8*HARTS

	TOHOST_SECTION
