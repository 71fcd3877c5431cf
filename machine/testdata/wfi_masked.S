# A bare-metal program that makes the timer interrupt pending (mtimecmp 0)
# with every interrupt disabled (mie 0), then waits for an interrupt that
# can never be taken: WFI forever.
	.section .text.init
	.globl _start
_start:
	csrw mie, zero
	csrci mstatus, 8
	li   t0, 0x2004000         # CLINT mtimecmp
	sd   zero, 0(t0)
1:	wfi
	j    1b

#include "tohost.h"
