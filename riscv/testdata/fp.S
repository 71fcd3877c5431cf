/* F and D through the core: FS gating, NaN boxing, moves, rounding modes, fflags. */
#include "test.h"
#define FS_MASK (3 << 13)
	.section .text.init
	.globl _start
_start:
	INSTALL_MTRAP
	/* FS = Off at reset: every FP instruction and FP CSR is illegal */
	csrr a0, mstatus
	li a1, FS_MASK
	and a0, a0, a1
	CHECK(a0, 0)
	la s0, buf
	EXPECT_TRAP(1f)
	flw fa0, 0(s0)
1:	CHECK(s2, 2)
	EXPECT_TRAP(1f)
	fsd fa0, 0(s0)
1:	CHECK(s2, 2)
	EXPECT_TRAP(1f)
	fmv.x.w a0, fa0
1:	CHECK(s2, 2)
	EXPECT_TRAP(1f)
	fadd.d fa0, fa0, fa0
1:	CHECK(s2, 2)
	EXPECT_TRAP(1f)
	csrr a0, fflags
1:	CHECK(s2, 2)
	EXPECT_TRAP(1f)
	csrw frm, zero
1:	CHECK(s2, 2)
	/* tval of an illegal instruction is its encoding */
	EXPECT_TRAP(1f)
	.word 0x00000000	/* and a compressed one */
1:	CHECK(s2, 2)
	CHECK(s4, 0)
	EXPECT_TRAP(1f)
	.word 0xffffffff
1:	CHECK(s2, 2)
	CHECK(s4, 0xffffffff)

	/* FS = Initial: FP works; SD is clear until something is written */
	li a0, 1 << 13
	csrs mstatus, a0
	csrr a0, mstatus
	bltz a0, fail	/* SD */
	li a0, 0x3f800000	/* 1.0f */
	sw a0, 0(s0)
	flw fa0, 0(s0)
	csrr a0, mstatus
	bgez a0, fail	/* SD set now */
	srli a0, a0, 13
	andi a0, a0, 3
	CHECK(a0, 3)	/* FS = Dirty */
	/* flw NaN-boxes */
	CHECKF(fa0, 0xffffffff3f800000)
	fsw fa0, 4(s0)
	lw a0, 4(s0)
	CHECK(a0, 0x3f800000)
	/* fld/fsd move 64 bits */
	li a0, 0x3ff8000000000000
	sd a0, 8(s0)
	fld fa1, 8(s0)
	CHECKF(fa1, 0x3ff8000000000000)
	fsd fa1, 16(s0)
	ld a1, 16(s0)
	CHECK(a1, 0x3ff8000000000000)
	/* fsw of a double stores the low word */
	fsw fa1, 24(s0)
	lwu a1, 24(s0)
	CHECK(a1, 0)
	/* misaligned FP loads/stores work too */
	fsd fa1, 33(s0)
	fld fa2, 33(s0)
	CHECKF(fa2, 0x3ff8000000000000)

	/* an improperly boxed single reads as the canonical NaN */
	li a0, 0x000000003f800000
	fmv.d.x fa2, a0
	fadd.s fa3, fa2, fa0
	CHECKF(fa3, 0xffffffff7fc00000)
	fsgnj.s fa3, fa2, fa2
	CHECKF(fa3, 0xffffffff7fc00000)
	fmv.x.w a1, fa2	/* moves the raw low bits, no unboxing */
	CHECK(a1, 0x3f800000)
	fcvt.d.s fa3, fa2
	CHECKF(fa3, 0x7ff8000000000000)
	/* ...and a properly boxed one works */
	li a0, 0xffffffff40400000	/* 3.0f */
	fmv.d.x fa2, a0
	fadd.s fa3, fa2, fa0
	CHECKF(fa3, 0xffffffff40800000)	/* 4.0f */
	/* fmv.x.w sign-extends; fmv.w.x boxes */
	li a0, 0x12345678bf800000
	fmv.w.x fa4, a0
	CHECKF(fa4, 0xffffffffbf800000)
	fmv.x.w a1, fa4
	CHECK(a1, 0xffffffffbf800000)
	fmv.x.d a1, fa4
	CHECK(a1, 0xffffffffbf800000)
	/* sign injection on singles works on bit 31 only */
	fsgnjn.s fa5, fa4, fa4
	CHECKF(fa5, 0xffffffff3f800000)
	fsgnjx.s fa5, fa4, fa4
	CHECKF(fa5, 0xffffffff3f800000)
	fsgnjn.d fa5, fa4, fa4	/* on the raw double: bit 63 */
	CHECKF(fa5, 0x7fffffffbf800000)

	/* rounding modes, static and dynamic */
	csrw fflags, zero
	li a0, 0x40200000	/* 2.5f */
	fmv.w.x fa0, a0
	fcvt.w.s a1, fa0, rne
	CHECK(a1, 2)
	fcvt.w.s a1, fa0, rtz
	CHECK(a1, 2)
	fcvt.w.s a1, fa0, rdn
	CHECK(a1, 2)
	fcvt.w.s a1, fa0, rup
	CHECK(a1, 3)
	fcvt.w.s a1, fa0, rmm
	CHECK(a1, 3)
	fneg.s fa0, fa0
	fcvt.l.s a1, fa0, rne
	CHECK(a1, -2)
	fcvt.l.s a1, fa0, rtz
	CHECK(a1, -2)
	fcvt.l.s a1, fa0, rdn
	CHECK(a1, -3)
	fcvt.l.s a1, fa0, rup
	CHECK(a1, -2)
	fcvt.l.s a1, fa0, rmm
	CHECK(a1, -3)
	CHECKCSR(fflags, 1)	/* NX */
	li a0, 3	/* RUP */
	csrw frm, a0
	fcvt.w.s a1, fa0, dyn
	CHECK(a1, -2)
	li a0, 2	/* RDN */
	csrw frm, a0
	fcvt.w.s a1, fa0, dyn
	CHECK(a1, -3)
	fcvt.w.s a1, fa0	/* the assembler's default is dyn */
	CHECK(a1, -3)
	/* fcvt.s.d rounds the double 0.1 */
	li a0, 0x3fb999999999999a
	fmv.d.x fa0, a0
	fcvt.s.d fa1, fa0, rne
	CHECKF(fa1, 0xffffffff3dcccccd)
	fcvt.s.d fa1, fa0, rtz
	CHECKF(fa1, 0xffffffff3dcccccc)
	fcvt.s.d fa1, fa0, rdn
	CHECKF(fa1, 0xffffffff3dcccccc)
	fcvt.s.d fa1, fa0, rup
	CHECKF(fa1, 0xffffffff3dcccccd)
	/* frm 5..7 is invalid: dynamic-rounding instructions are illegal,
	   static ones still work */
	li a0, 5
	csrw frm, a0
	EXPECT_TRAP(1f)
	fadd.d fa1, fa0, fa0, dyn
1:	CHECK(s2, 2)
	fadd.d fa1, fa0, fa0, rne
	/* a reserved static rm (5) is illegal whatever frm says */
	csrw frm, zero
	EXPECT_TRAP(1f)
	.word 0x02a55553	/* fadd.d fa0, fa0, fa0 with rm = 5 */
1:	CHECK(s2, 2)

	/* widening conversions are exact but still decode rm like any other
	   instruction (unprivileged spec 13.5): rm 5 is reserved, and DYN
	   with an invalid frm is illegal */
	fcvt.d.s fa1, fa0
	EXPECT_TRAP(1f)
	.word 0x42055553	/* fcvt.d.s fa0, fa0 with rm = 5 */
1:	CHECK(s2, 2)
	li a0, 6
	csrw frm, a0
	EXPECT_TRAP(1f)
	.word 0x42057553	/* fcvt.d.s fa0, fa0, dyn */
1:	CHECK(s2, 2)
	EXPECT_TRAP(1f)
	.word 0xd2057553	/* fcvt.d.w fa0, a0, dyn */
1:	CHECK(s2, 2)
	csrw frm, zero
	.word 0x42057553	/* fine with a valid frm */

	/* fflags accrue until cleared; fcsr combines frm and fflags */
	csrw fflags, zero
	li a0, 0x3ff0000000000000	/* 1.0 */
	fmv.d.x fa0, a0
	fmv.d.x fa1, zero
	fdiv.d fa2, fa0, fa1
	CHECKF(fa2, 0x7ff0000000000000)
	CHECKCSR(fflags, 8)	/* DZ */
	li a0, 0x4008000000000000	/* 3.0 */
	fmv.d.x fa1, a0
	fdiv.d fa2, fa0, fa1
	CHECKCSR(fflags, 9)	/* DZ | NX */
	fneg.d fa1, fa0
	fsqrt.d fa2, fa1
	CHECKF(fa2, 0x7ff8000000000000)
	CHECKCSR(fflags, 0x19)
	li a0, 2
	csrw frm, a0
	CHECKCSR(fcsr, 0x59)
	csrrw a1, fcsr, zero
	CHECK(a1, 0x59)
	CHECKCSR(fflags, 0)
	CHECKCSR(frm, 0)
	/* NaN to integer saturates and raises NV */
	fcvt.w.d a1, fa2, rtz
	CHECK(a1, 0x7fffffff)
	CHECKCSR(fflags, 0x10)
	csrw fflags, zero
	fcvt.lu.d a1, fa1, rtz	/* -1.0 to unsigned */
	CHECK(a1, 0)
	CHECKCSR(fflags, 0x10)
	/* fclass, compares */
	fclass.d a1, fa1
	CHECK(a1, 2)	/* negative normal */
	fclass.d a1, fa2
	CHECK(a1, 0x200)	/* quiet NaN */
	flt.d a1, fa1, fa0
	CHECK(a1, 1)
	feq.d a1, fa2, fa2
	CHECK(a1, 0)
	/* compressed FP loads/stores */
	mv a2, s0
	c.fsd fa0, 40(a2)
	c.fld fa5, 40(a2)
	CHECKF(fa5, 0x3ff0000000000000)
	mv t1, sp
	mv sp, s0
	c.fsdsp fa1, 48(sp)
	c.fldsp fa4, 48(sp)
	CHECKF(fa4, 0xbff0000000000000)
	mv sp, t1
	/* integer results of FP instructions with no flags do not need FS to
	   change; but any FP register write makes it dirty */
	li a0, FS_MASK
	csrc mstatus, a0
	li a0, 1 << 13
	csrs mstatus, a0
	fmv.x.d a1, fa0
	csrr a0, mstatus
	bltz a0, fail	/* SD still clear */
	fmv.d.x fa0, a1
	csrr a0, mstatus
	bgez a0, fail
	/* sstatus shows SD and FS too */
	csrr a0, sstatus
	bgez a0, fail
	/* turning FP off again makes it illegal again */
	li a0, FS_MASK
	csrc mstatus, a0
	EXPECT_TRAP(1f)
	fmv.d.x fa0, a1
1:	CHECK(s2, 2)
	PASS
fail:
	FAIL
	TRAP_HANDLERS

	.data
	.align 12
buf:
	.skip 4096
