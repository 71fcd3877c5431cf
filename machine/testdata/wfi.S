	# Waits for an interrupt forever, with the interrupts in MIE enabled
	# (default none: nothing can ever wake the hart).
#ifndef MIE
#define MIE 0
#endif
	.section .text.init
	.globl _start
_start:
	li t0, MIE
	csrw mie, t0
1:	wfi
	j 1b
