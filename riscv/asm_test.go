package riscv

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"ftvm/internal/testsupport"
)

// The tests assemble their programs with the GNU cross toolchain at test
// time (Debian package gcc-riscv64-linux-gnu). Nothing built is checked in.
const crossPrefix = "riscv64-linux-gnu-"

func crossTool(t testing.TB, name string) string {
	t.Helper()
	return testsupport.Tool(t, crossPrefix+name, "gcc-riscv64-linux-gnu")
}

func runTool(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(crossTool(t, name), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// assembleObj assembles src (GNU as syntax, no preprocessing) into an
// object file and returns its path.
func assembleObj(t testing.TB, src string) string {
	t.Helper()
	dir := t.TempDir()
	s := filepath.Join(dir, "t.s")
	o := filepath.Join(dir, "t.o")
	if err := os.WriteFile(s, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	runTool(t, "as", "-march=rv64gc", "-mabi=lp64d", "-o", o, s)
	return o
}

// disasm is one instruction as objdump shows it.
type disasm struct {
	addr uint64
	raw  uint32
	size int
	text string
}

// objdumpText disassembles the .text of an object or ELF file.
func objdumpText(t testing.TB, obj string) []disasm {
	t.Helper()
	out := runTool(t, "objdump", "-d", "-M", "no-aliases", "-j", ".text", obj)
	var r []disasm
	for _, line := range strings.Split(string(out), "\n") {
		// "   4:\t00b50533          \tadd\ta0,a0,a1"
		f := strings.SplitN(line, "\t", 3)
		if len(f) < 3 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		addr, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(f[0], ":")), 16, 64)
		if err != nil {
			continue
		}
		hex := strings.TrimSpace(f[1])
		raw, err := strconv.ParseUint(hex, 16, 32)
		if err != nil {
			continue
		}
		r = append(r, disasm{addr: addr, raw: uint32(raw), size: len(hex) / 2, text: strings.TrimSpace(strings.ReplaceAll(f[2], "\t", " "))})
	}
	return r
}

// buildProgram preprocesses and assembles the .S file name from testdata
// (with the shared macros of testdata/test.h), links it at ramBase and
// returns the ELF path and the flat image.
func buildProgram(t testing.TB, name string) (elf string, image []byte) {
	t.Helper()
	src, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return buildSource(t, src)
}

func buildSource(t testing.TB, src string) (elf string, image []byte) {
	t.Helper()
	dir := t.TempDir()
	elf = filepath.Join(dir, "prog.elf")
	bin := filepath.Join(dir, "prog.bin")
	ld, err := filepath.Abs(filepath.Join("testdata", "link.ld"))
	if err != nil {
		t.Fatal(err)
	}
	inc, _ := filepath.Abs("testdata")
	runTool(t, "gcc", "-march=rv64gc", "-mabi=lp64d", "-nostdlib", "-nostartfiles",
		"-static", "-fno-pie", "-no-pie", "-mcmodel=medany", "-I", inc, "-T", ld, "-Wl,--no-relax", "-o", elf, src)
	runTool(t, "objcopy", "-O", "binary", elf, bin)
	image, err = os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return elf, image
}

// symbolAddr returns the address of symbol name in elf, using nm.
func symbolAddr(t testing.TB, elf, name string) uint64 {
	t.Helper()
	out := runTool(t, "nm", elf)
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[2] == name {
			v, err := strconv.ParseUint(f[0], 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("symbol %s not in %s", name, elf)
	return 0
}

func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
