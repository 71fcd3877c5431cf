// Starting, stopping and suspending harts through the SBI's HSM extension,
// and IPIs and remote fences through the SBI, in S-mode (the machine's SBI;
// hart 0 starts alone). Hart 0 checks the error cases, starts every other
// hart with an opaque value, waits until all are suspended (retentive),
// wakes them with a storm of IPIs, and waits until they have stopped themselves; then
// it starts them again into a non-retentive suspend, wakes them again, and
// they stop once more. It exits 0 on success; any other code names the
// check that failed (see fail_* below).
#include "smp.h"
	.section .text.init
	.globl _start
_start:
	// error cases
	li   a0, 0
	la   a1, secondary
	li   a2, 0
	SBI(SBI_HSM, 0)           # hart_start(0): already started
	li   t0, -6
	bne  a0, t0, fail_2
	li   a0, HARTS + 5
	la   a1, secondary
	SBI(SBI_HSM, 0)           # no such hart
	li   t0, -3
	bne  a0, t0, fail_3
	li   a0, 1 << (HARTS + 5)
	li   a1, 0
	SBI(SBI_IPI, 0)           # no such hart in the mask
	li   t0, -3
	bne  a0, t0, fail_4
	li   a0, 0
	SBI(SBI_HSM, 2)           # hart 0 is started
	bnez a0, fail_5
	bnez a1, fail_5

	// round 1: start, retentive suspend, IPI, stop
	li   s1, 1
1:	mv   a0, s1
	SBI(SBI_HSM, 2)
	li   t0, 1                # stopped
	bnez a0, fail_6
	bne  a1, t0, fail_6
	mv   a0, s1
	la   a1, secondary
	slli a2, s1, 8
	SBI(SBI_HSM, 0)
	bnez a0, fail_7
	addi s1, s1, 1
	li   t0, HARTS
	blt  s1, t0, 1b
	li   a0, 4                # suspended
	call wait_status
	li   s4, 2000             // an IPI storm: the first wakes them
1:	li   a0, (1 << HARTS) - 2
	li   a1, 0
	SBI(SBI_IPI, 0)
	bnez a0, fail_8
	addi s4, s4, -1
	bnez s4, 1b
	li   a0, 1                # stopped
	call wait_status
	la   t0, resumed
	ld   t1, 0(t0)
	li   t2, HARTS - 1
	bne  t1, t2, fail_9

	// remote fences to everyone
	li   a0, 0
	li   a1, -1
	SBI(SBI_RFENCE, 0)        # remote fence.i
	bnez a0, fail_10
	li   a0, 0
	li   a1, -1
	li   a2, 0
	li   a3, -1
	SBI(SBI_RFENCE, 1)        # remote sfence.vma
	bnez a0, fail_10

	// round 2: start, non-retentive suspend, IPI, resume elsewhere, stop
	li   s1, 1
2:	mv   a0, s1
	la   a1, secondary2
	slli a2, s1, 8
	SBI(SBI_HSM, 0)
	bnez a0, fail_7
	addi s1, s1, 1
	li   t0, HARTS
	blt  s1, t0, 2b
	li   a0, 4
	call wait_status
	li   a0, (1 << HARTS) - 2
	li   a1, 0
	SBI(SBI_IPI, 0)
	li   a0, 1
	call wait_status
	la   t0, resumed2
	ld   t1, 0(t0)
	li   t2, HARTS - 1
	bne  t1, t2, fail_11
	la   t0, errors
	ld   t1, 0(t0)
	bnez t1, fail_12
	EXIT(0)

// wait_status waits until every hart but 0 has HSM status a0.
wait_status:
	mv   s2, a0
	mv   s3, ra
	li   s1, 1
3:	mv   a0, s1
	SBI(SBI_HSM, 2)
	bnez a0, fail_13
	beq  a1, s2, 4f
	PAUSE
	j    3b
4:	addi s1, s1, 1
	li   t0, HARTS
	blt  s1, t0, 3b
	mv   ra, s3
	ret

secondary:                     # a0 = hart id, a1 = opaque = id << 8
	slli t0, a0, 8
	beq  a1, t0, 5f
	la   t0, errors
	li   t1, 1
	amoadd.d zero, t1, (t0)
5:	csrr t0, sstatus
	andi t0, t0, 2             # SIE must be off
	beqz t0, 6f
	la   t0, errors
	li   t1, 1
	amoadd.d zero, t1, (t0)
6:	csrsi sie, 2               # SSIE, to be woken by the IPI
	li   a0, 0                 # retentive
	li   a1, 0
	li   a2, 0
	SBI(SBI_HSM, 3)
	bnez a0, 7f
	csrr t0, sip
	andi t0, t0, 2
	beqz t0, 7f
	csrci sip, 2
	la   t0, resumed
	li   t1, 1
	amoadd.d zero, t1, (t0)
	SBI(SBI_HSM, 1)            # hart_stop: does not return
7:	la   t0, errors
	li   t1, 1
	amoadd.d zero, t1, (t0)
8:	j    8b

secondary2:
	csrsi sie, 2
	li   a0, 0x80000000        # non-retentive
	la   a1, resume
	li   a2, 0x1234
	SBI(SBI_HSM, 3)
	la   t0, errors            # returned: wrong
	li   t1, 1
	amoadd.d zero, t1, (t0)
9:	j    9b
resume:                        # a0 = hart id, a1 = opaque
	li   t0, 0x1234
	bne  a1, t0, 10f
	csrr t0, sip
	andi t0, t0, 2
	beqz t0, 10f
	csrci sip, 2
	la   t0, resumed2
	li   t1, 1
	amoadd.d zero, t1, (t0)
	SBI(SBI_HSM, 1)
10:	la   t0, errors
	li   t1, 1
	amoadd.d zero, t1, (t0)
11:	j    11b

fail_2:	EXIT(2)
fail_3:	EXIT(3)
fail_4:	EXIT(4)
fail_5:	EXIT(5)
fail_6:	EXIT(6)
fail_7:	EXIT(7)
fail_8:	EXIT(8)
fail_9:	EXIT(9)
fail_10:	EXIT(10)
fail_11:	EXIT(11)
fail_12:	EXIT(12)
fail_13:	EXIT(13)

	.data
	.align 6
errors:	.dword 0
	.align 6
resumed:	.dword 0
	.align 6
resumed2:	.dword 0

	TOHOST_SECTION
