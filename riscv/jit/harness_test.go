//go:build linux && amd64

package jit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"ftvm/internal/testsupport"
	"ftvm/riscv"
)

// The differential harness: the same image on two harts, one interpreted
// and one translated, run in the same slices; after every slice the stop
// reasons, the whole architectural state, RAM, the dirty bitmap and what
// the control device saw must be identical.

const (
	ramBase  = 0x80000000
	ctrlBase = 0x10000000
)

// ctrlSys is the control device of riscv/testdata/test.h.
type ctrlSys struct {
	h       *riscv.Hart
	passed  bool
	failed  bool
	failVal uint64
	time    uint64
	log     []uint64 // every device access, in order
}

func (s *ctrlSys) Load(pa uint64, size int) (uint64, bool) {
	s.log = append(s.log, 1, pa, uint64(size))
	if pa == ctrlBase+0x10 && size == 8 {
		return s.time, true
	}
	return 0, false
}

func (s *ctrlSys) Store(pa uint64, size int, v uint64) bool {
	s.log = append(s.log, 2, pa, uint64(size), v, s.h.Instret)
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
	default:
		return false
	}
	return true
}

func (s *ctrlSys) Time() uint64 { return s.time }

type side struct {
	h   *riscv.Hart
	s   *ctrlSys
	ram []byte
	j   *JIT
}

// pair is an interpreted and a translated hart on the same image.
type pair struct {
	t      testing.TB
	interp side
	jit    side
}

func newSide(t testing.TB, image []byte, ramSize int, translate bool) side {
	ram := make([]byte, ramSize)
	copy(ram, image)
	s := &ctrlSys{}
	h := riscv.New(s, ram, ramBase, ramBase)
	s.h = h
	sd := side{h: h, s: s, ram: ram}
	if translate {
		j, err := New(h)
		if err != nil {
			t.Fatal(err)
		}
		sd.j = j
	}
	return sd
}

func newPair(t testing.TB, image []byte, ramSize int) *pair {
	return &pair{t: t, interp: newSide(t, image, ramSize, false), jit: newSide(t, image, ramSize, true)}
}

// step runs both to limit and compares; it returns the common stop reason.
func (p *pair) step(limit uint64) riscv.Exit {
	p.t.Helper()
	ri := p.interp.h.Run(limit)
	rj := p.jit.h.Run(limit)
	if ri != rj {
		p.t.Fatalf("Run(%d): interpreter stopped (%v) at %d, translator (%v) at %d", limit, ri, p.interp.h.Instret, rj, p.jit.h.Instret)
	}
	p.compare(fmt.Sprintf("Run(%d)", limit))
	return ri
}

func (p *pair) compare(when string) {
	p.t.Helper()
	si, sj := p.interp.h.State(), p.jit.h.State()
	if si != sj {
		p.t.Fatalf("%s: states differ\n%s", when, stateDiff(si, sj))
	}
	if !bytes.Equal(p.interp.ram, p.jit.ram) {
		for i := range p.interp.ram {
			if p.interp.ram[i] != p.jit.ram[i] {
				p.t.Fatalf("%s: RAM differs first at offset %#x (interpreter %#x, translator %#x); instret %d", when, i, p.interp.ram[i], p.jit.ram[i], si.Instret)
			}
		}
	}
	di, dj := p.interp.h.Dirty(), p.jit.h.Dirty()
	for i := range di {
		if di[i] != dj[i] {
			p.t.Fatalf("%s: dirty bitmaps differ at word %d: %#x, %#x", when, i, di[i], dj[i])
		}
	}
	a, b := p.interp.s, p.jit.s
	if a.passed != b.passed || a.failed != b.failed || a.failVal != b.failVal || !slices.Equal(a.log, b.log) {
		p.t.Fatalf("%s: device accesses differ:\ninterpreter %v %v %v %v\ntranslator  %v %v %v %v", when,
			a.passed, a.failed, a.failVal, a.log, b.passed, b.failed, b.failVal, b.log)
	}
}

func stateDiff(a, b riscv.State) string {
	var s string
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := 0; i < va.NumField(); i++ {
		fa, fb := va.Field(i), vb.Field(i)
		if fa.Kind() == reflect.Array {
			for k := 0; k < fa.Len(); k++ {
				if fa.Index(k).Interface() != fb.Index(k).Interface() {
					s += fmt.Sprintf("%s[%d]: %#x / %#x\n", va.Type().Field(i).Name, k, fa.Index(k).Interface(), fb.Index(k).Interface())
				}
			}
		} else if fa.Interface() != fb.Interface() {
			s += fmt.Sprintf("%s: %#v / %#v\n", va.Type().Field(i).Name, fa.Interface(), fb.Interface())
		}
	}
	return s + "(interpreter / translator)"
}

// The tests assemble programs with the GNU RISC-V cross toolchain (Debian:
// gcc-riscv64-linux-gnu), like package riscv's.
func crossTool(t testing.TB, name string) string {
	t.Helper()
	return testsupport.Tool(t, "riscv64-linux-gnu-"+name, "gcc-riscv64-linux-gnu")
}

// build assembles and links a .S source with riscv/testdata's macros and
// linker script, and returns the flat image loaded at ramBase.
func build(t testing.TB, src string) []byte {
	t.Helper()
	dir := t.TempDir()
	elf := filepath.Join(dir, "prog.elf")
	bin := filepath.Join(dir, "prog.bin")
	td, err := filepath.Abs(filepath.Join("..", "testdata"))
	if err != nil {
		t.Fatal(err)
	}
	run := func(tool string, args ...string) {
		cmd := exec.Command(crossTool(t, tool), args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", tool, err, out)
		}
	}
	run("gcc", "-march=rv64gc", "-mabi=lp64d", "-nostdlib", "-nostartfiles", "-static", "-fno-pie",
		"-no-pie", "-mcmodel=medany", "-I", td, "-T", filepath.Join(td, "link.ld"), "-Wl,--no-relax", "-o", elf, src)
	run("objcopy", "-O", "binary", elf, bin)
	image, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return image
}
