//go:build linux && amd64

package jit

import "ftvm/riscv"

// The F and D instructions. The FP registers stay in the Hart (no caching);
// arithmetic runs on SSE with the exact IEEE 754 results RISC-V asks for:
// SSE rounds the same way in the four modes they share (round to nearest
// with ties to max magnitude is left to the interpreter), detects tininess
// after rounding as RISC-V does (SoftFloat's 8086-SSE and RISC-V
// specializations agree), and raises the same five flags, which are read
// back from MXCSR after every operation. What differs is fixed up after
// the operation: RISC-V returns the canonical NaN where SSE propagates an
// input NaN, and saturates conversions to integers where SSE returns its
// "integer indefinite". Improperly NaN-boxed singles read as the canonical
// NaN, as in the interpreter (fp.go's unbox).
//
// Every FP instruction first checks that mstatus.FS is not Off (the
// interpreter raises the illegal-instruction exception otherwise), and
// marks FS dirty where the interpreter does (riscv.setF, riscv.setX).

const (
	msFS        = 3 << 13
	boxMask     = 0xffffffff_00000000
	canonicalD  = 0x7ff8000000000000
	canonicalS  = 0x7fc00000
	mxcsrMasked = 0x1f80 // every exception masked, round to nearest
)

// mxcsrFor is the MXCSR that makes SSE round as RISC-V rounding mode rm
// (0 RNE, 1 RTZ, 2 RDN, 3 RUP) does.
var mxcsrFor = [4]uint32{mxcsrMasked, mxcsrMasked | 3<<13, mxcsrMasked | 1<<13, mxcsrMasked | 2<<13}

// fflagsOf maps the six MXCSR exception flags to RISC-V's fflags: invalid
// (NV), division by zero (DZ), overflow (OF), underflow (UF), precision
// (NX). The denormal-operand flag has no RISC-V counterpart.
func fflagsOf(x uint8) uint8 {
	var f uint8
	if x&1 != 0 {
		f |= 0x10
	}
	if x&4 != 0 {
		f |= 0x08
	}
	if x&8 != 0 {
		f |= 0x04
	}
	if x&16 != 0 {
		f |= 0x02
	}
	if x&32 != 0 {
		f |= 0x01
	}
	return f
}

func (c *ctx) initFP() {
	c.mxcsr = mxcsrFor
	for i := range c.flags {
		c.flags[i] = fflagsOf(uint8(i))
	}
}

// fpTranslated reports whether the translator handles the FP instruction
// in (false for everything else, FP or not).
func fpTranslated(in riscv.Inst) bool {
	switch in.Op {
	case riscv.OpFLW, riscv.OpFLD, riscv.OpFSW, riscv.OpFSD,
		riscv.OpFMVXW, riscv.OpFMVXD, riscv.OpFMVWX, riscv.OpFMVDX,
		riscv.OpFSGNJS, riscv.OpFSGNJNS, riscv.OpFSGNJXS, riscv.OpFSGNJD, riscv.OpFSGNJND, riscv.OpFSGNJXD,
		riscv.OpFEQS, riscv.OpFLTS, riscv.OpFLES, riscv.OpFEQD, riscv.OpFLTD, riscv.OpFLED:
		return true
	case riscv.OpFADDS, riscv.OpFSUBS, riscv.OpFMULS, riscv.OpFDIVS, riscv.OpFSQRTS,
		riscv.OpFADDD, riscv.OpFSUBD, riscv.OpFMULD, riscv.OpFDIVD, riscv.OpFSQRTD,
		riscv.OpFCVTSD, riscv.OpFCVTDS,
		riscv.OpFCVTSW, riscv.OpFCVTSWU, riscv.OpFCVTSL, riscv.OpFCVTDW, riscv.OpFCVTDWU, riscv.OpFCVTDL,
		riscv.OpFCVTWS, riscv.OpFCVTLS, riscv.OpFCVTWD, riscv.OpFCVTLD:
		// Rounding: the four modes SSE has, or the dynamic one (checked
		// when the instruction runs).
		return in.RM <= 3 || in.RM == 7
	}
	return false
}

// fpRegUse returns the integer registers an FP instruction reads and
// writes (ok false for other instructions).
func fpRegUse(in riscv.Inst) (reads, writes uint32, ok bool) {
	switch in.Op {
	case riscv.OpFLW, riscv.OpFLD, riscv.OpFSW, riscv.OpFSD,
		riscv.OpFMVWX, riscv.OpFMVDX,
		riscv.OpFCVTSW, riscv.OpFCVTSWU, riscv.OpFCVTSL, riscv.OpFCVTSLU,
		riscv.OpFCVTDW, riscv.OpFCVTDWU, riscv.OpFCVTDL, riscv.OpFCVTDLU:
		return 1 << in.Rs1, 0, true
	case riscv.OpFMVXW, riscv.OpFMVXD, riscv.OpFEQS, riscv.OpFLTS, riscv.OpFLES,
		riscv.OpFEQD, riscv.OpFLTD, riscv.OpFLED, riscv.OpFCLASSS, riscv.OpFCLASSD,
		riscv.OpFCVTWS, riscv.OpFCVTWUS, riscv.OpFCVTLS, riscv.OpFCVTLUS,
		riscv.OpFCVTWD, riscv.OpFCVTWUD, riscv.OpFCVTLD, riscv.OpFCVTLUD:
		return 0, 1 << in.Rd, true
	}
	if in.Op >= riscv.OpFLW && in.Op <= riscv.OpFCVTDS {
		return 0, 0, true
	}
	return 0, 0, false
}

// fr is the memory operand of FP register i.
func (t *tr) fr(i uint8) mem { return at(regHart, t.j.lay.f+int32(i)*8) }

// fsOff leaves for the interpreter when mstatus.FS is Off.
func (t *tr) fsOff(slow label) {
	t.a.testMI(false, at(regHart, t.j.lay.mstatus), msFS)
	t.a.jcc(ccE, slow)
}

// fsDirty marks the FP state dirty.
func (t *tr) fsDirty() { t.a.aluMI(false, aluOR, at(regHart, t.j.lay.mstatus), msFS) }

// rounding sets MXCSR for the instruction's rounding mode, leaving for the
// interpreter when the dynamic mode is one SSE does not have (or invalid).
// It clears MXCSR's exception flags.
func (t *tr) rounding(in riscv.Inst, slow label) {
	a := &t.a
	if in.RM != 7 {
		a.ldmxcsr(at(regCtx, ctxMXCSR+4*int32(in.RM)))
		return
	}
	a.load(false, rAX, at(regHart, t.j.lay.frm))
	a.aluRI(false, aluCMP, rAX, 3)
	a.jcc(ccA, slow)
	a.ldmxcsr(atIdx(regCtx, rAX, 2, ctxMXCSR))
}

// accrue ORs the exception flags the last SSE operation raised into
// fflags, leaving them in RCX (clobbers RAX).
func (t *tr) accrue() {
	a := &t.a
	a.stmxcsr(at(regCtx, ctxScratch))
	a.load(false, rAX, at(regCtx, ctxScratch))
	a.aluRI(false, aluAND, rAX, 0x3f)
	a.movzxbM(rCX, atIdx(regCtx, rAX, 0, ctxFlags))
	a.aluMR(true, aluOR, at(regHart, t.j.lay.fflags), rCX)
}

// unbox loads single FP register i into the low 32 bits of r: the canonical
// NaN if it is not properly NaN-boxed (clobbers RCX).
func (t *tr) unbox(r reg, i uint8) {
	a := &t.a
	a.load(true, r, t.fr(i))
	a.movRR(true, rCX, r)
	a.shiftRI(true, shSHR, rCX, 32)
	a.aluRI(false, aluCMP, rCX, -1)
	ok := a.newLabel()
	a.jcc(ccE, ok)
	a.movImm(r, canonicalS)
	a.bind(ok)
}

// box NaN-boxes the single in the low 32 bits of r (clobbers RCX).
func (t *tr) box(r reg) {
	a := &t.a
	a.movRR(false, r, r) // zero the upper half
	a.movImm(rCX, boxMask)
	a.aluRR(true, aluOR, r, rCX)
}

// canonical replaces a NaN in XMM0 with RISC-V's canonical NaN.
func (t *tr) canonical(single bool) {
	a := &t.a
	done := a.newLabel()
	if single {
		a.sseRR(0, false, 0x2e, x0, x0) // ucomiss
		a.jcc(ccNP, done)
		a.movImm(rAX, canonicalS)
		a.movqXR(false, x0, rAX)
	} else {
		a.sseRR(pfx66, false, 0x2e, x0, x0) // ucomisd
		a.jcc(ccNP, done)
		a.movImm(rAX, canonicalD)
		a.movqXR(true, x0, rAX)
	}
	a.bind(done)
}

// fpInsn emits an FP instruction (fpTranslated). Every exit comes before
// any use of the register cache that may evict, as in address: the exit
// writes back what was cached when it was created.
func (t *tr) fpInsn(k int, in riscv.Inst, pc uint64) {
	a := &t.a
	switch in.Op {
	case riscv.OpFLW, riscv.OpFLD:
		size := 4
		if in.Op == riscv.OpFLD {
			size = 8
		}
		t.addressFS(k, in, pc, size, false, true, false)
		a.loadExt(size, false, rDX, atIdx(regRAM, rDX, 0, 0))
		if size == 4 {
			t.box(rDX)
		}
		a.store(8, t.fr(in.Rd), rDX)
		t.fsDirty()
		return
	case riscv.OpFSW, riscv.OpFSD:
		size := 4
		if in.Op == riscv.OpFSD {
			size = 8
		}
		t.addressFS(k, in, pc, size, true, true, false)
		a.load(true, rCX, t.fr(in.Rs2))
		a.store(size, atIdx(regRAM, rDX, 0, 0), rCX)
		return
	}

	slow := t.fpExit(k, pc)
	t.fsOff(slow)
	switch in.Op {
	case riscv.OpFMVXW:
		if in.Rd != 0 {
			a.loadExt(4, true, t.dst(in.Rd), t.fr(in.Rs1))
		}
	case riscv.OpFMVXD:
		if in.Rd != 0 {
			a.load(true, t.dst(in.Rd), t.fr(in.Rs1))
		}
	case riscv.OpFMVWX:
		a.movRR(false, rAX, t.srcOr(in.Rs1, rAX))
		t.box(rAX)
		a.store(8, t.fr(in.Rd), rAX)
		t.fsDirty()
	case riscv.OpFMVDX:
		a.store(8, t.fr(in.Rd), t.srcOr(in.Rs1, rAX))
		t.fsDirty()

	case riscv.OpFSGNJD, riscv.OpFSGNJND, riscv.OpFSGNJXD:
		a.load(true, rAX, t.fr(in.Rs1))
		a.load(true, rDX, t.fr(in.Rs2))
		t.signInject(in.Op == riscv.OpFSGNJND, in.Op == riscv.OpFSGNJXD, 63)
		a.store(8, t.fr(in.Rd), rAX)
		t.fsDirty()
	case riscv.OpFSGNJS, riscv.OpFSGNJNS, riscv.OpFSGNJXS:
		t.unbox(rAX, in.Rs1)
		t.unbox(rDX, in.Rs2)
		t.signInject(in.Op == riscv.OpFSGNJNS, in.Op == riscv.OpFSGNJXS, 31)
		t.box(rAX)
		a.store(8, t.fr(in.Rd), rAX)
		t.fsDirty()

	case riscv.OpFEQD, riscv.OpFLTD, riscv.OpFLED, riscv.OpFEQS, riscv.OpFLTS, riscv.OpFLES:
		t.compare(in)

	case riscv.OpFADDD, riscv.OpFSUBD, riscv.OpFMULD, riscv.OpFDIVD, riscv.OpFSQRTD:
		t.rounding(in, slow)
		a.movqXM(x0, t.fr(in.Rs1))
		if in.Op == riscv.OpFSQRTD {
			a.sseRR(pfxSD, false, 0x51, x0, x0)
		} else {
			a.sseRM(pfxSD, false, arith(in.Op), x0, t.fr(in.Rs2))
		}
		t.finishF(false, in.Rd)
	case riscv.OpFADDS, riscv.OpFSUBS, riscv.OpFMULS, riscv.OpFDIVS, riscv.OpFSQRTS:
		t.rounding(in, slow)
		t.unbox(rAX, in.Rs1)
		a.movqXR(false, x0, rAX)
		if in.Op == riscv.OpFSQRTS {
			a.sseRR(pfxSS, false, 0x51, x0, x0)
		} else {
			t.unbox(rAX, in.Rs2)
			a.movqXR(false, x1, rAX)
			a.sseRR(pfxSS, false, arith(in.Op), x0, x1)
		}
		t.finishF(true, in.Rd)

	case riscv.OpFCVTSD: // double to single, rounded
		t.rounding(in, slow)
		a.movqXM(x1, t.fr(in.Rs1))
		a.sseRR(pfxSD, false, 0x5a, x0, x1)
		t.finishF(true, in.Rd)
	case riscv.OpFCVTDS: // single to double, exact
		t.rounding(in, slow) // the mode is still decoded: an invalid one is illegal
		t.unbox(rAX, in.Rs1)
		a.movqXR(false, x1, rAX)
		a.sseRR(pfxSS, false, 0x5a, x0, x1)
		t.finishF(false, in.Rd)

	case riscv.OpFCVTSW, riscv.OpFCVTSWU, riscv.OpFCVTSL, riscv.OpFCVTDW, riscv.OpFCVTDWU, riscv.OpFCVTDL:
		t.rounding(in, slow)
		x := t.srcOr(in.Rs1, rDX)
		w := true
		switch in.Op {
		case riscv.OpFCVTSW, riscv.OpFCVTDW:
			a.movsxd(rAX, x)
		case riscv.OpFCVTSWU, riscv.OpFCVTDWU:
			a.movRR(false, rAX, x) // zero-extended: exact in a signed 64-bit conversion
		default:
			a.movRR(true, rAX, x)
		}
		single := in.Op == riscv.OpFCVTSW || in.Op == riscv.OpFCVTSWU || in.Op == riscv.OpFCVTSL
		pfx := byte(pfxSD)
		if single {
			pfx = pfxSS
		}
		a.sseRR(pfx, w, 0x2a, x0, rAX)
		t.finishF(single, in.Rd)

	case riscv.OpFCVTWS, riscv.OpFCVTLS, riscv.OpFCVTWD, riscv.OpFCVTLD:
		t.toInt(in, slow)
	default:
		panic("jit: translating an untranslated FP op " + in.Op.String())
	}
}

// fpExit is the exit of an FP instruction: to the interpreter, which
// raises what has to be raised.
func (t *tr) fpExit(k int, pc uint64) label { return t.exit(pc, k, exitSlow) }

func arith(o riscv.Op) byte {
	switch o {
	case riscv.OpFADDD, riscv.OpFADDS:
		return 0x58
	case riscv.OpFSUBD, riscv.OpFSUBS:
		return 0x5c
	case riscv.OpFMULD, riscv.OpFMULS:
		return 0x59
	}
	return 0x5e // div
}

// signInject computes FSGNJ(N/X): RAX = RAX with its sign bit (bit) from
// RDX, negated, or xored with RAX's own.
func (t *tr) signInject(neg, xor bool, bit uint8) {
	a := &t.a
	w := bit == 63
	switch {
	case xor:
		a.aluRR(w, aluXOR, rDX, rAX)
	case neg:
		a.unaryR(w, unNOT, rDX)
	}
	a.shiftRI(w, shSHR, rDX, bit)
	a.shiftRI(w, shSHL, rDX, bit) // the sign alone
	a.shiftRI(w, shSHL, rAX, 1)
	a.shiftRI(w, shSHR, rAX, 1) // the rest
	a.aluRR(w, aluOR, rAX, rDX)
}

// finishF stores the result in XMM0 to FP register rd: the canonical NaN
// for a NaN, boxed if single; the flags accrue and FS becomes dirty.
func (t *tr) finishF(single bool, rd uint8) {
	a := &t.a
	t.accrue()
	t.canonical(single)
	if single {
		a.movqRX(false, rAX, x0)
		t.box(rAX)
		a.store(8, t.fr(rd), rAX)
	} else {
		a.movqMX(t.fr(rd), x0)
	}
	t.fsDirty()
}

// compare emits FEQ, FLT and FLE: quiet for FEQ (invalid only for a
// signaling NaN), signaling for the others (invalid for any NaN), as SSE's
// UCOMIS and COMIS are. The flags accrue and dirty FS only when raised.
func (t *tr) compare(in riscv.Inst) {
	a := &t.a
	single := in.Op == riscv.OpFEQS || in.Op == riscv.OpFLTS || in.Op == riscv.OpFLES
	pfx := byte(pfx66)
	if single {
		pfx = 0
		t.unbox(rAX, in.Rs1)
		a.movqXR(false, x0, rAX)
		t.unbox(rAX, in.Rs2)
		a.movqXR(false, x1, rAX)
	} else {
		a.movqXM(x0, t.fr(in.Rs1))
		a.movqXM(x1, t.fr(in.Rs2))
	}
	a.ldmxcsr(at(regCtx, ctxMXCSR)) // clear the flags
	a.movImm(rDX, 0)
	switch in.Op {
	case riscv.OpFEQD, riscv.OpFEQS:
		a.sseRR(pfx, false, 0x2e, x0, x1) // ucomis a, b: equal is ZF without PF
		a.setcc(ccE, rDX)
		a.setcc(ccNP, rAX)
		a.aluRR(false, aluAND, rDX, rAX)
	case riscv.OpFLTD, riscv.OpFLTS:
		a.sseRR(pfx, false, 0x2f, x1, x0) // comis b, a: b above a
		a.setcc(ccA, rDX)
	default:
		a.sseRR(pfx, false, 0x2f, x1, x0)
		a.setcc(ccAE, rDX)
	}
	t.accrue()
	none := a.newLabel()
	a.testRR(false, rCX, rCX)
	a.jcc(ccE, none)
	t.fsDirty()
	a.bind(none)
	t.setX(in.Rd, rDX)
}

// toInt emits FCVT.W and FCVT.L from S and D: SSE's conversion, except that
// where it returns the integer indefinite (the invalid cases) RISC-V wants
// the largest integer for NaN and positive overflow (the indefinite is
// already the smallest).
func (t *tr) toInt(in riscv.Inst, slow label) {
	a := &t.a
	single := in.Op == riscv.OpFCVTWS || in.Op == riscv.OpFCVTLS
	w := in.Op == riscv.OpFCVTLS || in.Op == riscv.OpFCVTLD
	pfx, ucomis := byte(pfxSD), byte(pfx66)
	if single {
		pfx, ucomis = pfxSS, 0
		t.unbox(rAX, in.Rs1)
		a.movqXR(false, x0, rAX)
	} else {
		a.movqXM(x0, t.fr(in.Rs1))
	}
	op := byte(0x2d) // cvts?2si: rounds as MXCSR says
	if in.RM == 1 {
		op = 0x2c // cvtts?2si: truncates
		a.ldmxcsr(at(regCtx, ctxMXCSR))
	} else {
		t.rounding(in, slow)
	}
	a.sseRR(pfx, w, op, rDX, x0)
	t.accrue()
	done, largest := a.newLabel(), a.newLabel()
	a.testRI(false, rCX, 0x10) // NV
	a.jcc(ccE, done)
	a.sseRR(ucomis, false, 0x2e, x0, x0)
	a.jcc(ccP, largest) // NaN
	a.movqRX(!single, rAX, x0)
	a.testRR(!single, rAX, rAX)
	a.jcc(ccS, done) // negative: the indefinite is the smallest integer
	a.bind(largest)
	if w {
		a.movImm(rDX, 1<<63-1)
	} else {
		a.movImm(rDX, 1<<31-1)
	}
	a.bind(done)
	if !w {
		a.movsxd(rDX, rDX)
	}
	none := a.newLabel()
	a.testRR(false, rCX, rCX)
	a.jcc(ccE, none)
	t.fsDirty()
	a.bind(none)
	t.setX(in.Rd, rDX)
}
