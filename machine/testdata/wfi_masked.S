# A bare-metal program that makes the timer interrupt pending (mtimecmp 0)
# while only external interrupts are enabled (mie = MEIE), then waits for an
# interrupt: only an external one can wake it.
	.section .text.init
	.globl _start
_start:
	li   t0, 1 << 11           # MEIE
	csrw mie, t0
	csrci mstatus, 8
	li   t0, 0x2004000         # CLINT mtimecmp
	sd   zero, 0(t0)
1:	wfi
	j    1b

#include "tohost.h"
