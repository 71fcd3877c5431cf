package fpu

import (
	"math"
	"math/bits"
)

// Integer destination types of the float-to-integer conversions.
type intKind uint8

const (
	kindW  intKind = iota // int32 (FCVT.W.*)
	kindWU                // uint32 (FCVT.WU.*)
	kindL                 // int64 (FCVT.L.*)
	kindLU                // uint64 (FCVT.LU.*)
)

// limits returns the smallest and largest representable values of k as the
// 64-bit register images (32-bit results sign-extended, as RV64 requires).
func (k intKind) limits() (min, max uint64) {
	switch k {
	case kindW:
		return 0xffffffff80000000, 0x7fffffff
	case kindWU:
		return 0, 0xffffffffffffffff // 2^32-1 sign-extended
	case kindL:
		return 1 << 63, 1<<63 - 1
	default:
		return 0, 0xffffffffffffffff
	}
}

// toInt converts a to the integer type k, rounding in mode rm. Following the
// spec's table "Domains of float-to-integer conversions and behavior for
// invalid inputs", if the rounded value is not representable the result is
// the nearest representable value (the maximum for NaN and +inf, the
// minimum for -inf) and only NV is raised; otherwise NX is raised when the
// conversion was inexact.
func toInt(f *format, a uint64, rm uint8, k intKind) (uint64, Flags) {
	min, max := k.limits()
	neg, e, m, kd := f.unpack(a)
	switch kd {
	case kQNaN, kSNaN:
		return max, NV
	case kInf:
		if neg {
			return min, NV
		}
		return max, NV
	case kZero:
		return 0, 0
	}
	var mag uint64
	var inexact bool
	if e >= 0 {
		if bits.Len64(m)+e > 64 {
			goto invalid
		}
		mag = m << uint(e)
	} else {
		mag, inexact = shiftRound(m, -e, neg, rm)
	}
	{
		var fl Flags
		if inexact {
			fl = NX
		}
		switch k {
		case kindW:
			if neg && mag <= 1<<31 {
				return uint64(-int64(mag)), fl
			}
			if !neg && mag < 1<<31 {
				return mag, fl
			}
		case kindWU:
			if mag == 0 {
				return 0, fl
			}
			if !neg && mag < 1<<32 {
				return uint64(int64(int32(uint32(mag)))), fl
			}
		case kindL:
			if neg && mag <= 1<<63 {
				return -mag, fl
			}
			if !neg && mag < 1<<63 {
				return mag, fl
			}
		case kindLU:
			if mag == 0 || !neg {
				return mag, fl
			}
		}
	}
invalid:
	if neg {
		return min, NV
	}
	return max, NV
}

// F64ToI32 implements FCVT.W.D; the result is sign-extended to 64 bits.
func F64ToI32(a uint64, rm uint8) (uint64, Flags) { return toInt(fmt64, a, rm, kindW) }

// F64ToU32 implements FCVT.WU.D; the 32-bit result is sign-extended to 64
// bits (RV64 keeps 32-bit values sign-extended in registers).
func F64ToU32(a uint64, rm uint8) (uint64, Flags) { return toInt(fmt64, a, rm, kindWU) }

// F64ToI64 implements FCVT.L.D.
func F64ToI64(a uint64, rm uint8) (uint64, Flags) { return toInt(fmt64, a, rm, kindL) }

// F64ToU64 implements FCVT.LU.D.
func F64ToU64(a uint64, rm uint8) (uint64, Flags) { return toInt(fmt64, a, rm, kindLU) }

// F32ToI32 implements FCVT.W.S; the result is sign-extended to 64 bits.
func F32ToI32(a uint32, rm uint8) (uint64, Flags) { return toInt(fmt32, uint64(a), rm, kindW) }

// F32ToU32 implements FCVT.WU.S; the 32-bit result is sign-extended to 64
// bits.
func F32ToU32(a uint32, rm uint8) (uint64, Flags) { return toInt(fmt32, uint64(a), rm, kindWU) }

// F32ToI64 implements FCVT.L.S.
func F32ToI64(a uint32, rm uint8) (uint64, Flags) { return toInt(fmt32, uint64(a), rm, kindL) }

// F32ToU64 implements FCVT.LU.S.
func F32ToU64(a uint32, rm uint8) (uint64, Flags) { return toInt(fmt32, uint64(a), rm, kindLU) }

// fromInt rounds the integer (-1)^neg * mag to format f. Zero converts to +0.
func fromInt(f *format, neg bool, mag uint64, rm uint8) (uint64, Flags) {
	return roundPack(f, neg, mag, 0, rm)
}

// signMag splits a two's-complement integer into sign and magnitude.
func signMag(x int64) (bool, uint64) {
	if x < 0 {
		return true, -uint64(x)
	}
	return false, uint64(x)
}

// I32ToF64 implements FCVT.D.W: the low 32 bits of x, as an int32 (always
// exact).
func I32ToF64(x uint64, rm uint8) (uint64, Flags) {
	return math.Float64bits(float64(int32(x))), 0
}

// U32ToF64 implements FCVT.D.WU: the low 32 bits of x, as a uint32 (always
// exact).
func U32ToF64(x uint64, rm uint8) (uint64, Flags) {
	return math.Float64bits(float64(uint32(x))), 0
}

// I64ToF64 implements FCVT.D.L.
func I64ToF64(x uint64, rm uint8) (uint64, Flags) {
	if int64(x) >= -1<<53 && int64(x) <= 1<<53 {
		return math.Float64bits(float64(int64(x))), 0
	}
	neg, mag := signMag(int64(x))
	return fromInt(fmt64, neg, mag, rm)
}

// U64ToF64 implements FCVT.D.LU.
func U64ToF64(x uint64, rm uint8) (uint64, Flags) {
	return fromInt(fmt64, false, x, rm)
}

// I32ToF32 implements FCVT.S.W: the low 32 bits of x, as an int32.
func I32ToF32(x uint64, rm uint8) (uint32, Flags) {
	neg, mag := signMag(int64(int32(x)))
	r, fl := fromInt(fmt32, neg, mag, rm)
	return uint32(r), fl
}

// U32ToF32 implements FCVT.S.WU: the low 32 bits of x, as a uint32.
func U32ToF32(x uint64, rm uint8) (uint32, Flags) {
	r, fl := fromInt(fmt32, false, uint64(uint32(x)), rm)
	return uint32(r), fl
}

// I64ToF32 implements FCVT.S.L.
func I64ToF32(x uint64, rm uint8) (uint32, Flags) {
	neg, mag := signMag(int64(x))
	r, fl := fromInt(fmt32, neg, mag, rm)
	return uint32(r), fl
}

// U64ToF32 implements FCVT.S.LU.
func U64ToF32(x uint64, rm uint8) (uint32, Flags) {
	r, fl := fromInt(fmt32, false, x, rm)
	return uint32(r), fl
}

// F32ToF64 implements FCVT.D.S: exact, except that NaNs become the
// canonical NaN (NV for a signaling NaN).
func F32ToF64(a uint32) (uint64, Flags) {
	if fmt32.isNaN(uint64(a)) {
		if fmt32.isSNaN(uint64(a)) {
			return canonNaN64, NV
		}
		return canonNaN64, 0
	}
	return math.Float64bits(f32(a)), 0
}

// F64ToF32 implements FCVT.S.D: rounds in mode rm and may raise OF, UF and
// NX; NaNs become the canonical NaN (NV for a signaling NaN).
func F64ToF32(a uint64, rm uint8) (uint32, Flags) {
	neg, e, m, k := fmt64.unpack(a)
	switch k {
	case kQNaN:
		return canonNaN32, 0
	case kSNaN:
		return canonNaN32, NV
	case kInf:
		return uint32(fmt32.inf | fmt32.zero(neg)), 0
	case kZero:
		return uint32(fmt32.zero(neg)), 0
	}
	if rm == RNE {
		d := math.Float64frombits(a)
		r := float32(d)
		if ar := math.Abs(float64(r)); ar > 0x1p-126 && ar <= math.MaxFloat32 {
			if float64(r) == d {
				return math.Float32bits(r), 0
			}
			return math.Float32bits(r), NX
		}
	}
	r, fl := roundPack(fmt32, neg, m, e, rm)
	return uint32(r), fl
}
