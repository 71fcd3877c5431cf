// Helpers for the multi-hart bare-metal programs (smp_*.S). HARTS (the
// number of harts the program expects) and ITERS come from -D.

#define PAUSE .4byte 0x0100000f   /* fence w,0: the Zihintpause hint */

// EXIT ends the program through HTIF with status code (0: success).
#define EXIT(code)                      \
	li   t1, ((code) << 1) | 1;     \
	la   t2, tohost;                \
	sd   t1, 0(t2);                 \
9:	j    9b

// SBI calls (S-mode programs): extension, function, result in a0 (error)
// and a1 (value).
#define SBI(eid, fid) li a7, eid; li a6, fid; ecall

#define SBI_HSM    0x48534D
#define SBI_IPI    0x735049
#define SBI_RFENCE 0x52464E43

#define TOHOST_SECTION                        \
	.section .tohost, "aw", @progbits;    \
	.align 6;                             \
	.globl tohost;                        \
tohost:	.dword 0;                             \
	.align 6;                             \
	.globl fromhost;                      \
fromhost: .dword 0
