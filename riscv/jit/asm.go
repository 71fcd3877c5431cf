package jit

import (
	"encoding/binary"
	"fmt"
)

// A small x86-64 assembler: only the forms the translator emits, each
// encoded one way. Memory operands are base + index*scale + disp32; the
// translator never uses RSP or R12 as a base or RSP as an index, and the
// encoder checks that. Its output is compared with objdump's disassembly
// in asm_test.go.

type reg uint8

const (
	rAX reg = iota
	rCX
	rDX
	rBX
	rSP
	rBP
	rSI
	rDI
	r8
	r9
	r10
	r11
	r12
	r13
	r14
	r15
	noReg reg = 0xff
)

// Condition codes (the low nibble of Jcc/SETcc/CMOVcc).
type cond uint8

const (
	ccO  cond = 0x0
	ccNO cond = 0x1
	ccB  cond = 0x2 // unsigned <
	ccAE cond = 0x3 // unsigned >=
	ccE  cond = 0x4
	ccNE cond = 0x5
	ccBE cond = 0x6
	ccA  cond = 0x7
	ccS  cond = 0x8
	ccNS cond = 0x9
	ccP  cond = 0xa // parity: an unordered (NaN) comparison
	ccNP cond = 0xb
	ccL  cond = 0xc // signed <
	ccGE cond = 0xd
	ccLE cond = 0xe
	ccG  cond = 0xf
)

// Arithmetic group numbers (the /n of opcodes 0x81 and 0x83, and the row of
// the two-operand forms).
type aluOp uint8

const (
	aluADD aluOp = 0
	aluOR  aluOp = 1
	aluAND aluOp = 4
	aluSUB aluOp = 5
	aluXOR aluOp = 6
	aluCMP aluOp = 7
)

// Shift group numbers (the /n of 0xC1 and 0xD3).
type shiftOp uint8

const (
	shROR shiftOp = 1
	shSHL shiftOp = 4
	shSHR shiftOp = 5
	shSAR shiftOp = 7
)

// Unary group numbers (the /n of 0xF7).
type unOp uint8

const (
	unNOT  unOp = 2
	unNEG  unOp = 3
	unMUL  unOp = 4 // RDX:RAX = RAX * r/m, unsigned
	unIMUL unOp = 5 // signed
	unDIV  unOp = 6 // RAX, RDX = RDX:RAX / r/m, unsigned
	unIDIV unOp = 7
)

// mem is a memory operand: base + index<<scale + disp.
type mem struct {
	base  reg
	index reg // noReg: none
	scale uint8
	disp  int32
}

func at(base reg, disp int32) mem { return mem{base: base, index: noReg, disp: disp} }

func atIdx(base, index reg, scale uint8, disp int32) mem {
	return mem{base: base, index: index, scale: scale, disp: disp}
}

// label is a position in the code being assembled, bound once.
type label int

type fixup struct {
	at  int // offset of the rel32 field
	lbl label
}

type asm struct {
	b      []byte
	labels []int // bound offsets, -1 while unbound
	fixups []fixup
}

func (a *asm) reset() {
	a.b = a.b[:0]
	a.labels = a.labels[:0]
	a.fixups = a.fixups[:0]
}

func (a *asm) newLabel() label {
	a.labels = append(a.labels, -1)
	return label(len(a.labels) - 1)
}

func (a *asm) bind(l label) { a.labels[l] = len(a.b) }

// resolve patches every jump to a label. All labels used must be bound.
func (a *asm) resolve() {
	for _, f := range a.fixups {
		t := a.labels[f.lbl]
		if t < 0 {
			panic("jit: jump to an unbound label")
		}
		binary.LittleEndian.PutUint32(a.b[f.at:], uint32(int32(t-(f.at+4))))
	}
}

func (a *asm) emit(b ...byte) { a.b = append(a.b, b...) }

func (a *asm) imm32(v int32) { a.b = binary.LittleEndian.AppendUint32(a.b, uint32(v)) }

// rex emits a REX prefix when one is needed: w for 64-bit operands, r, x and
// b the registers whose high bit goes in REX.R, REX.X and REX.B; byteReg
// forces one for SPL..DIL as byte operands.
func (a *asm) rex(w bool, r, x, b reg, byteReg bool) {
	v := byte(0x40)
	if w {
		v |= 8
	}
	if r != noReg && r&8 != 0 {
		v |= 4
	}
	if x != noReg && x&8 != 0 {
		v |= 2
	}
	if b != noReg && b&8 != 0 {
		v |= 1
	}
	if v != 0x40 || byteReg {
		a.emit(v)
	}
}

// opRR emits opcode with ModRM mod=11: reg field r (a register or a /n
// extension), rm register rm.
func (a *asm) opRR(pfx byte, w bool, opc []byte, r, rm reg, byteReg bool) {
	if pfx != 0 {
		a.emit(pfx)
	}
	a.rex(w, r, noReg, rm, byteReg && (r >= 4 && r < 8 || rm >= 4 && rm < 8))
	a.emit(opc...)
	a.emit(0xc0 | byte(r&7)<<3 | byte(rm&7))
}

// opRM emits opcode with a memory operand m and reg field r.
func (a *asm) opRM(pfx byte, w bool, opc []byte, r reg, m mem, byteReg bool) {
	if m.base == rSP || m.base == r12 || m.index == rSP {
		panic("jit: unsupported memory operand")
	}
	if pfx != 0 {
		a.emit(pfx)
	}
	a.rex(w, r, m.index, m.base, byteReg && r >= 4 && r < 8)
	a.emit(opc...)
	mod := byte(0x80)
	small := m.disp >= -128 && m.disp <= 127
	if small {
		mod = 0x40
	}
	if m.index == noReg {
		a.emit(mod | byte(r&7)<<3 | byte(m.base&7))
	} else {
		a.emit(mod|byte(r&7)<<3|4, m.scale<<6|byte(m.index&7)<<3|byte(m.base&7))
	}
	if small {
		a.emit(byte(m.disp))
	} else {
		a.imm32(m.disp)
	}
}

func fitsInt8(v int64) bool  { return v >= -128 && v <= 127 }
func fitsInt32(v int64) bool { return v >= -1<<31 && v < 1<<31 }

// movRR: dst = src.
func (a *asm) movRR(w bool, dst, src reg) { a.opRR(0, w, []byte{0x89}, src, dst, false) }

// load: dst = [m] (64 or 32 bits; 32 zero-extends).
func (a *asm) load(w bool, dst reg, m mem) { a.opRM(0, w, []byte{0x8b}, dst, m, false) }

// store: [m] = src, size 1, 2, 4 or 8 bytes.
func (a *asm) store(size int, m mem, src reg) {
	switch size {
	case 1:
		a.opRM(0, false, []byte{0x88}, src, m, true)
	case 2:
		a.opRM(0x66, false, []byte{0x89}, src, m, false)
	case 4:
		a.opRM(0, false, []byte{0x89}, src, m, false)
	default:
		a.opRM(0, true, []byte{0x89}, src, m, false)
	}
}

// storeZero: [m] = 0, size 1, 2, 4 or 8 bytes.
func (a *asm) storeZero(size int, m mem) {
	switch size {
	case 1:
		a.opRM(0, false, []byte{0xc6}, 0, m, false)
		a.emit(0)
	case 2:
		a.opRM(0x66, false, []byte{0xc7}, 0, m, false)
		a.emit(0, 0)
	default:
		a.opRM(0, size == 8, []byte{0xc7}, 0, m, false)
		a.imm32(0)
	}
}

// loadExt: dst = [m] of size bytes, sign- or zero-extended to 64 bits.
func (a *asm) loadExt(size int, signed bool, dst reg, m mem) {
	switch {
	case size == 1 && signed:
		a.opRM(0, true, []byte{0x0f, 0xbe}, dst, m, false)
	case size == 1:
		a.opRM(0, false, []byte{0x0f, 0xb6}, dst, m, false)
	case size == 2 && signed:
		a.opRM(0, true, []byte{0x0f, 0xbf}, dst, m, false)
	case size == 2:
		a.opRM(0, false, []byte{0x0f, 0xb7}, dst, m, false)
	case size == 4 && signed:
		a.opRM(0, true, []byte{0x63}, dst, m, false)
	case size == 4:
		a.opRM(0, false, []byte{0x8b}, dst, m, false)
	default:
		a.opRM(0, true, []byte{0x8b}, dst, m, false)
	}
}

// movsxd: dst = sign-extended low 32 bits of src.
func (a *asm) movsxd(dst, src reg) { a.opRR(0, true, []byte{0x63}, dst, src, false) }

// movzxb: dst = zero-extended low byte of src.
func (a *asm) movzxb(dst, src reg) { a.opRR(0, false, []byte{0x0f, 0xb6}, dst, src, true) }

// storeImm: [m] = imm sign-extended to 64 bits (w) or 32 bits.
func (a *asm) storeImm(w bool, m mem, imm int32) {
	a.opRM(0, w, []byte{0xc7}, 0, m, false)
	a.imm32(imm)
}

// movImm: dst = v, in the shortest of three encodings.
func (a *asm) movImm(dst reg, v uint64) {
	switch {
	case v == 0:
		a.aluRR(false, aluXOR, dst, dst)
	case v < 1<<32:
		a.rex(false, noReg, noReg, dst, false)
		a.emit(0xb8 | byte(dst&7))
		a.imm32(int32(uint32(v)))
	case fitsInt32(int64(v)):
		a.opRR(0, true, []byte{0xc7}, 0, dst, false)
		a.imm32(int32(v))
	default:
		a.rex(true, noReg, noReg, dst, false)
		a.emit(0xb8 | byte(dst&7))
		a.b = binary.LittleEndian.AppendUint64(a.b, v)
	}
}

// aluRR: dst op= src.
func (a *asm) aluRR(w bool, op aluOp, dst, src reg) {
	a.opRR(0, w, []byte{byte(op)<<3 | 1}, src, dst, false)
}

// aluRM: dst op= [m].
func (a *asm) aluRM(w bool, op aluOp, dst reg, m mem) {
	a.opRM(0, w, []byte{byte(op)<<3 | 3}, dst, m, false)
}

// aluMR: [m] op= src.
func (a *asm) aluMR(w bool, op aluOp, m mem, src reg) {
	a.opRM(0, w, []byte{byte(op)<<3 | 1}, src, m, false)
}

// aluRI: dst op= imm (sign-extended).
func (a *asm) aluRI(w bool, op aluOp, dst reg, imm int32) {
	if fitsInt8(int64(imm)) {
		a.opRR(0, w, []byte{0x83}, reg(op), dst, false)
		a.emit(byte(imm))
		return
	}
	a.opRR(0, w, []byte{0x81}, reg(op), dst, false)
	a.imm32(imm)
}

// aluMI: [m] op= imm (sign-extended).
func (a *asm) aluMI(w bool, op aluOp, m mem, imm int32) {
	if fitsInt8(int64(imm)) {
		a.opRM(0, w, []byte{0x83}, reg(op), m, false)
		a.emit(byte(imm))
		return
	}
	a.opRM(0, w, []byte{0x81}, reg(op), m, false)
	a.imm32(imm)
}

// testRR sets flags from a & b.
func (a *asm) testRR(w bool, x, y reg) { a.opRR(0, w, []byte{0x85}, y, x, false) }

// storeImm8: the byte at m = imm.
func (a *asm) storeImm8(m mem, imm uint8) {
	a.opRM(0, false, []byte{0xc6}, 0, m, false)
	a.emit(imm)
}

// cmpMI8 compares the byte at m with imm.
func (a *asm) cmpMI8(m mem, imm uint8) {
	a.opRM(0, false, []byte{0x80}, 7, m, false)
	a.emit(imm)
}

// cmpMI16 compares the 16 bits at m with imm.
func (a *asm) cmpMI16(m mem, imm uint16) {
	a.opRM(0x66, false, []byte{0x81}, 7, m, false)
	a.emit(byte(imm), byte(imm>>8))
}

// testRI sets flags from r & imm.
func (a *asm) testRI(w bool, r reg, imm int32) {
	a.opRR(0, w, []byte{0xf7}, 0, r, false)
	a.imm32(imm)
}

// testMI sets flags from [m] & imm.
func (a *asm) testMI(w bool, m mem, imm int32) {
	a.opRM(0, w, []byte{0xf7}, 0, m, false)
	a.imm32(imm)
}

// shiftRI: dst shifted by imm (masked by the CPU like RISC-V does).
func (a *asm) shiftRI(w bool, op shiftOp, dst reg, imm uint8) {
	a.opRR(0, w, []byte{0xc1}, reg(op), dst, false)
	a.emit(imm)
}

// shiftRCL: dst shifted by CL.
func (a *asm) shiftRCL(w bool, op shiftOp, dst reg) {
	a.opRR(0, w, []byte{0xd3}, reg(op), dst, false)
}

// imulRRI: dst = src * imm (imm sign-extended for 64 bits).
func (a *asm) imulRRI(w bool, dst, src reg, imm int32) {
	a.opRR(0, w, []byte{0x69}, dst, src, false)
	a.imm32(imm)
}

// imulRR: dst *= src (low half).
func (a *asm) imulRR(w bool, dst, src reg) { a.opRR(0, w, []byte{0x0f, 0xaf}, dst, src, false) }

// imulRM: dst *= [m] (low half).
func (a *asm) imulRM(w bool, dst reg, m mem) { a.opRM(0, w, []byte{0x0f, 0xaf}, dst, m, false) }

// unaryR applies a 0xF7 group operation to r.
func (a *asm) unaryR(w bool, op unOp, r reg) { a.opRR(0, w, []byte{0xf7}, reg(op), r, false) }

// unaryM applies a 0xF7 group operation to [m].
func (a *asm) unaryM(w bool, op unOp, m mem) { a.opRM(0, w, []byte{0xf7}, reg(op), m, false) }

// cqo sign-extends RAX into RDX (cdq: EAX into EDX).
func (a *asm) cqo() { a.emit(0x48, 0x99) }
func (a *asm) cdq() { a.emit(0x99) }

// setcc: low byte of r = cc ? 1 : 0.
func (a *asm) setcc(cc cond, r reg) { a.opRR(0, false, []byte{0x0f, 0x90 | byte(cc)}, 0, r, true) }

// cmov: if cc, dst = src.
func (a *asm) cmov(w bool, cc cond, dst, src reg) {
	a.opRR(0, w, []byte{0x0f, 0x40 | byte(cc)}, dst, src, false)
}

// lea: dst = address of m.
func (a *asm) lea(w bool, dst reg, m mem) { a.opRM(0, w, []byte{0x8d}, dst, m, false) }

// jcc jumps to l if cc.
func (a *asm) jcc(cc cond, l label) {
	a.emit(0x0f, 0x80|byte(cc))
	a.fixups = append(a.fixups, fixup{len(a.b), l})
	a.imm32(0)
}

// jmp jumps to l.
func (a *asm) jmp(l label) {
	a.emit(0xe9)
	a.fixups = append(a.fixups, fixup{len(a.b), l})
	a.imm32(0)
}

// jmpM jumps to the address stored at m.
func (a *asm) jmpM(m mem) { a.opRM(0, false, []byte{0xff}, 4, m, false) }

// jmpR jumps to the address in r.
func (a *asm) jmpR(r reg) { a.opRR(0, false, []byte{0xff}, 4, r, false) }

func (a *asm) ret() { a.emit(0xc3) }

// xchgMR swaps [m] and r (locked, as XCHG with memory always is).
func (a *asm) xchgMR(w bool, m mem, r reg) { a.opRM(0, w, []byte{0x87}, r, m, false) }

// lockXadd: tmp = [m]; [m] += r; r = tmp, atomically.
func (a *asm) lockXadd(w bool, m mem, r reg) {
	a.emit(0xf0)
	a.opRM(0, w, []byte{0x0f, 0xc1}, r, m, false)
}

// lockCmpxchg: if [m] == RAX { [m] = r } else { RAX = [m] }, atomically;
// ZF says which.
func (a *asm) lockCmpxchg(w bool, m mem, r reg) {
	a.emit(0xf0)
	a.opRM(0, w, []byte{0x0f, 0xb1}, r, m, false)
}

// SSE, scalar: the XMM registers are numbered like the general ones.
type xreg = reg

const (
	x0 xreg = 0
	x1 xreg = 1
)

// SSE prefixes: which precision an opcode means.
const (
	pfxSD = 0xf2 // scalar double
	pfxSS = 0xf3 // scalar single
	pfx66 = 0x66
)

// sseRR: dst op= src (prefix and 0F opcode).
func (a *asm) sseRR(pfx byte, w bool, op byte, dst, src reg) {
	a.opRR(pfx, w, []byte{0x0f, op}, dst, src, false)
}

// sseRM: dst op= [m].
func (a *asm) sseRM(pfx byte, w bool, op byte, dst reg, m mem) {
	a.opRM(pfx, w, []byte{0x0f, op}, dst, m, false)
}

// movqXM: xmm = the 64 bits at m.
func (a *asm) movqXM(dst xreg, m mem) { a.sseRM(0xf3, false, 0x7e, dst, m) }

// movqMX: the 64 bits at m = xmm.
func (a *asm) movqMX(m mem, src xreg) { a.sseRM(pfx66, false, 0xd6, src, m) }

// movqXR: xmm = r (64 bits; movd with w false: 32 bits, zero-extended).
func (a *asm) movqXR(w bool, dst xreg, src reg) { a.sseRR(pfx66, w, 0x6e, dst, src) }

// movqRX: r = xmm (64 bits; 32 with w false).
func (a *asm) movqRX(w bool, dst reg, src xreg) { a.sseRR(pfx66, w, 0x7e, src, dst) }

// ldmxcsr and stmxcsr load and store the SSE control and status word.
func (a *asm) ldmxcsr(m mem) { a.opRM(0, false, []byte{0x0f, 0xae}, 2, m, false) }
func (a *asm) stmxcsr(m mem) { a.opRM(0, false, []byte{0x0f, 0xae}, 3, m, false) }

// movzxbM: dst = the byte at m, zero-extended.
func (a *asm) movzxbM(dst reg, m mem) { a.opRM(0, false, []byte{0x0f, 0xb6}, dst, m, false) }

func (r reg) String() string {
	if r == noReg {
		return "none"
	}
	return [...]string{"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
		"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"}[r]
}

func (m mem) String() string {
	if m.index == noReg {
		return fmt.Sprintf("[%v%+#x]", m.base, m.disp)
	}
	return fmt.Sprintf("[%v+%v*%d%+#x]", m.base, m.index, 1<<m.scale, m.disp)
}
