package fpu

// An independent reference implementation used by the property and fuzz
// tests. It shares no code with the package: operands are converted to exact
// big.Rat values, the operation is performed exactly in rational arithmetic
// (square root via an integer square root of a widened operand), and the
// result is rounded by a separate rational rounding routine that follows the
// IEEE 754-2008 definitions literally. Special operands (NaN, infinity) are
// classified from the bit patterns and, where convenient, evaluated with the
// host's binary64 arithmetic, which is exact for those cases.

import (
	"math"
	"math/big"
)

// rf describes a binary format for the reference, independently of format.
type rf struct {
	p, emin, emax int
	nbits         uint
}

var (
	r32 = rf{p: 24, emin: -126, emax: 127, nbits: 32}
	r64 = rf{p: 53, emin: -1022, emax: 1023, nbits: 64}
)

func (f rf) fracBits() uint  { return uint(f.p - 1) }
func (f rf) signBit() uint64 { return 1 << (f.nbits - 1) }
func (f rf) mask() uint64    { return ^uint64(0) >> (64 - f.nbits) }
func (f rf) expField(x uint64) int {
	return int((x & f.mask() &^ f.signBit()) >> f.fracBits())
}
func (f rf) fracField(x uint64) uint64 { return x & (1<<f.fracBits() - 1) }
func (f rf) neg(x uint64) bool         { return x&f.signBit() != 0 }
func (f rf) maxExpField() int          { return 2*f.emax + 1 }
func (f rf) isNaN(x uint64) bool {
	return f.expField(x) == f.maxExpField() && f.fracField(x) != 0
}
func (f rf) isSNaN(x uint64) bool {
	return f.isNaN(x) && f.fracField(x)>>(f.fracBits()-1) == 0
}
func (f rf) isInf(x uint64) bool {
	return f.expField(x) == f.maxExpField() && f.fracField(x) == 0
}
func (f rf) isZero(x uint64) bool { return x&f.mask()&^f.signBit() == 0 }
func (f rf) qnan() uint64 {
	return uint64(f.maxExpField())<<f.fracBits() | 1<<(f.fracBits()-1)
}
func (f rf) infBits(neg bool) uint64 {
	r := uint64(f.maxExpField()) << f.fracBits()
	if neg {
		r |= f.signBit()
	}
	return r
}
func (f rf) zeroBits(neg bool) uint64 {
	if neg {
		return f.signBit()
	}
	return 0
}

// host converts x to a float64 (exact for both formats; NaN payloads and
// signaling-ness are not preserved).
func (f rf) host(x uint64) float64 {
	if f.nbits == 32 {
		return float64(math.Float32frombits(uint32(x)))
	}
	return math.Float64frombits(x)
}

// parts returns |x| = M * 2^E for finite x.
func (f rf) parts(x uint64) (M *big.Int, E int) {
	ef := f.expField(x)
	m := f.fracField(x)
	if ef == 0 {
		return new(big.Int).SetUint64(m), f.emin - f.p + 1
	}
	return new(big.Int).SetUint64(m | 1<<f.fracBits()), ef - f.emax - f.p + 1
}

func pow2(k int) *big.Rat {
	if k >= 0 {
		return new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), uint(k)))
	}
	return new(big.Rat).SetFrac(big.NewInt(1), new(big.Int).Lsh(big.NewInt(1), uint(-k)))
}

// rat returns the exact value of finite x.
func (f rf) rat(x uint64) *big.Rat {
	M, E := f.parts(x)
	r := new(big.Rat).SetInt(M)
	r.Mul(r, pow2(E))
	if f.neg(x) {
		r.Neg(r)
	}
	return r
}

// round rounds the nonzero rational r to format f in mode rm per IEEE
// 754-2008 section 4 and 7, with tininess detected after rounding (RISC-V).
func (f rf) round(r *big.Rat, rm uint8) (uint64, Flags) {
	neg := r.Sign() < 0
	a := new(big.Rat).Abs(r)
	E := a.Num().BitLen() - a.Denom().BitLen()
	for a.Cmp(pow2(E)) < 0 {
		E--
	}
	for a.Cmp(pow2(E+1)) >= 0 {
		E++
	}
	// roundAt rounds a to an integer multiple k of 2^q.
	roundAt := func(q int) (*big.Int, bool) {
		t := new(big.Rat).Mul(a, pow2(-q))
		k := new(big.Int).Quo(t.Num(), t.Denom())
		rem := new(big.Rat).Sub(t, new(big.Rat).SetInt(k))
		if rem.Sign() == 0 {
			return k, false
		}
		c := rem.Cmp(big.NewRat(1, 2))
		var inc bool
		switch rm {
		case RNE:
			inc = c > 0 || (c == 0 && k.Bit(0) == 1)
		case RMM:
			inc = c >= 0
		case RDN:
			inc = neg
		case RUP:
			inc = !neg
		}
		if inc {
			k.Add(k, big.NewInt(1))
		}
		return k, true
	}
	// Rounded with unbounded exponent range: decides overflow and tininess.
	qU := E - f.p + 1
	kU, _ := roundAt(qU)
	valU := new(big.Rat).Mul(new(big.Rat).SetInt(kU), pow2(qU))
	if valU.Cmp(pow2(f.emax+1)) >= 0 {
		toInf := rm == RNE || rm == RMM || (rm == RUP && !neg) || (rm == RDN && neg)
		if toInf {
			return f.infBits(neg), OF | NX
		}
		return f.infBits(neg) - 1, OF | NX
	}
	tiny := valU.Cmp(pow2(f.emin)) < 0
	q := E
	if q < f.emin {
		q = f.emin
	}
	q -= f.p - 1
	k, inexact := roundAt(q)
	if k.BitLen() > f.p {
		k.Rsh(k, 1)
		q++
	}
	var res uint64
	if k.BitLen() < f.p {
		if q != f.emin-f.p+1 {
			panic("reference: subnormal at wrong quantum")
		}
		res = k.Uint64()
	} else {
		biased := q + f.p - 1 + f.emax
		frac := new(big.Int).Sub(k, new(big.Int).Lsh(big.NewInt(1), uint(f.p-1)))
		res = uint64(biased)<<f.fracBits() | frac.Uint64()
	}
	if neg {
		res |= f.signBit()
	}
	var fl Flags
	if inexact {
		fl |= NX
		if tiny {
			fl |= UF
		}
	}
	return res, fl
}

func nanFlags(f rf, xs ...uint64) Flags {
	for _, x := range xs {
		if f.isSNaN(x) {
			return NV
		}
	}
	return 0
}

// hostSpecial evaluates an operation with an infinite operand on the host
// and converts the result (NaN -> canonical NaN with NV, else infinity or
// zero) to format f.
func (f rf) hostSpecial(v float64) (uint64, Flags) {
	switch {
	case math.IsNaN(v):
		return f.qnan(), NV
	case math.IsInf(v, 0):
		return f.infBits(v < 0), 0
	case v == 0:
		return f.zeroBits(math.Signbit(v)), 0
	}
	panic("reference: finite result from special operands")
}

func refAdd(f rf, a, b uint64, rm uint8) (uint64, Flags) {
	if f.isNaN(a) || f.isNaN(b) {
		return f.qnan(), nanFlags(f, a, b)
	}
	if f.isInf(a) || f.isInf(b) {
		return f.hostSpecial(f.host(a) + f.host(b))
	}
	r := new(big.Rat).Add(f.rat(a), f.rat(b))
	if r.Sign() == 0 {
		if f.isZero(a) && f.isZero(b) && f.neg(a) == f.neg(b) {
			return f.zeroBits(f.neg(a)), 0
		}
		return f.zeroBits(rm == RDN), 0
	}
	return f.round(r, rm)
}

func refMul(f rf, a, b uint64, rm uint8) (uint64, Flags) {
	if f.isNaN(a) || f.isNaN(b) {
		return f.qnan(), nanFlags(f, a, b)
	}
	if f.isInf(a) || f.isInf(b) {
		return f.hostSpecial(f.host(a) * f.host(b))
	}
	r := new(big.Rat).Mul(f.rat(a), f.rat(b))
	if r.Sign() == 0 {
		return f.zeroBits(f.neg(a) != f.neg(b)), 0
	}
	return f.round(r, rm)
}

func refDiv(f rf, a, b uint64, rm uint8) (uint64, Flags) {
	if f.isNaN(a) || f.isNaN(b) {
		return f.qnan(), nanFlags(f, a, b)
	}
	if f.isInf(a) || f.isInf(b) || f.isZero(b) {
		r, fl := f.hostSpecial(f.host(a) / f.host(b))
		if f.isZero(b) && !f.isZero(a) && !f.isInf(a) {
			fl |= DZ
		}
		return r, fl
	}
	r := new(big.Rat).Quo(f.rat(a), f.rat(b))
	if r.Sign() == 0 {
		return f.zeroBits(f.neg(a) != f.neg(b)), 0
	}
	return f.round(r, rm)
}

func refSqrt(f rf, a uint64, rm uint8) (uint64, Flags) {
	switch {
	case f.isNaN(a):
		return f.qnan(), nanFlags(f, a)
	case f.isZero(a):
		return a, 0
	case f.neg(a):
		return f.qnan(), NV
	case f.isInf(a):
		return a, 0
	}
	M, E := f.parts(a)
	if E%2 != 0 {
		M.Lsh(M, 1)
		E--
	}
	k := (400-M.BitLen())/2 + 1
	N := new(big.Int).Lsh(M, uint(2*k))
	s := new(big.Int).Sqrt(N)
	r := new(big.Rat).SetInt(s)
	if new(big.Int).Mul(s, s).Cmp(N) != 0 {
		// sqrt(N) lies strictly between s and s+1, and so does s+1/2;
		// s has ~200 bits, so no rounding boundary lies in between.
		r.Add(r, big.NewRat(1, 2))
	}
	r.Mul(r, pow2((E-2*k)/2))
	return f.round(r, rm)
}

func refFMA(f rf, a, b, c uint64, negProd, negAdd bool, rm uint8) (uint64, Flags) {
	nv := nanFlags(f, a, b, c)
	if (f.isInf(a) && f.isZero(b)) || (f.isZero(a) && f.isInf(b)) {
		return f.qnan(), NV
	}
	if f.isNaN(a) || f.isNaN(b) || f.isNaN(c) {
		return f.qnan(), nv
	}
	if negProd {
		a ^= f.signBit()
	}
	if negAdd {
		c ^= f.signBit()
	}
	if f.isInf(a) || f.isInf(b) || f.isInf(c) {
		if !f.isInf(a) && !f.isInf(b) {
			return f.hostSpecial(f.host(c))
		}
		p := f.host(a) * f.host(b) // an infinity (0*inf was handled above)
		return f.hostSpecial(p + f.host(c))
	}
	p := new(big.Rat).Mul(f.rat(a), f.rat(b))
	r := new(big.Rat).Add(p, f.rat(c))
	if r.Sign() == 0 {
		sp := f.neg(a) != f.neg(b)
		if p.Sign() == 0 && sp == f.neg(c) {
			return f.zeroBits(sp), 0
		}
		return f.zeroBits(rm == RDN), 0
	}
	return f.round(r, rm)
}

// refToInt converts to an integer of the given width and signedness per the
// spec's conversion table.
func refToInt(f rf, a uint64, rm uint8, width uint, signed bool) (uint64, Flags) {
	var lo, hi *big.Int
	if signed {
		hi = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), width-1), big.NewInt(1))
		lo = new(big.Int).Neg(new(big.Int).Lsh(big.NewInt(1), width-1))
	} else {
		hi = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), width), big.NewInt(1))
		lo = big.NewInt(0)
	}
	out := func(v *big.Int) uint64 {
		// Register image: two's complement, 32-bit values sign-extended.
		if width == 32 {
			return uint64(int64(int32(uint32(new(big.Int).And(v, big.NewInt(0xffffffff)).Uint64()))))
		}
		if v.Sign() < 0 {
			return uint64(v.Int64())
		}
		return v.Uint64()
	}
	switch {
	case f.isNaN(a):
		return out(hi), NV
	case f.isInf(a):
		if f.neg(a) {
			return out(lo), NV
		}
		return out(hi), NV
	}
	x := f.rat(a)
	neg := x.Sign() < 0
	ax := new(big.Rat).Abs(x)
	k := new(big.Int).Quo(ax.Num(), ax.Denom())
	rem := new(big.Rat).Sub(ax, new(big.Rat).SetInt(k))
	inexact := rem.Sign() != 0
	if inexact {
		c := rem.Cmp(big.NewRat(1, 2))
		var inc bool
		switch rm {
		case RNE:
			inc = c > 0 || (c == 0 && k.Bit(0) == 1)
		case RMM:
			inc = c >= 0
		case RDN:
			inc = neg
		case RUP:
			inc = !neg
		}
		if inc {
			k.Add(k, big.NewInt(1))
		}
	}
	if neg {
		k.Neg(k)
	}
	if k.Cmp(lo) < 0 {
		return out(lo), NV
	}
	if k.Cmp(hi) > 0 {
		return out(hi), NV
	}
	if inexact {
		return out(k), NX
	}
	return out(k), 0
}

func refFromInt(f rf, v *big.Int, rm uint8) (uint64, Flags) {
	if v.Sign() == 0 {
		return 0, 0
	}
	return f.round(new(big.Rat).SetInt(v), rm)
}

func refConvertFloat(from, to rf, a uint64, rm uint8) (uint64, Flags) {
	switch {
	case from.isNaN(a):
		return to.qnan(), nanFlags(from, a)
	case from.isInf(a):
		return to.infBits(from.neg(a)), 0
	case from.isZero(a):
		return to.zeroBits(from.neg(a)), 0
	}
	return to.round(from.rat(a), rm)
}

func refMinMax(f rf, a, b uint64, max bool) (uint64, Flags) {
	fl := nanFlags(f, a, b)
	switch {
	case f.isNaN(a) && f.isNaN(b):
		return f.qnan(), fl
	case f.isNaN(a):
		return b, fl
	case f.isNaN(b):
		return a, fl
	}
	x, y := f.host(a), f.host(b)
	if x == y { // equal values: only zeros of different sign differ
		if f.neg(a) != max {
			return a, fl
		}
		return b, fl
	}
	if (x < y) != max {
		return a, fl
	}
	return b, fl
}

// refCmp returns FEQ (op 0), FLT (op 1) or FLE (op 2).
func refCmp(f rf, a, b uint64, op int) (uint64, Flags) {
	var fl Flags
	if f.isNaN(a) || f.isNaN(b) {
		if op != 0 || f.isSNaN(a) || f.isSNaN(b) {
			fl = NV
		}
		return 0, fl
	}
	x, y := f.host(a), f.host(b)
	var r bool
	switch op {
	case 0:
		r = x == y
	case 1:
		r = x < y
	default:
		r = x <= y
	}
	if r {
		return 1, 0
	}
	return 0, 0
}

func refClass(f rf, a uint64) uint64 {
	n := f.neg(a)
	pick := func(neg, pos uint) uint64 {
		if n {
			return 1 << neg
		}
		return 1 << pos
	}
	switch {
	case f.isNaN(a):
		if f.isSNaN(a) {
			return 1 << 8
		}
		return 1 << 9
	case f.isInf(a):
		return pick(0, 7)
	case f.isZero(a):
		return pick(3, 4)
	case f.expField(a) == 0:
		return pick(2, 5)
	}
	return pick(1, 6)
}
