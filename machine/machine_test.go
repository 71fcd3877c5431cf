package machine

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ftvm/internal/testsupport"
	"ftvm/vm"
)

// crossCompile builds a bare-metal RISC-V ELF from an assembly file in
// testdata with Debian's cross toolchain.
func crossCompile(t *testing.T, src string, defs ...string) []byte {
	t.Helper()
	var flags []string
	for _, d := range defs {
		flags = append(flags, "-D"+d)
	}
	elf, err := os.ReadFile(testsupport.BareMetal(t, filepath.Join("testdata", src), flags...))
	if err != nil {
		t.Fatal(err)
	}
	return elf
}

func TestHTIFProgram(t *testing.T) {
	for _, code := range []string{"0", "7"} {
		var console bytes.Buffer
		m, err := New(Config{
			MemoryMiB: 16,
			ELF:       crossCompile(t, "htif.S", "EXIT_CODE="+code),
			Outputs:   Outputs{Console: func(_ uint64, b []byte) { console.Write(b) }},
		})
		if err != nil {
			t.Fatal(err)
		}
		if r := m.Run(1e7); r != StopPowerOff {
			t.Fatalf("stopped with %v, want poweroff", r)
		}
		if got, want := console.String(), "hello from htif\n!"; got != want {
			t.Errorf("console = %q, want %q", got, want)
		}
		if got := m.ExitCode(); got != map[string]uint32{"0": 0, "7": 7}[code] {
			t.Errorf("exit code %d, want %s", got, code)
		}
	}
}

// kernelOfSize is a kernel header claiming image_size n.
func kernelOfSize(n uint64) []byte {
	k := fakeKernel()
	binary.LittleEndian.PutUint64(k[0x10:], n)
	return k
}

// initrd is n bytes that start like a newc cpio archive.
func initrd(n int) []byte {
	b := make([]byte, n)
	copy(b, "070701")
	return b
}

func TestBadImages(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no image", Config{}, "exactly one of"},
		{"not a kernel", Config{Kernel: bytes.Repeat([]byte{0x13}, 4096)}, "not a RISC-V Linux Image"},
		{"not an ELF", Config{ELF: []byte("hello")}, "ELF"},
		{"tiny memory", Config{MemoryMiB: 1, ELF: []byte("x")}, "memory size"},
		{"huge memory", Config{MemoryMiB: 1 << 20, ELF: []byte("x")}, "memory size"},
		// image_size is the image's word: a value that wraps the sum of
		// the load address and the size must not pass for a small one.
		{"image_size wraps", Config{Kernel: kernelOfSize(^uint64(0) - KernelBase + 2), Initrd: initrd(100 << 20)}, "image needs"},
		{"image over the device tree", Config{Kernel: kernelOfSize(256<<20 - 2<<20 - 32<<10)}, "image needs"},
		{"initrd over the kernel", Config{Kernel: kernelOfSize(200 << 20), Initrd: initrd(50 << 20)}, "does not fit"},
	}
	for _, c := range cases {
		_, err := New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// TestLockup: a bare-metal program whose trap vector faults must stop the
// machine, not hang the host.
func TestLockup(t *testing.T) {
	// An ELF whose only instruction is illegal and whose mtvec is 0 (reset
	// value, outside RAM): every trap faults again.
	m, err := New(Config{MemoryMiB: 16, ELF: crossCompile(t, "lockup.S")})
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Run(1e6); r != StopLockup {
		t.Fatalf("stopped with %v, want lockup", r)
	}
	if r := m.Run(2e6); r != StopLockup {
		t.Fatalf("second Run: %v, want lockup", r)
	}
}

// TestWaitForever: a hart waiting for an interrupt with every interrupt
// disabled can never run again; the machine says so (lockup) instead of
// idling, with idle skip on or off.
func TestWaitForever(t *testing.T) {
	elf := crossCompile(t, "wfi.S")
	for _, skip := range []bool{true, false} {
		m, err := New(Config{MemoryMiB: 16, ELF: elf})
		if err != nil {
			t.Fatal(err)
		}
		m.SetIdleSkip(skip)
		if r := m.Run(1e6); r != StopLockup {
			t.Fatalf("idle skip %v: stopped with %v after %d instructions, want lockup", skip, r, m.Instret())
		}
	}
}

// TestWaitForMaskedInterrupt: a bare-metal program makes the timer
// interrupt pending while it is masked (only external interrupts are
// enabled) and waits for an interrupt (WFI). Only an external interrupt can
// wake it: Run must say the guest idles, with no timer to come, instead of
// letting guest time run on forever for a timer that has already fired (it
// used to loop inside Run with idle skip on, and make the host's loop spin
// with it off).
func TestWaitForMaskedInterrupt(t *testing.T) {
	elf := crossCompile(t, "wfi_masked.S")
	for _, skip := range []bool{true, false} {
		m, err := New(Config{MemoryMiB: 16, ELF: elf})
		if err != nil {
			t.Fatal(err)
		}
		m.SetIdleSkip(skip)
		done := make(chan vm.StopReason, 1)
		go func() { done <- m.Run(1e6) }()
		select {
		case r := <-done:
			if r != StopIdle || m.Deadline() != ^uint64(0) {
				t.Errorf("idle skip %v: Run returned %v at %d, deadline %d; want idle with no deadline", skip, r, m.Instret(), m.Deadline())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("idle skip %v: Run has not returned after 30 s (at %d instructions)", skip, m.Instret())
		}
	}
}
