package fpu

import (
	"math"
	"testing"
)

// Benchmark operands: ordinary normal values, the common case.
var (
	benchA64 = []uint64{d(1.5), d(3.141592653589793), d(-2.718281828459045), d(1e10), d(-7e-3), d(123.456), d(0.1), d(6.02e23)}
	benchB64 = []uint64{d(2.25), d(-1.4142135623730951), d(0.5772156649), d(-3e-5), d(9.81), d(0.3), d(42), d(1.6e-19)}
	benchA32 = []uint32{s(1.5), s(3.1415927), s(-2.7182817), s(1e10), s(-7e-3), s(123.456), s(0.1), s(6.02e23)}
	benchB32 = []uint32{s(2.25), s(-1.4142135), s(0.5772157), s(-3e-5), s(9.81), s(0.3), s(42), s(1.6e-19)}
	sink64   uint64
	sinkFl   Flags
)

func bench64(b *testing.B, rm uint8, fn func(a, b uint64, rm uint8) (uint64, Flags)) {
	var acc uint64
	var fl Flags
	for i := 0; i < b.N; i++ {
		r, f := fn(benchA64[i&7], benchB64[i&7], rm)
		acc += r
		fl |= f
	}
	sink64, sinkFl = acc, fl
}

func bench32(b *testing.B, rm uint8, fn func(a, b uint32, rm uint8) (uint32, Flags)) {
	var acc uint64
	var fl Flags
	for i := 0; i < b.N; i++ {
		r, f := fn(benchA32[i&7], benchB32[i&7], rm)
		acc += uint64(r)
		fl |= f
	}
	sink64, sinkFl = acc, fl
}

func BenchmarkHostAdd64(b *testing.B) {
	var acc float64
	for i := 0; i < b.N; i++ {
		acc += math.Float64frombits(benchA64[i&7]) + math.Float64frombits(benchB64[i&7])
	}
	sink64 = math.Float64bits(acc)
}

func BenchmarkAdd64(b *testing.B)    { bench64(b, RNE, Add64) }
func BenchmarkAdd64RTZ(b *testing.B) { bench64(b, RTZ, Add64) }
func BenchmarkMul64(b *testing.B)    { bench64(b, RNE, Mul64) }
func BenchmarkMul64RUP(b *testing.B) { bench64(b, RUP, Mul64) }
func BenchmarkDiv64(b *testing.B)    { bench64(b, RNE, Div64) }
func BenchmarkSqrt64(b *testing.B) {
	bench64(b, RNE, func(a, _ uint64, rm uint8) (uint64, Flags) { return Sqrt64(a&^sign64, rm) })
}
func BenchmarkFMA64(b *testing.B) {
	bench64(b, RNE, func(a, c uint64, rm uint8) (uint64, Flags) { return FMA64(a, c, a, false, false, rm) })
}
func BenchmarkAdd64Slow(b *testing.B) {
	bench64(b, RNE, func(a, c uint64, rm uint8) (uint64, Flags) { return addG(fmt64, a, c, rm) })
}
func BenchmarkMin64(b *testing.B) {
	bench64(b, RNE, func(a, c uint64, _ uint8) (uint64, Flags) { return Min64(a, c) })
}
func BenchmarkF64ToI64(b *testing.B) {
	bench64(b, RTZ, func(a, _ uint64, rm uint8) (uint64, Flags) { return F64ToI64(a, rm) })
}
func BenchmarkI64ToF64(b *testing.B) {
	bench64(b, RNE, func(a, _ uint64, rm uint8) (uint64, Flags) { return I64ToF64(a>>8, rm) })
}

func BenchmarkAdd32(b *testing.B)    { bench32(b, RNE, Add32) }
func BenchmarkAdd32RDN(b *testing.B) { bench32(b, RDN, Add32) }
func BenchmarkMul32(b *testing.B)    { bench32(b, RNE, Mul32) }
func BenchmarkDiv32(b *testing.B)    { bench32(b, RNE, Div32) }
func BenchmarkSqrt32(b *testing.B) {
	bench32(b, RNE, func(a, _ uint32, rm uint8) (uint32, Flags) { return Sqrt32(a&^(1<<31), rm) })
}
func BenchmarkFMA32(b *testing.B) {
	bench32(b, RNE, func(a, c uint32, rm uint8) (uint32, Flags) { return FMA32(a, c, a, false, false, rm) })
}
func BenchmarkF64ToF32(b *testing.B) {
	bench64(b, RNE, func(a, _ uint64, rm uint8) (uint64, Flags) { r, f := F64ToF32(a, rm); return uint64(r), f })
}

// TestNoAllocs checks that the fast paths (and the integer slow paths) do
// not allocate.
func TestNoAllocs(t *testing.T) {
	fns := map[string]func(){
		"Add64":    func() { sink64, sinkFl = Add64(benchA64[1], benchB64[1], RNE) },
		"Add64RUP": func() { sink64, sinkFl = Add64(benchA64[1], benchB64[1], RUP) },
		"Mul64":    func() { sink64, sinkFl = Mul64(benchA64[1], benchB64[1], RNE) },
		"Div64":    func() { sink64, sinkFl = Div64(benchA64[1], benchB64[1], RNE) },
		"Sqrt64":   func() { sink64, sinkFl = Sqrt64(benchB64[4], RDN) },
		"FMA64":    func() { sink64, sinkFl = FMA64(benchA64[1], benchB64[1], benchA64[2], true, false, RNE) },
		"Add32":    func() { r, f := Add32(benchA32[1], benchB32[1], RNE); sink64, sinkFl = uint64(r), f },
		"FMA32": func() {
			r, f := FMA32(benchA32[1], benchB32[1], benchA32[2], false, true, RMM)
			sink64, sinkFl = uint64(r), f
		},
		"MulSub": func() { sink64, sinkFl = Mul64(minS64, d(0.75), RNE) },
		"Cvt":    func() { sink64, sinkFl = F64ToU32(benchA64[3], RNE) },
	}
	for name, fn := range fns {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s: %v allocations per call", name, n)
		}
	}
}
