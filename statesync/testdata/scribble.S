# A bare-metal program whose memory, registers and device state keep
# changing, for the state sync tests: it stores pseudo-random doublewords
# (a 64-bit LCG) over a 2 MiB region of 512 pages, and every 1024 stores
# zeroes the whole page it just wrote and prints a dot on the UART. It
# never stops.
	.section .text.init
	.globl _start
_start:
	li   s0, 0x80100000          # the region, 1 MiB into RAM
	li   s1, 512                 # its pages
	li   s2, 0x10000000          # the UART's transmit register
	li   s3, 1                   # LCG state
	li   s4, 6364136223846793005
	li   s5, 1442695040888963407
	li   s6, 0                   # stores so far
	li   s7, 0xff8
loop:
	mul  s3, s3, s4
	add  s3, s3, s5
	srli t0, s3, 33
	remu t1, t0, s1              # page
	srli t2, s3, 20
	and  t2, t2, s7              # doubleword in the page
	slli t1, t1, 12
	add  t1, t1, s0
	add  t3, t1, t2
	sd   s3, 0(t3)
	addi s6, s6, 1
	andi t4, s6, 1023
	bnez t4, loop
	li   t5, 512
1:	sd   zero, 0(t1)
	addi t1, t1, 8
	addi t5, t5, -1
	bnez t5, 1b
	li   t6, '.'
	sb   t6, 0(s2)
	j    loop
