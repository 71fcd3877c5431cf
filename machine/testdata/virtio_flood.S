# A hostile bare-metal guest for the virtio-blk device: it makes NREQ
# requests of 8 MiB available (each one indirect descriptor naming the same
# table: a header, 128 buffers of 64 KiB over the same memory, a status
# byte), then writes QueueNotify in a loop until all are used. It exits
# (HTIF) with 0 when every request completed with status OK and the buffer
# holds the disk's bytes, 2 otherwise.
#define VIRTIO 0x10001000
#define NREQ 8
#define SEGS 128
#define TABLE_LEN ((SEGS + 2) * 16)

	.section .text.init
	.globl _start
_start:
	li   s0, VIRTIO
	sw   zero, 0x70(s0)        # Status: reset
	li   t0, 3
	sw   t0, 0x70(s0)          # ACKNOWLEDGE | DRIVER
	sw   zero, 0x24(s0)        # DriverFeaturesSel 0
	li   t0, 1 << 28
	sw   t0, 0x20(s0)          # INDIRECT_DESC
	li   t0, 1
	sw   t0, 0x24(s0)          # DriverFeaturesSel 1
	sw   t0, 0x20(s0)          # VERSION_1 (bit 32)
	li   t0, 11
	sw   t0, 0x70(s0)          # | FEATURES_OK
	sw   zero, 0x30(s0)        # QueueSel 0
	li   t0, NREQ
	sw   t0, 0x38(s0)          # QueueNum
	la   t0, desc
	sw   t0, 0x80(s0)
	srli t0, t0, 32
	sw   t0, 0x84(s0)
	la   t0, avail
	sw   t0, 0x90(s0)
	srli t0, t0, 32
	sw   t0, 0x94(s0)
	la   t0, used
	sw   t0, 0xa0(s0)
	srli t0, t0, 32
	sw   t0, 0xa4(s0)
	li   t0, 1
	sw   t0, 0x44(s0)          # QueueReady
	li   t0, 15
	sw   t0, 0x70(s0)          # | DRIVER_OK: the device looks at the ring

	la   s1, used
	li   s2, NREQ
wait:
	sw   zero, 0x50(s0)        # QueueNotify 0, again and again
	lhu  t0, 2(s1)
	bne  t0, s2, wait

	li   a0, 2
	la   t0, status
	lbu  t1, 0(t0)
	bnez t1, exit
	la   t0, buf
	lbu  t1, 0(t0)
	li   t2, 0xa5
	bne  t1, t2, exit
	li   a0, 0
exit:
	slli a0, a0, 1
	ori  a0, a0, 1
	la   t0, tohost
	sd   a0, 0(t0)
1:	j 1b

	.data
	.align 4
desc:
	.rept NREQ
	.dword table
	.word  TABLE_LEN
	.hword 4                   # INDIRECT
	.hword 0
	.endr
	.align 1
avail:
	.hword 0
	.hword NREQ
	.set i, 0
	.rept NREQ
	.hword i
	.set i, i + 1
	.endr
	.hword 0
	.align 2
used:
	.space 4 + 8 * NREQ + 2
	.align 4
table:
	.dword hdr
	.word  16
	.hword 1                   # NEXT
	.hword 1
	.set i, 1
	.rept SEGS
	.dword buf
	.word  65536
	.hword 3                   # NEXT | WRITE
	.hword i + 1
	.set i, i + 1
	.endr
	.dword status
	.word  1
	.hword 2                   # WRITE
	.hword 0
	.align 4
hdr:
	.word 0                    # VIRTIO_BLK_T_IN
	.word 0
	.dword 0                   # sector 0
status:
	.byte 0xff

	.bss
	.align 12
buf:
	.space 65536

#include "tohost.h"
