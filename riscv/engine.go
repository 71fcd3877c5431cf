package riscv

// Execution engines. The interpreter (exec.go) is the reference; an Engine
// (the translator in package riscv/jit) executes what it can faster and
// leaves the rest to it. The contract keeps the two indistinguishable: an
// engine changes architectural state only the way the interpreter would for
// the same instructions, and returns at instruction boundaries, so Instret,
// traps and interrupts land where they land without it.
//
// The hooks are:
//   - SetEngine attaches an engine; Run then alternates between the engine
//     and single interpreted instructions (runEngine).
//   - FetchPage makes PC's page the current instruction page, exactly as an
//     interpreted fetch would (it may raise the fetch fault).
//   - EngineView hands the engine the state its generated code reads and
//     writes directly: RAM, the TLBs and their keys, the FP CSRs.
//   - The decode cache tells the engine when a page of code leaves it
//     (Engine.CodeChanged, Engine.CodeFlushed): stores to pages holding code
//     never hit the write TLB (see storeSlow), so translations of a page can
//     live exactly as long as its decodes.
//   - Decode exposes the decoder, so a translator sees the same instructions.

// Engine executes instructions of a hart on the interpreter's behalf.
type Engine interface {
	// Exec executes instructions from h.PC while it can and Instret is
	// below limit. It must return at an instruction boundary with every
	// register, CSR, TLB entry and byte of RAM as the interpreter would
	// have left them after the same instructions, and Instret <= limit.
	// It raises no trap and takes no interrupt itself, except the fetch
	// fault FetchPage may raise (Exec must return at once then). After it
	// returns, Run interprets interp instructions (at least one, fewer
	// when limit comes first) and calls Exec again; Exec may return
	// without retiring anything.
	Exec(h *Hart, limit uint64) (interp uint64)
	// CodeChanged says RAM page page (RAM offset >> 12) has left the
	// decode cache: it was written, or the cache dropped it. Translations
	// of it must not run again.
	CodeChanged(page uint64)
	// CodeFlushed says every page has left the decode cache (FENCE.I,
	// reset, a restored state).
	CodeFlushed()
}

// SetEngine attaches e (nil: the interpreter alone).
func (h *Hart) SetEngine(e Engine) {
	h.engine = e
	h.decoded.engine = e
	h.decoded.flushAll()
}

// runEngine is Run with an engine: the interpreter handles interrupts, halts
// and one instruction at a time (run with a limit one past Instret), the
// engine everything it can in between.
func (h *Hart) runEngine(limit uint64) Exit {
	n := uint64(1)
	for {
		next := h.Instret + n
		if next > limit || next < n {
			next = limit
		}
		if r := h.run(next); r != StopLimit || h.Instret >= limit {
			return r
		}
		n = max(h.engine.Exec(h, limit), 1)
	}
}

// FetchPage makes the page holding PC the current instruction page the way
// an interpreted fetch does (the fetch TLB first, then a page walk), and
// returns PC's offset in RAM. ok is false when the fetch faulted: the trap
// has been taken and PC is at the handler.
func (h *Hart) FetchPage() (off uint64, ok bool) {
	pc := h.PC
	if pc>>pageShift<<1|1 != h.mmu.fetchTag && !h.fetchMiss(pc) {
		return 0, false
	}
	return h.mmu.fetchOff | pc&(pageSize-1), true
}

// TLBSize is the number of entries of each TLB (direct-mapped by the low
// bits of the virtual page number).
const TLBSize = tlbSize

// EngineView is the state an engine's generated code may address
// directly. Everything else it leaves to the interpreter.
//
// A TLB entry is two 64-bit words: the tag (the page's virtual address |
// key, zero when invalid) and add, the page's RAM offset less its virtual
// address (modulo 2^64). A data access at va of size bytes hits when the
// entry at index va>>12 % TLBSize has tag va&^4095 | *DataKey and the
// access does not leave the page; it then reads or writes RAM[va + add].
// Pages holding translated code are never in WriteTLB. A fetch from the
// page of va hits FetchTLB the same way with *FetchKey. A miss (or
// anything else) goes to the interpreter, which walks the page table and
// fills the entry.
type EngineView struct {
	RAM                         []byte
	ReadTLB, WriteTLB, FetchTLB *[TLBSize]TLBEntry
	DataKey, FetchKey           *uint64
	// Mstatus is read for FS (FP instructions are illegal when it is 0)
	// and written to mark FS dirty; Fflags accrues exception flags; Frm
	// is the dynamic rounding mode.
	Mstatus, Fflags, Frm *uint64
	// The LR/SC reservation (RAM offset, and the value LR read): an
	// engine sets it as LR does and clears it after an SC that stored,
	// and leaves every SC that does not store to the interpreter (which
	// may then yield to another hart).
	ResValid        *bool
	ResAddr, ResVal *uint64
	// For the CSR accesses an engine may do itself (sscratch, and the
	// sstatus.SIE reads, sets and clears of a kernel's interrupt masking):
	// the privilege, mip and mie (to see whether setting SIE lets an
	// interrupt in: then it leaves, and the interpreter takes it before
	// the next instruction), sscratch, and the flags that make the
	// interpreter check interrupts, which every CSR write sets.
	Priv                *uint8
	Mip, Mie, Sscratch  *uint64
	CheckIRQ, Attention *bool
}

// EngineView returns the state an engine's generated code may address.
func (h *Hart) EngineView() EngineView {
	return EngineView{
		RAM:     h.ram,
		ReadTLB: &h.mmu.r, WriteTLB: &h.mmu.w, FetchTLB: &h.mmu.x,
		DataKey: &h.mmu.key, FetchKey: &h.mmu.xkey,
		Mstatus: &h.csr.mstatus, Fflags: &h.csr.fflags, Frm: &h.csr.frm,
		ResValid: &h.resValid, ResAddr: &h.resAddr, ResVal: &h.resVal,
		Priv: &h.Priv, Mip: &h.csr.mip, Mie: &h.csr.mie, Sscratch: &h.csr.sscratch,
		CheckIRQ: &h.checkIRQ, Attention: &h.attention,
	}
}

// RAMBase returns the physical address of the first byte of RAM.
func (h *Hart) RAMBase() uint64 { return h.ramBase }

// Inst is a decoded instruction as a translator sees it. Compressed
// instructions decode to the operation of their 32-bit expansion.
type Inst struct {
	Op            Op
	Rd, Rs1, Rs2  uint8
	Rs3, RM, Size uint8
	// Imm is the immediate (sign-extended), the CSR number of a Zicsr
	// instruction, or the raw bits of an illegal one.
	Imm int64
}

// Op is a decoded operation (the Op constants).
type Op = op

// Decode decodes the instruction whose low bits are raw (only the low 16
// bits matter when raw&3 != 3). It never fails: unknown encodings give
// OpIllegal.
func Decode(raw uint32) Inst {
	var d inst
	decode(&d, raw)
	return Inst{Op: d.op, Rd: d.rd, Rs1: d.rs1, Rs2: d.rs2, Rs3: d.rs3, RM: d.rm, Size: d.size, Imm: d.imm}
}
