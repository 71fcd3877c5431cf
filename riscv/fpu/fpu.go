// Package fpu implements the IEEE 754-2008 floating-point arithmetic required
// by the RISC-V F (single precision) and D (double precision) extensions, as
// specified in the RISC-V Unprivileged ISA, chapters "F" and "D" (version
// 20191213).
//
// Values are passed and returned as raw bit patterns (uint32 for binary32,
// uint64 for binary64); NaN-boxing is the caller's job. Every operation takes
// an explicit rounding mode (RNE, RTZ, RDN, RUP or RMM; DYN must be resolved
// by the caller) and returns the accrued exception flags in the fflags bit
// layout, which the caller ORs into fflags.
//
// RISC-V specific behaviour implemented here:
//   - Every operation that produces a NaN returns the canonical NaN
//     (0x7fc00000 / 0x7ff8000000000000); payloads are never propagated
//     (spec section "NaN Generation and Propagation").
//   - Tininess is detected after rounding, and UF is raised only when the
//     result is both tiny and inexact (spec section "Floating-Point Control
//     and Status Register": "detects tininess after rounding").
//   - Conversions to integer saturate as in the spec's table "Domains of
//     float-to-integer conversions and behavior for invalid inputs".
//
// Implementation: the common cases use the host's IEEE binary64 hardware
// (which always rounds to nearest-even) together with an exactly computed
// error term (TwoSum, or a residual obtained with math.FMA), which tells
// whether the result is exact and on which side of it the exact value lies;
// that is enough to raise NX and to move the result by one ulp for the
// directed rounding modes. Binary32 operations are evaluated in binary64,
// where the error term is always exact. Everything else (overflow,
// underflow, RMM ties, fused multiply-add) goes through an exact
// integer-significand slow path (see roundPack) which uses no allocation.
package fpu

import "math/bits"

// Flags is a set of accrued exception flags in the layout of the fflags CSR.
type Flags uint8

// Exception flags, in the fflags bit layout.
const (
	NX Flags = 1  // inexact
	UF Flags = 2  // underflow
	OF Flags = 4  // overflow
	DZ Flags = 8  // divide by zero
	NV Flags = 16 // invalid operation
)

// Rounding modes, encoded as in the instruction rm field and the frm CSR.
const (
	RNE = 0 // round to nearest, ties to even
	RTZ = 1 // round towards zero
	RDN = 2 // round down (towards -infinity)
	RUP = 3 // round up (towards +infinity)
	RMM = 4 // round to nearest, ties to max magnitude
)

// Canonical NaNs (spec: "the canonical NaN has a positive sign and all
// significand bits clear except the MSB").
const (
	canonNaN32 = 0x7fc00000
	canonNaN64 = 0x7ff8000000000000
)

// format describes an IEEE binary interchange format. All bit patterns are
// held in uint64 regardless of width.
type format struct {
	frac  uint   // number of trailing significand (fraction) bits
	prec  int    // precision p = frac+1
	bias  int    // exponent bias
	emin  int    // minimum normal exponent, 1-bias
	emax  int    // maximum finite exponent, bias
	sign  uint64 // sign bit
	inf   uint64 // +infinity (exponent all ones)
	qbit  uint64 // quiet bit of a NaN
	fmask uint64 // fraction mask
	nan   uint64 // canonical NaN
}

var (
	fmt32 = &format{frac: 23, prec: 24, bias: 127, emin: -126, emax: 127,
		sign: 1 << 31, inf: 0x7f800000, qbit: 1 << 22, fmask: 1<<23 - 1, nan: canonNaN32}
	fmt64 = &format{frac: 52, prec: 53, bias: 1023, emin: -1022, emax: 1023,
		sign: 1 << 63, inf: 0x7ff0000000000000, qbit: 1 << 51, fmask: 1<<52 - 1, nan: canonNaN64}
)

// Operand kinds returned by unpack. The NaN kinds sort last.
const (
	kZero = iota
	kFinite
	kInf
	kQNaN
	kSNaN
)

// unpack splits x into sign, kind and, for finite nonzero x, an integer
// significand m and exponent e with |x| = m * 2^e exactly.
func (f *format) unpack(x uint64) (neg bool, e int, m uint64, k int) {
	neg = x&f.sign != 0
	ex := int((x &^ f.sign) >> f.frac)
	m = x & f.fmask
	switch {
	case ex == 2*f.bias+1:
		switch {
		case m == 0:
			k = kInf
		case m&f.qbit != 0:
			k = kQNaN
		default:
			k = kSNaN
		}
	case ex == 0:
		if m == 0 {
			k = kZero
		} else {
			k = kFinite
			e = f.emin - int(f.frac)
		}
	default:
		k = kFinite
		m |= 1 << f.frac
		e = ex - f.bias - int(f.frac)
	}
	return
}

// isNaN reports whether x is a NaN of format f.
func (f *format) isNaN(x uint64) bool { return x&^f.sign > f.inf }

// isSNaN reports whether x is a signaling NaN of format f.
func (f *format) isSNaN(x uint64) bool { return f.isNaN(x) && x&f.qbit == 0 }

// zero returns a zero with the given sign.
func (f *format) zero(neg bool) uint64 {
	if neg {
		return f.sign
	}
	return 0
}

// zeroSum returns the sign of an exact zero sum x+y, where x and y have signs
// sx and sy (IEEE 754-2008 6.3): the common sign if they agree, otherwise +0
// in all rounding modes except RDN, which gives -0.
func (f *format) zeroSum(sx, sy bool, rm uint8) uint64 {
	if sx == sy {
		return f.zero(sx)
	}
	return f.zero(rm == RDN)
}

// overflow returns the result of an overflowing operation (IEEE 754-2008
// 7.4): infinity when rounding to nearest or away from zero in the direction
// of the sign, otherwise the largest finite number of that sign.
func (f *format) overflow(neg bool, rm uint8) uint64 {
	toInf := rm == RNE || rm == RMM || (rm == RUP && !neg) || (rm == RDN && neg)
	r := f.inf
	if !toInf {
		r--
	}
	if neg {
		r |= f.sign
	}
	return r
}

// shiftRound returns m / 2^sh rounded to an integer in mode rm, where neg is
// the sign of the value being rounded, and whether the result is inexact.
// sh may be negative (exact left shift; the caller guarantees no overflow).
func shiftRound(m uint64, sh int, neg bool, rm uint8) (uint64, bool) {
	if sh <= 0 {
		return m << uint(-sh), false
	}
	if m == 0 {
		return 0, false
	}
	var q, rem, half uint64
	switch {
	case sh > 64:
		// 0 < m/2^sh < 1/2.
		if (rm == RUP && !neg) || (rm == RDN && neg) {
			return 1, true
		}
		return 0, true
	case sh == 64:
		q, rem, half = 0, m, 1<<63
	default:
		q, rem, half = m>>uint(sh), m&(1<<uint(sh)-1), 1<<uint(sh-1)
	}
	if rem == 0 {
		return q, false
	}
	switch rm {
	case RNE:
		if rem > half || (rem == half && q&1 != 0) {
			q++
		}
	case RMM:
		if rem >= half {
			q++
		}
	case RDN:
		if neg {
			q++
		}
	case RUP:
		if !neg {
			q++
		}
	}
	return q, true
}

// roundPack rounds the value (-1)^neg * m * 2^e to format f in mode rm and
// encodes it, raising NX, UF and OF as required.
//
// The caller may fold an inexact tail into m as a sticky ("jam") bit: if the
// true value is T = (m' + t) * 2^e with 0 < t < 1, passing m = m'|1 gives the
// correctly rounded result provided m has at least prec+2 significant bits,
// because m and the true value then lie strictly inside the same interval
// between consecutive even integers, which contains no rounding boundary.
//
// Overflow is detected after rounding with an unbounded exponent (IEEE
// 754-2008 7.4). Underflow follows RISC-V: tininess is detected after
// rounding, i.e. the value rounded to prec bits with unbounded exponent range
// is below 2^emin, and UF is raised only if the (subnormal) result is also
// inexact.
func roundPack(f *format, neg bool, m uint64, e int, rm uint8) (uint64, Flags) {
	sign := f.zero(neg)
	if m == 0 {
		return sign, 0
	}
	n := bits.Len64(m)
	E := n - 1 + e // exponent of the leading bit
	p := f.prec
	if E >= f.emin {
		q, inexact := shiftRound(m, n-p, neg, rm)
		if q>>uint(p) != 0 { // rounding carried into a new binade
			q >>= 1
			E++
		}
		if E > f.emax {
			return f.overflow(neg, rm), OF | NX
		}
		var fl Flags
		if inexact {
			fl = NX
		}
		return sign | uint64(E+f.bias)<<f.frac | q&f.fmask, fl
	}
	// Tiny before rounding: round to the fixed subnormal quantum 2^(emin-p+1).
	q, inexact := shiftRound(m, f.emin-p+1-e, neg, rm)
	if !inexact {
		return sign | q, 0
	}
	fl := NX | UF
	if E == f.emin-1 {
		// Only here can rounding to p bits (unbounded exponent) reach 2^emin,
		// in which case the result is not tiny after rounding.
		if q0, _ := shiftRound(m, n-p, neg, rm); q0>>uint(p) != 0 {
			fl = NX
		}
	}
	// q <= 2^(p-1); q == 2^(p-1) encodes the smallest normal number.
	return sign | q, fl
}

// u128 is an unsigned 128-bit integer.
type u128 struct{ hi, lo uint64 }

func (x u128) isZero() bool { return x.hi|x.lo == 0 }

func (x u128) bitLen() int {
	if x.hi != 0 {
		return 64 + bits.Len64(x.hi)
	}
	return bits.Len64(x.lo)
}

func (x u128) shl(n int) u128 {
	switch {
	case n <= 0:
		return x
	case n >= 64:
		return u128{x.lo << uint(n-64), 0}
	default:
		return u128{x.hi<<uint(n) | x.lo>>uint(64-n), x.lo << uint(n)}
	}
}

// shrJam shifts x right by n bits, ORing any bits shifted out into bit 0.
func (x u128) shrJam(n int) u128 {
	if n <= 0 {
		return x
	}
	if n >= 128 {
		if x.isZero() {
			return u128{}
		}
		return u128{0, 1}
	}
	var r u128
	var lost uint64
	if n >= 64 {
		r.lo = x.hi >> uint(n-64)
		lost = x.lo | x.hi<<uint(128-n)
	} else {
		r.hi = x.hi >> uint(n)
		r.lo = x.lo>>uint(n) | x.hi<<uint(64-n)
		lost = x.lo << uint(64-n)
	}
	if lost != 0 {
		r.lo |= 1
	}
	return r
}

func (x u128) less(y u128) bool { return x.hi < y.hi || (x.hi == y.hi && x.lo < y.lo) }

func (x u128) add(y u128) u128 {
	lo, c := bits.Add64(x.lo, y.lo, 0)
	hi, _ := bits.Add64(x.hi, y.hi, c)
	return u128{hi, lo}
}

func (x u128) sub(y u128) u128 {
	lo, b := bits.Sub64(x.lo, y.lo, 0)
	hi, _ := bits.Sub64(x.hi, y.hi, b)
	return u128{hi, lo}
}

// jam64 compresses x to at most 64 significant bits, folding the discarded
// low bits into a sticky bit: x ~ m * 2^s.
func (x u128) jam64() (m uint64, s int) {
	if x.hi == 0 {
		return x.lo, 0
	}
	s = bits.Len64(x.hi)
	m = x.hi<<uint(64-s) | x.lo>>uint(s)
	if x.lo<<uint(64-s) != 0 {
		m |= 1
	}
	return m, s
}

// addExact adds (-1)^sa * a * 2^ea and (-1)^sb * b * 2^eb (a, b nonzero and
// below 2^126) and returns the sum as (-1)^neg * m * 2^e, with m carrying a
// sticky bit and at least 62 significant bits whenever any bit was lost, or
// zero=true if the sum is exactly zero.
func addExact(sa bool, a u128, ea int, sb bool, b u128, eb int) (neg bool, m uint64, e int, zero bool) {
	// Normalise both so that their leading bit is bit 125.
	sh := 126 - a.bitLen()
	a, ea = a.shl(sh), ea-sh
	sh = 126 - b.bitLen()
	b, eb = b.shl(sh), eb-sh
	if ea < eb || (ea == eb && a.less(b)) {
		sa, a, ea, sb, b, eb = sb, b, eb, sa, a, ea
	}
	b = b.shrJam(ea - eb)
	var r u128
	if sa == sb {
		r = a.add(b)
	} else {
		r = a.sub(b)
		if r.isZero() {
			return false, 0, 0, true
		}
	}
	m, s := r.jam64()
	return sa, m, ea + s, false
}
