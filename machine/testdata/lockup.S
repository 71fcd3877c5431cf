	.section .text.init
	.globl _start
_start:
	.word 0
