package statesync

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"ftvm/internal/testsupport"
	"ftvm/machine"
	"ftvm/vm"
)

var scribble struct {
	once sync.Once
	elf  []byte
	err  error
	out  []byte
}

// scribbleELF builds testdata/scribble.S with Debian's cross toolchain
// and the machine's bare-metal link script.
func scribbleELF(t testing.TB) []byte {
	t.Helper()
	gcc := testsupport.Tool(t, "riscv64-linux-gnu-gcc", "gcc-riscv64-linux-gnu")
	scribble.once.Do(func() {
		dir, err := os.MkdirTemp("", "statesync")
		if err != nil {
			scribble.err = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "scribble.elf")
		scribble.out, scribble.err = exec.Command(gcc, "-march=rv64gc", "-mabi=lp64d", "-nostdlib", "-nostartfiles", "-static",
			"-T", "../machine/testdata/link.ld", "-o", out, "testdata/scribble.S").CombinedOutput()
		if scribble.err == nil {
			scribble.elf, scribble.err = os.ReadFile(out)
		}
	})
	if scribble.err != nil {
		t.Fatalf("assembling scribble.S: %v\n%s", scribble.err, scribble.out)
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
