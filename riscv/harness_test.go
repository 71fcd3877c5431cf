package riscv

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const (
	testRAMBase = 0x80000000
	testRAMSize = 8 << 20
	ctrlBase    = 0x10000000
)

// testSys is the System of the test programs: the control device described
// in testdata/test.h.
type testSys struct {
	h       *Hart
	passed  bool
	failed  bool
	failVal uint64
	time    uint64
	marks   []uint64
	// onMark, if set, is called for each marker store.
	onMark func(v uint64)
}

func (s *testSys) Load(pa uint64, size int) (uint64, bool) {
	if pa == ctrlBase+0x10 && size == 8 {
		return s.time, true
	}
	return 0, false
}

func (s *testSys) Store(pa uint64, size int, v uint64) bool {
	switch pa {
	case ctrlBase:
		s.passed = true
		s.h.Halt()
	case ctrlBase + 8:
		if !s.failed {
			s.failed, s.failVal = true, v
		}
		s.h.Halt()
	case ctrlBase + 0x18:
		s.h.SetInterrupt(uint(v&63), v>>8&1 != 0)
	case ctrlBase + 0x20:
		s.marks = append(s.marks, v)
		if s.onMark != nil {
			s.onMark(v)
		}
	default:
		return false
	}
	return true
}

func (s *testSys) Time() uint64 { return s.time }

// newTestHart returns a hart with image loaded at the start of RAM.
func newTestHart(image []byte) (*Hart, *testSys) {
	ram := make([]byte, testRAMSize)
	copy(ram, image)
	s := &testSys{}
	h := New(s, ram, testRAMBase, testRAMBase)
	s.h = h
	return h, s
}

// runProgram builds testdata/name, runs it to its PASS or FAIL store and
// fails the test unless it passed.
func runProgram(t *testing.T, name string) (*Hart, *testSys) {
	t.Helper()
	_, image := buildProgram(t, name)
	h, s := newTestHart(image)
	r := runBounded(t, h, 50_000_000)
	checkPassed(t, name, h, s, r)
	return h, s
}

// runBounded runs h to limit, failing the test if Run does not return
// within a wall-clock bound (a trap loop that never retires does not).
func runBounded(t *testing.T, h *Hart, limit uint64) Exit {
	t.Helper()
	done := make(chan Exit, 1)
	go func() { done <- h.Run(limit) }()
	select {
	case r := <-done:
		return r
	case <-time.After(20 * time.Second):
		t.Fatalf("Run(%d) did not return within 20s (pc %#x, instret %d)", limit, h.PC, h.Instret)
	}
	return 0
}

func checkPassed(t *testing.T, name string, h *Hart, s *testSys, r Exit) {
	t.Helper()
	switch {
	case s.failed && s.failVal>>16 == 0xdead:
		t.Errorf("%s: unexpected M-mode trap, mcause %d, mepc %#x, mtval %#x\n%s", name, s.failVal&0xffff, h.csr.mepc, h.csr.mtval, dumpHart(h))
	case s.failed && s.failVal>>16 == 0xbeef:
		t.Errorf("%s: unexpected S-mode trap, scause %d, sepc %#x, stval %#x\n%s", name, s.failVal&0xffff, h.csr.sepc, h.csr.stval, dumpHart(h))
	case s.failed:
		t.Errorf("%s: check failed at line %d\n%s", name, s.failVal, dumpHart(h))
	case !s.passed:
		t.Errorf("%s: stopped (%v) without passing\n%s", name, r, dumpHart(h))
	}
}

func dumpHart(h *Hart) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pc %#x priv %d instret %d mcause %#x mepc %#x mtval %#x\n", h.PC, h.Priv, h.Instret, h.csr.mcause, h.csr.mepc, h.csr.mtval)
	for i := 0; i < 32; i += 4 {
		fmt.Fprintf(&b, "x%-2d %016x %016x %016x %016x\n", i, h.X[i], h.X[i+1], h.X[i+2], h.X[i+3])
	}
	return b.String()
}

func timeAfter(seconds int) <-chan time.Time { return time.After(time.Duration(seconds) * time.Second) }
