package jit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"ftvm/internal/testsupport"
)

// TestAsm disassembles every instruction form the assembler emits with
// GNU objdump and compares the text with what was meant.
func TestAsm(t *testing.T) {
	objdump := testsupport.Tool(t, "objdump", "binutils")
	cases := []struct {
		emit func(a *asm)
		want string
	}{
		{func(a *asm) { a.movRR(true, rAX, r15) }, "mov rax,r15"},
		{func(a *asm) { a.movRR(false, r9, rDX) }, "mov r9d,edx"},
		{func(a *asm) { a.load(true, rAX, at(r15, -128)) }, "mov rax,QWORD PTR [r15-0x80]"},
		{func(a *asm) { a.load(true, r11, at(r13, 0)) }, "mov r11,QWORD PTR [r13+0x0]"},
		{func(a *asm) { a.load(false, rCX, at(rBX, 0x1234)) }, "mov ecx,DWORD PTR [rbx+0x1234]"},
		{func(a *asm) { a.load(true, rDX, atIdx(rBX, rAX, 0, 0)) }, "mov rdx,QWORD PTR [rbx+rax*1+0x0]"},
		{func(a *asm) { a.load(true, rDX, atIdx(r15, rCX, 0, 0x1000)) }, "mov rdx,QWORD PTR [r15+rcx*1+0x1000]"},
		{func(a *asm) { a.load(true, rSI, atIdx(rBP, r9, 3, 8)) }, "mov rsi,QWORD PTR [rbp+r9*8+0x8]"},
		{func(a *asm) { a.store(1, atIdx(rBX, rAX, 0, 0), rSI) }, "mov BYTE PTR [rbx+rax*1+0x0],sil"},
		{func(a *asm) { a.store(1, at(rBX, 0), rDX) }, "mov BYTE PTR [rbx+0x0],dl"},
		{func(a *asm) { a.store(2, atIdx(rBX, rAX, 0, 0), rDX) }, "mov WORD PTR [rbx+rax*1+0x0],dx"},
		{func(a *asm) { a.store(4, atIdx(rBX, rAX, 0, 0), r10) }, "mov DWORD PTR [rbx+rax*1+0x0],r10d"},
		{func(a *asm) { a.store(8, at(r15, 8), rAX) }, "mov QWORD PTR [r15+0x8],rax"},
		{func(a *asm) { a.loadExt(1, true, rDX, atIdx(rBX, rAX, 0, 0)) }, "movsx rdx,BYTE PTR [rbx+rax*1+0x0]"},
		{func(a *asm) { a.loadExt(1, false, rDX, atIdx(rBX, rAX, 0, 0)) }, "movzx edx,BYTE PTR [rbx+rax*1+0x0]"},
		{func(a *asm) { a.loadExt(2, true, rDX, atIdx(rBX, rAX, 0, 0)) }, "movsx rdx,WORD PTR [rbx+rax*1+0x0]"},
		{func(a *asm) { a.loadExt(2, false, r8, atIdx(rBX, rAX, 0, 0)) }, "movzx r8d,WORD PTR [rbx+rax*1+0x0]"},
		{func(a *asm) { a.loadExt(4, true, rDX, atIdx(rBX, rAX, 0, 0)) }, "movsxd rdx,DWORD PTR [rbx+rax*1+0x0]"},
		{func(a *asm) { a.loadExt(4, false, rDX, atIdx(rBX, rAX, 0, 0)) }, "mov edx,DWORD PTR [rbx+rax*1+0x0]"},
		{func(a *asm) { a.loadExt(8, false, rDX, atIdx(rBX, rAX, 0, 0)) }, "mov rdx,QWORD PTR [rbx+rax*1+0x0]"},
		{func(a *asm) { a.movsxd(rAX, rAX) }, "movsxd rax,eax"},
		{func(a *asm) { a.storeZero(1, atIdx(rBX, rAX, 0, 0)) }, "mov BYTE PTR [rbx+rax*1+0x0],0x0"},
		{func(a *asm) { a.storeZero(2, atIdx(rBX, rAX, 0, 0)) }, "mov WORD PTR [rbx+rax*1+0x0],0x0"},
		{func(a *asm) { a.storeZero(4, atIdx(rBX, rAX, 0, 0)) }, "mov DWORD PTR [rbx+rax*1+0x0],0x0"},
		{func(a *asm) { a.storeZero(8, atIdx(rBX, rAX, 0, 0)) }, "mov QWORD PTR [rbx+rax*1+0x0],0x0"},
		{func(a *asm) { a.movsxd(r9, rCX) }, "movsxd r9,ecx"},
		{func(a *asm) { a.movzxb(rAX, rSI) }, "movzx eax,sil"},
		{func(a *asm) { a.storeImm(true, at(r15, -120), -5) }, "mov QWORD PTR [r15-0x78],0xfffffffffffffffb"},
		{func(a *asm) { a.storeImm(false, at(r13, 8), 7) }, "mov DWORD PTR [r13+0x8],0x7"},
		{func(a *asm) { a.movImm(rAX, 0) }, "xor eax,eax"},
		{func(a *asm) { a.movImm(r9, 0x80000000) }, "mov r9d,0x80000000"},
		{func(a *asm) { a.movImm(rCX, 0xffffffff80000000) }, "mov rcx,0xffffffff80000000"},
		{func(a *asm) { a.movImm(r10, 0x123456789) }, "movabs r10,0x123456789"},
		{func(a *asm) { a.aluRR(true, aluADD, rAX, rCX) }, "add rax,rcx"},
		{func(a *asm) { a.aluRR(false, aluSUB, r8, rCX) }, "sub r8d,ecx"},
		{func(a *asm) { a.aluRM(true, aluXOR, rAX, at(r15, 16)) }, "xor rax,QWORD PTR [r15+0x10]"},
		{func(a *asm) { a.aluRM(true, aluCMP, rAX, atIdx(r15, rCX, 0, 0x2000)) }, "cmp rax,QWORD PTR [r15+rcx*1+0x2000]"},
		{func(a *asm) { a.aluMR(true, aluOR, at(r15, -16), rDX) }, "or QWORD PTR [r15-0x10],rdx"},
		{func(a *asm) { a.aluRI(true, aluAND, rAX, -2) }, "and rax,0xfffffffffffffffe"},
		{func(a *asm) { a.aluRI(true, aluADD, r12, 1000) }, "add r12,0x3e8"},
		{func(a *asm) { a.aluRI(false, aluCMP, rDX, 4095) }, "cmp edx,0xfff"},
		{func(a *asm) { a.aluMI(true, aluADD, at(r15, -8), 3) }, "add QWORD PTR [r15-0x8],0x3"},
		{func(a *asm) { a.aluMI(true, aluSUB, at(r15, 0x100), 0x1000) }, "sub QWORD PTR [r15+0x100],0x1000"},
		{func(a *asm) { a.testRR(true, rCX, rCX) }, "test rcx,rcx"},
		{func(a *asm) { a.testMI(true, at(r15, 0x40), 0x6000) }, "test QWORD PTR [r15+0x40],0x6000"},
		{func(a *asm) { a.testRI(false, rCX, 0x10) }, "test ecx,0x10"},
		{func(a *asm) { a.cmpMI16(atIdx(rBX, rAX, 0, 0), 0x1234) }, "cmp WORD PTR [rbx+rax*1+0x0],0x1234"},
		{func(a *asm) { a.cmpMI8(at(r15, 0x200), 0) }, "cmp BYTE PTR [r15+0x200],0x0"},
		{func(a *asm) { a.storeImm8(at(r15, 0x200), 1) }, "mov BYTE PTR [r15+0x200],0x1"},
		{func(a *asm) { a.shiftRI(true, shSHL, rAX, 12) }, "shl rax,0xc"},
		{func(a *asm) { a.shiftRI(false, shSAR, r11, 3) }, "sar r11d,0x3"},
		{func(a *asm) { a.shiftRCL(true, shSHR, rAX) }, "shr rax,cl"},
		{func(a *asm) { a.imulRR(true, rAX, r9) }, "imul rax,r9"},
		{func(a *asm) { a.imulRRI(false, rCX, rDX, -0x61c8864f) }, "imul ecx,edx,0x9e3779b1"},
		{func(a *asm) { a.imulRRI(true, rCX, r9, 100) }, "imul rcx,r9,0x64"},
		{func(a *asm) { a.shiftRI(true, shROR, rAX, 7) }, "ror rax,0x7"},
		{func(a *asm) { a.shiftRI(false, shROR, rAX, 25) }, "ror eax,0x19"},
		{func(a *asm) { a.imulRM(false, rAX, at(r15, 8)) }, "imul eax,DWORD PTR [r15+0x8]"},
		{func(a *asm) { a.unaryR(true, unIDIV, rCX) }, "idiv rcx"},
		{func(a *asm) { a.unaryR(false, unDIV, rCX) }, "div ecx"},
		{func(a *asm) { a.unaryR(true, unNEG, rAX) }, "neg rax"},
		{func(a *asm) { a.unaryM(true, unMUL, at(r15, 8)) }, "mul QWORD PTR [r15+0x8]"},
		{func(a *asm) { a.unaryM(true, unIMUL, at(r15, 8)) }, "imul QWORD PTR [r15+0x8]"},
		{func(a *asm) { a.cqo() }, "cqo"},
		{func(a *asm) { a.cdq() }, "cdq"},
		{func(a *asm) { a.setcc(ccL, rCX) }, "setl cl"},
		{func(a *asm) { a.setcc(ccB, rSI) }, "setb sil"},
		{func(a *asm) { a.cmov(true, ccE, rAX, rDX) }, "cmove rax,rdx"},
		{func(a *asm) { a.lea(true, rAX, at(rSI, 7)) }, "lea rax,[rsi+0x7]"},
		{func(a *asm) { a.jmpR(rAX) }, "jmp rax"},
		{func(a *asm) { a.movqXM(x1, at(r15, 0x100)) }, "movq xmm1,QWORD PTR [r15+0x100]"},
		{func(a *asm) { a.movqMX(at(r15, 0x108), x0) }, "movq QWORD PTR [r15+0x108],xmm0"},
		{func(a *asm) { a.movqXR(true, x0, rAX) }, "movq xmm0,rax"},
		{func(a *asm) { a.movqXR(false, x1, r9) }, "movd xmm1,r9d"},
		{func(a *asm) { a.movqRX(true, rCX, x0) }, "movq rcx,xmm0"},
		{func(a *asm) { a.movqRX(false, rAX, x1) }, "movd eax,xmm1"},
		{func(a *asm) { a.sseRM(pfxSD, false, 0x58, x0, at(r15, 0x110)) }, "addsd xmm0,QWORD PTR [r15+0x110]"},
		{func(a *asm) { a.sseRR(pfxSS, false, 0x5e, x0, x1) }, "divss xmm0,xmm1"},
		{func(a *asm) { a.sseRR(pfxSD, false, 0x51, x0, x0) }, "sqrtsd xmm0,xmm0"},
		{func(a *asm) { a.sseRR(pfx66, false, 0x2e, x0, x0) }, "ucomisd xmm0,xmm0"},
		{func(a *asm) { a.sseRR(0, false, 0x2f, x0, x1) }, "comiss xmm0,xmm1"},
		{func(a *asm) { a.sseRR(pfxSD, true, 0x2a, x0, rAX) }, "cvtsi2sd xmm0,rax"},
		{func(a *asm) { a.sseRR(pfxSS, false, 0x2a, x0, rAX) }, "cvtsi2ss xmm0,eax"},
		{func(a *asm) { a.sseRR(pfxSD, true, 0x2c, rAX, x0) }, "cvttsd2si rax,xmm0"},
		{func(a *asm) { a.sseRR(pfxSS, false, 0x2d, rAX, x0) }, "cvtss2si eax,xmm0"},
		{func(a *asm) { a.sseRR(pfxSD, false, 0x5a, x0, x0) }, "cvtsd2ss xmm0,xmm0"},
		{func(a *asm) { a.sseRR(pfxSS, false, 0x5a, x0, x1) }, "cvtss2sd xmm0,xmm1"},
		{func(a *asm) { a.ldmxcsr(atIdx(r13, rAX, 2, 0x40)) }, "ldmxcsr DWORD PTR [r13+rax*4+0x40]"},
		{func(a *asm) { a.stmxcsr(at(r13, 0x48)) }, "stmxcsr DWORD PTR [r13+0x48]"},
		{func(a *asm) { a.movzxbM(rAX, atIdx(r13, rAX, 0, 0x50)) }, "movzx eax,BYTE PTR [r13+rax*1+0x50]"},
		{func(a *asm) { a.jmpM(atIdx(r13, rAX, 0, 0x40)) }, "jmp QWORD PTR [r13+rax*1+0x40]"},
		{func(a *asm) { a.ret() }, "ret"},
		{func(a *asm) { a.xchgMR(true, atIdx(rBX, rDX, 0, 0), rCX) }, "xchg QWORD PTR [rbx+rdx*1+0x0],rcx"},
		{func(a *asm) { a.xchgMR(false, atIdx(rBX, rDX, 0, 0), r9) }, "xchg DWORD PTR [rbx+rdx*1+0x0],r9d"},
		{func(a *asm) { a.lockXadd(true, atIdx(rBX, rDX, 0, 0), rCX) }, "lock xadd QWORD PTR [rbx+rdx*1+0x0],rcx"},
		{func(a *asm) { a.lockCmpxchg(false, atIdx(rBX, rDX, 0, 0), rCX) }, "lock cmpxchg DWORD PTR [rbx+rdx*1+0x0],ecx"},
	}
	var a asm
	var want []string
	for _, c := range cases {
		c.emit(&a)
		want = append(want, c.want)
	}
	// Jumps: a forward jcc and a backward jmp around a nop-sized body.
	l := a.newLabel()
	top := a.newLabel()
	a.bind(top)
	a.jcc(ccNE, l)
	a.jmp(top)
	a.bind(l)
	a.resolve()
	got := objdumpLines(t, objdump, a.b)
	want = append(want, "jne", "jmp")
	if len(got) != len(want) {
		t.Fatalf("objdump shows %d instructions, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		g := got[i]
		if i >= len(cases) {
			g = strings.Fields(g)[0] // the target address is position dependent
		}
		if g != want[i] {
			t.Errorf("instruction %d: objdump %q, want %q", i, got[i], want[i])
		}
	}
	// The jcc goes 11 bytes forward (past itself and the jmp), the jmp 11 back.
	n := len(a.b)
	if a.b[n-4] != 0xf5 || a.b[n-5] != 0xe9 || a.b[n-9] != 5 {
		t.Errorf("jump offsets: % x", a.b[n-11:])
	}
}

// objdumpLines disassembles raw x86-64 code and returns one normalised
// line (mnemonic and operands) per instruction.
func objdumpLines(t *testing.T, objdump string, code []byte) []string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "code.bin")
	if err := os.WriteFile(f, code, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(objdump, "-D", "-b", "binary", "-m", "i386:x86-64", "-M", "intel", f).Output()
	if err != nil {
		t.Fatalf("objdump: %v", err)
	}
	var r []string
	for _, line := range strings.Split(string(out), "\n") {
		p := strings.SplitN(line, "\t", 3)
		if len(p) < 3 || !strings.HasSuffix(strings.TrimSpace(p[0]), ":") {
			continue
		}
		r = append(r, strings.Join(strings.Fields(p[2]), " "))
	}
	return r
}
