# A bare-metal program for the HTIF convention: prints through the
# magic-memory write syscall and device-1 putchar, then exits with the
# status in a0 of main (set by the EXIT_CODE macro).
	.section .text.init
	.globl _start
_start:
	la   sp, stack_top
	# write(1, msg, len) through the magic-memory syscall block
	la   t0, magic
	li   t1, 64
	sd   t1, 0(t0)
	li   t1, 1
	sd   t1, 8(t0)
	la   t1, msg
	sd   t1, 16(t0)
	li   t1, 16
	sd   t1, 24(t0)
	la   t2, tohost
	sd   t0, 0(t2)
1:	la   t2, fromhost
	ld   t3, 0(t2)
	beqz t3, 1b
	sd   zero, 0(t2)
	# putchar '!' through device 1, command 1
	li   t1, (1 << 56) | (1 << 48) | '!'
	la   t2, tohost
	sd   t1, 0(t2)
2:	ld   t3, 0(t2)
	bnez t3, 2b
	# exit
	li   t1, (EXIT_CODE << 1) | 1
	sd   t1, 0(t2)
3:	j 3b

	.data
msg:	.ascii "hello from htif\n"   # 16 bytes
msg_end:
	.align 6
magic:	.space 64
	.align 4
	.space 1024
stack_top:

#include "tohost.h"
