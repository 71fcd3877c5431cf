//go:build linux && amd64

package jit

import (
	"encoding/binary"
	"slices"
	"unsafe"

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
	// followed marks the JALs whose target the block goes on with.
	followed []bool
	n        int // instructions in the block
	// base is the executable address the block is assembled for.
	base  uintptr
	stubs []stub
	slow  [maxBlock + 1]label // the slow exit at each instruction, or -1
	full  bool                // the block stopped at its length limit
	// cross is the index of an instruction whose second half lies at
	// RAM offset crossOff in the next page and reads crossHi, or -1.
	cross    int
	crossOff uint64
	crossHi  uint16
	// crossLater: the block stops before such an instruction because the
	// next page is not in the fetch TLB yet. Once the interpreter has
	// executed it, it is, and a block starting there can be translated.
	crossLater bool
	ra         regAlloc
	k          int // the instruction being emitted
	fused      int // idioms fused in the block (fuse)

	// page is what the last load or store left for the next one (access).
	page pageOf

	// What the allocator knows of the block's future (liveness).
	next     [maxBlock + 1][32]uint8
	deadAt   [maxBlock + 1]uint32
	spillBuf []spill
}

// stubFar marks the stub of a branch to another page: a jump through the
// jump table, out of line.
const stubFar = 100

// stub is an out-of-line exit, emitted after the block's body.
type stub struct {
	l      label
	pc     uint64 // guest PC to leave at
	k      int    // instructions of the block retired before it
	reason uint64
	site   int     // exitChain: offset of the jump's rel32 in the block, or -1
	spills []spill // cached registers to write back first
}

// translate translates the block at guest address pc, RAM offset off (on
// the current instruction page), and records it.
func (j *JIT) translate(pc, off uint64) *block {
	if Clock != nil {
		t0 := Clock()
		defer func() { j.Stats.TranslateNanos += Clock() - t0 }()
	}
	t := &j.t
	t.j = j
	t.decode(pc, off)
	b := &block{pc: pc, off: off, n: uint64(t.n)}
	if t.n == 0 && t.crossLater {
		return b // not kept: translated again when the next page is in the fetch TLB
	}
	// A block of no instructions is code too: it leaves for the
	// interpreter at once, so that jumps to it stay in generated code (the
	// jump table, direct links) until the instruction itself.
	assemble := t.assemble
	if t.n == 0 {
		assemble = t.assembleSlow
	}
	code := assemble()
	if !j.buf.room(len(code)) {
		// Full: start again with an empty buffer. Nothing else points
		// into it once the block tables are empty.
		j.dropAll()
		code = assemble()
	}
	b.entry = j.buf.add(code)
	b.size = len(code)
	j.Stats.Fused += uint64(t.fused)
	if t.n > 0 {
		j.Stats.Blocks++
		j.Stats.GuestInsns += b.n
	}
	j.Stats.CodeBytes += uint64(len(code))
	j.Stats.CodePeak = max(j.Stats.CodePeak, uint64(j.buf.pos))
	j.blocks[blockKey{pc, off}] = b
	p := off >> 12
	cp := j.pages[p]
	if cp == nil {
		cp = &codePage{bytes: append([]byte(nil), j.view.RAM[p<<12:(p+1)<<12]...), live: len(j.live)}
		j.pages[p] = cp
		j.live = append(j.live, p)
	}
	cp.blocks = append(cp.blocks, b)
	for i, ipc := range t.pcs[:t.n] {
		if ipc>>12 == pc>>12 && i > 0 {
			if c := &cp.cover[ipc&4095>>1]; *c == 0 {
				*c = uint8(min(t.n-i, 255))
			}
		}
	}
	return b
}

// decode collects the block's instructions: up to maxBlock, within the
// page, stopping after a jump or branch and before anything not translated.
func (t *tr) decode(pc, off uint64) {
	t.pc0, t.off0 = pc, off
	t.insns, t.pcs, t.followed = t.insns[:0], t.pcs[:0], t.followed[:0]
	ram := t.j.view.RAM
	limit := t.j.blockLimit(off >> 12)
	t.cross, t.crossLater = -1, false
	sides := 0
	for len(t.insns) < limit && off>>12 == t.off0>>12 {
		raw, whole := rawAt(ram, off)
		cross := false
		if !whole {
			// Its second half is in the next page: translated when
			// that page is in the fetch TLB now (crossCheck).
			hi, off2, ok := t.nextHalf(pc + 2)
			if !ok {
				t.crossLater = true
				break
			}
			raw |= hi << 16
			t.crossOff, t.crossHi, cross = off2, uint16(hi), true
		}
		in := riscv.Decode(raw)
		if !translated(in) || t.j.h.Interprets(in) {
			break
		}
		if cross {
			t.cross = len(t.insns)
		}
		t.insns = append(t.insns, in)
		t.pcs = append(t.pcs, pc)
		t.followed = append(t.followed, false)
		pc += uint64(in.Size)
		off += uint64(in.Size)
		if in.Op == riscv.OpJAL {
			// A direct jump within the page the block has not been to
			// yet: the block goes on at its target.
			target := t.pcs[len(t.pcs)-1] + uint64(in.Imm)
			if target>>12 == t.pc0>>12 && !slices.Contains(t.pcs, target) && !cross {
				t.followed[len(t.followed)-1] = true
				off = off - uint64(in.Size) - (t.pcs[len(t.pcs)-1] & 4095) + (target & 4095)
				pc = target
				continue
			}
		}
		if endsBlock(in.Op) {
			break
		}
		if isBranch(in.Op) {
			// The block goes on at the branch's fall-through; taken, the
			// branch leaves by a side exit.
			if sides++; sides > maxSide {
				break
			}
		}
	}
	t.n = len(t.insns)
	t.full = t.n == limit
	if t.n > 0 {
		t.followed[t.n-1] = false // the block ends there: it jumps
	}
}

// rawAt returns the instruction bits at RAM offset off: all of them, or,
// for a 32-bit instruction whose second half is in the next page, the
// first 16 (whole false).
func rawAt(ram []byte, off uint64) (raw uint32, whole bool) {
	raw = uint32(binary.LittleEndian.Uint16(ram[off:]))
	if raw&3 != 3 {
		return raw, true
	}
	if off&4095 == 4094 {
		return raw, false
	}
	return raw | uint32(binary.LittleEndian.Uint16(ram[off+2:]))<<16, true
}

// nextHalf returns the 16 bits at guest address va (a page start) and
// their RAM offset, when va's page is in the fetch TLB.
func (t *tr) nextHalf(va uint64) (hi uint32, off uint64, ok bool) {
	e := (*[2]uint64)(unsafe.Pointer(&t.j.view.FetchTLB[va>>12&(riscv.TLBSize-1)]))
	if e[0] != va&^4095|*t.j.view.FetchKey {
		return 0, 0, false
	}
	off = va + e[1]
	return uint32(binary.LittleEndian.Uint16(t.j.view.RAM[off:])), off, true
}

// crossCheck leaves for the interpreter unless the instruction straddling
// into the next page reads what it was translated from: that page's fetch
// TLB entry still maps it to the same RAM page, which still holds the same
// 16 bits. The interpreter fetches the second half through the same entry
// (or a page walk when there is none).
func (t *tr) crossCheck(k int, pc uint64) {
	a := &t.a
	lay := &t.j.lay
	l := a.newLabel() // not the instruction's other exit: that comes after allocations
	t.stubs = append(t.stubs, stub{l: l, pc: pc, k: k, reason: exitSlow, site: -1, spills: t.spills()})
	page := (pc + 2) &^ 4095
	entry := lay.fetch + int32(page>>12&(riscv.TLBSize-1))*16
	a.movImm(rAX, page)
	a.aluRM(true, aluOR, rAX, at(regHart, lay.fetchKey))
	a.aluRM(true, aluCMP, rAX, at(regHart, entry))
	a.jcc(ccNE, l)
	a.movImm(rAX, t.crossOff-page)
	a.aluRM(true, aluCMP, rAX, at(regHart, entry+8))
	a.jcc(ccNE, l)
	a.movImm(rAX, t.crossOff)
	a.cmpMI16(atIdx(regRAM, rAX, 0, 0), t.crossHi)
	a.jcc(ccNE, l)
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
		riscv.OpFENCE: // a no-op here: the hart has FENCE interpreted where it is not (riscv.Hart.Interprets)
		return true
	}
	return amoTranslated(in) || isLRSC(in.Op) || fpTranslated(in) || csrTranslated(in)
}

func isLRSC(o riscv.Op) bool {
	return o == riscv.OpLRW || o == riscv.OpLRD || o == riscv.OpSCW || o == riscv.OpSCD
}

// isAMO reports whether o is one of the A extension's read-modify-write
// operations (not LR or SC).
func isAMO(o riscv.Op) bool {
	return o >= riscv.OpAMOSWAPW && o <= riscv.OpAMOMAXUW || o >= riscv.OpAMOSWAPD && o <= riscv.OpAMOMAXUD
}

// amoTranslated reports whether the translator handles AMO in: all but
// the compare-and-swap kinds with x0 as the source (rare, and left to the
// interpreter so that the loop always has the source in a register).
func amoTranslated(in riscv.Inst) bool {
	if !isAMO(in.Op) {
		return false
	}
	k := in.Op - riscv.OpAMOSWAPW
	if in.Op >= riscv.OpAMOSWAPD {
		k = in.Op - riscv.OpAMOSWAPD
	}
	return in.Rs2 != 0 || k <= riscv.OpAMOADDW-riscv.OpAMOSWAPW
}

// amoCond is the condition under which min, max, minu and maxu (kind:
// the distance from SWAP) keep the old value: old compared with the source.
func amoCond(kind riscv.Op) cond {
	switch kind {
	case riscv.OpAMOMINW - riscv.OpAMOSWAPW:
		return ccL
	case riscv.OpAMOMAXW - riscv.OpAMOSWAPW:
		return ccG
	case riscv.OpAMOMINUW - riscv.OpAMOSWAPW:
		return ccB
	}
	return ccA
}

// endsBlock reports whether a block ends after o: an unconditional jump
// (but see the JALs decode follows).
func endsBlock(o riscv.Op) bool { return o == riscv.OpJAL || o == riscv.OpJALR }

// isBranch reports whether o is a conditional branch. A block goes on past
// up to maxSide of them (a superblock): each leaves, when taken, through a
// side exit that writes back the registers it changed, gives back the
// budget of the instructions not executed and jumps to the target's block.
func isBranch(o riscv.Op) bool {
	switch o {
	case riscv.OpBEQ, riscv.OpBNE, riscv.OpBLT, riscv.OpBGE, riscv.OpBLTU, riscv.OpBGEU:
		return true
	}
	return false
}

const maxSide = 8

// assemble emits the block for address t.j.buf.next().
func (t *tr) assemble() []byte {
	a := &t.a
	a.reset()
	t.stubs = t.stubs[:0]
	for i := range t.slow {
		t.slow[i] = -1
	}
	t.base = t.j.buf.next()
	t.ra.reset()
	t.spillBuf = t.spillBuf[:0]
	t.fused = 0
	t.liveness()

	// Take the block's length from the budget, or leave untouched.
	a.aluRI(true, aluSUB, regBudget, int32(t.n))
	a.jcc(ccL, t.exit(t.pc0, 0, exitBudget))

	t.page = pageOf{}
	for k := 0; k < t.n; k++ {
		in := t.insns[k]
		t.k = k
		if k == t.cross {
			t.crossCheck(k, t.pcs[k])
		}
		t.pinReads(in)
		if n := t.fuse(k); n > 0 {
			k += n - 1
		} else {
			t.insn(k, in, t.pcs[k])
		}
		t.unpin()
	}
	if last := t.insns[t.n-1]; !endsBlock(last.Op) && !isBranch(last.Op) {
		t.writeBack()
		next := t.pcs[t.n-1] + uint64(last.Size)
		if !t.full && !t.crossLater && next>>12 == t.pc0>>12 {
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

// assembleSlow emits the code of a block of no instructions: an exit to
// the interpreter at its address.
func (t *tr) assembleSlow() []byte {
	a := &t.a
	a.reset()
	t.base = t.j.buf.next()
	t.fused = 0
	t.setPC(t.pc0)
	a.storeImm(false, at(regCtx, ctxReason), exitSlow)
	a.store(8, at(regCtx, ctxBudget), regBudget)
	a.ret()
	a.resolve()
	return a.b
}

// exit returns the label of an exit to the interpreter at pc with k of
// the block's instructions retired.
func (t *tr) exit(pc uint64, k int, reason uint64) label {
	if reason == exitSlow && k < len(t.slow) && t.slow[k] >= 0 {
		return t.slow[k]
	}
	l := t.a.newLabel()
	if reason == exitSlow && k < len(t.slow) {
		t.slow[k] = l
	}
	t.stubs = append(t.stubs, stub{l: l, pc: pc, k: k, reason: reason, site: -1, spills: t.spills()})
	return l
}

// jumpTo ends the block with a jump to guest address pc (all instructions
// retired): a patchable direct jump when pc is in the same page, an exit
// otherwise.
func (t *tr) jumpTo(pc uint64) {
	a := &t.a
	if pc>>12 != t.pc0>>12 {
		a.movImm(rDX, pc)
		t.jumpIndirect()
		return
	}
	l := a.newLabel()
	a.jmp(l)
	t.stubs = append(t.stubs, stub{l: l, pc: pc, k: t.n, reason: exitChain, site: len(a.b) - 4})
}

// branchTo jumps to guest address pc if cc (all instructions retired): a
// patchable conditional jump when pc is in the same page.
func (t *tr) branchTo(cc cond, pc uint64) {
	a := &t.a
	if pc>>12 != t.pc0>>12 {
		far := a.newLabel()
		a.jcc(cc, far)
		t.stubs = append(t.stubs, stub{l: far, pc: pc, k: t.n, reason: stubFar, site: -1})
		return
	}
	l := a.newLabel()
	a.jcc(cc, l)
	t.stubs = append(t.stubs, stub{l: l, pc: pc, k: t.n, reason: exitChain, site: len(a.b) - 4})
}

// sideExit leaves the block for guest address pc if cc, with k of its
// instructions retired: out of line, the dirty cached registers are
// written back and the budget of the rest given back before the jump,
// which is patchable when pc is in the same page.
func (t *tr) sideExit(cc cond, pc uint64, k int) {
	a := &t.a
	l := a.newLabel()
	a.jcc(cc, l)
	reason := uint64(exitChain)
	if pc>>12 != t.pc0>>12 {
		reason = stubFar
	}
	t.stubs = append(t.stubs, stub{l: l, pc: pc, k: k, reason: reason, site: siteInStub, spills: t.spills()})
}

// siteInStub: the stub's own jump is the one to patch (sideExit).
const siteInStub = -2

// jumpIndirect ends the block with a jump to the guest address in RDX
// (all instructions retired). When the target's page is in the fetch TLB
// for the current mode (so the interpreter would fetch from it without a
// page walk) and the jump table has a block for that address and RAM
// offset, it jumps there; otherwise it leaves for Go to find or make the
// block.
func (t *tr) jumpIndirect() {
	a := &t.a
	lay := &t.j.lay
	miss := a.newLabel()
	t.tlbIndex()
	a.movRR(true, rAX, rDX)
	a.aluRI(true, aluAND, rAX, -4096)
	a.aluRM(true, aluOR, rAX, at(regHart, lay.fetchKey))
	a.aluRM(true, aluCMP, rAX, atIdx(regHart, rCX, 0, lay.fetch))
	a.jcc(ccNE, miss)
	a.movRR(true, rAX, rDX)
	a.aluRM(true, aluADD, rAX, atIdx(regHart, rCX, 0, lay.fetch+8)) // the target's RAM offset
	a.imulRRI(false, rCX, rDX, int32(int64(jtMul)-1<<32))
	a.shiftRI(false, shSHR, rCX, 32-jtBits)
	a.shiftRI(false, shSHL, rCX, 5) // jtIndex(pc) * 32
	a.aluRM(true, aluCMP, rDX, atIdx(regCtx, rCX, 0, ctxJT))
	a.jcc(ccNE, miss)
	a.aluRM(true, aluCMP, rAX, atIdx(regCtx, rCX, 0, ctxJT+8))
	a.jcc(ccNE, miss)
	a.jmpM(atIdx(regCtx, rCX, 0, ctxJT+16))
	a.bind(miss)
	a.store(8, at(regHart, lay.pc), rDX)
	a.storeImm(false, at(regCtx, ctxReason), exitJump)
	a.store(8, at(regCtx, ctxBudget), regBudget)
	a.ret()
}

func (t *tr) emitStub(s stub) {
	a := &t.a
	a.bind(s.l)
	for _, sp := range s.spills {
		a.store(8, t.xr(uint8(sp.guest)), cacheRegs[sp.slot])
	}
	if d := t.n - s.k; d != 0 {
		a.aluRI(true, aluADD, regBudget, int32(d))
	}
	if s.reason == stubFar {
		a.movImm(rDX, s.pc)
		t.jumpIndirect()
		return
	}
	if s.site == siteInStub {
		// Linked, this jump goes to the target's block; until then, on
		// to the exit below.
		l := a.newLabel()
		a.jmp(l)
		s.site = len(a.b) - 4
		a.bind(l)
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
	ctxBudget  = 0
	ctxReason  = 8
	ctxSite    = 16
	ctxMXCSR   = 32
	ctxScratch = 48
	ctxFlags   = 56
	ctxJT      = 120
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

// insn emits instruction k of the block, at guest address pc. Every
// instruction that jumps writes the cached registers back first.
func (t *tr) insn(k int, in riscv.Inst, pc uint64) {
	a := &t.a
	next := pc + uint64(in.Size)
	imm := int32(in.Imm) // fits for every immediate of the ops translated
	if !isLoad(in.Op) && !isStore(in.Op) && !keepsPage(in, t.page.rs1) {
		t.page.ok = false // it uses RAX or RDX, or changes the base
	}
	switch in.Op {
	case riscv.OpFENCE:
	case riscv.OpLUI:
		t.setXImm(in.Rd, uint64(in.Imm))
	case riscv.OpAUIPC:
		t.setXImm(in.Rd, pc+uint64(in.Imm))
	case riscv.OpJAL:
		t.setXImm(in.Rd, next)
		if t.followed[k] {
			break
		}
		t.writeBack()
		t.jumpTo(pc + uint64(in.Imm))
	case riscv.OpJALR:
		a.movRR(true, rDX, t.srcOr(in.Rs1, rDX))
		if imm != 0 {
			a.aluRI(true, aluADD, rDX, imm)
		}
		a.aluRI(true, aluAND, rDX, -2)
		t.setXImm(in.Rd, next) // after reading rs1, which may be rd
		t.writeBack()
		t.jumpIndirect()
	case riscv.OpBEQ, riscv.OpBNE, riscv.OpBLT, riscv.OpBGE, riscv.OpBLTU, riscv.OpBGEU:
		x := t.srcOr(in.Rs1, rAX)
		if in.Rs2 == 0 {
			a.testRR(true, x, x)
		} else {
			a.aluRR(true, aluCMP, x, t.src(in.Rs2))
		}
		if k < t.n-1 {
			t.sideExit(branchCond(in.Op), pc+uint64(in.Imm), k+1)
			break
		}
		t.writeBack()
		t.branchTo(branchCond(in.Op), pc+uint64(in.Imm))
		t.jumpTo(next)

	case riscv.OpLB, riscv.OpLH, riscv.OpLW, riscv.OpLD, riscv.OpLBU, riscv.OpLHU, riscv.OpLWU:
		size, signed := loadSize(in.Op)
		disp := t.access(k, in, pc, size, false)
		d := rDX
		if in.Rd != 0 {
			d = t.dst(in.Rd)
		}
		a.loadExt(size, signed, d, atIdx(regRAM, rDX, 0, disp))
	case riscv.OpSB, riscv.OpSH, riscv.OpSW, riscv.OpSD:
		size := storeSize(in.Op)
		if in.Rs2 == 0 {
			disp := t.access(k, in, pc, size, true)
			a.storeZero(size, atIdx(regRAM, rDX, 0, disp))
			break
		}
		v := t.src(in.Rs2)
		disp := t.access(k, in, pc, size, true)
		a.store(size, atIdx(regRAM, rDX, 0, disp), v)

	case riscv.OpADDI, riscv.OpXORI, riscv.OpORI, riscv.OpANDI:
		if in.Rd == 0 {
			break
		}
		if in.Rs1 == 0 {
			v := uint64(in.Imm) // x0 + imm, x0 ^ imm, x0 | imm
			if in.Op == riscv.OpANDI {
				v = 0
			}
			t.setXImm(in.Rd, v)
			break
		}
		t.aluImm(true, aluOf(in.Op), in.Rd, in.Rs1, imm)
	case riscv.OpADDIW:
		if in.Rd == 0 {
			break
		}
		a.movRR(false, rAX, t.srcOr(in.Rs1, rAX))
		a.aluRI(false, aluADD, rAX, imm)
		a.movsxd(t.dst(in.Rd), rAX)
	case riscv.OpSLTI, riscv.OpSLTIU:
		if in.Rd == 0 {
			break
		}
		x := t.srcOr(in.Rs1, rCX)
		a.movImm(rAX, 0)
		a.aluRI(true, aluCMP, x, imm)
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
		w := in.Op == riscv.OpSLLI || in.Op == riscv.OpSRLI || in.Op == riscv.OpSRAI
		x := t.srcOr(in.Rs1, rAX)
		if w && in.Rd == in.Rs1 {
			if in.Imm != 0 {
				a.shiftRI(true, shiftOf(in.Op), t.dst(in.Rd), uint8(in.Imm))
			}
			break
		}
		if w {
			d := t.dst(in.Rd)
			a.movRR(true, d, x)
			if in.Imm != 0 {
				a.shiftRI(true, shiftOf(in.Op), d, uint8(in.Imm))
			}
			break
		}
		a.movRR(false, rAX, x)
		if in.Imm != 0 {
			a.shiftRI(false, shiftOf(in.Op), rAX, uint8(in.Imm))
		}
		a.movsxd(t.dst(in.Rd), rAX)

	case riscv.OpADD, riscv.OpSUB, riscv.OpXOR, riscv.OpOR, riscv.OpAND:
		if in.Rd == 0 {
			break
		}
		t.aluReg(true, aluOf(in.Op), in.Rd, in.Rs1, in.Rs2)
	case riscv.OpADDW, riscv.OpSUBW:
		if in.Rd == 0 {
			break
		}
		a.movRR(false, rAX, t.srcOr(in.Rs1, rAX))
		if in.Rs2 != 0 {
			a.aluRR(false, aluOf(in.Op), rAX, t.src(in.Rs2))
		}
		a.movsxd(t.dst(in.Rd), rAX)
	case riscv.OpSLT, riscv.OpSLTU:
		if in.Rd == 0 {
			break
		}
		x := t.srcOr(in.Rs1, rCX)
		y := t.srcOr(in.Rs2, rDX)
		a.movImm(rAX, 0)
		a.aluRR(true, aluCMP, x, y)
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
		w := in.Op == riscv.OpSLL || in.Op == riscv.OpSRL || in.Op == riscv.OpSRA
		a.movRR(false, rCX, t.srcOr(in.Rs2, rCX))
		a.movRR(true, rAX, t.srcOr(in.Rs1, rAX))
		a.shiftRCL(w, shiftOf(in.Op), rAX) // x86 masks the count as RISC-V does
		d := t.dst(in.Rd)
		if w {
			a.movRR(true, d, rAX)
		} else {
			a.movsxd(d, rAX)
		}

	case riscv.OpMUL, riscv.OpMULW:
		if in.Rd == 0 {
			break
		}
		w := in.Op == riscv.OpMUL
		a.movRR(true, rAX, t.srcOr(in.Rs1, rAX))
		a.imulRR(w, rAX, t.srcOr(in.Rs2, rCX))
		d := t.dst(in.Rd)
		if w {
			a.movRR(true, d, rAX)
		} else {
			a.movsxd(d, rAX)
		}
	case riscv.OpMULH, riscv.OpMULHU, riscv.OpMULHSU:
		if in.Rd == 0 {
			break
		}
		if in.Rs1 == 0 || in.Rs2 == 0 {
			t.setXImm(in.Rd, 0)
			break
		}
		x := t.src(in.Rs1)
		a.movRR(true, rAX, x)
		a.movRR(true, rCX, t.src(in.Rs2))
		switch in.Op {
		case riscv.OpMULH:
			a.unaryR(true, unIMUL, rCX)
		case riscv.OpMULHU:
			a.unaryR(true, unMUL, rCX)
		default:
			// Unsigned product, less rs2 when rs1 is negative.
			a.unaryR(true, unMUL, rCX)
			a.movRR(true, rAX, x)
			a.shiftRI(true, shSAR, rAX, 63)
			a.aluRR(true, aluAND, rAX, rCX)
			a.aluRR(true, aluSUB, rDX, rAX)
		}
		t.setX(in.Rd, rDX)
	case riscv.OpDIV, riscv.OpDIVU, riscv.OpREM, riscv.OpREMU,
		riscv.OpDIVW, riscv.OpDIVUW, riscv.OpREMW, riscv.OpREMUW:
		if in.Rd == 0 {
			break
		}
		t.divide(in)
	default:
		switch {
		case isAMO(in.Op):
			t.amo(k, in, pc)
		case isLRSC(in.Op):
			t.lrsc(k, in, pc)
		case csrTranslated(in):
			t.csr(k, in, pc)
		default:
			t.fpInsn(k, in, pc)
		}
	}
}

// lrsc emits LR and SC. LR reads through the read TLB and takes the
// reservation as the interpreter does (RAM offset and value). SC stores
// with a compare-and-swap against the value LR read (atomic for harts in
// parallel) when the reservation is valid for its address; anything else,
// a failure included, is left to the interpreter: a failed SC is when a
// hart running interleaved with others gives up its turn.
func (t *tr) lrsc(k int, in riscv.Inst, pc uint64) {
	a := &t.a
	lay := &t.j.lay
	w := in.Op == riscv.OpLRD || in.Op == riscv.OpSCD
	size := 4
	if w {
		size = 8
	}
	src := rCX // SC's value; x0: zero, set after the lookup
	if in.Op == riscv.OpSCW || in.Op == riscv.OpSCD {
		if in.Rs2 != 0 {
			src = t.src(in.Rs2)
		}
	}
	a.movRR(true, rDX, t.srcOr(in.Rs1, rDX))
	slow := t.exit(pc, k, exitSlow)
	a.testRI(false, rDX, int32(size-1))
	a.jcc(ccNE, slow)
	m := atIdx(regRAM, rDX, 0, 0)
	if in.Op == riscv.OpLRW || in.Op == riscv.OpLRD {
		t.lookup(size, lay.readTLB, slow, false)
		a.load(w, rAX, m) // zero-extended, as the reservation keeps it
		a.store(8, at(regHart, lay.resAddr), rDX)
		a.store(8, at(regHart, lay.resVal), rAX)
		a.storeImm8(at(regHart, lay.resValid), 1)
		if in.Rd != 0 {
			if w {
				a.movRR(true, t.dst(in.Rd), rAX)
			} else {
				a.movsxd(t.dst(in.Rd), rAX)
			}
		}
		return
	}
	t.lookup(size, lay.writeTLB, slow, false)
	if in.Rs2 == 0 {
		a.movImm(rCX, 0)
	}
	a.cmpMI8(at(regHart, lay.resValid), 0)
	a.jcc(ccE, slow)
	a.aluRM(true, aluCMP, rDX, at(regHart, lay.resAddr))
	a.jcc(ccNE, slow)
	a.load(true, rAX, at(regHart, lay.resVal))
	a.movRR(true, rCX, src)
	a.lockCmpxchg(w, m, rCX)
	a.jcc(ccNE, slow) // the value changed since LR: the interpreter decides
	a.storeImm8(at(regHart, lay.resValid), 0)
	t.setXImm(in.Rd, 0)
}

// amo emits an AMO: aligned, through the write TLB (the interpreter's
// translateAMO looks there first too), and atomic on the host, so that
// harts running in parallel see it whole.
func (t *tr) amo(k int, in riscv.Inst, pc uint64) {
	a := &t.a
	w := in.Op >= riscv.OpAMOSWAPD
	size, kind := 4, in.Op-riscv.OpAMOSWAPW
	if w {
		size, kind = 8, in.Op-riscv.OpAMOSWAPD
	}
	src := rCX // x0: zero, set after the lookup
	if in.Rs2 != 0 {
		src = t.src(in.Rs2)
	}
	a.movRR(true, rDX, t.srcOr(in.Rs1, rDX))
	slow := t.exit(pc, k, exitSlow)
	a.testRI(false, rDX, int32(size-1))
	a.jcc(ccNE, slow) // misaligned: the interpreter raises it
	t.lookup(size, t.j.lay.writeTLB, slow, false)
	if in.Rs2 == 0 {
		a.movImm(rCX, 0)
	}
	m := atIdx(regRAM, rDX, 0, 0)
	switch kind {
	case riscv.OpAMOSWAPW - riscv.OpAMOSWAPW:
		a.movRR(true, rCX, src)
		a.xchgMR(w, m, rCX)
		a.movRR(true, rAX, rCX)
	case riscv.OpAMOADDW - riscv.OpAMOSWAPW:
		a.movRR(true, rCX, src)
		a.lockXadd(w, m, rCX)
		a.movRR(true, rAX, rCX)
	default:
		// Compare and swap until no other hart came in between: RAX the
		// old value, RCX the new one (src is not RCX: see amoTranslated).
		loop := a.newLabel()
		a.load(w, rAX, m)
		a.bind(loop)
		switch kind {
		case riscv.OpAMOXORW - riscv.OpAMOSWAPW:
			a.movRR(true, rCX, rAX)
			a.aluRR(w, aluXOR, rCX, src)
		case riscv.OpAMOANDW - riscv.OpAMOSWAPW:
			a.movRR(true, rCX, rAX)
			a.aluRR(w, aluAND, rCX, src)
		case riscv.OpAMOORW - riscv.OpAMOSWAPW:
			a.movRR(true, rCX, rAX)
			a.aluRR(w, aluOR, rCX, src)
		default: // min, max, minu, maxu: the old value when it wins
			a.aluRR(w, aluCMP, rAX, src)
			a.movRR(true, rCX, src)
			a.cmov(w, amoCond(kind), rCX, rAX)
		}
		a.lockCmpxchg(w, m, rCX)
		a.jcc(ccNE, loop)
	}
	if in.Rd == 0 {
		return
	}
	if w {
		a.movRR(true, t.dst(in.Rd), rAX)
	} else {
		a.movsxd(t.dst(in.Rd), rAX)
	}
}

// aluImm emits rd = rs1 op imm (64-bit; rs1 != 0, rd != 0).
func (t *tr) aluImm(w bool, op aluOp, rd, rs1 uint8, imm int32) {
	a := &t.a
	if w && (imm == 0 && op != aluAND || imm == -1 && op == aluAND) {
		t.movX(rd, rs1) // mv is addi rd, rs, 0
		return
	}
	x := t.src(rs1)
	if rd == rs1 {
		a.aluRI(w, op, t.dst(rd), imm)
		return
	}
	d := t.dst(rd)
	a.movRR(true, d, x)
	a.aluRI(w, op, d, imm)
}

// movX emits rd = rs (rd != 0).
func (t *tr) movX(rd, rs uint8) {
	switch {
	case rd == rs:
	case rs == 0:
		t.setXImm(rd, 0)
	default:
		t.setX(rd, t.src(rs))
	}
}

// aluReg emits rd = rs1 op rs2 (64-bit; rd != 0).
func (t *tr) aluReg(w bool, op aluOp, rd, rs1, rs2 uint8) {
	a := &t.a
	if w {
		// The moves and clears compilers write as arithmetic: mv is
		// add rd, x0, rs.
		switch {
		case rs2 == 0 && op != aluAND:
			t.movX(rd, rs1)
			return
		case (rs1 == 0 || rs2 == 0) && op == aluAND:
			t.setXImm(rd, 0)
			return
		case rs1 == 0 && op != aluSUB:
			t.movX(rd, rs2)
			return
		}
	}
	x := t.srcOr(rs1, rAX)
	y := t.srcOr(rs2, rCX)
	switch {
	case rd == rs1 && rs1 != 0:
		a.aluRR(w, op, t.dst(rd), y)
	case rd == rs2 && rs2 != 0 && op != aluSUB:
		a.aluRR(w, op, t.dst(rd), x)
	case rd == rs2 && rs2 != 0:
		a.movRR(true, rAX, x)
		a.aluRR(w, op, rAX, y)
		a.movRR(true, t.dst(rd), rAX)
	default:
		d := t.dst(rd)
		a.movRR(true, d, x)
		a.aluRR(w, op, d, y)
	}
}

// mayExit reports whether an instruction can leave the block before the
// next one (the loads and stores: on a TLB miss; a conditional branch,
// through its side exit). Unconditional jumps end blocks and write
// everything back anyway.
func mayExit(in riscv.Inst) bool {
	switch in.Op {
	case riscv.OpLB, riscv.OpLH, riscv.OpLW, riscv.OpLD, riscv.OpLBU, riscv.OpLHU, riscv.OpLWU,
		riscv.OpSB, riscv.OpSH, riscv.OpSW, riscv.OpSD:
		return true
	}
	return isBranch(in.Op) || isAMO(in.Op) || isLRSC(in.Op) || fpTranslated(in) || csrTranslated(in) // side exits; AMOs, LR and SC like loads and stores; FP with the FPU off, and for what SSE cannot do
}

// regUse returns the guest registers an instruction reads and writes.
func regUse(in riscv.Inst) (reads, writes uint32) {
	if r, w, ok := fpRegUse(in); ok {
		return r &^ 1, w &^ 1
	}
	switch in.Op {
	case riscv.OpLUI, riscv.OpAUIPC, riscv.OpJAL:
	case riscv.OpBEQ, riscv.OpBNE, riscv.OpBLT, riscv.OpBGE, riscv.OpBLTU, riscv.OpBGEU,
		riscv.OpSB, riscv.OpSH, riscv.OpSW, riscv.OpSD,
		riscv.OpAMOSWAPW, riscv.OpAMOADDW, riscv.OpAMOXORW, riscv.OpAMOANDW, riscv.OpAMOORW,
		riscv.OpAMOMINW, riscv.OpAMOMAXW, riscv.OpAMOMINUW, riscv.OpAMOMAXUW,
		riscv.OpAMOSWAPD, riscv.OpAMOADDD, riscv.OpAMOXORD, riscv.OpAMOANDD, riscv.OpAMOORD,
		riscv.OpAMOMIND, riscv.OpAMOMAXD, riscv.OpAMOMINUD, riscv.OpAMOMAXUD,
		riscv.OpSCW, riscv.OpSCD,
		riscv.OpADD, riscv.OpSUB, riscv.OpSLL, riscv.OpSLT, riscv.OpSLTU, riscv.OpXOR,
		riscv.OpSRL, riscv.OpSRA, riscv.OpOR, riscv.OpAND,
		riscv.OpADDW, riscv.OpSUBW, riscv.OpSLLW, riscv.OpSRLW, riscv.OpSRAW,
		riscv.OpMUL, riscv.OpMULH, riscv.OpMULHSU, riscv.OpMULHU,
		riscv.OpDIV, riscv.OpDIVU, riscv.OpREM, riscv.OpREMU,
		riscv.OpMULW, riscv.OpDIVW, riscv.OpDIVUW, riscv.OpREMW, riscv.OpREMUW:
		reads = 1<<in.Rs1 | 1<<in.Rs2
	default:
		reads = 1 << in.Rs1
	}
	switch in.Op {
	case riscv.OpBEQ, riscv.OpBNE, riscv.OpBLT, riscv.OpBGE, riscv.OpBLTU, riscv.OpBGEU,
		riscv.OpSB, riscv.OpSH, riscv.OpSW, riscv.OpSD, riscv.OpFENCE:
	default:
		writes = 1 << in.Rd
	}
	return reads &^ 1, writes &^ 1
}

func branchCond(o riscv.Op) cond {
	switch o {
	case riscv.OpBEQ:
		return ccE
	case riscv.OpBNE:
		return ccNE
	case riscv.OpBLT:
		return ccL
	case riscv.OpBGE:
		return ccGE
	case riscv.OpBLTU:
		return ccB
	}
	return ccAE
}

func storeSize(o riscv.Op) int {
	switch o {
	case riscv.OpSB:
		return 1
	case riscv.OpSH:
		return 2
	case riscv.OpSW:
		return 4
	}
	return 8
}

func aluOf(o riscv.Op) aluOp {
	switch o {
	case riscv.OpSUB, riscv.OpSUBW:
		return aluSUB
	case riscv.OpXOR, riscv.OpXORI:
		return aluXOR
	case riscv.OpOR, riscv.OpORI:
		return aluOR
	case riscv.OpAND, riscv.OpANDI:
		return aluAND
	}
	return aluADD
}

func shiftOf(o riscv.Op) shiftOp {
	switch o {
	case riscv.OpSRL, riscv.OpSRLI, riscv.OpSRLW, riscv.OpSRLIW:
		return shSHR
	case riscv.OpSRA, riscv.OpSRAI, riscv.OpSRAW, riscv.OpSRAIW:
		return shSAR
	}
	return shSHL
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

// pageOf describes the page a load or store found, for the next one: when
// ok, RDX holds the RAM offset of the address base(rs1)+imm and RAX its
// offset in the page, both through the read or write TLB (write).
type pageOf struct {
	ok    bool
	write bool
	rs1   uint8
	imm   int64
}

// access emits the address computation of a load or store (instruction
// k) and returns the displacement to add to RBX+RDX. Consecutive accesses
// of one kind from the same base register (a stack frame, a structure,
// bytes of a word) share one TLB lookup: the later ones only check that
// they stay in the page the first one found, which is what the
// interpreter's TLB, unchanged in between, would tell them.
func (t *tr) access(k int, in riscv.Inst, pc uint64, size int, write bool) int32 {
	a := &t.a
	prev := t.page
	t.page = pageOf{}
	// keep: a later access may use what this one finds (nothing in between
	// touches RAX, RDX or the base register).
	keep := false
	if !(isLoad(in.Op) && (in.Rd == 0 || in.Rd == in.Rs1)) { // RDX or the base overwritten
		for j := k + 1; j < t.n; j++ {
			next := t.insns[j]
			if next.Rs1 == in.Rs1 && (isLoad(next.Op) && !write || isStore(next.Op) && write) {
				keep = true
				break
			}
			if !keepsPage(next, in.Rs1) {
				break
			}
		}
	}
	if prev.ok && prev.write == write && prev.rs1 == in.Rs1 {
		d := int32(in.Imm - prev.imm)
		slow := t.exit(pc, k, exitSlow)
		a.lea(false, rCX, at(rAX, d))
		a.aluRI(false, aluCMP, rCX, int32(4096-size))
		a.jcc(ccA, slow)
		if keep {
			t.page = prev
		}
		return d
	}
	t.addressFS(k, in, pc, size, write, false, keep)
	if keep {
		t.page = pageOf{ok: true, write: write, rs1: in.Rs1, imm: in.Imm}
	}
	return 0
}

// keepsPage reports whether the translation of in leaves RAX and RDX alone
// and does not write guest register base: simple arithmetic that comes
// between the loads and stores of a stack frame or a structure.
func keepsPage(in riscv.Inst, base uint8) bool {
	if in.Rd == base && in.Rd != 0 {
		return false
	}
	switch in.Op {
	case riscv.OpLUI, riscv.OpAUIPC, riscv.OpFENCE, riscv.OpADDI, riscv.OpXORI, riscv.OpORI, riscv.OpANDI:
		return true // their only temporary is the destination
	case riscv.OpSLLI, riscv.OpSRLI, riscv.OpSRAI:
		return in.Rs1 != 0 || in.Rd == 0
	case riscv.OpADD, riscv.OpXOR, riscv.OpOR, riscv.OpAND, riscv.OpSUB:
		return in.Rd == 0 || in.Rs1 != 0 && !(in.Op == riscv.OpSUB && in.Rd == in.Rs2)
	}
	return false
}

func isLoad(o riscv.Op) bool {
	switch o {
	case riscv.OpLB, riscv.OpLH, riscv.OpLW, riscv.OpLD, riscv.OpLBU, riscv.OpLHU, riscv.OpLWU:
		return true
	}
	return false
}

func isStore(o riscv.Op) bool {
	switch o {
	case riscv.OpSB, riscv.OpSH, riscv.OpSW, riscv.OpSD:
		return true
	}
	return false
}

// address computes the RAM offset of a load or store of instruction k into
// RDX through the hart's read or write TLB, exiting to the interpreter on a
// miss or when the access leaves the page (the interpreter's fast path
// makes the same two tests). RAX and RCX are clobbered.
func (t *tr) address(k int, in riscv.Inst, pc uint64, size int, write bool) {
	t.addressFS(k, in, pc, size, write, false, false)
}

// addressFS is address, with the check that the FPU is on (an FP load or
// store) when fs is set, leaving the page offset in RAX when keep is.
func (t *tr) addressFS(k int, in riscv.Inst, pc uint64, size int, write, fs, keep bool) {
	a := &t.a
	tlb := t.j.lay.readTLB
	if write {
		tlb = t.j.lay.writeTLB
	}
	base := rDX
	if in.Rs1 != 0 {
		base = t.src(in.Rs1)
	}
	// The exit writes back what is dirty now: no allocation may come
	// between here and the last jump to it.
	slow := t.exit(pc, k, exitSlow)
	if fs {
		t.fsOff(slow)
	}
	switch {
	case in.Rs1 == 0:
		a.movImm(rDX, uint64(in.Imm))
	case in.Imm == 0:
		a.movRR(true, rDX, base)
	default:
		a.lea(true, rDX, at(base, int32(in.Imm)))
	}
	t.lookup(size, tlb, slow, keep)
}

// lookup turns the guest address in RDX into its RAM offset through the
// TLB at displacement tlb (the read or the write one), jumping to slow on a
// miss or when the size bytes leave the page; keep leaves the page offset
// in RAX. It clobbers RAX and RCX.
func (t *tr) lookup(size int, tlb int32, slow label, keep bool) {
	a := &t.a
	// RCX = index*16 and RAX = tag: (va>>12)%TLBSize<<4 and va&^4095|key.
	// For a wider access the tag is computed from its last byte, as QEMU
	// does: when the access leaves the page, that is a page whose entry
	// cannot be at this index, so the one comparison also stands for the
	// interpreter's page-crossing test.
	t.tlbIndex()
	if size == 1 {
		a.movRR(true, rAX, rDX)
	} else {
		a.lea(true, rAX, at(rDX, int32(size-1)))
	}
	a.aluRI(true, aluAND, rAX, -4096)
	a.aluRM(true, aluOR, rAX, at(regHart, t.j.lay.dataKey))
	a.aluRM(true, aluCMP, rAX, atIdx(regHart, rCX, 0, tlb))
	a.jcc(ccNE, slow)
	if keep {
		a.movRR(false, rAX, rDX)
		a.aluRI(false, aluAND, rAX, 4095)
	}
	a.aluRM(true, aluADD, rDX, atIdx(regHart, rCX, 0, tlb+8))
}

// divide emits the M extension's divisions, with the results the spec gives
// for a zero divisor and for overflow computed without dividing (x86 would
// fault).
func (t *tr) divide(in riscv.Inst) {
	a := &t.a
	w := in.Op == riscv.OpDIV || in.Op == riscv.OpDIVU || in.Op == riscv.OpREM || in.Op == riscv.OpREMU
	signed := in.Op == riscv.OpDIV || in.Op == riscv.OpREM || in.Op == riscv.OpDIVW || in.Op == riscv.OpREMW
	rem := in.Op == riscv.OpREM || in.Op == riscv.OpREMU || in.Op == riscv.OpREMW || in.Op == riscv.OpREMUW
	a.movRR(true, rAX, t.srcOr(in.Rs1, rAX))
	a.movRR(true, rCX, t.srcOr(in.Rs2, rCX))
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
	t.setX(in.Rd, rAX) // the allocation comes after the branches: no store inside them
}

// fuse emits instruction k together with the ones after it when they
// form an idiom that x86 does in fewer instructions, and returns how many
// it emitted (0: none, emit k alone). The group's instructions retire
// together: none of them can leave the block, and the registers they leave
// behind are all written as the instructions would (or are dead: written
// again before anything reads them or anything may leave the block).
func (t *tr) fuse(k int) int {
	in := t.insns[k]
	if in.Rd == 0 || k+1 >= t.n || k+1 == t.cross {
		return 0
	}
	n1 := t.insns[k+1]
	a := &t.a
	switch {
	case (in.Op == riscv.OpSLLI && (n1.Op == riscv.OpSRLI || n1.Op == riscv.OpSRAI)) &&
		in.Imm == 32 && n1.Imm == 32 && n1.Rd == in.Rd && n1.Rs1 == in.Rd:
		// zext.w and sext.w as a pair of shifts.
		t.page.ok = false
		t.fused++
		t.k = k + 1
		x := t.srcOr(in.Rs1, rAX)
		d := t.dst(in.Rd)
		if n1.Op == riscv.OpSRLI {
			a.movRR(false, d, x)
		} else {
			a.movsxd(d, x)
		}
		return 2
	}
	if k+2 >= t.n || k+2 == t.cross {
		return 0
	}
	// A rotate: srl(i)w ra, x, s; sll(i)w rb, x, 32-s; or rd, ra, rb (and
	// the 64-bit kind), with ra dead after it unless it is rd.
	n2 := t.insns[k+2]
	var bits int64
	switch {
	case in.Op == riscv.OpSRLIW && n1.Op == riscv.OpSLLIW:
		bits = 32
	case in.Op == riscv.OpSRLI && n1.Op == riscv.OpSLLI:
		bits = 64
	default:
		return 0
	}
	ra, rb, x := in.Rd, n1.Rd, in.Rs1
	if n2.Op != riscv.OpOR || n2.Rd == 0 || x == 0 || rb == 0 || ra == x || rb == x || ra == rb ||
		n1.Rs1 != x || in.Imm <= 0 || in.Imm+n1.Imm != bits ||
		!(n2.Rs1 == ra && n2.Rs2 == rb || n2.Rs1 == rb && n2.Rs2 == ra) {
		return 0
	}
	rd := n2.Rd
	live := t.deadAt[k+3]
	if ra != rd && live&(1<<ra) == 0 || rb != rd && live&(1<<rb) == 0 {
		return 0 // they are read again, or the block may leave first
	}
	t.page.ok = false
	t.fused++
	t.k = k + 2
	w := bits == 64
	a.movRR(w, rAX, t.src(x))
	a.shiftRI(w, shROR, rAX, uint8(in.Imm))
	d := t.dst(rd)
	if w {
		a.movRR(true, d, rAX)
	} else {
		a.movsxd(d, rAX)
	}
	return 3
}

// CSRs the translator accesses itself, and the bits of mstatus that make
// sstatus (as riscv's sstatusMask).
const (
	csrSstatus  = 0x100
	csrSscratch = 0x140
	msSIE       = 1 << 1
	sstatusMask = 1<<1 | 1<<5 | 1<<8 | 3<<13 | 1<<18 | 1<<19 | 3<<32 | 1<<63
)

func isCSR(o riscv.Op) bool {
	switch o {
	case riscv.OpCSRRW, riscv.OpCSRRS, riscv.OpCSRRC, riscv.OpCSRRWI, riscv.OpCSRRSI, riscv.OpCSRRCI:
		return true
	}
	return false
}

// csrTranslated reports whether the translator does CSR instruction in
// itself: any access to sscratch (a kernel's trap entry and exit swap it),
// and the reads, sets and clears of sstatus that touch SIE alone (a
// kernel's interrupt masking, thousands of times per second). The
// register forms on sstatus are checked when they run: a value with any
// other bit is left to the interpreter.
func csrTranslated(in riscv.Inst) bool {
	if !isCSR(in.Op) {
		return false
	}
	switch in.Imm {
	case csrSscratch:
		return true
	case csrSstatus:
		switch in.Op {
		case riscv.OpCSRRS, riscv.OpCSRRC:
			return true
		case riscv.OpCSRRSI, riscv.OpCSRRCI:
			return uint64(in.Rs1)&^msSIE == 0
		}
	}
	return false
}

// csr emits a CSR instruction csrTranslated accepts, as the interpreter's
// execCSR does it: below S-mode (illegal) and for an sstatus value with
// bits other than SIE it leaves for the interpreter; a write sets the
// flags that make the interpreter check interrupts; and when a set of
// SIE finds an interrupt pending and enabled, it leaves after the
// instruction, so that the interpreter takes the interrupt before the
// next one, where it would have.
func (t *tr) csr(k int, in riscv.Inst, pc uint64) {
	a := &t.a
	lay := &t.j.lay
	reg := in.Op == riscv.OpCSRRW || in.Op == riscv.OpCSRRS || in.Op == riscv.OpCSRRC
	write := in.Op == riscv.OpCSRRW || in.Op == riscv.OpCSRRWI || in.Rs1 != 0
	src := rCX // the value written: a register, or the immediate in RCX
	if reg && in.Rs1 != 0 {
		src = t.src(in.Rs1)
	}
	slow := t.exit(pc, k, exitSlow)
	a.cmpMI8(at(regHart, lay.priv), riscv.PrivS)
	a.jcc(ccB, slow)
	if in.Imm == csrSstatus && reg && in.Rs1 != 0 {
		a.testRI(true, src, ^int32(msSIE))
		a.jcc(ccNE, slow)
	}
	if !reg || in.Rs1 == 0 {
		a.movImm(rCX, uint64(in.Rs1)) // the immediate (x0: zero)
	}
	// Nothing leaves from here on: read, write, then rd.
	m := at(regHart, lay.sscratch)
	if in.Imm == csrSstatus {
		m = at(regHart, lay.mstatus)
	}
	if in.Rd != 0 {
		a.load(true, rAX, m)
		if in.Imm == csrSstatus {
			// sstatus reads SD set when FS is dirty.
			a.movRR(false, rDX, rAX)
			a.aluRI(false, aluAND, rDX, msFS)
			a.aluRI(false, aluCMP, rDX, msFS)
			a.setcc(ccE, rDX)
			a.movzxb(rDX, rDX)
			a.shiftRI(true, shSHL, rDX, 63)
			a.aluRR(true, aluOR, rAX, rDX)
			a.movImm(rDX, sstatusMask)
			a.aluRR(true, aluAND, rAX, rDX)
		}
	}
	if write {
		switch in.Op {
		case riscv.OpCSRRW, riscv.OpCSRRWI: // sscratch only
			a.store(8, m, src)
		case riscv.OpCSRRS, riscv.OpCSRRSI:
			a.aluMR(true, aluOR, m, src)
		default:
			a.movRR(true, rDX, src)
			a.unaryR(true, unNOT, rDX)
			a.aluMR(true, aluAND, m, rDX)
		}
		a.storeImm8(at(regHart, lay.checkIRQ), 1)
		a.storeImm8(at(regHart, lay.attention), 1)
	}
	if in.Rd != 0 {
		t.setX(in.Rd, rAX)
	}
	if write && in.Imm == csrSstatus && (in.Op == riscv.OpCSRRS || in.Op == riscv.OpCSRRSI) {
		// An interrupt may have become deliverable: leave (all of this
		// instruction retired) for the interpreter to see.
		after := a.newLabel()
		t.stubs = append(t.stubs, stub{l: after, pc: pc + uint64(in.Size), k: k + 1, reason: exitSlow, site: -1, spills: t.spills()})
		a.load(true, rDX, at(regHart, lay.mip))
		a.aluRM(true, aluAND, rDX, at(regHart, lay.mie))
		a.jcc(ccNE, after)
	}
}

// tlbIndex sets RCX to the offset of the TLB entry for the address in
// RDX: (va>>12)%TLBSize*16.
func (t *tr) tlbIndex() {
	a := &t.a
	a.movRR(false, rCX, rDX)
	a.shiftRI(false, shSHR, rCX, 8)
	a.aluRI(false, aluAND, rCX, (riscv.TLBSize-1)<<4)
}
