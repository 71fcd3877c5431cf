# A bare-metal program that increments a doubleword forever with LR/SC,
# so that a pause often falls between an LR and its SC: the hart then
# holds a reservation, which is part of its state.
	.section .text.init
	.globl _start
_start:
	li   s0, 0x80100000
loop:
	lr.d t0, (s0)
	addi t0, t0, 1
	sc.d t1, t0, (s0)
	bnez t1, loop
	j    loop
