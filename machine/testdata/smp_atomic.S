// Every hart, started together in M-mode: message passing with fences (hart
// 0 publishes an array, the others read it after seeing a flag), then
// ITERS increments by each hart of three shared counters: one with
// amoadd.w, one with an lr.d/sc.d loop, and a plain one under a spinlock
// (amoswap.w.aq / amoswap.w.rl). Hart 0 waits for all and exits 0 when every
// total is exactly HARTS*ITERS (1: a reader saw the array before it was
// written; 2, 3, 4: the AMO, LR/SC, locked counter is wrong). Harts beyond
// HARTS park in WFI.
#include "smp.h"
	.section .text.init
	.globl _start
_start:
	csrr a0, mhartid
	li   t0, HARTS
	bgeu a0, t0, park

	// --- message passing
	bnez a0, reader
	la   t0, data
	li   t1, 1
	li   t2, 64
1:	sd   t1, 0(t0)
	addi t0, t0, 8
	addi t1, t1, 1
	ble  t1, t2, 1b
	fence w, w
	la   t0, flag
	li   t1, 1
	sw   t1, 0(t0)
	j    counters
reader:
	la   t0, flag
2:	lw   t1, 0(t0)
	bnez t1, 3f
	PAUSE
	j    2b
3:	fence r, r
	la   t0, data
	li   t2, 64
	li   t3, 0
4:	ld   t1, 0(t0)
	add  t3, t3, t1
	addi t0, t0, 8
	addi t2, t2, -1
	bnez t2, 4b
	li   t1, 64*65/2
	beq  t3, t1, counters
	la   t0, errors
	li   t1, 1
	amoadd.w zero, t1, (t0)

counters:
	// --- amoadd.w
	li   t2, ITERS
	la   t0, amo_counter
	li   t1, 1
5:	amoadd.w zero, t1, (t0)
	addi t2, t2, -1
	bnez t2, 5b
	// --- lr.d/sc.d
	li   t2, ITERS
	la   t0, lrsc_counter
6:	lr.d t1, (t0)
	addi t1, t1, 1
	sc.d t3, t1, (t0)
	bnez t3, 6b
	addi t2, t2, -1
	bnez t2, 6b
	// --- a plain counter under a spinlock
	li   t2, ITERS
	la   t0, lock
	la   t4, locked_counter
7:	li   t1, 1
	amoswap.w.aq t3, t1, (t0)
	beqz t3, 8f
	PAUSE
	j    7b
8:	ld   t5, 0(t4)
	addi t5, t5, 1
	sd   t5, 0(t4)
	amoswap.w.rl zero, zero, (t0)
	addi t2, t2, -1
	bnez t2, 7b

	la   t0, done
	li   t1, 1
	amoadd.w zero, t1, (t0)
	bnez a0, park
	li   t2, HARTS
9:	lw   t1, 0(t0)
	beq  t1, t2, 10f
	PAUSE
	j    9b
10:	fence rw, rw
	li   t6, HARTS*ITERS
	la   t0, errors
	lw   t1, 0(t0)
	bnez t1, fail_mp
	la   t0, amo_counter
	lw   t1, 0(t0)
	bne  t1, t6, fail_amo
	la   t0, lrsc_counter
	ld   t1, 0(t0)
	bne  t1, t6, fail_lrsc
	la   t0, locked_counter
	ld   t1, 0(t0)
	bne  t1, t6, fail_lock
	EXIT(0)
fail_mp:
	EXIT(1)
fail_amo:
	EXIT(2)
fail_lrsc:
	EXIT(3)
fail_lock:
	EXIT(4)
park:
	wfi
	j    park

	.data
	.align 6
flag:	.word 0
	.align 6
errors:	.word 0
	.align 6
done:	.word 0
	.align 6
amo_counter:	.word 0
	.align 6
lrsc_counter:	.dword 0
	.align 6
lock:	.word 0
	.align 6
locked_counter:	.dword 0
	.align 6
data:	.space 8*64

	TOHOST_SECTION
