// LR/SC reservations against another hart's stores. Hart 0 takes a
// reservation on x, lets hart 1 store to x, and its sc must fail (exit 1);
// then hart 1 stores to the next doubleword, and the sc must succeed
// (exit 2). With ABA defined, hart 1 then stores to x the value x already
// holds, and the sc must still fail (exit 3): a reservation is broken by a
// store, not by a change of value. (Harts in parallel implement sc as a
// compare-and-swap and cannot see that one.)
#include "smp.h"
	.section .text.init
	.globl _start
_start:
	csrr a0, mhartid
	bnez a0, other
	la   s0, x
	la   s1, flags
	li   t4, 777

	lr.d t1, (s0)
	li   t2, 1
	sw   t2, 0(s1)            // go 1
1:	lw   t2, 4(s1)
	bnez t2, 2f
	PAUSE
	j    1b
2:	sc.d t3, t4, (s0)
	beqz t3, fail_1

	lr.d t1, (s0)
	li   t2, 1
	sw   t2, 8(s1)            // go 2
3:	lw   t2, 12(s1)
	bnez t2, 4f
	PAUSE
	j    3b
4:	sc.d t3, t4, (s0)
	bnez t3, fail_2
#ifdef ABA
	lr.d t1, (s0)
	li   t2, 1
	sw   t2, 16(s1)           // go 3
5:	lw   t2, 20(s1)
	bnez t2, 6f
	PAUSE
	j    5b
6:	addi t4, t4, 1
	sc.d t3, t4, (s0)
	beqz t3, fail_3
#endif
	EXIT(0)
fail_1:	EXIT(1)
fail_2:	EXIT(2)
fail_3:	EXIT(3)

other:
	li   t0, 1
	bne  a0, t0, park
	la   s0, x
	la   s1, flags
1:	lw   t2, 0(s1)
	bnez t2, 2f
	PAUSE
	j    1b
2:	li   t2, 12345
	sd   t2, 0(s0)
	li   t2, 1
	sw   t2, 4(s1)
3:	lw   t2, 8(s1)
	bnez t2, 4f
	PAUSE
	j    3b
4:	sd   t2, 8(s0)
	li   t2, 1
	sw   t2, 12(s1)
5:	lw   t2, 16(s1)
	bnez t2, 6f
	PAUSE
	j    5b
6:	ld   t2, 0(s0)
	sd   t2, 0(s0)
	li   t2, 1
	sw   t2, 20(s1)
park:
	wfi
	j    park

	.data
	.align 6
x:	.dword 0, 0
	.align 6
flags:	.word 0, 0, 0, 0, 0, 0

	TOHOST_SECTION
