# The HTIF words (Spike's tohost/fromhost convention): the machine finds
# them by symbol. Included at the end of the bare-metal test programs.
	.section .tohost, "aw", @progbits
	.align 6
	.globl tohost
tohost:	.dword 0
	.align 6
	.globl fromhost
fromhost: .dword 0
