package statesync

import (
	"bytes"
	"os"
	"sync"
	"testing"

	"ftvm/internal/testsupport"
	"ftvm/machine"
	"ftvm/vm"
)

var scribble struct {
	sync.Mutex
	elf []byte
}

// scribbleELF builds testdata/scribble.S (once per test binary).
func scribbleELF(t testing.TB) []byte {
	t.Helper()
	scribble.Lock()
	defer scribble.Unlock()
	if scribble.elf == nil {
		elf, err := os.ReadFile(testsupport.BareMetal(t, "testdata/scribble.S"))
		if err != nil {
			t.Fatal(err)
		}
		scribble.elf = elf
	}
	return scribble.elf
}

// newScribbler boots the program on a 16 MiB machine with disk (nil:
// none; the program does not use it, the tests do).
func newScribbler(t testing.TB, disk vm.Disk) *machine.Machine {
	t.Helper()
	m, err := machine.New(machine.Config{MemoryMiB: 16, ELF: scribbleELF(t), Disk: disk})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// run runs m to instruction count n, which it must reach.
func run(t testing.TB, m *machine.Machine, n uint64) {
	t.Helper()
	if r := m.Run(n); r != machine.StopLimit || m.Instret() != n {
		t.Fatalf("run to %d: stopped with %v at %d", n, r, m.Instret())
	}
}

// differing returns the pages whose contents differ between a and b.
func differing(t testing.TB, a, b PageReader) []int {
	t.Helper()
	pa, pb := make([]byte, a.PageSize()), make([]byte, b.PageSize())
	var out []int
	for p := range a.Pages() {
		if err := a.ReadPage(p, pa); err != nil {
			t.Fatal(err)
		}
		if err := b.ReadPage(p, pb); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(pa, pb) {
			out = append(out, p)
		}
	}
	return out
}
