package testsupport

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// BareMetal assembles a bare-metal RISC-V program with Debian's cross
// toolchain and the machine's link script (machine/testdata/link.ld, with
// the HTIF words of machine/testdata/tohost.h for programs that include
// it) and returns the path of the ELF, in a temporary directory of tb.
// src is an assembly file (relative to the test's package directory, or
// absolute); flags go to gcc as they are ("-DROUNDS=4", "-g").
func BareMetal(tb testing.TB, src string, flags ...string) string {
	tb.Helper()
	gcc := Tool(tb, "riscv64-linux-gnu-gcc", "gcc-riscv64-linux-gnu")
	elf := filepath.Join(tb.TempDir(), strings.TrimSuffix(filepath.Base(src), filepath.Ext(src))+".elf")
	args := []string{"-march=rv64gc", "-mabi=lp64d", "-nostdlib", "-nostartfiles", "-static",
		"-I", machineTestdata(), "-T", filepath.Join(machineTestdata(), "link.ld"), "-o", elf}
	args = append(append(args, flags...), src)
	if b, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
		tb.Fatalf("assembling %s: %v\n%s", src, err, b)
	}
	return elf
}

// machineTestdata is the machine's testdata directory in this source tree.
func machineTestdata() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "machine", "testdata")
}
