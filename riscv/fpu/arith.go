package fpu

import "math"

// Fast paths. The host's binary64 arithmetic rounds to nearest-even; for the
// other modes and for the flags we also compute the exact rounding error
// (TwoSum for addition, a math.FMA residual for multiplication, division and
// square root). Inputs or results for which that error term might not be
// exact (near the overflow or underflow thresholds) take the exact integer
// slow path in generic.go.

const (
	exp32  = 0x7f800000
	exp64  = 0x7ff0000000000000
	sign64 = 1 << 63
)

// adjust64 turns r, the round-to-nearest-even binary64 result of an inexact
// operation, into the result for rounding mode rm. r must be finite with
// magnitude at least 2^-1021 (so that neither r nor its neighbours are
// tiny). up reports whether the exact magnitude exceeds |r|; tie whether
// the exact value lies halfway between |r| and its upper neighbour (only
// consulted for RMM). Since r is the nearest value, the correctly rounded
// results of the other modes are r or a neighbour of r.
func adjust64(r uint64, up, tie bool, rm uint8) (uint64, Flags) {
	neg := r&sign64 != 0
	switch rm {
	case RTZ:
		if !up {
			r--
		}
	case RDN:
		if neg && up {
			r++
		} else if !neg && !up {
			r--
		}
	case RUP:
		if !neg && up {
			r++
		} else if neg && !up {
			r--
		}
	case RMM:
		if up && tie {
			r++
		}
	}
	if r&^sign64 == exp64 {
		return r, OF | NX // rounded up past the largest finite number
	}
	return r, NX
}

// fin64 is adjust64 for an operation whose exact value is s+err, with err the
// exact (nonzero) rounding error as a binary64.
func fin64(r uint64, err float64, rm uint8) (uint64, Flags) {
	up := (err > 0) != (r&sign64 != 0)
	tie := false
	if rm == RMM && up {
		mag := r &^ sign64
		ulp := math.Float64frombits(mag+1) - math.Float64frombits(mag)
		tie = 2*math.Abs(err) == ulp
	}
	return adjust64(r, up, tie, rm)
}

// twoSum returns s = RNE(x+y) and the exact error x+y-s (Knuth's TwoSum;
// exact whenever s does not overflow).
func twoSum(x, y float64) (s, err float64) {
	s = x + y
	bb := s - x
	err = (x - (s - bb)) + (y - bb)
	return
}

// Add64 returns a+b for binary64 operands (FADD.D).
func Add64(a, b uint64, rm uint8) (uint64, Flags) {
	if a&exp64 == exp64 || b&exp64 == exp64 {
		return addG(fmt64, a, b, rm)
	}
	s, err := twoSum(math.Float64frombits(a), math.Float64frombits(b))
	if s == 0 {
		// An exactly zero sum (addition cannot underflow to zero).
		return fmt64.zeroSum(a&sign64 != 0, b&sign64 != 0, rm), 0
	}
	r := math.Float64bits(s)
	if r&exp64 == exp64 {
		return addG(fmt64, a, b, rm) // overflow
	}
	if err == 0 {
		return r, 0
	}
	// A sum that is not exact has magnitude above 2^-1021: all sums
	// of smaller magnitude are representable.
	if rm == RNE {
		return r, NX
	}
	return fin64(r, err, rm)
}

// Sub64 returns a-b for binary64 operands (FSUB.D).
func Sub64(a, b uint64, rm uint8) (uint64, Flags) {
	return Add64(a, b^sign64, rm)
}

// Mul64 returns a*b for binary64 operands (FMUL.D).
func Mul64(a, b uint64, rm uint8) (uint64, Flags) {
	if a&exp64 == exp64 || b&exp64 == exp64 {
		return mulG(fmt64, a, b, rm)
	}
	x, y := math.Float64frombits(a), math.Float64frombits(b)
	p := x * y
	if ap := math.Abs(p); !(ap >= 0x1p-960 && ap <= math.MaxFloat64) {
		if x == 0 || y == 0 {
			return math.Float64bits(p), 0
		}
		return mulG(fmt64, a, b, rm) // overflow or possible underflow
	}
	// Above 2^-960 the residual x*y-p is exactly representable.
	err := math.FMA(x, y, -p)
	r := math.Float64bits(p)
	if err == 0 {
		return r, 0
	}
	if rm == RNE {
		return r, NX
	}
	return fin64(r, err, rm)
}

// Div64 returns a/b for binary64 operands (FDIV.D).
func Div64(a, b uint64, rm uint8) (uint64, Flags) {
	// Require a >= 2^-900 in magnitude so that the remainder a-q*b is
	// exactly representable, and a nonzero, non-special divisor.
	if a&exp64 == exp64 || b&exp64 == exp64 || a&exp64 < 123<<52 || b&^sign64 == 0 {
		return divG(fmt64, a, b, rm)
	}
	x, y := math.Float64frombits(a), math.Float64frombits(b)
	q := x / y
	if aq := math.Abs(q); !(aq >= 0x1p-1020 && aq <= math.MaxFloat64) {
		return divG(fmt64, a, b, rm)
	}
	rem := math.FMA(-q, y, x) // exact: x - q*y
	r := math.Float64bits(q)
	if rem == 0 {
		return r, 0
	}
	if rm == RNE {
		return r, NX
	}
	// The exact quotient is q + rem/y; it is never a tie in the normal
	// range (a midpoint needs p+1 significant bits, so midpoint*y cannot
	// equal a p-bit x).
	up := ((rem > 0) != (y < 0)) == (q > 0)
	return adjust64(r, up, false, rm)
}

// Sqrt64 returns the square root of a binary64 operand (FSQRT.D).
func Sqrt64(a uint64, rm uint8) (uint64, Flags) {
	if a&sign64 != 0 || a&exp64 == exp64 || a == 0 {
		r, fl, _ := sqrtSpecial(fmt64, a)
		return r, fl
	}
	x := math.Float64frombits(a)
	scaled := a&exp64 < 200<<52
	if scaled {
		// Scale small operands by an even power of two (exactly) so that
		// the residual below is representable; the root is scaled back
		// exactly because it is far from the subnormal range.
		x *= 0x1p200
	}
	d := math.Sqrt(x)
	rem := math.FMA(-d, d, x) // exact: x - d*d
	r := math.Float64bits(d)
	var fl Flags
	if rem != 0 {
		fl = NX
		if rm != RNE {
			// Square roots are never ties, and never overflow.
			r, fl = adjust64(r, rem > 0, false, rm)
		}
	}
	if scaled {
		r = math.Float64bits(math.Float64frombits(r) * 0x1p-100)
	}
	return r, fl
}

// FMA64 returns (negProd ? -(a*b) : a*b) + (negAdd ? -c : c) for binary64
// operands with a single rounding: FMADD.D (false, false), FMSUB.D (false,
// true), FNMSUB.D (true, false) and FNMADD.D (true, true).
func FMA64(a, b, c uint64, negProd, negAdd bool, rm uint8) (uint64, Flags) {
	return fmaG(fmt64, a, b, c, negProd, negAdd, rm)
}

// finish32 rounds to binary32 the exact value s+err, where s is a finite
// nonzero binary64 (never subnormal) equal to the exact value rounded to
// nearest-even in binary64, and err has the sign of the rounding error (or
// is zero if s is exact). innocuous states that rounding s directly to
// binary32 gives the correctly rounded nearest-even result: true for
// +, -, *, / and sqrt of binary32 operands because 53 >= 2*24+2 (double
// rounding is innocuous), but not for a fused multiply-add.
func finish32(s, err float64, rm uint8, innocuous bool) (uint32, Flags) {
	if rm == RNE && (innocuous || err == 0) {
		r := float32(s)
		if ar := math.Abs(float64(r)); ar > 0x1p-126 && ar <= math.MaxFloat32 {
			// Neither tiny nor overflowed.
			if err == 0 && float64(r) == s {
				return math.Float32bits(r), 0
			}
			return math.Float32bits(r), NX
		}
	}
	// Exact path: the significand of s with one extra bit that encodes the
	// side of the error acts as a sticky bit for roundPack.
	b := math.Float64bits(s)
	neg := b&sign64 != 0
	m := (b&(1<<52-1) | 1<<52) << 1
	e := int(b>>52&0x7ff) - 1075 - 1
	if err != 0 {
		if (err > 0) != neg {
			m++
		} else {
			m--
		}
	}
	r, fl := roundPack(fmt32, neg, m, e, rm)
	return uint32(r), fl
}

func f32(a uint32) float64 { return float64(math.Float32frombits(a)) }

// Add32 returns a+b for binary32 operands (FADD.S).
func Add32(a, b uint32, rm uint8) (uint32, Flags) {
	if a&exp32 == exp32 || b&exp32 == exp32 {
		r, fl := addG(fmt32, uint64(a), uint64(b), rm)
		return uint32(r), fl
	}
	s, err := twoSum(f32(a), f32(b))
	if s == 0 {
		return uint32(fmt32.zeroSum(a>>31 != 0, b>>31 != 0, rm)), 0
	}
	return finish32(s, err, rm, true)
}

// Sub32 returns a-b for binary32 operands (FSUB.S).
func Sub32(a, b uint32, rm uint8) (uint32, Flags) {
	return Add32(a, b^1<<31, rm)
}

// Mul32 returns a*b for binary32 operands (FMUL.S).
func Mul32(a, b uint32, rm uint8) (uint32, Flags) {
	if a&exp32 == exp32 || b&exp32 == exp32 {
		r, fl := mulG(fmt32, uint64(a), uint64(b), rm)
		return uint32(r), fl
	}
	p := f32(a) * f32(b) // exact: 48-bit significand, exponent in range
	if p == 0 {
		return uint32(fmt32.zero(math.Signbit(p))), 0
	}
	return finish32(p, 0, rm, true)
}

// Div32 returns a/b for binary32 operands (FDIV.S).
func Div32(a, b uint32, rm uint8) (uint32, Flags) {
	if a&exp32 == exp32 || b&exp32 == exp32 || a<<1 == 0 || b<<1 == 0 {
		r, fl := divG(fmt32, uint64(a), uint64(b), rm)
		return uint32(r), fl
	}
	x, y := f32(a), f32(b)
	q := x / y
	rem := math.FMA(-q, y, x) // exact for binary32 operands
	if y < 0 {
		rem = -rem // now has the sign of the error rem/y
	}
	return finish32(q, rem, rm, true)
}

// Sqrt32 returns the square root of a binary32 operand (FSQRT.S).
func Sqrt32(a uint32, rm uint8) (uint32, Flags) {
	if r, fl, done := sqrtSpecial(fmt32, uint64(a)); done {
		return uint32(r), fl
	}
	x := f32(a)
	d := math.Sqrt(x)
	rem := math.FMA(-d, d, x) // exact for binary32 operands
	return finish32(d, rem, rm, true)
}

// FMA32 is the binary32 counterpart of FMA64 (FMADD.S, FMSUB.S, FNMSUB.S,
// FNMADD.S).
func FMA32(a, b, c uint32, negProd, negAdd bool, rm uint8) (uint32, Flags) {
	if a&exp32 == exp32 || b&exp32 == exp32 || c&exp32 == exp32 || a<<1 == 0 || b<<1 == 0 {
		r, fl := fmaG(fmt32, uint64(a), uint64(b), uint64(c), negProd, negAdd, rm)
		return uint32(r), fl
	}
	// The product of two binary32 numbers is exact in binary64; the
	// explicit conversion forbids the compiler from fusing it into the sum.
	p := float64(f32(a) * f32(b))
	if negProd {
		p = -p
	}
	z := f32(c)
	if negAdd {
		z = -z
	}
	s, err := twoSum(p, z)
	if s == 0 {
		// p is nonzero (a and b are), so this is an exact cancellation
		// z = -p: +0, or -0 when rounding down (IEEE 754-2008 6.3).
		return uint32(fmt32.zeroSum(math.Signbit(p), math.Signbit(z), rm)), 0
	}
	return finish32(s, err, rm, false)
}
