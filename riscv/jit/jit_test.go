//go:build linux && amd64

package jit

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"ftvm/riscv"
)

func TestCtxLayout(t *testing.T) {
	var c ctx
	if unsafe.Offsetof(c.budget) != ctxBudget || unsafe.Offsetof(c.reason) != ctxReason || unsafe.Offsetof(c.site) != ctxSite ||
		unsafe.Offsetof(c.jt) != ctxJT || unsafe.Sizeof(c.jt[0]) != 32 ||
		unsafe.Offsetof(c.mxcsr) != ctxMXCSR || unsafe.Offsetof(c.scratch) != ctxScratch || unsafe.Offsetof(c.flags) != ctxFlags {
		t.Fatal("ctx offsets differ from the constants generated code uses")
	}
}

// TestPrograms runs the hart's test programs (riscv/testdata) on both
// engines, in slices of varied length, comparing everything after each.
func TestPrograms(t *testing.T) {
	srcs, err := filepath.Glob(filepath.Join("..", "testdata", "*.S"))
	if err != nil || len(srcs) == 0 {
		t.Fatalf("no test programs: %v", err)
	}
	for _, src := range srcs {
		name := filepath.Base(src)
		t.Run(name, func(t *testing.T) {
			image := build(t, src)
			for _, slicing := range []string{"large", "random"} {
				p := newPair(t, image, 8<<20)
				// mem.S and csr.S read the timer and check these values.
				p.interp.s.time = map[string]uint64{"mem.S": 0x1234, "csr.S": 0x55aa}[name]
				p.jit.s.time = p.interp.s.time
				r := rand.New(rand.NewSource(1))
				irqs := 0
				for p.interp.h.Instret < 5_000_000 {
					n := uint64(1_000_000)
					if slicing == "random" {
						n = uint64(1 + r.Intn(300))
					}
					stop := p.step(p.interp.h.Instret + n)
					if stop == riscv.StopHalt || stop == riscv.StopLockup {
						break
					}
					if stop == riscv.StopIdle {
						// irq.S waits for the harness to raise the timer.
						if irqs++; irqs > 10 {
							t.Fatal("idle again and again")
						}
						p.interp.h.SetInterrupt(riscv.IntMTI, true)
						p.jit.h.SetInterrupt(riscv.IntMTI, true)
					}
				}
				s := p.jit.s
				if !s.passed || s.failed {
					t.Errorf("%s slices: passed %v failed %v (value %#x) at pc %#x after %d instructions", slicing, s.passed, s.failed, s.failVal, p.jit.h.PC, p.jit.h.Instret)
				}
				st := p.jit.j.Stats
				t.Logf("%s slices: %d instructions; %d blocks of %d instructions, %d entries, %d links, %d pages invalidated, %d flushes",
					slicing, p.jit.h.Instret, st.Blocks, st.GuestInsns, st.Entries, st.Links, st.Invalidated, st.Flushes)
			}
		})
	}
}

// BenchmarkTranslate measures translation alone: blocks of random code
// (half of them long runs of arithmetic), translated over and over.
func BenchmarkTranslate(b *testing.B) {
	r := rand.New(rand.NewSource(1))
	ram := make([]byte, genRAM)
	genProgram(r, ram)
	p := newPair(b, ram, genRAM)
	j := p.jit.j
	var insns uint64
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		off := uint64(genCode + 2*r.Intn(genCodePages*2048-64))
		blk := j.translate(ramBase+off, off)
		insns += blk.n
		if n%1024 == 0 {
			j.dropAll()
		}
	}
	b.ReportMetric(float64(insns)/float64(b.N), "insns/block")
}

// TestJumpsStayInBuffer disassembles all the code random programs made
// the translator emit (objdump) and checks that every direct jump lands
// in the code buffer, that there are no calls, and that indirect jumps are
// only through the jump table (R13): generated code leaves only by
// returning to the trampoline.
func TestJumpsStayInBuffer(t *testing.T) {
	objdump, err := exec.LookPath("objdump")
	if err != nil {
		if os.Getenv("FTVM_REQUIRE_ALL") != "" {
			t.Fatal("objdump not found (Debian: binutils)")
		}
		t.Skip("objdump not found (Debian: binutils)")
	}
	var checked int
	for seed := int64(1); seed <= 4; seed++ {
		r := rand.New(rand.NewSource(seed))
		ram := make([]byte, genRAM)
		x := genProgram(r, ram)
		p := runGenerated(t, ram, x, r, 20_000, seed%2 == 0, []uint8{riscv.PrivM, riscv.PrivS, riscv.PrivU}[seed%3])
		buf := p.jit.j.buf
		lo, hi := buf.base(), buf.base()+uintptr(buf.pos)
		f := filepath.Join(t.TempDir(), "code.bin")
		if err := os.WriteFile(f, buf.rx[:buf.pos], 0o644); err != nil {
			t.Fatal(err)
		}
		// One disassembly per block, so that the padding between blocks
		// cannot throw the decoding out of step.
		args := []string{"-D", "-b", "binary", "-m", "i386:x86-64", "-M", "intel", fmt.Sprintf("--adjust-vma=%#x", lo)}
		var all strings.Builder
		for _, b := range p.jit.j.blocks {
			if b.n == 0 {
				continue
			}
			out, err := exec.Command(objdump, append(args, fmt.Sprintf("--start-address=%#x", b.entry),
				fmt.Sprintf("--stop-address=%#x", b.entry+uintptr(b.size)), f)...).Output()
			if err != nil {
				t.Fatal(err)
			}
			all.Write(out)
		}
		for _, line := range strings.Split(all.String(), "\n") {
			p := strings.SplitN(line, "\t", 3)
			if len(p) < 3 {
				continue
			}
			ins := strings.Fields(p[2])
			if len(ins) == 0 {
				continue
			}
			switch op := ins[0]; {
			case strings.HasPrefix(op, "call"):
				t.Fatalf("a call in generated code: %s", line)
			case op == "jmp" || strings.HasPrefix(op, "j"):
				if len(ins) < 2 {
					continue
				}
				arg := ins[1]
				if strings.HasPrefix(arg, "0x") {
					target, err := strconv.ParseUint(arg[2:], 16, 64)
					if err != nil || uintptr(target) < lo || uintptr(target) >= hi {
						t.Fatalf("a jump out of the code buffer [%#x, %#x): %s", lo, hi, line)
					}
					checked++
				} else if !strings.Contains(p[2], "[r13+rcx*1+") {
					t.Fatalf("an indirect jump not through the jump table: %s", line)
				}
			}
		}
	}
	t.Logf("%d direct jumps checked", checked)
}
