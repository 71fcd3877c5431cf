package devices

import "testing"

// line records the level of an IRQ line and how often it was driven.
type line struct {
	high  bool
	calls int
}

func (l *line) SetLevel(h bool) { l.high = h; l.calls++ }

func expectLevel(t *testing.T, what string, l *line, want bool) {
	t.Helper()
	if l.high != want {
		t.Fatalf("%s = %v, want %v", what, l.high, want)
	}
}

// fuzzMMIO throws every size at a spread of offsets; nothing may panic.
func fuzzMMIO(t *testing.T, d MMIO, span uint64) {
	t.Helper()
	vals := []uint64{0, 1, 0xFF, 0x5555, 0x3333, 0x7777, 0xFFFFFFFF, ^uint64(0)}
	for _, size := range []int{-1, 0, 1, 2, 3, 4, 5, 8, 16} {
		for off := uint64(0); off < span; off += 1 + off/3 {
			for _, v := range vals {
				d.Write(off, size, v)
				d.Read(off, size)
			}
		}
		for _, off := range []uint64{span - 1, span, span + 8, 1 << 40, ^uint64(0), ^uint64(0) - 3} {
			d.Write(off, size, 0xFFFFFFFF)
			d.Read(off, size)
		}
	}
}
