package fpu

// orderKey maps a non-NaN value of format f to an unsigned key that orders
// like the value, with -0 ordered below +0.
func (f *format) orderKey(x uint64) uint64 {
	if x&f.sign != 0 {
		return ^x & (f.sign<<1 - 1)
	}
	return x | f.sign
}

// minMax implements FMIN/FMAX as IEEE 754-2019 minimumNumber/maximumNumber
// (spec 20191213, F chapter, "Single-Precision Floating-Point Computational
// Instructions", as amended for version 2.2 of the F extension): -0 is less
// than +0; if exactly one operand is a NaN
// the result is the other operand; if both are NaNs the result is the
// canonical NaN. NV is raised only for signaling NaN inputs.
func minMax(f *format, a, b uint64, max bool) (uint64, Flags) {
	var fl Flags
	if f.isSNaN(a) || f.isSNaN(b) {
		fl = NV
	}
	na, nb := f.isNaN(a), f.isNaN(b)
	switch {
	case na && nb:
		return f.nan, fl
	case na:
		return b, fl
	case nb:
		return a, fl
	}
	if (f.orderKey(a) < f.orderKey(b)) != max {
		return a, fl
	}
	return b, fl
}

// eq implements FEQ: a quiet comparison (NV only for signaling NaNs), with
// +0 == -0.
func eq(f *format, a, b uint64) (bool, Flags) {
	if f.isNaN(a) || f.isNaN(b) {
		if f.isSNaN(a) || f.isSNaN(b) {
			return false, NV
		}
		return false, 0
	}
	return a == b || (a|b)&^f.sign == 0, 0
}

// lt implements FLT (orEqual false) and FLE (orEqual true): signaling
// comparisons that raise NV for any NaN operand and return false.
func lt(f *format, a, b uint64, orEqual bool) (bool, Flags) {
	if f.isNaN(a) || f.isNaN(b) {
		return false, NV
	}
	if (a|b)&^f.sign == 0 { // both zero
		return orEqual, 0
	}
	ka, kb := f.orderKey(a), f.orderKey(b)
	return ka < kb || (orEqual && ka == kb), 0
}

// class implements FCLASS: a one-hot 10-bit mask (bit 0 -inf, 1 negative
// normal, 2 negative subnormal, 3 -0, 4 +0, 5 positive subnormal, 6 positive
// normal, 7 +inf, 8 signaling NaN, 9 quiet NaN).
func class(f *format, a uint64) uint64 {
	neg := a&f.sign != 0
	mag := a &^ f.sign
	var i uint
	switch {
	case mag > f.inf:
		if a&f.qbit != 0 {
			return 1 << 9
		}
		return 1 << 8
	case mag == f.inf:
		i = 7
	case mag >= 1<<f.frac:
		i = 6
	case mag != 0:
		i = 5
	default:
		i = 4
	}
	if neg {
		i = 7 - i
	}
	return 1 << i
}

// Min64 implements FMIN.D.
func Min64(a, b uint64) (uint64, Flags) { return minMax(fmt64, a, b, false) }

// Max64 implements FMAX.D.
func Max64(a, b uint64) (uint64, Flags) { return minMax(fmt64, a, b, true) }

// Eq64 implements FEQ.D (quiet).
func Eq64(a, b uint64) (bool, Flags) { return eq(fmt64, a, b) }

// Lt64 implements FLT.D (signaling).
func Lt64(a, b uint64) (bool, Flags) { return lt(fmt64, a, b, false) }

// Le64 implements FLE.D (signaling).
func Le64(a, b uint64) (bool, Flags) { return lt(fmt64, a, b, true) }

// Class64 implements FCLASS.D.
func Class64(a uint64) uint64 { return class(fmt64, a) }

// Min32 implements FMIN.S.
func Min32(a, b uint32) (uint32, Flags) {
	r, fl := minMax(fmt32, uint64(a), uint64(b), false)
	return uint32(r), fl
}

// Max32 implements FMAX.S.
func Max32(a, b uint32) (uint32, Flags) {
	r, fl := minMax(fmt32, uint64(a), uint64(b), true)
	return uint32(r), fl
}

// Eq32 implements FEQ.S (quiet).
func Eq32(a, b uint32) (bool, Flags) { return eq(fmt32, uint64(a), uint64(b)) }

// Lt32 implements FLT.S (signaling).
func Lt32(a, b uint32) (bool, Flags) { return lt(fmt32, uint64(a), uint64(b), false) }

// Le32 implements FLE.S (signaling).
func Le32(a, b uint32) (bool, Flags) { return lt(fmt32, uint64(a), uint64(b), true) }

// Class32 implements FCLASS.S.
func Class32(a uint32) uint64 { return class(fmt32, uint64(a)) }
