// Every hart waits for an interrupt forever, in M-mode: with WAKEABLE
// defined each enables its software interrupt first (which nobody sends),
// otherwise none is enabled, and nothing can ever wake the machine.
#include "smp.h"
	.section .text.init
	.globl _start
_start:
#ifdef WAKEABLE
	li   t0, 1 << 3
	csrw mie, t0
#endif
1:	wfi
	j    1b

	TOHOST_SECTION
