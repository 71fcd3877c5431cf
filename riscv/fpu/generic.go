package fpu

import "math/bits"

// This file holds the exact, format-generic implementations of the
// arithmetic operations. They handle every input (including NaNs,
// infinities, zeros and subnormals) and every rounding mode, and serve as the
// slow path behind the hardware fast paths in arith.go.

// nanResult returns the canonical NaN with NV raised if either operand kind
// is a signaling NaN (spec: "NaN Generation and Propagation").
func (f *format) nanResult(ka, kb int) (uint64, Flags) {
	if ka == kSNaN || kb == kSNaN {
		return f.nan, NV
	}
	return f.nan, 0
}

// addG computes a+b rounded in mode rm (IEEE 754-2008 5.4.1 addition).
func addG(f *format, a, b uint64, rm uint8) (uint64, Flags) {
	sa, ea, ma, ka := f.unpack(a)
	sb, eb, mb, kb := f.unpack(b)
	switch {
	case ka >= kQNaN || kb >= kQNaN:
		return f.nanResult(ka, kb)
	case ka == kInf:
		if kb == kInf && sa != sb {
			return f.nan, NV // inf - inf
		}
		return a, 0
	case kb == kInf:
		return b, 0
	case ka == kZero && kb == kZero:
		return f.zeroSum(sa, sb, rm), 0
	case ka == kZero:
		return b, 0
	case kb == kZero:
		return a, 0
	}
	neg, m, e, zero := addExact(sa, u128{0, ma}, ea, sb, u128{0, mb}, eb)
	if zero {
		return f.zeroSum(false, true, rm), 0
	}
	return roundPack(f, neg, m, e, rm)
}

// mulG computes a*b rounded in mode rm (IEEE 754-2008 5.4.1 multiplication;
// 0*inf is invalid).
func mulG(f *format, a, b uint64, rm uint8) (uint64, Flags) {
	sa, ea, ma, ka := f.unpack(a)
	sb, eb, mb, kb := f.unpack(b)
	neg := sa != sb
	switch {
	case ka >= kQNaN || kb >= kQNaN:
		return f.nanResult(ka, kb)
	case (ka == kInf && kb == kZero) || (ka == kZero && kb == kInf):
		return f.nan, NV
	case ka == kInf || kb == kInf:
		return f.inf | f.zero(neg), 0
	case ka == kZero || kb == kZero:
		return f.zero(neg), 0
	}
	hi, lo := bits.Mul64(ma, mb)
	m, s := u128{hi, lo}.jam64()
	return roundPack(f, neg, m, ea+eb+s, rm)
}

// divG computes a/b rounded in mode rm (IEEE 754-2008 5.4.1 division; 0/0
// and inf/inf are invalid, finite nonzero/0 raises DZ).
func divG(f *format, a, b uint64, rm uint8) (uint64, Flags) {
	sa, ea, ma, ka := f.unpack(a)
	sb, eb, mb, kb := f.unpack(b)
	neg := sa != sb
	switch {
	case ka >= kQNaN || kb >= kQNaN:
		return f.nanResult(ka, kb)
	case (ka == kInf && kb == kInf) || (ka == kZero && kb == kZero):
		return f.nan, NV
	case ka == kInf:
		return f.inf | f.zero(neg), 0
	case kb == kInf || ka == kZero:
		return f.zero(neg), 0
	case kb == kZero:
		return f.inf | f.zero(neg), DZ
	}
	// x < 2^63 <= y, so the 64-bit quotient of x*2^64/y exists and lies in
	// [2^62, 2^64): plenty of bits for a sticky-bit rounding.
	sh := bits.LeadingZeros64(ma) - 1
	x, ea := ma<<uint(sh), ea-sh
	sh = bits.LeadingZeros64(mb)
	y, eb := mb<<uint(sh), eb-sh
	q, r := bits.Div64(x, 0, y)
	if r != 0 {
		q |= 1
	}
	return roundPack(f, neg, q, ea-eb-64, rm)
}

// sqrtSpecial handles the operands of square root whose result is not a
// positive finite number (IEEE 754-2008 5.4.1 squareRoot: sqrt(-0) = -0,
// sqrt of a negative nonzero number is invalid). done is false for positive
// finite nonzero operands.
func sqrtSpecial(f *format, a uint64) (r uint64, fl Flags, done bool) {
	neg, _, _, k := f.unpack(a)
	switch {
	case k >= kQNaN:
		r, fl = f.nanResult(k, kZero)
		return r, fl, true
	case k == kZero:
		return a, 0, true
	case neg:
		return f.nan, NV, true
	case k == kInf:
		return a, 0, true
	}
	return 0, 0, false
}

// fmaG computes (±a*b) ± c with a single rounding (IEEE 754-2008 5.4.1
// fusedMultiplyAdd). negProd negates the product and negAdd the addend, giving
// the four RISC-V forms FMADD, FMSUB, FNMSUB and FNMADD. As required by the
// RISC-V spec, inf*0 raises NV even when c is a quiet NaN.
func fmaG(f *format, a, b, c uint64, negProd, negAdd bool, rm uint8) (uint64, Flags) {
	sa, ea, ma, ka := f.unpack(a)
	sb, eb, mb, kb := f.unpack(b)
	sc, ec, mc, kc := f.unpack(c)
	var fl Flags
	if ka == kSNaN || kb == kSNaN || kc == kSNaN {
		fl = NV
	}
	if (ka == kInf && kb == kZero) || (ka == kZero && kb == kInf) {
		return f.nan, NV
	}
	if ka >= kQNaN || kb >= kQNaN || kc >= kQNaN {
		return f.nan, fl
	}
	sp := sa != sb != negProd
	sc = sc != negAdd
	switch {
	case ka == kInf || kb == kInf:
		if kc == kInf && sc != sp {
			return f.nan, NV // inf - inf
		}
		return f.inf | f.zero(sp), 0
	case kc == kInf:
		return f.inf | f.zero(sc), 0
	case ka == kZero || kb == kZero:
		if kc == kZero {
			return f.zeroSum(sp, sc, rm), 0
		}
		return c&^f.sign | f.zero(sc), 0
	}
	hi, lo := bits.Mul64(ma, mb)
	prod := u128{hi, lo}
	if kc == kZero {
		m, s := prod.jam64()
		return roundPack(f, sp, m, ea+eb+s, rm)
	}
	neg, m, e, zero := addExact(sp, prod, ea+eb, sc, u128{0, mc}, ec)
	if zero {
		return f.zeroSum(false, true, rm), 0
	}
	return roundPack(f, neg, m, e, rm)
}
