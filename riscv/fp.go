package riscv

import (
	"ftvm/riscv/fpu"
)

const boxMask = 0xffffffff_00000000

// unbox returns the single-precision value in a NaN-boxed register; an
// improperly boxed value reads as the canonical NaN (unprivileged spec
// 12.2).
func unbox(v uint64) uint32 {
	if v&boxMask != boxMask {
		return 0x7fc00000
	}
	return uint32(v)
}

func box(v uint32) uint64 { return boxMask | uint64(v) }

// execFP executes the F and D instructions. It returns false after raising
// an exception.
func (h *Hart) execFP(d *inst) bool {
	c := &h.csr
	if c.mstatus&msFS == 0 {
		h.illegal(d)
		return false
	}
	x, f := &h.X, &h.F
	switch d.op {
	case opFLW:
		v, ok := h.load(x[d.rs1&31]+uint64(d.imm), 4)
		if !ok {
			return false
		}
		f[d.rd&31] = box(uint32(v))
		c.mstatus |= msFS
		return true
	case opFLD:
		v, ok := h.load(x[d.rs1&31]+uint64(d.imm), 8)
		if !ok {
			return false
		}
		f[d.rd&31] = v
		c.mstatus |= msFS
		return true
	case opFSW:
		return h.store(x[d.rs1&31]+uint64(d.imm), 4, f[d.rs2&31]&0xffffffff)
	case opFSD:
		return h.store(x[d.rs1&31]+uint64(d.imm), 8, f[d.rs2&31])
	}

	// Operations that never round.
	a, b := f[d.rs1&31], f[d.rs2&31]
	var fl fpu.Flags
	switch d.op {
	case opFSGNJS, opFSGNJNS, opFSGNJXS:
		ua, ub := unbox(a), unbox(b)
		s := ub & (1 << 31)
		switch d.op {
		case opFSGNJNS:
			s ^= 1 << 31
		case opFSGNJXS:
			s = (ua ^ ub) & (1 << 31)
		}
		return h.setF(d.rd, box(ua&^(1<<31)|s), 0)
	case opFSGNJD, opFSGNJND, opFSGNJXD:
		s := b & (1 << 63)
		switch d.op {
		case opFSGNJND:
			s ^= 1 << 63
		case opFSGNJXD:
			s = (a ^ b) & (1 << 63)
		}
		return h.setF(d.rd, a&^(1<<63)|s, 0)
	case opFMINS, opFMAXS:
		var r uint32
		if d.op == opFMINS {
			r, fl = fpu.Min32(unbox(a), unbox(b))
		} else {
			r, fl = fpu.Max32(unbox(a), unbox(b))
		}
		return h.setF(d.rd, box(r), fl)
	case opFMIND, opFMAXD:
		var r uint64
		if d.op == opFMIND {
			r, fl = fpu.Min64(a, b)
		} else {
			r, fl = fpu.Max64(a, b)
		}
		return h.setF(d.rd, r, fl)
	case opFEQS, opFLTS, opFLES:
		var r bool
		switch d.op {
		case opFEQS:
			r, fl = fpu.Eq32(unbox(a), unbox(b))
		case opFLTS:
			r, fl = fpu.Lt32(unbox(a), unbox(b))
		default:
			r, fl = fpu.Le32(unbox(a), unbox(b))
		}
		return h.setX(d.rd, b2u(r), fl)
	case opFEQD, opFLTD, opFLED:
		var r bool
		switch d.op {
		case opFEQD:
			r, fl = fpu.Eq64(a, b)
		case opFLTD:
			r, fl = fpu.Lt64(a, b)
		default:
			r, fl = fpu.Le64(a, b)
		}
		return h.setX(d.rd, b2u(r), fl)
	case opFCLASSS:
		return h.setX(d.rd, fpu.Class32(unbox(a)), 0)
	case opFCLASSD:
		return h.setX(d.rd, fpu.Class64(a), 0)
	case opFMVXW:
		return h.setX(d.rd, sx32(a), 0)
	case opFMVXD:
		return h.setX(d.rd, a, 0)
	case opFMVWX:
		return h.setF(d.rd, box(uint32(x[d.rs1&31])), 0)
	case opFMVDX:
		return h.setF(d.rd, x[d.rs1&31], 0)
	}

	// Every instruction with an rm field decodes it, even the exact
	// FCVT.D.S: a reserved or invalid dynamic mode is illegal
	// (unprivileged spec 13.2 and 13.5).
	rm := uint8(d.rm)
	if rm == 7 {
		rm = uint8(c.frm)
	}
	if rm > fpu.RMM {
		h.illegal(d)
		return false
	}
	if d.op == opFCVTDS {
		r, fl := fpu.F32ToF64(unbox(a))
		return h.setF(d.rd, r, fl)
	}
	xs := x[d.rs1&31]
	var r uint64
	var r32 uint32
	switch d.op {
	case opFADDS:
		r32, fl = fpu.Add32(unbox(a), unbox(b), rm)
	case opFSUBS:
		r32, fl = fpu.Sub32(unbox(a), unbox(b), rm)
	case opFMULS:
		r32, fl = fpu.Mul32(unbox(a), unbox(b), rm)
	case opFDIVS:
		r32, fl = fpu.Div32(unbox(a), unbox(b), rm)
	case opFSQRTS:
		r32, fl = fpu.Sqrt32(unbox(a), rm)
	case opFMADDS, opFMSUBS, opFNMSUBS, opFNMADDS:
		k := d.op - opFMADDS
		r32, fl = fpu.FMA32(unbox(a), unbox(b), unbox(f[d.rs3&31]), k >= 2, k == 1 || k == 3, rm)
	case opFCVTSD:
		r32, fl = fpu.F64ToF32(a, rm)
	case opFCVTSW:
		r32, fl = fpu.I32ToF32(xs, rm)
	case opFCVTSWU:
		r32, fl = fpu.U32ToF32(xs, rm)
	case opFCVTSL:
		r32, fl = fpu.I64ToF32(xs, rm)
	case opFCVTSLU:
		r32, fl = fpu.U64ToF32(xs, rm)

	case opFADDD:
		r, fl = fpu.Add64(a, b, rm)
	case opFSUBD:
		r, fl = fpu.Sub64(a, b, rm)
	case opFMULD:
		r, fl = fpu.Mul64(a, b, rm)
	case opFDIVD:
		r, fl = fpu.Div64(a, b, rm)
	case opFSQRTD:
		r, fl = fpu.Sqrt64(a, rm)
	case opFMADDD, opFMSUBD, opFNMSUBD, opFNMADDD:
		k := d.op - opFMADDD
		r, fl = fpu.FMA64(a, b, f[d.rs3&31], k >= 2, k == 1 || k == 3, rm)
	case opFCVTDW:
		r, fl = fpu.I32ToF64(xs, rm)
	case opFCVTDWU:
		r, fl = fpu.U32ToF64(xs, rm)
	case opFCVTDL:
		r, fl = fpu.I64ToF64(xs, rm)
	case opFCVTDLU:
		r, fl = fpu.U64ToF64(xs, rm)

	// Conversions to integer registers.
	case opFCVTWS:
		r, fl = fpu.F32ToI32(unbox(a), rm)
		return h.setX(d.rd, r, fl)
	case opFCVTWUS:
		r, fl = fpu.F32ToU32(unbox(a), rm)
		return h.setX(d.rd, r, fl)
	case opFCVTLS:
		r, fl = fpu.F32ToI64(unbox(a), rm)
		return h.setX(d.rd, r, fl)
	case opFCVTLUS:
		r, fl = fpu.F32ToU64(unbox(a), rm)
		return h.setX(d.rd, r, fl)
	case opFCVTWD:
		r, fl = fpu.F64ToI32(a, rm)
		return h.setX(d.rd, r, fl)
	case opFCVTWUD:
		r, fl = fpu.F64ToU32(a, rm)
		return h.setX(d.rd, r, fl)
	case opFCVTLD:
		r, fl = fpu.F64ToI64(a, rm)
		return h.setX(d.rd, r, fl)
	case opFCVTLUD:
		r, fl = fpu.F64ToU64(a, rm)
		return h.setX(d.rd, r, fl)
	default:
		h.illegal(d)
		return false
	}
	if isSingle(d.op) {
		r = box(r32)
	}
	return h.setF(d.rd, r, fl)
}

func isSingle(o op) bool {
	switch o {
	case opFADDS, opFSUBS, opFMULS, opFDIVS, opFSQRTS, opFMADDS, opFMSUBS, opFNMSUBS, opFNMADDS,
		opFCVTSD, opFCVTSW, opFCVTSWU, opFCVTSL, opFCVTSLU:
		return true
	}
	return false
}

func (h *Hart) setF(rd uint8, v uint64, fl fpu.Flags) bool {
	h.F[rd] = v
	h.csr.fflags |= uint64(fl)
	h.csr.mstatus |= msFS
	return true
}

// setX writes an integer result of an FP instruction; accrued flags still
// dirty the FP state.
func (h *Hart) setX(rd uint8, v uint64, fl fpu.Flags) bool {
	h.X[rd] = v
	if fl != 0 {
		h.csr.fflags |= uint64(fl)
		h.csr.mstatus |= msFS
	}
	return true
}
