package riscv

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ftvm/internal/testsupport"
)

// Differential testing against QEMU: a generator writes a long random
// program, which runs on QEMU's spike machine and on the hart; both report
// their final state through HTIF console output, which must be identical.

// htifRuntime is the common part of every generated program: setup, the
// state dump (registers, FP registers and fcsr, the scratch buffer) and the
// HTIF console and exit.
const htifRuntime = `
	.section .text.init
	.globl _start
_start:
	la t0, trap
	csrw mtvec, t0
	li t0, 1 << 13	/* mstatus.FS = Initial */
	csrs mstatus, t0
	j body

	.balign 4
trap:	/* no generated instruction may trap: report and exit */
	li a0, '!'
	call putc
	csrr a0, mcause
	call puthex
	csrr a0, mepc
	call puthex
	j exit

dump:	/* every register to regs[], then print regs[1..31], fregs, buf */
	csrw mscratch, x31
	la x31, regs
	sd x1, 8(x31); sd x2, 16(x31); sd x3, 24(x31); sd x4, 32(x31)
	sd x5, 40(x31); sd x6, 48(x31); sd x7, 56(x31); sd x8, 64(x31)
	sd x9, 72(x31); sd x10, 80(x31); sd x11, 88(x31); sd x12, 96(x31)
	sd x13, 104(x31); sd x14, 112(x31); sd x15, 120(x31); sd x16, 128(x31)
	sd x17, 136(x31); sd x18, 144(x31); sd x19, 152(x31); sd x20, 160(x31)
	sd x21, 168(x31); sd x22, 176(x31); sd x23, 184(x31); sd x24, 192(x31)
	sd x25, 200(x31); sd x26, 208(x31); sd x27, 216(x31); sd x28, 224(x31)
	sd x29, 232(x31); sd x30, 240(x31)
	csrr x30, mscratch
	sd x30, 248(x31)
	la x31, fregs
	fsd f0, 0(x31); fsd f1, 8(x31); fsd f2, 16(x31); fsd f3, 24(x31)
	fsd f4, 32(x31); fsd f5, 40(x31); fsd f6, 48(x31); fsd f7, 56(x31)
	fsd f8, 64(x31); fsd f9, 72(x31); fsd f10, 80(x31); fsd f11, 88(x31)
	fsd f12, 96(x31); fsd f13, 104(x31); fsd f14, 112(x31); fsd f15, 120(x31)
	fsd f16, 128(x31); fsd f17, 136(x31); fsd f18, 144(x31); fsd f19, 152(x31)
	fsd f20, 160(x31); fsd f21, 168(x31); fsd f22, 176(x31); fsd f23, 184(x31)
	fsd f24, 192(x31); fsd f25, 200(x31); fsd f26, 208(x31); fsd f27, 216(x31)
	fsd f28, 224(x31); fsd f29, 232(x31); fsd f30, 240(x31); fsd f31, 248(x31)
	csrr x30, fcsr
	sd x30, 256(x31)
	li a0, '<'
	call putc
	la s0, regs + 8
	li s1, 31 + 33 + 32	/* regs, fregs and fcsr, buf */
1:	ld a0, 0(s0)
	call puthex
	addi s0, s0, 8
	addi s1, s1, -1
	bnez s1, 1b
	li a0, '>'
	call putc
exit:
	li t0, 1
	la t1, tohost
	sd t0, 0(t1)
2:	j 2b

putc:	/* HTIF device 1 command 1, then wait for the acknowledgement */
	li t0, 0x0101000000000000
	or t0, t0, a0
	la t1, tohost
	sd t0, 0(t1)
	la t1, fromhost
3:	ld t2, 0(t1)
	beqz t2, 3b
	sd zero, 0(t1)
	ret

puthex:	/* a0 as 16 hex digits and a newline */
	mv s2, ra
	mv s3, a0
	li s4, 60
4:	srl a0, s3, s4
	andi a0, a0, 15
	li t0, 10
	blt a0, t0, 5f
	addi a0, a0, 'a' - '0' - 10
5:	addi a0, a0, '0'
	call putc
	addi s4, s4, -4
	bgez s4, 4b
	li a0, '\n'
	call putc
	mv ra, s2
	ret

	.section .tohost, "aw", @progbits
	.balign 64
	.globl tohost
tohost:	.dword 0
	.size tohost, 8
	.balign 64
	.globl fromhost
fromhost: .dword 0
	.size fromhost, 8

	.data
	.balign 4096
regs:	.skip 8 * 32
fregs:	.skip 8 * 33	/* must follow regs */
buf:	.skip 256	/* must follow fregs */
	.balign 8
consts:
`

// buildGenerated assembles a generated program body with the runtime.
func buildGenerated(t *testing.T, body string) (elf string, image []byte) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "gen.S")
	if err := os.WriteFile(src, []byte(htifRuntime+body), 0o644); err != nil {
		t.Fatal(err)
	}
	return buildSource(t, src)
}

// runHTIF runs image on the hart, servicing HTIF console writes and exit
// through tohost/fromhost, and returns the console output.
func runHTIF(t *testing.T, elf string, image []byte, maxInsns uint64) string {
	t.Helper()
	tohost := symbolAddr(t, elf, "tohost") - testRAMBase
	fromhost := symbolAddr(t, elf, "fromhost") - testRAMBase
	h, _ := newTestHart(image)
	ram := h.ram
	var out strings.Builder
	deadline := time.Now().Add(30 * time.Second)
	for h.Instret < maxInsns {
		if time.Now().After(deadline) {
			t.Fatalf("hart: no exit within 30s (pc %#x, instret %d)", h.PC, h.Instret)
		}
		h.Run(h.Instret + 256)
		v := binary.LittleEndian.Uint64(ram[tohost:])
		if v == 0 {
			continue
		}
		binary.LittleEndian.PutUint64(ram[tohost:], 0)
		h.NoteWrite(testRAMBase+tohost, 8)
		dev, cmd, payload := v>>56, v>>48&0xff, v&(1<<48-1)
		switch {
		case dev == 0 && cmd == 0 && payload&1 != 0:
			return out.String()
		case dev == 1 && cmd == 1:
			out.WriteByte(byte(payload))
			binary.LittleEndian.PutUint64(ram[fromhost:], 1<<56|1<<48|0x100|payload&0xff)
			h.NoteWrite(testRAMBase+fromhost, 8)
		default:
			t.Fatalf("hart: unexpected HTIF request %#x", v)
		}
	}
	t.Fatalf("hart: no exit after %d instructions; output so far %q", h.Instret, out.String())
	return ""
}

func qemuPath(t *testing.T) string {
	t.Helper()
	return testsupport.Tool(t, "qemu-system-riscv64", "qemu-system-misc")
}

// runQEMU runs elf on QEMU's spike machine and returns the console output.
func runQEMU(t *testing.T, elf string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemuPath(t), "-M", "spike", "-bios", "none", "-kernel", elf,
		"-nographic", "-monitor", "none")
	cmd.Stdin = nil
	out, err := cmd.Output()
	if ctx.Err() != nil {
		t.Fatalf("qemu timed out; output %q", out)
	}
	if err != nil {
		t.Fatalf("qemu: %v; output %q", err, out)
	}
	return string(out)
}

// compareDumps compares the state dumps of QEMU and the hart.
func compareDumps(t *testing.T, body, want, got string) {
	t.Helper()
	extract := func(s string) []string {
		i, j := strings.Index(s, "<"), strings.LastIndex(s, ">")
		if i < 0 || j < i {
			return nil
		}
		return strings.Fields(s[i+1 : j])
	}
	w, g := extract(want), extract(got)
	if len(w) != 96 {
		t.Fatalf("qemu output is not a dump: %q", want)
	}
	if len(g) != 96 {
		t.Fatalf("hart output is not a dump: %q", got)
	}
	bad := 0
	for i := range w {
		if w[i] != g[i] {
			var name string
			switch {
			case i < 31:
				name = fmt.Sprintf("x%d", i+1)
			case i < 63:
				name = fmt.Sprintf("f%d", i-31)
			case i == 63:
				name = "fcsr"
			default:
				name = fmt.Sprintf("buf[%d]", (i-64)*8)
			}
			t.Errorf("%s: qemu %s, hart %s", name, w[i], g[i])
			bad++
		}
	}
	if bad > 0 && testing.Verbose() {
		t.Logf("program:\n%s", body)
	}
}

// Registers the generators use freely. x2 (sp) and x9 (s1) point into the
// scratch buffer, x3 (gp) is the AMO address temporary.
var genRegs = []int{1, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31}
var genCRegs = []int{8, 10, 11, 12, 13, 14, 15} // rd' without x9

type gen struct {
	r     *rand.Rand
	b     strings.Builder
	label int
}

func (g *gen) emit(format string, args ...any) { fmt.Fprintf(&g.b, "\t"+format+"\n", args...) }
func (g *gen) reg() string                     { return fmt.Sprintf("x%d", genRegs[g.r.Intn(len(genRegs))]) }
func (g *gen) creg() string                    { return fmt.Sprintf("x%d", genCRegs[g.r.Intn(len(genCRegs))]) }
func (g *gen) srcCReg() string                 { return fmt.Sprintf("x%d", 8+g.r.Intn(8)) }

// value returns an interesting 64-bit value.
func (g *gen) value() uint64 {
	switch g.r.Intn(8) {
	case 0:
		return []uint64{0, 1, 2, ^uint64(0), 1 << 63, 1<<63 - 1, 1 << 31, 1<<31 - 1, 0xffffffff, 0xffffffff80000000, 32, 63, 64}[g.r.Intn(13)]
	case 1:
		return uint64(g.r.Intn(64))
	case 2:
		return uint64(int64(g.r.Int31()) - 1<<30)
	case 3:
		return uint64(int64(int32(g.r.Uint32())))
	}
	return g.r.Uint64()
}

func (g *gen) simm(bits uint) int64 { return g.r.Int63n(1<<bits) - 1<<(bits-1) }

// intInsn emits one random integer/M/A/C instruction (or a short group).
func (g *gen) intInsn(depth int) {
	rr := []string{"add", "sub", "sll", "slt", "sltu", "xor", "srl", "sra", "or", "and",
		"addw", "subw", "sllw", "srlw", "sraw", "mul", "mulh", "mulhsu", "mulhu", "div", "divu",
		"rem", "remu", "mulw", "divw", "divuw", "remw", "remuw"}
	switch k := g.r.Intn(20); k {
	case 0, 1, 2:
		g.emit("%s %s, %s, %s", rr[g.r.Intn(len(rr))], g.reg(), g.reg(), g.reg())
	case 3:
		ops := []string{"addi", "slti", "sltiu", "xori", "ori", "andi", "addiw"}
		g.emit("%s %s, %s, %d", ops[g.r.Intn(len(ops))], g.reg(), g.reg(), g.simm(12))
	case 4:
		ops := []string{"slli", "srli", "srai"}
		g.emit("%s %s, %s, %d", ops[g.r.Intn(3)], g.reg(), g.reg(), g.r.Intn(64))
		ops = []string{"slliw", "srliw", "sraiw"}
		g.emit("%s %s, %s, %d", ops[g.r.Intn(3)], g.reg(), g.reg(), g.r.Intn(32))
	case 5:
		if g.r.Intn(2) == 0 {
			g.emit("lui %s, %#x", g.reg(), g.r.Intn(1<<20))
		} else {
			g.emit("auipc %s, %#x", g.reg(), g.r.Intn(1<<20))
		}
	case 6, 7:
		w := []struct {
			op   string
			size int
		}{{"lb", 1}, {"lh", 2}, {"lw", 4}, {"ld", 8}, {"lbu", 1}, {"lhu", 2}, {"lwu", 4}}[g.r.Intn(7)]
		g.emit("%s %s, %d(x9)", w.op, g.reg(), g.r.Intn(256/w.size)*w.size)
	case 8:
		w := []struct {
			op   string
			size int
		}{{"sb", 1}, {"sh", 2}, {"sw", 4}, {"sd", 8}}[g.r.Intn(4)]
		g.emit("%s %s, %d(x9)", w.op, g.reg(), g.r.Intn(256/w.size)*w.size)
	case 9:
		ops := []string{"amoswap", "amoadd", "amoxor", "amoand", "amoor", "amomin", "amomax", "amominu", "amomaxu"}
		size := 4
		sfx := ".w"
		if g.r.Intn(2) == 0 {
			size, sfx = 8, ".d"
		}
		g.emit("addi x3, x9, %d", g.r.Intn(256/size)*size)
		g.emit("%s%s %s, %s, (x3)", ops[g.r.Intn(len(ops))], sfx, g.reg(), g.reg())
	case 10, 11, 12, 13:
		g.compressed()
	case 14, 15:
		if depth > 0 {
			g.emit("%s", []string{"nop", "c.nop"}[g.r.Intn(2)])
			return
		}
		// A forward branch over a few instructions.
		g.label++
		l := g.label
		switch g.r.Intn(4) {
		case 0:
			g.emit("c.%s %s, .Lg%d", []string{"beqz", "bnez"}[g.r.Intn(2)], g.srcCReg(), l)
		case 1:
			g.emit("c.j .Lg%d", l)
		case 2:
			g.emit("jal %s, .Lg%d", g.reg(), l)
		default:
			ops := []string{"beq", "bne", "blt", "bge", "bltu", "bgeu"}
			g.emit("%s %s, %s, .Lg%d", ops[g.r.Intn(len(ops))], g.reg(), g.reg(), l)
		}
		for n := g.r.Intn(4); n > 0; n-- {
			g.intInsn(depth + 1)
		}
		fmt.Fprintf(&g.b, ".Lg%d:\n", l)
	case 16:
		if depth > 0 {
			g.emit("nop")
			return
		}
		// An indirect jump, through c.jr, c.jalr or jalr with an offset.
		g.label++
		l := g.label
		r := g.reg()
		switch g.r.Intn(3) {
		case 0:
			g.emit("la %s, .Lg%d", r, l)
			g.emit("c.jr %s", r)
		case 1:
			g.emit("la %s, .Lg%d", r, l)
			g.emit("c.jalr %s", r)
		default:
			g.emit("la %s, .Lg%d - 2", r, l) // jalr adds 3, then clears bit 0
			g.emit("jalr %s, 3(%s)", g.reg(), r)
		}
		g.intInsn(depth + 1)
		fmt.Fprintf(&g.b, ".Lg%d:\n", l)
	default:
		g.emit("li %s, %#x", g.reg(), g.value())
	}
}

// compressed emits an explicit RVC instruction.
func (g *gen) compressed() {
	nz6 := func() int64 {
		for {
			if v := g.simm(6); v != 0 {
				return v
			}
		}
	}
	rs2 := g.reg()
	switch g.r.Intn(16) {
	case 0:
		g.emit("c.addi %s, %d", g.reg(), nz6())
	case 1:
		g.emit("c.addiw %s, %d", g.reg(), g.simm(6))
	case 2:
		g.emit("c.li %s, %d", g.reg(), g.simm(6))
	case 3:
		v := nz6()
		g.emit("c.lui %s, %#x", g.reg(), uint32(v)&0xfffff)
	case 4:
		g.emit("c.%s %s, %d", []string{"srli", "srai"}[g.r.Intn(2)], g.creg(), 1+g.r.Intn(63))
	case 5:
		g.emit("c.andi %s, %d", g.creg(), g.simm(6))
	case 6:
		ops := []string{"sub", "xor", "or", "and", "subw", "addw"}
		g.emit("c.%s %s, %s", ops[g.r.Intn(len(ops))], g.creg(), g.srcCReg())
	case 7:
		g.emit("c.slli %s, %d", g.reg(), 1+g.r.Intn(63))
	case 8:
		g.emit("c.mv %s, %s", g.reg(), rs2)
	case 9:
		g.emit("c.add %s, %s", g.reg(), rs2)
	case 10:
		if g.r.Intn(2) == 0 {
			g.emit("c.lw %s, %d(x9)", g.creg(), 4*g.r.Intn(32))
		} else {
			g.emit("c.ld %s, %d(x9)", g.creg(), 8*g.r.Intn(32))
		}
	case 11:
		if g.r.Intn(2) == 0 {
			g.emit("c.sw %s, %d(x9)", g.srcCReg(), 4*g.r.Intn(32))
		} else {
			g.emit("c.sd %s, %d(x9)", g.srcCReg(), 8*g.r.Intn(32))
		}
	case 12:
		if g.r.Intn(2) == 0 {
			g.emit("c.lwsp %s, %d(sp)", g.reg(), 4*g.r.Intn(64))
		} else {
			g.emit("c.ldsp %s, %d(sp)", g.reg(), 8*g.r.Intn(32))
		}
	case 13:
		if g.r.Intn(2) == 0 {
			g.emit("c.swsp %s, %d(sp)", rs2, 4*g.r.Intn(64))
		} else {
			g.emit("c.sdsp %s, %d(sp)", rs2, 8*g.r.Intn(32))
		}
	case 14:
		g.emit("c.addi4spn %s, sp, %d", g.creg(), 4*(1+g.r.Intn(255)))
	default:
		v := 16 * (1 + g.r.Int63n(31))
		if g.r.Intn(2) == 0 {
			v = -v
		}
		g.emit("c.addi16sp sp, %d", v)
		g.emit("c.addi16sp sp, %d", -v)
	}
}

// genIntProgram returns the body of a random integer program.
func genIntProgram(seed int64, n int) string {
	g := &gen{r: rand.New(rand.NewSource(seed))}
	g.b.WriteString("\t.text\nbody:\n")
	g.emit("la x9, buf")
	g.emit("la x2, buf")
	for i := 0; i < 32; i++ {
		g.emit("li x3, %#x", g.value())
		g.emit("sd x3, %d(x9)", 8*i)
	}
	for _, r := range genRegs {
		g.emit("li x%d, %#x", r, g.value())
	}
	for i := 0; i < n; i++ {
		g.intInsn(0)
	}
	g.emit("j dump")
	return g.b.String()
}

func TestDiffQEMUInteger(t *testing.T) {
	qemuPath(t)
	crossTool(t, "gcc")
	seeds := 6
	n := 3000
	if testing.Short() {
		seeds, n = 2, 1000
	}
	for seed := int64(1); seed <= int64(seeds); seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			body := genIntProgram(seed, n)
			elf, image := buildGenerated(t, body)
			want := runQEMU(t, elf)
			got := runHTIF(t, elf, image, 10_000_000)
			compareDumps(t, body, want, got)
		})
	}
}

var fpDoubles = []uint64{
	0, 1 << 63, 0x3ff0000000000000, 0xbff0000000000000, 0x3ff8000000000000, 0x4000000000000000,
	0x3fb999999999999a, 0x3fd5555555555555, 0x4340000000000000, 0x43e0000000000000, 0xc3e0000000000000,
	0x43f0000000000000, 0x41dfffffffc00000, 0x41e0000000000000, 0xc1e0000000000000, 0x41efffffffe00000,
	0x0000000000000001, 0x000fffffffffffff, 0x0010000000000000, 0x7fefffffffffffff, 0xffefffffffffffff,
	0x7ff0000000000000, 0xfff0000000000000, 0x7ff8000000000000, 0x7ff0000000000001, 0xfff8000000000123,
	0x3ff0000000000001, 0x3fefffffffffffff, 0x4330000000000001, 0x3fe0000000000000, 0xbfe0000000000000,
	0x3ff4000000000000, 0xc004000000000000, 0x36a0000000000000, 0x3810000000000000, 0x47efffffe0000000,
}

var fpSingles = []uint32{
	0, 0x80000000, 0x3f800000, 0xbf800000, 0x3fc00000, 0x40000000, 0x3dcccccd, 0x3eaaaaab,
	0x4b800000, 0x5f000000, 0xdf000000, 0x5f800000, 0x4effffff, 0x4f000000, 0xcf000000, 0x4f7fffff,
	0x00000001, 0x007fffff, 0x00800000, 0x7f7fffff, 0xff7fffff, 0x7f800000, 0xff800000, 0x7fc00000,
	0x7f800001, 0xffc00123, 0x3f800001, 0x3f7fffff, 0x3f000000, 0xbf000000, 0x3fa00000, 0xc0200000,
}

// fpValue returns an FP register value: a double, a NaN-boxed single, an
// improperly boxed single, or random bits.
func (g *gen) fpValue() uint64 {
	switch g.r.Intn(10) {
	case 0, 1, 2, 3:
		return fpDoubles[g.r.Intn(len(fpDoubles))]
	case 4, 5, 6, 7:
		return 0xffffffff00000000 | uint64(fpSingles[g.r.Intn(len(fpSingles))])
	case 8:
		return uint64(fpSingles[g.r.Intn(len(fpSingles))]) // not boxed
	}
	if g.r.Intn(2) == 0 {
		return 0xffffffff00000000 | uint64(g.r.Uint32())
	}
	return g.r.Uint64()
}

func (g *gen) freg() string { return fmt.Sprintf("f%d", g.r.Intn(32)) }
func (g *gen) xdst() string { return fmt.Sprintf("x%d", 10+g.r.Intn(21)) }
func (g *gen) rm() string {
	return []string{"rne", "rtz", "rdn", "rup", "rmm", "dyn"}[g.r.Intn(6)]
}

// fpInsn emits one random F/D instruction, then folds fflags into x31 and
// clears them, so the flags of every instruction count.
func (g *gen) fpInsn() {
	p := []string{".s", ".d"}[g.r.Intn(2)]
	switch g.r.Intn(14) {
	case 0, 1, 2:
		ops := []string{"fadd", "fsub", "fmul", "fdiv"}
		g.emit("%s%s %s, %s, %s, %s", ops[g.r.Intn(4)], p, g.freg(), g.freg(), g.freg(), g.rm())
	case 3:
		g.emit("fsqrt%s %s, %s, %s", p, g.freg(), g.freg(), g.rm())
	case 4, 5:
		ops := []string{"fmadd", "fmsub", "fnmsub", "fnmadd"}
		g.emit("%s%s %s, %s, %s, %s, %s", ops[g.r.Intn(4)], p, g.freg(), g.freg(), g.freg(), g.freg(), g.rm())
	case 6:
		ops := []string{"fmin", "fmax", "fsgnj", "fsgnjn", "fsgnjx"}
		g.emit("%s%s %s, %s, %s", ops[g.r.Intn(5)], p, g.freg(), g.freg(), g.freg())
	case 7:
		if g.r.Intn(2) == 0 {
			g.emit("fcvt.s.d %s, %s, %s", g.freg(), g.freg(), g.rm())
		} else {
			g.emit("fcvt.d.s %s, %s", g.freg(), g.freg())
		}
	case 8, 9:
		it := []string{"w", "wu", "l", "lu"}[g.r.Intn(4)]
		g.emit("fcvt.%s%s %s, %s, %s", it, p, g.xdst(), g.freg(), g.rm())
	case 10:
		it := []string{"w", "wu", "l", "lu"}[g.r.Intn(4)]
		x := g.xdst()
		g.emit("li %s, %#x", x, g.value())
		if p == ".d" && (it == "w" || it == "wu") { // exact: no rm operand
			g.emit("fcvt%s.%s %s, %s", p, it, g.freg(), x)
		} else {
			g.emit("fcvt%s.%s %s, %s, %s", p, it, g.freg(), x, g.rm())
		}
	case 11:
		ops := []string{"feq", "flt", "fle", "fclass"}
		op := ops[g.r.Intn(4)]
		if op == "fclass" {
			g.emit("fclass%s %s, %s", p, g.xdst(), g.freg())
		} else {
			g.emit("%s%s %s, %s, %s", op, p, g.xdst(), g.freg(), g.freg())
		}
	case 12:
		if p == ".s" {
			g.emit("fmv.x.w %s, %s", g.xdst(), g.freg())
		} else {
			g.emit("fmv.x.d %s, %s", g.xdst(), g.freg())
		}
	default:
		x := g.xdst()
		g.emit("li %s, %#x", x, g.fpValue())
		if g.r.Intn(2) == 0 {
			g.emit("fmv.w.x %s, %s", g.freg(), x)
		} else {
			g.emit("fmv.d.x %s, %s", g.freg(), x)
		}
	}
	g.emit("csrrw x5, fflags, zero")
	g.emit("slli x6, x31, 5")
	g.emit("add x31, x31, x6")
	g.emit("xor x31, x31, x5")
}

// genFPProgram returns the body of a random F/D program.
func genFPProgram(seed int64, n int) string {
	g := &gen{r: rand.New(rand.NewSource(seed))}
	g.b.WriteString("\t.text\nbody:\n")
	g.emit("la x9, buf")
	g.emit("la x2, buf")
	for i := 0; i < 32; i++ {
		g.emit("li x5, %#x", g.fpValue())
		g.emit("fmv.d.x f%d, x5", i)
	}
	for _, r := range genRegs {
		g.emit("li x%d, 0", r)
	}
	g.emit("csrwi frm, %d", g.r.Intn(5))
	for i := 0; i < n; i++ {
		g.fpInsn()
	}
	g.emit("j dump")
	return g.b.String()
}

func TestDiffQEMUFloat(t *testing.T) {
	qemuPath(t)
	crossTool(t, "gcc")
	seeds := 6
	n := 2000
	if testing.Short() {
		seeds, n = 2, 500
	}
	for seed := int64(1); seed <= int64(seeds); seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			body := genFPProgram(seed, n)
			elf, image := buildGenerated(t, body)
			want := runQEMU(t, elf)
			got := runHTIF(t, elf, image, 10_000_000)
			compareDumps(t, body, want, got)
		})
	}
}
