package fpu

import (
	"math"
	"testing"
)

// Hand-checked edge cases. Expected values were derived by hand from the
// IEEE 754 and RISC-V rules (comments give the reasoning), not by running
// the implementation.

func d(x float64) uint64 { return math.Float64bits(x) }
func s(x float32) uint32 { return math.Float32bits(x) }

const (
	one64    = 0x3ff0000000000000
	max64    = 0x7fefffffffffffff
	inf64    = 0x7ff0000000000000
	minN64   = 0x0010000000000000 // 2^-1022
	minS64   = 0x0000000000000001 // 2^-1074
	qnan64   = 0x7ff8000000000000
	snan64   = 0x7ff0000000000001
	negz64   = 0x8000000000000000
	max32    = 0x7f7fffff
	inf32    = 0x7f800000
	qnan32   = 0x7fc00000
	snan32   = 0x7f800001
	one32    = 0x3f800000
	negz32   = 0x80000000
	neg64    = 1 << 63
	allModes = -1
)

type tcase struct {
	name string
	rm   int // rounding mode, or allModes
	got  func(rm uint8) (uint64, Flags)
	want uint64
	fl   Flags
}

func run(t *testing.T, cases []tcase) {
	t.Helper()
	for _, c := range cases {
		modes := []int{c.rm}
		if c.rm == allModes {
			modes = []int{RNE, RTZ, RDN, RUP, RMM}
		}
		for _, rm := range modes {
			got, fl := c.got(uint8(rm))
			if got != c.want || fl != c.fl {
				t.Errorf("%s rm=%d: got %#x flags %05b, want %#x flags %05b", c.name, rm, got, fl, c.want, c.fl)
			}
		}
	}
}

// perMode expands one operation into five cases, one per rounding mode
// (RNE, RTZ, RDN, RUP, RMM).
func perMode(name string, op func(rm uint8) (uint64, Flags), want [5]uint64, fl [5]Flags) []tcase {
	var cs []tcase
	for rm := 0; rm < 5; rm++ {
		cs = append(cs, tcase{name, rm, op, want[rm], fl[rm]})
	}
	return cs
}

var nx5 = [5]Flags{NX, NX, NX, NX, NX}

func add64(a, b uint64) func(uint8) (uint64, Flags) {
	return func(rm uint8) (uint64, Flags) { return Add64(a, b, rm) }
}
func mul64(a, b uint64) func(uint8) (uint64, Flags) {
	return func(rm uint8) (uint64, Flags) { return Mul64(a, b, rm) }
}
func div64(a, b uint64) func(uint8) (uint64, Flags) {
	return func(rm uint8) (uint64, Flags) { return Div64(a, b, rm) }
}
func u32(fn func(rm uint8) (uint32, Flags)) func(uint8) (uint64, Flags) {
	return func(rm uint8) (uint64, Flags) { r, fl := fn(rm); return uint64(r), fl }
}

func TestTableArith64(t *testing.T) {
	var cs []tcase
	// 1 + 2^-53 is exactly halfway between 1 and 1+ulp; 1 is even.
	cs = append(cs, perMode("1+2^-53", add64(one64, d(0x1p-53)),
		[5]uint64{one64, one64, one64, one64 + 1, one64 + 1}, nx5)...)
	cs = append(cs, perMode("-1-2^-53", add64(one64|neg64, d(-0x1p-53)),
		[5]uint64{one64 | neg64, one64 | neg64, one64 + 1 | neg64, one64 | neg64, one64 + 1 | neg64}, nx5)...)
	// (1+ulp) + 2^-53: halfway, 1+ulp is odd so RNE goes up.
	cs = append(cs, perMode("(1+u)+2^-53", add64(one64+1, d(0x1p-53)),
		[5]uint64{one64 + 2, one64 + 1, one64 + 1, one64 + 2, one64 + 2}, nx5)...)
	// 1 + 3*2^-54 = 1 + 0.75 ulp.
	cs = append(cs, perMode("1+0.75u", add64(one64, d(0x3p-54)),
		[5]uint64{one64 + 1, one64, one64, one64 + 1, one64 + 1}, nx5)...)
	// 1 - 2^-54 = halfway between 1-2^-53 and 1 (ulp below 1 is 2^-53).
	cs = append(cs, perMode("1-2^-54", add64(one64, d(-0x1p-54)),
		[5]uint64{one64, one64 - 1, one64 - 1, one64, one64}, nx5)...)
	// Exact cancellation and signed zeros (IEEE 754 6.3).
	cs = append(cs, perMode("1-1", add64(one64, one64|neg64),
		[5]uint64{0, 0, negz64, 0, 0}, [5]Flags{})...)
	cs = append(cs, perMode("-0+-0", add64(negz64, negz64),
		[5]uint64{negz64, negz64, negz64, negz64, negz64}, [5]Flags{})...)
	cs = append(cs, perMode("+0+-0", add64(0, negz64),
		[5]uint64{0, 0, negz64, 0, 0}, [5]Flags{})...)
	cs = append(cs, perMode("sub 0-0", func(rm uint8) (uint64, Flags) { return Sub64(0, 0, rm) },
		[5]uint64{0, 0, negz64, 0, 0}, [5]Flags{})...)
	// Overflow: inf or max finite depending on mode.
	of := [5]Flags{OF | NX, OF | NX, OF | NX, OF | NX, OF | NX}
	cs = append(cs, perMode("max+max", add64(max64, max64),
		[5]uint64{inf64, max64, max64, inf64, inf64}, of)...)
	cs = append(cs, perMode("-max-max", add64(max64|neg64, max64|neg64),
		[5]uint64{inf64 | neg64, max64 | neg64, inf64 | neg64, max64 | neg64, inf64 | neg64}, of)...)
	// max + half an ulp of max (ulp(max) = 2^971): a tie, RNE overflows;
	// RTZ rounds to max without overflow (rounded value is max).
	cs = append(cs, perMode("max+2^970", add64(max64, d(0x1p970)),
		[5]uint64{inf64, max64, max64, inf64, inf64},
		[5]Flags{OF | NX, NX, NX, OF | NX, OF | NX})...)
	cs = append(cs, perMode("max+2^969", add64(max64, d(0x1p969)),
		[5]uint64{max64, max64, max64, inf64, max64},
		[5]Flags{NX, NX, NX, OF | NX, NX})...)
	cs = append(cs,
		tcase{"inf-inf", allModes, add64(inf64, inf64|neg64), qnan64, NV},
		tcase{"inf+1", allModes, add64(inf64, one64), inf64, 0},
		tcase{"sNaN+1", allModes, add64(snan64, one64), qnan64, NV},
		tcase{"1+qNaN(payload)", allModes, add64(one64, 0xfff8000000001234), qnan64, 0},
		tcase{"subnormal sum exact", allModes, add64(minS64, minS64), 2, 0},
	)

	// Multiplication.
	cs = append(cs, perMode("minsub*0.5", mul64(minS64, d(0.5)),
		// 2^-1075: halfway between 0 and 2^-1074 (odd): RNE gives 0.
		[5]uint64{0, 0, 0, minS64, minS64},
		[5]Flags{UF | NX, UF | NX, UF | NX, UF | NX, UF | NX})...)
	cs = append(cs, perMode("-minsub*0.5", mul64(minS64|neg64, d(0.5)),
		[5]uint64{negz64, negz64, minS64 | neg64, negz64, minS64 | neg64},
		[5]Flags{UF | NX, UF | NX, UF | NX, UF | NX, UF | NX})...)
	// 2^-1022 * (1-2^-53): exactly representable with unbounded exponent
	// (so tiny after rounding), and halfway between two subnormals for
	// the subnormal quantum.
	cs = append(cs, perMode("minN*(1-2^-53)", mul64(minN64, 0x3fefffffffffffff),
		[5]uint64{minN64, minN64 - 1, minN64 - 1, minN64, minN64},
		[5]Flags{UF | NX, UF | NX, UF | NX, UF | NX, UF | NX})...)
	cs = append(cs,
		tcase{"0*inf", allModes, mul64(0, inf64), qnan64, NV},
		tcase{"-0*5", allModes, mul64(negz64, d(5)), negz64, 0},
		tcase{"-inf*-2", allModes, mul64(inf64|neg64, d(-2)), inf64, 0},
		tcase{"3*5", allModes, mul64(d(3), d(5)), d(15), 0},
		tcase{"minsub*2^52", allModes, mul64(minS64, d(0x1p52)), minN64, 0},
	)
	cs = append(cs, perMode("2^600*2^600", mul64(d(0x1p600), d(0x1p600)),
		[5]uint64{inf64, max64, max64, inf64, inf64}, of)...)

	// Division.
	cs = append(cs, perMode("1/3", div64(one64, d(3)),
		// 1/3 = 1.0101...b * 2^-2; the discarded tail is 0.0101... < 1/2.
		[5]uint64{0x3fd5555555555555, 0x3fd5555555555555, 0x3fd5555555555555, 0x3fd5555555555556, 0x3fd5555555555555}, nx5)...)
	cs = append(cs, perMode("-2/3", div64(d(-2), d(3)),
		[5]uint64{0xbfe5555555555555, 0xbfe5555555555555, 0xbfe5555555555556, 0xbfe5555555555555, 0xbfe5555555555555}, nx5)...)
	cs = append(cs,
		tcase{"1/0", allModes, div64(one64, 0), inf64, DZ},
		tcase{"-1/0", allModes, div64(one64|neg64, 0), inf64 | neg64, DZ},
		tcase{"1/-0", allModes, div64(one64, negz64), inf64 | neg64, DZ},
		tcase{"0/0", allModes, div64(0, 0), qnan64, NV},
		tcase{"inf/inf", allModes, div64(inf64, inf64), qnan64, NV},
		tcase{"inf/0", allModes, div64(inf64, 0), inf64, 0},
		tcase{"1/inf", allModes, div64(one64, inf64|neg64), negz64, 0},
		tcase{"6/3", allModes, div64(d(6), d(3)), d(2), 0},
		tcase{"sNaN/0", allModes, div64(snan64, 0), qnan64, NV},
	)
	cs = append(cs, perMode("minN/2^53", div64(minN64, d(0x1p53)),
		// 2^-1075: tie between 0 and 2^-1074.
		[5]uint64{0, 0, 0, minS64, minS64},
		[5]Flags{UF | NX, UF | NX, UF | NX, UF | NX, UF | NX})...)
	cs = append(cs, perMode("max/0.5", div64(max64, d(0.5)),
		[5]uint64{inf64, max64, max64, inf64, inf64}, of)...)

	// Square root. sqrt(2) = 1.41421356237309504880...; the nearest double
	// 0x3ff6a09e667f3bcd = 1.4142135623730951454... lies above it.
	cs = append(cs, perMode("sqrt(2)", func(rm uint8) (uint64, Flags) { return Sqrt64(d(2), rm) },
		[5]uint64{0x3ff6a09e667f3bcd, 0x3ff6a09e667f3bcc, 0x3ff6a09e667f3bcc, 0x3ff6a09e667f3bcd, 0x3ff6a09e667f3bcd}, nx5)...)
	sq := func(a uint64) func(uint8) (uint64, Flags) {
		return func(rm uint8) (uint64, Flags) { return Sqrt64(a, rm) }
	}
	cs = append(cs,
		tcase{"sqrt(4)", allModes, sq(d(4)), d(2), 0},
		tcase{"sqrt(-0)", allModes, sq(negz64), negz64, 0},
		tcase{"sqrt(-1)", allModes, sq(d(-1)), qnan64, NV},
		tcase{"sqrt(-inf)", allModes, sq(inf64 | neg64), qnan64, NV},
		tcase{"sqrt(inf)", allModes, sq(inf64), inf64, 0},
		tcase{"sqrt(sNaN)", allModes, sq(snan64), qnan64, NV},
		tcase{"sqrt(-qNaN)", allModes, sq(qnan64 | neg64), qnan64, 0},
		tcase{"sqrt(2^-1074)", allModes, sq(minS64), d(0x1p-537), 0},
	)

	// Fused multiply-add: a = b = 1+2^-27, a*b = 1 + 2^-26 + 2^-54 exactly;
	// a*b - 1 = 2^-26 + 2^-54 is representable (a separate rounding of a*b
	// would lose the 2^-54 term).
	a := uint64(0x3ff0000002000000)
	fma := func(a, b, c uint64, np, na bool) func(uint8) (uint64, Flags) {
		return func(rm uint8) (uint64, Flags) { return FMA64(a, b, c, np, na, rm) }
	}
	cs = append(cs,
		tcase{"fmadd single rounding", allModes, fma(a, a, one64|neg64, false, false), 0x3e50000001000000, 0},
		tcase{"fmsub", allModes, fma(a, a, one64, false, true), 0x3e50000001000000, 0},
		tcase{"fnmsub", allModes, fma(a, a, one64, true, false), 0xbe50000001000000, 0},
		tcase{"fnmadd", allModes, fma(a, a, one64|neg64, true, true), 0xbe50000001000000, 0},
		tcase{"fma inf*0+qNaN", allModes, fma(inf64, 0, qnan64, false, false), qnan64, NV},
		tcase{"fma 0*inf+1", allModes, fma(0, inf64|neg64, one64, false, false), qnan64, NV},
		tcase{"fma 1*qNaN+1", allModes, fma(one64, qnan64, one64, false, false), qnan64, 0},
		tcase{"fma 1*1+sNaN", allModes, fma(one64, one64, snan64, false, false), qnan64, NV},
		tcase{"fma inf*1-inf", allModes, fma(inf64, one64, inf64, false, true), qnan64, NV},
		tcase{"fma 2*3+inf", allModes, fma(d(2), d(3), inf64|neg64, false, false), inf64 | neg64, 0},
		tcase{"fma max*2-inf", allModes, fma(max64, d(2), inf64, false, true), inf64 | neg64, 0},
		tcase{"fma -0*1+0", allModes, fma(negz64, one64, negz64, false, false), negz64, 0},
	)
	cs = append(cs, perMode("fma 1*1-1", fma(one64, one64, one64, false, true),
		[5]uint64{0, 0, negz64, 0, 0}, [5]Flags{})...)
	cs = append(cs, perMode("fma 0*1+-0", fma(0, one64, negz64, false, false),
		[5]uint64{0, 0, negz64, 0, 0}, [5]Flags{})...)
	// Product below the subnormal range plus zero: the tiny product decides.
	cs = append(cs, perMode("fma minS*minS+0", fma(minS64, minS64|neg64, 0, false, false),
		[5]uint64{negz64, negz64, minS64 | neg64, negz64, negz64},
		[5]Flags{UF | NX, UF | NX, UF | NX, UF | NX, UF | NX})...)
	// 1*1 + 2^-60: exact value just above 1.
	cs = append(cs, perMode("fma 1*1+2^-60", fma(one64, one64, d(0x1p-60), false, false),
		[5]uint64{one64, one64, one64, one64 + 1, one64}, nx5)...)
	run(t, cs)
}

func TestTableArith32(t *testing.T) {
	var cs []tcase
	add := func(a, b uint32) func(uint8) (uint64, Flags) {
		return u32(func(rm uint8) (uint32, Flags) { return Add32(a, b, rm) })
	}
	of := [5]Flags{OF | NX, OF | NX, OF | NX, OF | NX, OF | NX}
	cs = append(cs, perMode("1+2^-24", add(one32, s(0x1p-24)),
		[5]uint64{one32, one32, one32, one32 + 1, one32 + 1}, nx5)...)
	cs = append(cs, perMode("max+max", add(max32, max32),
		[5]uint64{inf32, max32, max32, inf32, inf32}, of)...)
	cs = append(cs, perMode("-1+1", add(one32|negz32, one32),
		[5]uint64{0, 0, negz32, 0, 0}, [5]Flags{})...)
	// 2^-149 * 0.5: tie between 0 and the smallest subnormal.
	cs = append(cs, perMode("minsub*0.5", u32(func(rm uint8) (uint32, Flags) { return Mul32(1, s(0.5), rm) }),
		[5]uint64{0, 0, 0, 1, 1}, [5]Flags{UF | NX, UF | NX, UF | NX, UF | NX, UF | NX})...)
	cs = append(cs, perMode("1/3", u32(func(rm uint8) (uint32, Flags) { return Div32(one32, s(3), rm) }),
		// 1/3 = 1.0101...b*2^-2; with p = 24 the kept bits end in
		// "...10" and the tail is 0.1010...b > 1/2, so RNE rounds up.
		[5]uint64{0x3eaaaaab, 0x3eaaaaaa, 0x3eaaaaaa, 0x3eaaaaab, 0x3eaaaaab}, nx5)...)
	// sqrt(2) in binary32: 0x3fb504f3 = 1.41421353816986083984375 < sqrt(2).
	cs = append(cs, perMode("sqrt(2)", u32(func(rm uint8) (uint32, Flags) { return Sqrt32(s(2), rm) }),
		[5]uint64{0x3fb504f3, 0x3fb504f3, 0x3fb504f3, 0x3fb504f4, 0x3fb504f3}, nx5)...)
	cs = append(cs,
		tcase{"1/0", allModes, u32(func(rm uint8) (uint32, Flags) { return Div32(one32, 0, rm) }), inf32, DZ},
		tcase{"sqrt(-2)", allModes, u32(func(rm uint8) (uint32, Flags) { return Sqrt32(s(-2), rm) }), qnan32, NV},
		tcase{"sNaN*1", allModes, u32(func(rm uint8) (uint32, Flags) { return Mul32(snan32, one32, rm) }), qnan32, NV},
		tcase{"qNaN-1", allModes, u32(func(rm uint8) (uint32, Flags) { return Sub32(0xffc00001, one32, rm) }), qnan32, 0},
	)
	fma := func(a, b, c uint32, np, na bool) func(uint8) (uint64, Flags) {
		return u32(func(rm uint8) (uint32, Flags) { return FMA32(a, b, c, np, na, rm) })
	}
	// a = 1+2^-12: a*a - 1 = 2^-11 + 2^-24 exactly.
	cs = append(cs, tcase{"fma single rounding", allModes, fma(0x3f800800, 0x3f800800, one32|negz32, false, false), 0x3a000400, 0})
	// a*a = 1 + 2^-11 + 2^-24 is halfway between two binary32 values;
	// adding +-2^-60 breaks the tie. Evaluating in binary64 and then
	// rounding to binary32 would lose the 2^-60 and round to even.
	cs = append(cs, perMode("fma tie broken up", fma(0x3f800800, 0x3f800800, s(0x1p-60), false, false),
		[5]uint64{0x3f801001, 0x3f801000, 0x3f801000, 0x3f801001, 0x3f801001}, nx5)...)
	cs = append(cs, perMode("fma tie broken down", fma(0x3f800800, 0x3f800800, s(0x1p-60), false, true),
		[5]uint64{0x3f801000, 0x3f801000, 0x3f801000, 0x3f801001, 0x3f801000}, nx5)...)
	cs = append(cs, perMode("fma exact tie", fma(0x3f800800, 0x3f800800, 0, false, false),
		[5]uint64{0x3f801000, 0x3f801000, 0x3f801000, 0x3f801001, 0x3f801001}, nx5)...)
	cs = append(cs, tcase{"fma inf*0+qNaN", allModes, fma(0, inf32, qnan32, false, false), qnan32, NV})
	run(t, cs)
}

func TestTableCompare(t *testing.T) {
	b := func(r bool, fl Flags) (uint64, Flags) {
		if r {
			return 1, fl
		}
		return 0, fl
	}
	c := func(name string, fn func() (uint64, Flags), want uint64, fl Flags) tcase {
		return tcase{name, RNE, func(uint8) (uint64, Flags) { return fn() }, want, fl}
	}
	cs := []tcase{
		c("min(-0,+0)", func() (uint64, Flags) { return Min64(0, negz64) }, negz64, 0),
		c("min(+0,-0)", func() (uint64, Flags) { return Min64(negz64, 0) }, negz64, 0),
		c("max(-0,+0)", func() (uint64, Flags) { return Max64(negz64, 0) }, 0, 0),
		c("min(qNaN,1)", func() (uint64, Flags) { return Min64(qnan64, one64) }, one64, 0),
		c("max(1,sNaN)", func() (uint64, Flags) { return Max64(one64, snan64) }, one64, NV),
		c("min(qNaN,qNaN)", func() (uint64, Flags) { return Min64(qnan64|5, qnan64|neg64) }, qnan64, 0),
		c("max(sNaN,qNaN)", func() (uint64, Flags) { return Max64(snan64, qnan64) }, qnan64, NV),
		c("min(1,2)", func() (uint64, Flags) { return Min64(one64, d(2)) }, one64, 0),
		c("max(-1,-2)", func() (uint64, Flags) { return Max64(d(-1), d(-2)) }, d(-1), 0),
		c("max(-inf,-max)", func() (uint64, Flags) { return Max64(inf64|neg64, max64|neg64) }, max64|neg64, 0),
		c("min.s(-0,+0)", func() (uint64, Flags) { r, f := Min32(0, negz32); return uint64(r), f }, negz32, 0),
		c("max.s(qNaN,-1)", func() (uint64, Flags) { r, f := Max32(qnan32, s(-1)); return uint64(r), f }, uint64(s(-1)), 0),
		c("max.s(sNaN,sNaN)", func() (uint64, Flags) { r, f := Max32(snan32, snan32); return uint64(r), f }, qnan32, NV),

		c("eq(qNaN,qNaN)", func() (uint64, Flags) { return b(Eq64(qnan64, qnan64)) }, 0, 0),
		c("eq(sNaN,1)", func() (uint64, Flags) { return b(Eq64(snan64, one64)) }, 0, NV),
		c("eq(-0,+0)", func() (uint64, Flags) { return b(Eq64(negz64, 0)) }, 1, 0),
		c("lt(qNaN,1)", func() (uint64, Flags) { return b(Lt64(qnan64, one64)) }, 0, NV),
		c("le(1,qNaN)", func() (uint64, Flags) { return b(Le64(one64, qnan64)) }, 0, NV),
		c("lt(-0,+0)", func() (uint64, Flags) { return b(Lt64(negz64, 0)) }, 0, 0),
		c("le(-0,+0)", func() (uint64, Flags) { return b(Le64(negz64, 0)) }, 1, 0),
		c("lt(-2,-1)", func() (uint64, Flags) { return b(Lt64(d(-2), d(-1))) }, 1, 0),
		c("lt(-1,-2)", func() (uint64, Flags) { return b(Lt64(d(-1), d(-2))) }, 0, 0),
		c("le(inf,inf)", func() (uint64, Flags) { return b(Le64(inf64, inf64)) }, 1, 0),
		c("eq.s(qNaN,1)", func() (uint64, Flags) { return b(Eq32(qnan32, one32)) }, 0, 0),
		c("lt.s(1,2)", func() (uint64, Flags) { return b(Lt32(one32, s(2))) }, 1, 0),
		c("le.s(sNaN,1)", func() (uint64, Flags) { return b(Le32(snan32, one32)) }, 0, NV),
	}
	run(t, cs)

	classes64 := []struct {
		x    uint64
		want uint64
	}{
		{inf64 | neg64, 1 << 0}, {d(-1), 1 << 1}, {minS64 | neg64, 1 << 2}, {negz64, 1 << 3},
		{0, 1 << 4}, {minS64, 1 << 5}, {minN64, 1 << 6}, {inf64, 1 << 7}, {snan64, 1 << 8}, {qnan64, 1 << 9},
		{0x000fffffffffffff, 1 << 5}, {max64 | neg64, 1 << 1}, {0xfff0000000000001, 1 << 8}, {0xfff8000000000000, 1 << 9},
	}
	for _, c := range classes64 {
		if got := Class64(c.x); got != c.want {
			t.Errorf("Class64(%#x) = %#x, want %#x", c.x, got, c.want)
		}
	}
	classes32 := []struct {
		x    uint32
		want uint64
	}{
		{inf32 | negz32, 1 << 0}, {s(-1), 1 << 1}, {negz32 | 1, 1 << 2}, {negz32, 1 << 3},
		{0, 1 << 4}, {0x007fffff, 1 << 5}, {0x00800000, 1 << 6}, {inf32, 1 << 7}, {snan32, 1 << 8}, {qnan32, 1 << 9},
	}
	for _, c := range classes32 {
		if got := Class32(c.x); got != c.want {
			t.Errorf("Class32(%#x) = %#x, want %#x", c.x, got, c.want)
		}
	}
}

func TestTableConvert(t *testing.T) {
	var cs []tcase
	w := func(x float64) func(uint8) (uint64, Flags) {
		return func(rm uint8) (uint64, Flags) { return F64ToI32(d(x), rm) }
	}
	m1, m2 := uint64(0xffffffffffffffff), uint64(0xfffffffffffffffe)
	// fcvt.w.d of -0.5, -1.5, 2.5 in each mode.
	cs = append(cs, perMode("w(-0.5)", w(-0.5), [5]uint64{0, 0, m1, 0, m1}, nx5)...)
	cs = append(cs, perMode("w(-1.5)", w(-1.5), [5]uint64{m2, m1, m2, m1, m2}, nx5)...)
	cs = append(cs, perMode("w(2.5)", w(2.5), [5]uint64{2, 2, 2, 3, 3}, nx5)...)
	cs = append(cs, perMode("w.s(-1.5)", func(rm uint8) (uint64, Flags) { return F32ToI32(s(-1.5), rm) },
		[5]uint64{m2, m1, m2, m1, m2}, nx5)...)
	cs = append(cs, perMode("l.s(2.5)", func(rm uint8) (uint64, Flags) { return F32ToI64(s(2.5), rm) },
		[5]uint64{2, 2, 2, 3, 3}, nx5)...)
	// The spec's saturation table.
	type sat struct {
		name string
		fn   func(a uint64, rm uint8) (uint64, Flags)
		x    uint64
		rm   int
		want uint64
		fl   Flags
	}
	sats := []sat{
		{"w(NaN)", F64ToI32, qnan64 | neg64, allModes, 0x7fffffff, NV},
		{"w(+inf)", F64ToI32, inf64, allModes, 0x7fffffff, NV},
		{"w(-inf)", F64ToI32, inf64 | neg64, allModes, 0xffffffff80000000, NV},
		{"w(2^31)", F64ToI32, d(0x1p31), allModes, 0x7fffffff, NV},
		{"w(-2^31)", F64ToI32, d(-0x1p31), allModes, 0xffffffff80000000, 0},
		{"w(-2^31-1)", F64ToI32, d(-0x1p31 - 1), allModes, 0xffffffff80000000, NV},
		{"w(2^31-0.5) rtz", F64ToI32, d(0x1p31 - 0.5), RTZ, 0x7fffffff, NX},
		{"w(2^31-0.5) rup", F64ToI32, d(0x1p31 - 0.5), RUP, 0x7fffffff, NV},
		{"w(2^31-0.5) rne", F64ToI32, d(0x1p31 - 0.5), RNE, 0x7fffffff, NV}, // ties to even 2^31
		{"w(-0)", F64ToI32, negz64, allModes, 0, 0},
		{"w(1e-300)", F64ToI32, d(1e-300), RUP, 1, NX},
		{"w(-7)", F64ToI32, d(-7), allModes, 0xfffffffffffffff9, 0},
		{"wu(NaN)", F64ToU32, qnan64, allModes, 0xffffffffffffffff, NV},
		{"wu(+inf)", F64ToU32, inf64, allModes, 0xffffffffffffffff, NV},
		{"wu(-inf)", F64ToU32, inf64 | neg64, allModes, 0, NV},
		{"wu(-1)", F64ToU32, d(-1), allModes, 0, NV},
		{"wu(-0.5) rtz", F64ToU32, d(-0.5), RTZ, 0, NX},
		{"wu(-0.5) rdn", F64ToU32, d(-0.5), RDN, 0, NV},
		{"wu(3e9)", F64ToU32, d(3e9), allModes, 0xffffffffb2d05e00, 0},
		{"wu(2^32-1)", F64ToU32, d(0x1p32 - 1), allModes, 0xffffffffffffffff, 0},
		{"wu(2^32)", F64ToU32, d(0x1p32), allModes, 0xffffffffffffffff, NV},
		{"wu(7)", F64ToU32, d(7), allModes, 7, 0},
		{"l(NaN)", F64ToI64, snan64, allModes, 0x7fffffffffffffff, NV},
		{"l(-inf)", F64ToI64, inf64 | neg64, allModes, 1 << 63, NV},
		{"l(-2^63)", F64ToI64, d(-0x1p63), allModes, 1 << 63, 0},
		{"l(2^63)", F64ToI64, d(0x1p63), allModes, 0x7fffffffffffffff, NV},
		{"l(2^62)", F64ToI64, d(0x1p62), allModes, 1 << 62, 0},
		{"l(-1e300)", F64ToI64, d(-1e300), allModes, 1 << 63, NV},
		{"lu(NaN)", F64ToU64, qnan64, allModes, 0xffffffffffffffff, NV},
		{"lu(-1)", F64ToU64, d(-1), allModes, 0, NV},
		{"lu(-inf)", F64ToU64, inf64 | neg64, allModes, 0, NV},
		{"lu(2^64)", F64ToU64, d(0x1p64), allModes, 0xffffffffffffffff, NV},
		{"lu(2^64-2048)", F64ToU64, d(0x1p64 - 2048), allModes, 0xfffffffffffff800, 0},
		{"lu(-0.9) rtz", F64ToU64, d(-0.9), RTZ, 0, NX},
		{"lu(-0.9) rne", F64ToU64, d(-0.9), RNE, 0, NV},
		{"w.s(NaN)", func(a uint64, rm uint8) (uint64, Flags) { return F32ToI32(uint32(a), rm) }, qnan32, allModes, 0x7fffffff, NV},
		{"wu.s(3e9)", func(a uint64, rm uint8) (uint64, Flags) { return F32ToU32(uint32(a), rm) }, uint64(s(3e9)), allModes, 0xffffffffb2d05e00, 0},
		{"lu.s(-inf)", func(a uint64, rm uint8) (uint64, Flags) { return F32ToU64(uint32(a), rm) }, inf32 | negz32, allModes, 0, NV},
		{"l.s(2^63)", func(a uint64, rm uint8) (uint64, Flags) { return F32ToI64(uint32(a), rm) }, uint64(s(0x1p63)), allModes, 0x7fffffffffffffff, NV},
	}
	for _, c := range sats {
		fn, x := c.fn, c.x
		cs = append(cs, tcase{c.name, c.rm, func(rm uint8) (uint64, Flags) { return fn(x, rm) }, c.want, c.fl})
	}

	// Integer to float.
	cs = append(cs, perMode("l->d 2^53+1", func(rm uint8) (uint64, Flags) { return I64ToF64(1<<53+1, rm) },
		// Halfway between 2^53 and 2^53+2; 2^53 is even.
		[5]uint64{d(0x1p53), d(0x1p53), d(0x1p53), d(0x1p53 + 2), d(0x1p53 + 2)}, nx5)...)
	cs = append(cs, perMode("l->d -(2^53+1)", func(rm uint8) (uint64, Flags) { return I64ToF64(m1-1<<53, rm) },
		[5]uint64{d(-0x1p53), d(-0x1p53), d(-0x1p53 - 2), d(-0x1p53), d(-0x1p53 - 2)}, nx5)...)
	cs = append(cs, perMode("lu->d 2^64-1", func(rm uint8) (uint64, Flags) { return U64ToF64(m1, rm) },
		[5]uint64{d(0x1p64), 0x43efffffffffffff, 0x43efffffffffffff, d(0x1p64), d(0x1p64)}, nx5)...)
	cs = append(cs, perMode("w->s 2^24+1", func(rm uint8) (uint64, Flags) { r, f := I32ToF32(1<<24+1, rm); return uint64(r), f },
		[5]uint64{uint64(s(0x1p24)), uint64(s(0x1p24)), uint64(s(0x1p24)), uint64(s(0x1p24 + 2)), uint64(s(0x1p24 + 2))}, nx5)...)
	cs = append(cs, perMode("wu->s 2^32-1", func(rm uint8) (uint64, Flags) { r, f := U32ToF32(0xffffffff, rm); return uint64(r), f },
		[5]uint64{uint64(s(0x1p32)), 0x4f7fffff, 0x4f7fffff, uint64(s(0x1p32)), uint64(s(0x1p32))}, nx5)...)
	cs = append(cs,
		tcase{"w->d uses low 32 bits", allModes, func(rm uint8) (uint64, Flags) { return I32ToF64(0x12345678ffffffff, rm) }, d(-1), 0},
		tcase{"wu->d", allModes, func(rm uint8) (uint64, Flags) { return U32ToF64(0xffffffffffffffff, rm) }, d(0x1p32 - 1), 0},
		tcase{"l->d 0", allModes, func(rm uint8) (uint64, Flags) { return I64ToF64(0, rm) }, 0, 0},
		tcase{"l->d min", allModes, func(rm uint8) (uint64, Flags) { return I64ToF64(1<<63, rm) }, d(-0x1p63), 0},
		tcase{"l->s -1", allModes, func(rm uint8) (uint64, Flags) { r, f := I64ToF32(m1, rm); return uint64(r), f }, uint64(s(-1)), 0},
		tcase{"lu->s 0", allModes, func(rm uint8) (uint64, Flags) { r, f := U64ToF32(0, rm); return uint64(r), f }, 0, 0},
	)

	// Float to float.
	f2d := func(a uint32) func(uint8) (uint64, Flags) {
		return func(uint8) (uint64, Flags) { return F32ToF64(a) }
	}
	d2f := func(a uint64) func(uint8) (uint64, Flags) {
		return u32(func(rm uint8) (uint32, Flags) { return F64ToF32(a, rm) })
	}
	of := [5]Flags{OF | NX, OF | NX, OF | NX, OF | NX, OF | NX}
	cs = append(cs,
		tcase{"s->d sNaN", allModes, f2d(snan32), qnan64, NV},
		tcase{"s->d -qNaN", allModes, f2d(qnan32 | negz32 | 7), qnan64, 0},
		tcase{"s->d minsub", allModes, f2d(1), d(0x1p-149), 0},
		tcase{"s->d -inf", allModes, f2d(inf32 | negz32), inf64 | neg64, 0},
		tcase{"d->s sNaN", allModes, d2f(snan64), qnan32, NV},
		tcase{"d->s -0", allModes, d2f(negz64), negz32, 0},
		tcase{"d->s 1", allModes, d2f(one64), one32, 0},
	)
	cs = append(cs, perMode("d->s max", d2f(max64), [5]uint64{inf32, max32, max32, inf32, inf32}, of)...)
	cs = append(cs, perMode("d->s 1e-50", d2f(d(1e-50)),
		[5]uint64{0, 0, 0, 1, 0}, [5]Flags{UF | NX, UF | NX, UF | NX, UF | NX, UF | NX})...)
	// 2^-126*(1-2^-25): rounds to 2^-126 at 24 bits with unbounded
	// exponent under RNE (a tie to even), so it is not tiny after rounding;
	// under RTZ it rounds to 2^-126*(1-2^-24), which is tiny.
	cs = append(cs, perMode("d->s below minN", d2f(d(0x1p-126*(1-0x1p-25))),
		[5]uint64{0x00800000, 0x007fffff, 0x007fffff, 0x00800000, 0x00800000},
		[5]Flags{NX, UF | NX, UF | NX, NX, NX})...)
	// 2^-126*(1-2^-24) is exact at 24 bits (tiny) but halfway between
	// two subnormal-quantum neighbours.
	cs = append(cs, perMode("d->s tiny tie", d2f(d(0x1p-126*(1-0x1p-24))),
		[5]uint64{0x00800000, 0x007fffff, 0x007fffff, 0x00800000, 0x00800000},
		[5]Flags{UF | NX, UF | NX, UF | NX, UF | NX, UF | NX})...)
	// 1 + 2^-24: tie in binary32.
	cs = append(cs, perMode("d->s 1+2^-24", d2f(d(1+0x1p-24)),
		[5]uint64{one32, one32, one32, one32 + 1, one32 + 1}, nx5)...)
	run(t, cs)
}
