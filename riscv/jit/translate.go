//go:build linux && amd64

package jit

import (
	"encoding/binary"

	"ftvm/riscv"
)

// Host registers while generated code runs (enter_amd64.s sets the first
// four). RAX, RCX, RDX, RSI and RDI are scratch within one instruction.
const (
	regHart   = r15
	regCtx    = r13
	regBudget = r12
	regRAM    = rBX
)

// tr is the state of one block's translation.
type tr struct {
	j     *JIT
	a     asm
	pc0   uint64 // guest address of the block
	off0  uint64 // its RAM offset
	insns []riscv.Inst
	pcs   []uint64
	n     int // instructions in the block
	// base is the executable address the block is assembled for.
	base  uintptr
	stubs []stub
}

// stub is an out-of-line exit, emitted after the block's body.
type stub struct {
	l      label
	pc     uint64 // guest PC to leave at
	k      int    // instructions of the block retired before it
	reason uint64
	site   int // exitChain: offset of the jump's rel32 in the block, or -1
}

// translate translates the block at guest address pc, RAM offset off (on
// the current instruction page), and records it.
func (j *JIT) translate(pc, off uint64) *block {
	t := &j.t
	t.j = j
	t.decode(pc, off)
	b := &block{pc: pc, off: off, n: uint64(t.n)}
	if t.n > 0 {
		code := t.assemble()
		if !j.buf.room(len(code)) {
			// Full: start again with an empty buffer. Nothing else points
			// into it once the block tables are empty.
			j.CodeFlushed()
			code = t.assemble()
		}
		b.entry = j.buf.add(code)
		j.Stats.Blocks++
		j.Stats.GuestInsns += b.n
		j.Stats.CodeBytes += uint64(len(code))
	}
	j.blocks[blockKey{pc, off}] = b
	p := off >> 12
	j.pages[p] = append(j.pages[p], b)
	return b
}

// decode collects the block's instructions: up to maxBlock, within the
// page, stopping after a jump or branch and before anything not translated.
func (t *tr) decode(pc, off uint64) {
	t.pc0, t.off0 = pc, off
	t.insns, t.pcs = t.insns[:0], t.pcs[:0]
	ram := t.j.view.RAM
	for len(t.insns) < maxBlock && off>>12 == t.off0>>12 {
		raw := uint32(binary.LittleEndian.Uint16(ram[off:]))
		if raw&3 == 3 {
			if off&4095 == 4094 {
				break // straddles a page: the interpreter's
			}
			raw |= uint32(binary.LittleEndian.Uint16(ram[off+2:])) << 16
		}
		in := riscv.Decode(raw)
		if !translated(in) || t.j.h.Interprets(in) {
			break
		}
		t.insns = append(t.insns, in)
		t.pcs = append(t.pcs, pc)
		pc += uint64(in.Size)
		off += uint64(in.Size)
		if endsBlock(in.Op) {
			break
		}
	}
	t.n = len(t.insns)
}

// translated reports whether the translator handles in; everything else
// is interpreted.
func translated(in riscv.Inst) bool {
	switch in.Op {
	case riscv.OpLUI, riscv.OpAUIPC, riscv.OpJAL, riscv.OpJALR,
		riscv.OpBEQ, riscv.OpBNE, riscv.OpBLT, riscv.OpBGE, riscv.OpBLTU, riscv.OpBGEU,
		riscv.OpLB, riscv.OpLH, riscv.OpLW, riscv.OpLD, riscv.OpLBU, riscv.OpLHU, riscv.OpLWU,
		riscv.OpSB, riscv.OpSH, riscv.OpSW, riscv.OpSD,
		riscv.OpADDI, riscv.OpSLTI, riscv.OpSLTIU, riscv.OpXORI, riscv.OpORI, riscv.OpANDI,
		riscv.OpSLLI, riscv.OpSRLI, riscv.OpSRAI,
		riscv.OpADD, riscv.OpSUB, riscv.OpSLL, riscv.OpSLT, riscv.OpSLTU, riscv.OpXOR,
		riscv.OpSRL, riscv.OpSRA, riscv.OpOR, riscv.OpAND,
		riscv.OpADDIW, riscv.OpSLLIW, riscv.OpSRLIW, riscv.OpSRAIW,
		riscv.OpADDW, riscv.OpSUBW, riscv.OpSLLW, riscv.OpSRLW, riscv.OpSRAW,
		riscv.OpMUL, riscv.OpMULH, riscv.OpMULHSU, riscv.OpMULHU,
		riscv.OpDIV, riscv.OpDIVU, riscv.OpREM, riscv.OpREMU,
		riscv.OpMULW, riscv.OpDIVW, riscv.OpDIVUW, riscv.OpREMW, riscv.OpREMUW,
		riscv.OpFENCE:
		return true
	}
	return false
}

func endsBlock(o riscv.Op) bool {
	switch o {
	case riscv.OpJAL, riscv.OpJALR, riscv.OpBEQ, riscv.OpBNE, riscv.OpBLT,
		riscv.OpBGE, riscv.OpBLTU, riscv.OpBGEU:
		return true
	}
	return false
}

// assemble emits the block for address t.j.buf.next().
func (t *tr) assemble() []byte {
	a := &t.a
	a.reset()
	t.stubs = t.stubs[:0]
	t.base = t.j.buf.next()

	// Take the block's length from the budget, or leave untouched.
	a.aluRI(true, aluSUB, regBudget, int32(t.n))
	a.jcc(ccL, t.exit(t.pc0, 0, exitBudget))

	for k, in := range t.insns {
		t.insn(k, in, t.pcs[k])
	}
	if last := t.insns[t.n-1]; !endsBlock(last.Op) {
		next := t.pcs[t.n-1] + uint64(last.Size)
		if t.n < maxBlock && (next-t.pc0)+(t.off0&4095) < 4096 {
			// Stopped before an instruction the interpreter executes.
			a.jmp(t.exit(next, t.n, exitSlow))
		} else {
			t.jumpTo(next)
		}
	}
	for _, s := range t.stubs {
		t.emitStub(s)
	}
	a.resolve()
	return a.b
}

// exit returns the label of an exit to the interpreter at pc with k of
// the block's instructions retired.
func (t *tr) exit(pc uint64, k int, reason uint64) label {
	for _, s := range t.stubs {
		if s.pc == pc && s.k == k && s.reason == reason && s.site < 0 {
			return s.l
		}
	}
	l := t.a.newLabel()
	t.stubs = append(t.stubs, stub{l: l, pc: pc, k: k, reason: reason, site: -1})
	return l
}

// jumpTo ends the block with a jump to guest address pc (all instructions
// retired): a patchable direct jump when pc is in the same page, an exit
// otherwise.
func (t *tr) jumpTo(pc uint64) {
	a := &t.a
	if pc>>12 != t.pc0>>12 {
		a.jmp(t.exit(pc, t.n, exitJump))
		return
	}
	l := a.newLabel()
	a.jmp(l)
	t.stubs = append(t.stubs, stub{l: l, pc: pc, k: t.n, reason: exitChain, site: len(a.b) - 4})
}

func (t *tr) emitStub(s stub) {
	a := &t.a
	a.bind(s.l)
	if d := t.n - s.k; d != 0 {
		a.aluRI(true, aluADD, regBudget, int32(d))
	}
	t.setPC(s.pc)
	a.storeImm(false, at(regCtx, ctxReason), int32(s.reason))
	if s.site >= 0 {
		a.movImm(rAX, uint64(t.base)+uint64(s.site))
		a.store(8, at(regCtx, ctxSite), rAX)
	}
	a.store(8, at(regCtx, ctxBudget), regBudget)
	a.ret()
}

// Offsets in ctx (checked against the struct in jit_test.go).
const (
	ctxBudget = 0
	ctxReason = 8
	ctxSite   = 16
)

func (t *tr) setPC(pc uint64) {
	a := &t.a
	if fitsInt32(int64(pc)) {
		a.storeImm(true, at(regHart, t.j.lay.pc), int32(pc))
		return
	}
	a.movImm(rAX, pc)
	a.store(8, at(regHart, t.j.lay.pc), rAX)
}

// xr is the memory operand of integer register i.
func (t *tr) xr(i uint8) mem { return at(regHart, t.j.lay.x+int32(i)*8) }

// getX loads integer register i into r.
func (t *tr) getX(r reg, i uint8) {
	if i == 0 {
		t.a.movImm(r, 0)
		return
	}
	t.a.load(true, r, t.xr(i))
}

// setX stores r into integer register i (writes to x0 vanish).
func (t *tr) setX(i uint8, r reg) {
	if i != 0 {
		t.a.store(8, t.xr(i), r)
	}
}

// setXImm sets integer register i to the constant v.
func (t *tr) setXImm(i uint8, v uint64) {
	if i == 0 {
		return
	}
	if fitsInt32(int64(v)) {
		t.a.storeImm(true, t.xr(i), int32(v))
		return
	}
	t.a.movImm(rAX, v)
	t.a.store(8, t.xr(i), rAX)
}

// insn emits instruction k of the block, at guest address pc.
func (t *tr) insn(k int, in riscv.Inst, pc uint64) {
	a := &t.a
	next := pc + uint64(in.Size)
	imm := int32(in.Imm) // fits for every immediate of the ops translated
	switch in.Op {
	case riscv.OpFENCE:
	case riscv.OpLUI:
		t.setXImm(in.Rd, uint64(in.Imm))
	case riscv.OpAUIPC:
		t.setXImm(in.Rd, pc+uint64(in.Imm))
	case riscv.OpJAL:
		t.setXImm(in.Rd, next)
		t.jumpTo(pc + uint64(in.Imm))
	case riscv.OpJALR:
		t.getX(rSI, in.Rs1)
		if imm != 0 {
			a.aluRI(true, aluADD, rSI, imm)
		}
		a.aluRI(true, aluAND, rSI, -2)
		t.setXImm(in.Rd, next) // after reading rs1, which may be rd
		a.store(8, at(regHart, t.j.lay.pc), rSI)
		a.storeImm(false, at(regCtx, ctxReason), exitJump)
		a.store(8, at(regCtx, ctxBudget), regBudget)
		a.ret()
	case riscv.OpBEQ, riscv.OpBNE, riscv.OpBLT, riscv.OpBGE, riscv.OpBLTU, riscv.OpBGEU:
		cc := map[riscv.Op]cond{riscv.OpBEQ: ccE, riscv.OpBNE: ccNE, riscv.OpBLT: ccL,
			riscv.OpBGE: ccGE, riscv.OpBLTU: ccB, riscv.OpBGEU: ccAE}[in.Op]
		t.getX(rAX, in.Rs1)
		if in.Rs2 == 0 {
			a.testRR(true, rAX, rAX)
		} else {
			a.aluRM(true, aluCMP, rAX, t.xr(in.Rs2))
		}
		taken := a.newLabel()
		a.jcc(cc, taken)
		t.jumpTo(next)
		a.bind(taken)
		t.jumpTo(pc + uint64(in.Imm))

	case riscv.OpLB, riscv.OpLH, riscv.OpLW, riscv.OpLD, riscv.OpLBU, riscv.OpLHU, riscv.OpLWU:
		size, signed := loadSize(in.Op)
		t.address(k, in, pc, size, false)
		a.loadExt(size, signed, rDX, atIdx(regRAM, rAX, 0, 0))
		t.setX(in.Rd, rDX)
	case riscv.OpSB, riscv.OpSH, riscv.OpSW, riscv.OpSD:
		size := map[riscv.Op]int{riscv.OpSB: 1, riscv.OpSH: 2, riscv.OpSW: 4, riscv.OpSD: 8}[in.Op]
		t.address(k, in, pc, size, true)
		t.getX(rDX, in.Rs2)
		a.store(size, atIdx(regRAM, rAX, 0, 0), rDX)

	case riscv.OpADDI, riscv.OpXORI, riscv.OpORI, riscv.OpANDI:
		op := map[riscv.Op]aluOp{riscv.OpADDI: aluADD, riscv.OpXORI: aluXOR, riscv.OpORI: aluOR, riscv.OpANDI: aluAND}[in.Op]
		if in.Rd == 0 {
			break
		}
		t.getX(rAX, in.Rs1)
		a.aluRI(true, op, rAX, imm)
		t.setX(in.Rd, rAX)
	case riscv.OpSLTI, riscv.OpSLTIU:
		if in.Rd == 0 {
			break
		}
		t.getX(rCX, in.Rs1)
		a.movImm(rAX, 0)
		a.aluRI(true, aluCMP, rCX, imm)
		if in.Op == riscv.OpSLTI {
			a.setcc(ccL, rAX)
		} else {
			a.setcc(ccB, rAX)
		}
		t.setX(in.Rd, rAX)
	case riscv.OpSLLI, riscv.OpSRLI, riscv.OpSRAI, riscv.OpSLLIW, riscv.OpSRLIW, riscv.OpSRAIW:
		if in.Rd == 0 {
			break
		}
		op := map[riscv.Op]shiftOp{riscv.OpSLLI: shSHL, riscv.OpSRLI: shSHR, riscv.OpSRAI: shSAR,
			riscv.OpSLLIW: shSHL, riscv.OpSRLIW: shSHR, riscv.OpSRAIW: shSAR}[in.Op]
		w := in.Op == riscv.OpSLLI || in.Op == riscv.OpSRLI || in.Op == riscv.OpSRAI
		t.getX(rAX, in.Rs1)
		if in.Imm != 0 {
			a.shiftRI(w, op, rAX, uint8(in.Imm))
		}
		if !w {
			a.movsxd(rAX, rAX)
		}
		t.setX(in.Rd, rAX)
	case riscv.OpADDIW:
		if in.Rd == 0 {
			break
		}
		t.getX(rAX, in.Rs1)
		a.aluRI(false, aluADD, rAX, imm)
		a.movsxd(rAX, rAX)
		t.setX(in.Rd, rAX)

	case riscv.OpADD, riscv.OpSUB, riscv.OpXOR, riscv.OpOR, riscv.OpAND, riscv.OpADDW, riscv.OpSUBW:
		if in.Rd == 0 {
			break
		}
		op := map[riscv.Op]aluOp{riscv.OpADD: aluADD, riscv.OpSUB: aluSUB, riscv.OpXOR: aluXOR,
			riscv.OpOR: aluOR, riscv.OpAND: aluAND, riscv.OpADDW: aluADD, riscv.OpSUBW: aluSUB}[in.Op]
		w := in.Op != riscv.OpADDW && in.Op != riscv.OpSUBW
		t.getX(rAX, in.Rs1)
		if in.Rs2 != 0 {
			a.aluRM(w, op, rAX, t.xr(in.Rs2))
		}
		if !w {
			a.movsxd(rAX, rAX)
		}
		t.setX(in.Rd, rAX)
	case riscv.OpSLT, riscv.OpSLTU:
		if in.Rd == 0 {
			break
		}
		t.getX(rCX, in.Rs1)
		t.getX(rDX, in.Rs2)
		a.movImm(rAX, 0)
		a.aluRR(true, aluCMP, rCX, rDX)
		if in.Op == riscv.OpSLT {
			a.setcc(ccL, rAX)
		} else {
			a.setcc(ccB, rAX)
		}
		t.setX(in.Rd, rAX)
	case riscv.OpSLL, riscv.OpSRL, riscv.OpSRA, riscv.OpSLLW, riscv.OpSRLW, riscv.OpSRAW:
		if in.Rd == 0 {
			break
		}
		op := map[riscv.Op]shiftOp{riscv.OpSLL: shSHL, riscv.OpSRL: shSHR, riscv.OpSRA: shSAR,
			riscv.OpSLLW: shSHL, riscv.OpSRLW: shSHR, riscv.OpSRAW: shSAR}[in.Op]
		w := in.Op == riscv.OpSLL || in.Op == riscv.OpSRL || in.Op == riscv.OpSRA
		t.getX(rCX, in.Rs2)
		t.getX(rAX, in.Rs1)
		a.shiftRCL(w, op, rAX) // x86 masks the count as RISC-V does
		if !w {
			a.movsxd(rAX, rAX)
		}
		t.setX(in.Rd, rAX)

	case riscv.OpMUL, riscv.OpMULW:
		if in.Rd == 0 {
			break
		}
		w := in.Op == riscv.OpMUL
		t.getX(rAX, in.Rs1)
		t.getX(rCX, in.Rs2)
		a.imulRR(w, rAX, rCX)
		if !w {
			a.movsxd(rAX, rAX)
		}
		t.setX(in.Rd, rAX)
	case riscv.OpMULH, riscv.OpMULHU, riscv.OpMULHSU:
		if in.Rd == 0 {
			break
		}
		t.getX(rAX, in.Rs1)
		t.getX(rCX, in.Rs2)
		switch in.Op {
		case riscv.OpMULH:
			a.unaryR(true, unIMUL, rCX)
		case riscv.OpMULHU:
			a.unaryR(true, unMUL, rCX)
		default:
			// Unsigned product, less rs2 when rs1 is negative.
			a.movRR(true, rSI, rAX)
			a.unaryR(true, unMUL, rCX)
			a.shiftRI(true, shSAR, rSI, 63)
			a.aluRR(true, aluAND, rSI, rCX)
			a.aluRR(true, aluSUB, rDX, rSI)
		}
		t.setX(in.Rd, rDX)
	case riscv.OpDIV, riscv.OpDIVU, riscv.OpREM, riscv.OpREMU,
		riscv.OpDIVW, riscv.OpDIVUW, riscv.OpREMW, riscv.OpREMUW:
		if in.Rd == 0 {
			break
		}
		t.divide(in)
	default:
		panic("jit: translating an untranslated op " + in.Op.String())
	}
}

func loadSize(o riscv.Op) (size int, signed bool) {
	switch o {
	case riscv.OpLB:
		return 1, true
	case riscv.OpLH:
		return 2, true
	case riscv.OpLW:
		return 4, true
	case riscv.OpLBU:
		return 1, false
	case riscv.OpLHU:
		return 2, false
	case riscv.OpLWU:
		return 4, false
	}
	return 8, false
}

// address computes the RAM offset of a load or store of instruction k into
// RAX through the hart's read or write TLB, exiting to the interpreter on a
// miss or when the access leaves the page (the interpreter's fast path
// makes the same two tests). RSI, RCX and RDX are clobbered.
func (t *tr) address(k int, in riscv.Inst, pc uint64, size int, write bool) {
	a := &t.a
	slow := t.exit(pc, k, exitSlow)
	tlb := t.j.lay.readTLB
	if write {
		tlb = t.j.lay.writeTLB
	}
	t.getX(rSI, in.Rs1)
	if in.Imm != 0 {
		a.aluRI(true, aluADD, rSI, int32(in.Imm))
	}
	a.movRR(true, rAX, rSI)
	a.shiftRI(true, shSHR, rAX, 12)
	a.movRR(false, rCX, rAX)
	a.aluRI(false, aluAND, rCX, riscv.TLBSize-1)
	a.shiftRI(false, shSHL, rCX, 4)
	a.shiftRI(true, shSHL, rAX, 4)
	a.aluRM(true, aluOR, rAX, at(regHart, t.j.lay.dataKey))
	a.aluRM(true, aluCMP, rAX, atIdx(regHart, rCX, 0, tlb))
	a.jcc(ccNE, slow)
	if size > 1 {
		a.lea(true, rDX, at(rSI, int32(size-1)))
		a.aluRR(true, aluXOR, rDX, rSI)
		a.shiftRI(true, shSHR, rDX, 12)
		a.jcc(ccNE, slow)
	}
	a.load(true, rAX, atIdx(regHart, rCX, 0, tlb+8))
	a.aluRI(false, aluAND, rSI, 4095)
	a.aluRR(true, aluOR, rAX, rSI)
}

// divide emits the M extension's divisions, with the results the spec gives
// for a zero divisor and for overflow computed without dividing (x86 would
// fault).
func (t *tr) divide(in riscv.Inst) {
	a := &t.a
	w := in.Op == riscv.OpDIV || in.Op == riscv.OpDIVU || in.Op == riscv.OpREM || in.Op == riscv.OpREMU
	signed := in.Op == riscv.OpDIV || in.Op == riscv.OpREM || in.Op == riscv.OpDIVW || in.Op == riscv.OpREMW
	rem := in.Op == riscv.OpREM || in.Op == riscv.OpREMU || in.Op == riscv.OpREMW || in.Op == riscv.OpREMUW
	t.getX(rAX, in.Rs1)
	t.getX(rCX, in.Rs2)
	zero, minus1, done := a.newLabel(), a.newLabel(), a.newLabel()
	a.testRR(w, rCX, rCX)
	a.jcc(ccE, zero)
	if signed {
		a.aluRI(w, aluCMP, rCX, -1)
		a.jcc(ccE, minus1)
	}
	switch {
	case signed && w:
		a.cqo()
		a.unaryR(true, unIDIV, rCX)
	case signed:
		a.cdq()
		a.unaryR(false, unIDIV, rCX)
	default:
		a.movImm(rDX, 0)
		a.unaryR(w, unDIV, rCX)
	}
	if rem {
		a.movRR(true, rAX, rDX)
	}
	a.jmp(done)

	// Division by zero: the quotient is all ones, the remainder the
	// dividend.
	a.bind(zero)
	if !rem {
		a.movImm(rAX, ^uint64(0))
	}
	if signed {
		a.jmp(done)
		// Division by -1: the quotient is the negated dividend (which
		// wraps for the most negative one, as the spec's overflow result
		// wants), the remainder 0.
		a.bind(minus1)
		if rem {
			a.movImm(rAX, 0)
		} else {
			a.unaryR(w, unNEG, rAX)
		}
	}
	a.bind(done)
	if !w {
		a.movsxd(rAX, rAX)
	}
	t.setX(in.Rd, rAX)
}
