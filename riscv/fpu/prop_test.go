package fpu

import (
	"flag"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"math/rand"
	"testing"
)

// Run with: go test -run TestAgainstReference ./riscv/fpu -args -long
var long = flag.Bool("long", false, "run many more randomized reference comparisons")

// testOp pairs an implementation with the reference. Operands and results
// are carried in uint64; booleans as 0/1.
type testOp struct {
	name  string
	f     rf   // operand format (for the generators)
	arity int  // number of float operands; 0 means one integer operand
	rm    bool // whether the rounding mode matters
	impl  func(a, b, c uint64, rm uint8) (uint64, Flags)
	ref   func(a, b, c uint64, rm uint8) (uint64, Flags)
	gen   func(r *rand.Rand) (a, b, c uint64) // nil: generic generator
}

func b2u(b bool, fl Flags) (uint64, Flags) {
	if b {
		return 1, fl
	}
	return 0, fl
}

func bin(fn func(a, b uint64, rm uint8) (uint64, Flags)) func(a, b, c uint64, rm uint8) (uint64, Flags) {
	return func(a, b, _ uint64, rm uint8) (uint64, Flags) { return fn(a, b, rm) }
}

func w32(r uint32, fl Flags) (uint64, Flags) { return uint64(r), fl }

func fmaOps(f rf, name string, impl func(a, b, c uint64, np, na bool, rm uint8) (uint64, Flags)) []testOp {
	var ops []testOp
	for i, form := range []string{"madd", "msub", "nmsub", "nmadd"} {
		np, na := i >= 2, i == 1 || i == 3
		ops = append(ops, testOp{
			name: name + "." + form, f: f, arity: 3, rm: true,
			impl: func(a, b, c uint64, rm uint8) (uint64, Flags) { return impl(a, b, c, np, na, rm) },
			ref:  func(a, b, c uint64, rm uint8) (uint64, Flags) { return refFMA(f, a, b, c, np, na, rm) },
			gen:  func(r *rand.Rand) (uint64, uint64, uint64) { return genFMA(r, f, np != na) },
		})
	}
	return ops
}

func toIntOps(f rf, sfx string, fns [4]func(a uint64, rm uint8) (uint64, Flags)) []testOp {
	var ops []testOp
	for i, n := range []string{"w", "wu", "l", "lu"} {
		fn := fns[i]
		width := uint(32)
		if i >= 2 {
			width = 64
		}
		signed := i%2 == 0
		ops = append(ops, testOp{
			name: "fcvt." + n + "." + sfx, f: f, arity: 1, rm: true,
			impl: func(a, _, _ uint64, rm uint8) (uint64, Flags) { return fn(a, rm) },
			ref:  func(a, _, _ uint64, rm uint8) (uint64, Flags) { return refToInt(f, a, rm, width, signed) },
			gen:  func(r *rand.Rand) (uint64, uint64, uint64) { return genToInt(r, f), 0, 0 },
		})
	}
	return ops
}

func fromIntOps(f rf, sfx string, fns [4]func(x uint64, rm uint8) (uint64, Flags)) []testOp {
	var ops []testOp
	for i, n := range []string{"w", "wu", "l", "lu"} {
		fn := fns[i]
		i := i
		ops = append(ops, testOp{
			name: "fcvt." + sfx + "." + n, f: f, arity: 0, rm: true,
			impl: func(a, _, _ uint64, rm uint8) (uint64, Flags) { return fn(a, rm) },
			ref: func(a, _, _ uint64, rm uint8) (uint64, Flags) {
				var v *big.Int
				switch i {
				case 0:
					v = big.NewInt(int64(int32(a)))
				case 1:
					v = new(big.Int).SetUint64(uint64(uint32(a)))
				case 2:
					v = big.NewInt(int64(a))
				default:
					v = new(big.Int).SetUint64(a)
				}
				return refFromInt(f, v, rm)
			},
			gen: func(r *rand.Rand) (uint64, uint64, uint64) { return genInt(r), 0, 0 },
		})
	}
	return ops
}

func allOps() []testOp {
	ops := []testOp{
		{name: "fadd.d", f: r64, arity: 2, rm: true, impl: bin(Add64),
			ref: func(a, b, _ uint64, rm uint8) (uint64, Flags) { return refAdd(r64, a, b, rm) }},
		{name: "fsub.d", f: r64, arity: 2, rm: true, impl: bin(Sub64),
			ref: func(a, b, _ uint64, rm uint8) (uint64, Flags) { return refAdd(r64, a, b^1<<63, rm) }},
		{name: "fmul.d", f: r64, arity: 2, rm: true, impl: bin(Mul64),
			ref: func(a, b, _ uint64, rm uint8) (uint64, Flags) { return refMul(r64, a, b, rm) },
			gen: func(r *rand.Rand) (uint64, uint64, uint64) { return genMulDiv(r, r64, false) }},
		{name: "fdiv.d", f: r64, arity: 2, rm: true, impl: bin(Div64),
			ref: func(a, b, _ uint64, rm uint8) (uint64, Flags) { return refDiv(r64, a, b, rm) },
			gen: func(r *rand.Rand) (uint64, uint64, uint64) { return genMulDiv(r, r64, true) }},
		{name: "fsqrt.d", f: r64, arity: 1, rm: true,
			impl: func(a, _, _ uint64, rm uint8) (uint64, Flags) { return Sqrt64(a, rm) },
			ref:  func(a, _, _ uint64, rm uint8) (uint64, Flags) { return refSqrt(r64, a, rm) }},
		{name: "fmin.d", f: r64, arity: 2,
			impl: func(a, b, _ uint64, _ uint8) (uint64, Flags) { return Min64(a, b) },
			ref:  func(a, b, _ uint64, _ uint8) (uint64, Flags) { return refMinMax(r64, a, b, false) }},
		{name: "fmax.d", f: r64, arity: 2,
			impl: func(a, b, _ uint64, _ uint8) (uint64, Flags) { return Max64(a, b) },
			ref:  func(a, b, _ uint64, _ uint8) (uint64, Flags) { return refMinMax(r64, a, b, true) }},
		{name: "feq.d", f: r64, arity: 2,
			impl: func(a, b, _ uint64, _ uint8) (uint64, Flags) { return b2u(Eq64(a, b)) },
			ref:  func(a, b, _ uint64, _ uint8) (uint64, Flags) { return refCmp(r64, a, b, 0) }},
		{name: "flt.d", f: r64, arity: 2,
			impl: func(a, b, _ uint64, _ uint8) (uint64, Flags) { return b2u(Lt64(a, b)) },
			ref:  func(a, b, _ uint64, _ uint8) (uint64, Flags) { return refCmp(r64, a, b, 1) }},
		{name: "fle.d", f: r64, arity: 2,
			impl: func(a, b, _ uint64, _ uint8) (uint64, Flags) { return b2u(Le64(a, b)) },
			ref:  func(a, b, _ uint64, _ uint8) (uint64, Flags) { return refCmp(r64, a, b, 2) }},
		{name: "fclass.d", f: r64, arity: 1,
			impl: func(a, _, _ uint64, _ uint8) (uint64, Flags) { return Class64(a), 0 },
			ref:  func(a, _, _ uint64, _ uint8) (uint64, Flags) { return refClass(r64, a), 0 }},

		{name: "fadd.s", f: r32, arity: 2, rm: true,
			impl: func(a, b, _ uint64, rm uint8) (uint64, Flags) { return w32(Add32(uint32(a), uint32(b), rm)) },
			ref:  func(a, b, _ uint64, rm uint8) (uint64, Flags) { return refAdd(r32, a, b, rm) }},
		{name: "fsub.s", f: r32, arity: 2, rm: true,
			impl: func(a, b, _ uint64, rm uint8) (uint64, Flags) { return w32(Sub32(uint32(a), uint32(b), rm)) },
			ref:  func(a, b, _ uint64, rm uint8) (uint64, Flags) { return refAdd(r32, a, b^1<<31, rm) }},
		{name: "fmul.s", f: r32, arity: 2, rm: true,
			impl: func(a, b, _ uint64, rm uint8) (uint64, Flags) { return w32(Mul32(uint32(a), uint32(b), rm)) },
			ref:  func(a, b, _ uint64, rm uint8) (uint64, Flags) { return refMul(r32, a, b, rm) },
			gen:  func(r *rand.Rand) (uint64, uint64, uint64) { return genMulDiv(r, r32, false) }},
		{name: "fdiv.s", f: r32, arity: 2, rm: true,
			impl: func(a, b, _ uint64, rm uint8) (uint64, Flags) { return w32(Div32(uint32(a), uint32(b), rm)) },
			ref:  func(a, b, _ uint64, rm uint8) (uint64, Flags) { return refDiv(r32, a, b, rm) },
			gen:  func(r *rand.Rand) (uint64, uint64, uint64) { return genMulDiv(r, r32, true) }},
		{name: "fsqrt.s", f: r32, arity: 1, rm: true,
			impl: func(a, _, _ uint64, rm uint8) (uint64, Flags) { return w32(Sqrt32(uint32(a), rm)) },
			ref:  func(a, _, _ uint64, rm uint8) (uint64, Flags) { return refSqrt(r32, a, rm) }},
		{name: "fmin.s", f: r32, arity: 2,
			impl: func(a, b, _ uint64, _ uint8) (uint64, Flags) { return w32(Min32(uint32(a), uint32(b))) },
			ref:  func(a, b, _ uint64, _ uint8) (uint64, Flags) { return refMinMax(r32, a, b, false) }},
		{name: "fmax.s", f: r32, arity: 2,
			impl: func(a, b, _ uint64, _ uint8) (uint64, Flags) { return w32(Max32(uint32(a), uint32(b))) },
			ref:  func(a, b, _ uint64, _ uint8) (uint64, Flags) { return refMinMax(r32, a, b, true) }},
		{name: "feq.s", f: r32, arity: 2,
			impl: func(a, b, _ uint64, _ uint8) (uint64, Flags) { return b2u(Eq32(uint32(a), uint32(b))) },
			ref:  func(a, b, _ uint64, _ uint8) (uint64, Flags) { return refCmp(r32, a, b, 0) }},
		{name: "flt.s", f: r32, arity: 2,
			impl: func(a, b, _ uint64, _ uint8) (uint64, Flags) { return b2u(Lt32(uint32(a), uint32(b))) },
			ref:  func(a, b, _ uint64, _ uint8) (uint64, Flags) { return refCmp(r32, a, b, 1) }},
		{name: "fle.s", f: r32, arity: 2,
			impl: func(a, b, _ uint64, _ uint8) (uint64, Flags) { return b2u(Le32(uint32(a), uint32(b))) },
			ref:  func(a, b, _ uint64, _ uint8) (uint64, Flags) { return refCmp(r32, a, b, 2) }},
		{name: "fclass.s", f: r32, arity: 1,
			impl: func(a, _, _ uint64, _ uint8) (uint64, Flags) { return Class32(uint32(a)), 0 },
			ref:  func(a, _, _ uint64, _ uint8) (uint64, Flags) { return refClass(r32, a), 0 }},

		{name: "fcvt.d.s", f: r32, arity: 1,
			impl: func(a, _, _ uint64, _ uint8) (uint64, Flags) { return F32ToF64(uint32(a)) },
			ref:  func(a, _, _ uint64, rm uint8) (uint64, Flags) { return refConvertFloat(r32, r64, a, rm) }},
		{name: "fcvt.s.d", f: r64, arity: 1, rm: true,
			impl: func(a, _, _ uint64, rm uint8) (uint64, Flags) { return w32(F64ToF32(a, rm)) },
			ref:  func(a, _, _ uint64, rm uint8) (uint64, Flags) { return refConvertFloat(r64, r32, a, rm) },
			gen:  func(r *rand.Rand) (uint64, uint64, uint64) { return genNarrow(r), 0, 0 }},

		// The generic slow paths, exercised directly over the whole range
		// (the public functions only reach them for hard cases).
		{name: "addG.d", f: r64, arity: 2, rm: true,
			impl: func(a, b, _ uint64, rm uint8) (uint64, Flags) { return addG(fmt64, a, b, rm) },
			ref:  func(a, b, _ uint64, rm uint8) (uint64, Flags) { return refAdd(r64, a, b, rm) }},
		{name: "mulG.d", f: r64, arity: 2, rm: true,
			impl: func(a, b, _ uint64, rm uint8) (uint64, Flags) { return mulG(fmt64, a, b, rm) },
			ref:  func(a, b, _ uint64, rm uint8) (uint64, Flags) { return refMul(r64, a, b, rm) },
			gen:  func(r *rand.Rand) (uint64, uint64, uint64) { return genMulDiv(r, r64, false) }},
		{name: "divG.d", f: r64, arity: 2, rm: true,
			impl: func(a, b, _ uint64, rm uint8) (uint64, Flags) { return divG(fmt64, a, b, rm) },
			ref:  func(a, b, _ uint64, rm uint8) (uint64, Flags) { return refDiv(r64, a, b, rm) },
			gen:  func(r *rand.Rand) (uint64, uint64, uint64) { return genMulDiv(r, r64, true) }},
		{name: "addG.s", f: r32, arity: 2, rm: true,
			impl: func(a, b, _ uint64, rm uint8) (uint64, Flags) { return addG(fmt32, a, b, rm) },
			ref:  func(a, b, _ uint64, rm uint8) (uint64, Flags) { return refAdd(r32, a, b, rm) }},
		{name: "mulG.s", f: r32, arity: 2, rm: true,
			impl: func(a, b, _ uint64, rm uint8) (uint64, Flags) { return mulG(fmt32, a, b, rm) },
			ref:  func(a, b, _ uint64, rm uint8) (uint64, Flags) { return refMul(r32, a, b, rm) },
			gen:  func(r *rand.Rand) (uint64, uint64, uint64) { return genMulDiv(r, r32, false) }},
		{name: "divG.s", f: r32, arity: 2, rm: true,
			impl: func(a, b, _ uint64, rm uint8) (uint64, Flags) { return divG(fmt32, a, b, rm) },
			ref:  func(a, b, _ uint64, rm uint8) (uint64, Flags) { return refDiv(r32, a, b, rm) },
			gen:  func(r *rand.Rand) (uint64, uint64, uint64) { return genMulDiv(r, r32, true) }},
	}
	ops = append(ops, fmaOps(r64, "fma.d", FMA64)...)
	ops = append(ops, fmaOps(r32, "fma.s", func(a, b, c uint64, np, na bool, rm uint8) (uint64, Flags) {
		return w32(FMA32(uint32(a), uint32(b), uint32(c), np, na, rm))
	})...)
	ops = append(ops, fmaOps(r32, "fmaG.s", func(a, b, c uint64, np, na bool, rm uint8) (uint64, Flags) {
		return fmaG(fmt32, a, b, c, np, na, rm)
	})...)
	ops = append(ops, toIntOps(r64, "d", [4]func(uint64, uint8) (uint64, Flags){F64ToI32, F64ToU32, F64ToI64, F64ToU64})...)
	ops = append(ops, toIntOps(r32, "s", [4]func(uint64, uint8) (uint64, Flags){
		func(a uint64, rm uint8) (uint64, Flags) { return F32ToI32(uint32(a), rm) },
		func(a uint64, rm uint8) (uint64, Flags) { return F32ToU32(uint32(a), rm) },
		func(a uint64, rm uint8) (uint64, Flags) { return F32ToI64(uint32(a), rm) },
		func(a uint64, rm uint8) (uint64, Flags) { return F32ToU64(uint32(a), rm) },
	})...)
	ops = append(ops, fromIntOps(r64, "d", [4]func(uint64, uint8) (uint64, Flags){I32ToF64, U32ToF64, I64ToF64, U64ToF64})...)
	ops = append(ops, fromIntOps(r32, "s", [4]func(uint64, uint8) (uint64, Flags){
		func(x uint64, rm uint8) (uint64, Flags) { return w32(I32ToF32(x, rm)) },
		func(x uint64, rm uint8) (uint64, Flags) { return w32(U32ToF32(x, rm)) },
		func(x uint64, rm uint8) (uint64, Flags) { return w32(I64ToF32(x, rm)) },
		func(x uint64, rm uint8) (uint64, Flags) { return w32(U64ToF32(x, rm)) },
	})...)
	return ops
}

// ---- operand generators ----

// mk builds a value of format f from sign, biased exponent field and
// fraction.
func mk(f rf, neg bool, ef int, frac uint64) uint64 {
	x := uint64(ef)<<f.fracBits() | frac&(1<<f.fracBits()-1)
	if neg {
		x |= f.signBit()
	}
	return x
}

// genFrac returns a fraction field with structure likely to produce exact
// results, ties and carries.
func genFrac(r *rand.Rand, f rf) uint64 {
	fb := f.fracBits()
	m := uint64(1)<<fb - 1
	switch r.Intn(6) {
	case 0:
		return 0
	case 1:
		return m // all ones: carries
	case 2:
		return (r.Uint64() & m) >> uint(r.Intn(int(fb)+1)) // few leading bits
	case 3:
		return m &^ (1<<uint(r.Intn(int(fb)+1)) - 1) // ones then zeros
	case 4:
		return (r.Uint64() & m) &^ (1<<uint(r.Intn(int(fb)+1)) - 1) // random then zeros
	default:
		return r.Uint64() & m
	}
}

func specials(f rf) []uint64 {
	maxEf := f.maxExpField()
	return []uint64{
		0, f.signBit(), f.infBits(false), f.infBits(true), f.qnan(), f.qnan() | f.signBit(),
		f.infBits(false) | 1, f.infBits(false) | 1<<(f.fracBits()-2), // sNaNs
		f.infBits(false) - 1, f.infBits(true) - 1, // max finite
		mk(f, false, 1, 0), mk(f, true, 1, 0), 1, f.signBit() | 1, // min normal, min subnormal
		mk(f, false, 0, 1<<f.fracBits()-1), mk(f, false, f.emax, 0), // max subnormal, 1.0
		mk(f, true, f.emax, 0), mk(f, false, f.emax-1, 0), mk(f, false, maxEf-1, 1), // -1, 0.5, 2^emax*(1+ulp)
	}
}

// genFloat returns an operand of format f from a distribution that stresses
// specials, subnormals, the overflow and underflow thresholds and
// structured significands.
func genFloat(r *rand.Rand, f rf) uint64 {
	neg := r.Intn(2) == 0
	maxEf := f.maxExpField()
	switch r.Intn(12) {
	case 0:
		s := specials(f)
		return s[r.Intn(len(s))]
	case 1:
		return r.Uint64() & f.mask()
	case 2:
		return mk(f, neg, 0, genFrac(r, f)) // subnormal or zero
	case 3:
		return mk(f, neg, f.emax+r.Intn(9)-4, genFrac(r, f)) // near 1
	case 4:
		return mk(f, neg, maxEf-1-r.Intn(4), genFrac(r, f)) // near overflow
	case 5:
		return mk(f, neg, 1+r.Intn(f.p+3), genFrac(r, f)) // near underflow
	case 6:
		v := float64(r.Intn(2000) - 1000)
		if f.nbits == 32 {
			return uint64(math.Float32bits(float32(v)))
		}
		return math.Float64bits(v)
	default:
		return mk(f, neg, 1+r.Intn(maxEf-1), genFrac(r, f))
	}
}

// nearby returns x perturbed by a few ulps, possibly negated or rescaled:
// operands close to each other produce cancellation and ties.
func nearby(r *rand.Rand, f rf, x uint64) uint64 {
	if f.isNaN(x) || f.isInf(x) {
		return genFloat(r, f)
	}
	y := x + uint64(r.Intn(7)) - 3
	switch r.Intn(4) {
	case 0:
		y ^= f.signBit()
	case 1:
		// Shift the exponent by up to p+2 so that the aligned
		// significands overlap partially.
		ef := f.expField(y) - r.Intn(f.p+3)
		if ef < 0 {
			ef = 0
		}
		y = mk(f, r.Intn(2) == 0, ef, f.fracField(y))
	}
	return y & f.mask()
}

func genPair(r *rand.Rand, f rf) (uint64, uint64) {
	a := genFloat(r, f)
	switch r.Intn(4) {
	case 0:
		return a, nearby(r, f, a)
	case 1:
		if !f.isNaN(a) && !f.isInf(a) {
			// b around half an ulp of a: ties and near-ties.
			ef := f.expField(a) - f.p + 1 - r.Intn(3)
			if ef < 0 {
				ef = 0
			}
			frac := uint64(0)
			if r.Intn(2) == 0 {
				frac = genFrac(r, f) >> uint(f.p-4)
			}
			return a, mk(f, r.Intn(2) == 0, ef, frac)
		}
	}
	return a, genFloat(r, f)
}

// oddInt returns a random odd integer with exactly n bits as a float of
// format f with a random exponent in [emin, emax].
func oddInt(r *rand.Rand, f rf, n int) uint64 {
	x := r.Uint64()&(1<<uint(n)-1) | 1 | 1<<uint(n-1)
	frac := x << uint(f.p-n)
	ef := 1 + r.Intn(f.maxExpField()-1)
	return mk(f, r.Intn(2) == 0, ef, frac)
}

// genTieMul returns operands whose exact product has p+1 or p+2
// significant bits, often a tie.
func genTieMul(r *rand.Rand, f rf) (uint64, uint64) {
	n := 1 + r.Intn(f.p)
	m := f.p + 2 - n - r.Intn(2)
	if m < 1 {
		m = 1
	}
	if m > f.p {
		m = f.p
	}
	return oddInt(r, f, n), oddInt(r, f, m)
}

// genMulDiv chooses exponents so that the product (or quotient) lands near
// the overflow threshold, near or below the underflow threshold, or in the
// normal range.
func genMulDiv(r *rand.Rand, f rf, div bool) (uint64, uint64, uint64) {
	switch r.Intn(5) {
	case 0:
		a, b := genPair(r, f)
		return a, b, 0
	case 1:
		if !div {
			a, b := genTieMul(r, f)
			return a, b, 0
		}
	}
	var target int // unbiased exponent of the result
	switch r.Intn(3) {
	case 0:
		target = f.emax - r.Intn(3)
	case 1:
		target = f.emin - r.Intn(f.p+3) + 1
	default:
		target = r.Intn(f.emax-f.emin) + f.emin
	}
	ea := r.Intn(f.emax-f.emin) + f.emin
	eb := target - ea
	if div {
		eb = ea - target
	}
	if eb < f.emin || eb > f.emax {
		eb = (eb%f.emax + f.emax) % f.emax
	}
	a := mk(f, r.Intn(2) == 0, ea+f.emax, genFrac(r, f))
	b := mk(f, r.Intn(2) == 0, eb+f.emax, genFrac(r, f))
	return a, b, 0
}

// genFMA produces operands where c often nearly cancels the product.
func genFMA(r *rand.Rand, f rf, negated bool) (uint64, uint64, uint64) {
	a, b, _ := genMulDiv(r, f, false)
	if r.Intn(3) == 0 {
		return a, b, genFloat(r, f)
	}
	// c ~ -(a*b) (or +(a*b) for forms where one side is negated).
	var c uint64
	if f.nbits == 32 {
		c = uint64(math.Float32bits(float32(f.host(a) * f.host(b))))
	} else {
		c = math.Float64bits(f.host(a) * f.host(b))
	}
	if !negated {
		c ^= f.signBit()
	}
	switch r.Intn(3) {
	case 0:
		c = nearby(r, f, c)
	case 1:
		// Far below the product: only affects rounding.
		ef := f.expField(c) - f.p - r.Intn(2*f.p)
		if ef < 0 {
			ef = 0
		}
		c = mk(f, r.Intn(2) == 0, ef, genFrac(r, f))
	}
	return a, b, c & f.mask()
}

// genToInt produces floats around the integer ranges' limits and small
// values with fractional parts.
func genToInt(r *rand.Rand, f rf) uint64 {
	switch r.Intn(4) {
	case 0:
		return genFloat(r, f)
	case 1: // |x| in [2^30, 2^65)
		return mk(f, r.Intn(2) == 0, f.emax+30+r.Intn(35), genFrac(r, f))
	case 2: // small with fractions: halves, quarters
		v := float64(r.Intn(41)-20) / 4
		if f.nbits == 32 {
			return uint64(math.Float32bits(float32(v)))
		}
		return math.Float64bits(v)
	default:
		return mk(f, r.Intn(2) == 0, f.emax-2+r.Intn(40), genFrac(r, f))
	}
}

func genInt(r *rand.Rand) uint64 {
	switch r.Intn(4) {
	case 0:
		return r.Uint64()
	case 1:
		return r.Uint64() >> uint(r.Intn(64))
	case 2:
		return -(r.Uint64() >> uint(r.Intn(64)))
	default:
		// Structured: runs of ones, for ties and carries.
		n := r.Intn(64)
		x := (uint64(1)<<uint(n) - 1) << uint(r.Intn(64-n+1))
		if r.Intn(2) == 0 {
			x = bits.Reverse64(x)
		}
		return x ^ uint64(r.Intn(4))
	}
}

// genNarrow produces binary64 values around binary32's range limits.
func genNarrow(r *rand.Rand) uint64 {
	neg := r.Intn(2) == 0
	switch r.Intn(4) {
	case 0:
		return genFloat(r, r64)
	case 1: // near binary32 overflow
		return mk(r64, neg, 1023+125+r.Intn(5), genFrac(r, r64))
	case 2: // binary32 subnormal range and below
		return mk(r64, neg, 1023-126-r.Intn(30), genFrac(r, r64))
	default:
		return mk(r64, neg, 1023-126+r.Intn(254), genFrac(r, r64))
	}
}

func (op *testOp) operands(r *rand.Rand) (a, b, c uint64) {
	switch {
	case op.gen != nil:
		return op.gen(r)
	case op.arity == 1:
		return genFloat(r, op.f), 0, 0
	case op.arity == 2:
		a, b := genPair(r, op.f)
		return a, b, 0
	}
	return genFloat(r, op.f), genFloat(r, op.f), genFloat(r, op.f)
}

// mask restricts fuzzer-provided operands to the op's operand width.
func (op *testOp) mask(a, b, c uint64) (uint64, uint64, uint64) {
	if op.arity == 0 {
		return a, 0, 0
	}
	m := op.f.mask()
	return a & m, b & m, c & m
}

func (op *testOp) check(a, b, c uint64, rm uint8) error {
	got, gfl := op.impl(a, b, c, rm)
	want, wfl := op.ref(a, b, c, rm)
	if got != want || gfl != wfl {
		return fmt.Errorf("%s(%#x, %#x, %#x) rm=%d = %#x flags %05b; want %#x flags %05b",
			op.name, a, b, c, rm, got, gfl, want, wfl)
	}
	return nil
}

func TestAgainstReference(t *testing.T) {
	n := 1500
	if *long {
		n = 40000
	}
	if testing.Short() {
		n = 200
	}
	for _, op := range allOps() {
		t.Run(op.name, func(t *testing.T) {
			r := rand.New(rand.NewSource(int64(len(op.name)) * 7919))
			fails := 0
			for rm := uint8(0); rm <= 4; rm++ {
				if !op.rm && rm > 0 {
					break
				}
				for i := 0; i < n; i++ {
					a, b, c := op.operands(r)
					if err := op.check(a, b, c, rm); err != nil {
						t.Error(err)
						if fails++; fails > 10 {
							t.FailNow()
						}
					}
				}
			}
		})
	}
}

// FuzzReference compares every operation (fast paths included) with the
// exact reference on fuzzer-chosen operands.
//
//	go test -run '^$' -fuzz FuzzReference -fuzztime 60s ./riscv/fpu
func FuzzReference(f *testing.F) {
	ops := allOps()
	r := rand.New(rand.NewSource(1))
	for i := range ops {
		for j := 0; j < 3; j++ {
			a, b, c := ops[i].operands(r)
			f.Add(uint8(i), uint8(j), a, b, c)
		}
	}
	f.Fuzz(func(t *testing.T, sel, rm uint8, a, b, c uint64) {
		op := &ops[int(sel)%len(ops)]
		rm %= 5
		a, b, c = op.mask(a, b, c)
		if err := op.check(a, b, c, rm); err != nil {
			t.Error(err)
		}
	})
}
