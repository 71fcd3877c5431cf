# A hostile bare-metal guest: once a byte arrives on its console, it makes
# every virtio-blk queue notification as expensive as it can: 256 avail
# entries all naming one chain whose data descriptor asks for the largest
# read the device accepts (8 MiB), so one store to QueueNotify makes the
# host copy about 2 GiB. It does that ROUNDS times, then exits through
# HTIF. The instructions between notifications are few: nearly all the
# time goes to device work inside a single epoch.
	.equ UART,   0x10000000
	.equ VIRTIO, 0x10001000     # slot 0: the block device
	.equ BUF,    0x81000000     # 8 MiB of guest RAM the reads land in
	.equ BUFLEN, 0x800000

	.section .text.init
	.globl _start
_start:
	# Wait for the go-ahead on the console.
	li   t0, UART
1:	lbu  t1, 5(t0)              # LSR: data ready?
	andi t1, t1, 1
	beqz t1, 1b
	lbu  t1, 0(t0)

	li   s0, VIRTIO
	sw   zero, 0x70(s0)         # Status: reset
	li   t0, 1
	sw   t0, 0x70(s0)           # ACKNOWLEDGE
	li   t0, 3
	sw   t0, 0x70(s0)           # DRIVER
	li   t0, 1
	sw   t0, 0x24(s0)           # DriverFeaturesSel = 1
	sw   t0, 0x20(s0)           # VIRTIO_F_VERSION_1 (bit 32)
	sw   zero, 0x24(s0)
	sw   zero, 0x20(s0)
	li   t0, 11
	sw   t0, 0x70(s0)           # FEATURES_OK
	sw   zero, 0x30(s0)         # QueueSel 0
	li   t0, 256
	sw   t0, 0x38(s0)           # QueueNum
	la   t0, desc
	sw   t0, 0x80(s0)
	sw   zero, 0x84(s0)
	la   t0, avail
	sw   t0, 0x90(s0)
	sw   zero, 0x94(s0)
	la   t0, used
	sw   t0, 0xa0(s0)
	sw   zero, 0xa4(s0)
	li   t0, 1
	sw   t0, 0x44(s0)           # QueueReady
	li   t0, 15
	sw   t0, 0x70(s0)           # DRIVER_OK

	# desc 0: the request header (read sector 0), NEXT -> 1
	la   t1, desc
	la   t0, hdr
	sd   t0, 0(t1)
	li   t0, 16
	sw   t0, 8(t1)
	li   t0, 1
	sh   t0, 12(t1)
	sh   t0, 14(t1)
	# desc 1: 8 MiB for the data, WRITE|NEXT -> 2
	li   t0, BUF
	sd   t0, 16(t1)
	li   t0, BUFLEN
	sw   t0, 24(t1)
	li   t0, 3
	sh   t0, 28(t1)
	li   t0, 2
	sh   t0, 30(t1)
	# desc 2: the status byte, WRITE
	la   t0, status
	sd   t0, 32(t1)
	li   t0, 1
	sw   t0, 40(t1)
	li   t0, 2
	sh   t0, 44(t1)
	sh   zero, 46(t1)

	# Every avail entry is 0 (the ring is zeroed): each round offers the
	# same chain 256 times.
	li   s1, ROUNDS
	li   s2, 0
	la   s3, avail
2:	addi s2, s2, 256
	sh   s2, 2(s3)              # avail idx
	fence
	sw   zero, 0x50(s0)         # QueueNotify 0
	addi s1, s1, -1
	bnez s1, 2b

	li   t1, 1                  # exit 0
	la   t2, tohost
	sd   t1, 0(t2)
3:	j    3b

	.data
	.align 4
hdr:	.dword 0, 0                 # type 0 (IN), sector 0
status:	.byte 0
	.align 12
desc:	.space 256*16
avail:	.space 4 + 2*256 + 2
	.align 2
used:	.space 4 + 8*256 + 2

#include "../../machine/testdata/tohost.h"
