//go:build linux && amd64

// Package jit translates RV64GC guest code to x86-64 host code: a
// riscv.Engine that runs a hart's instructions faster than the interpreter
// while leaving every architectural effect exactly as the interpreter would
// (instruction counts included), and hands the interpreter everything it
// does not translate.
//
// # Design
//
// A block is a run of guest instructions in one page (the last may reach
// into the next), ending at a jump, before an instruction the translator
// leaves to the interpreter, at the end of the page or at its length
// limit. It goes on past conditional branches (a superblock): taken, a
// branch leaves through a side exit. Direct jumps within the page are
// followed. A few idioms are translated as one (fuse: rotates and
// extensions written as shifts). Blocks are keyed by guest virtual address and
// RAM offset (the same page may be mapped twice), live in a code buffer
// mapped twice (writable, and executable), and are entered from Go through
// an assembly trampoline (enter_amd64.s). Generated code never calls Go:
// whatever it cannot do (a TLB miss, a device access, a CSR, a trap) it
// leaves by returning to the trampoline with the guest PC and the count
// exact, and the interpreter executes that one instruction.
//
// Counting follows QEMU's icount: each block starts by taking its length
// from a budget held in R12 and leaves before executing anything if the
// budget would go negative; an exit in the middle of a block gives back
// what did not retire. The budget is what Run's limit allows, so a run
// stops at exactly its limit, and since interrupts only become pending in
// Go (between Runs or in an interpreted instruction), they are taken at the
// same instruction as in the interpreter.
//
// Guest registers live in the Hart (riscv.Hart.X), addressed from R15, so
// the interpreter and the generated code share them without copying;
// within a block the ones it uses are cached in host registers
// (regalloc.go) and written back before it leaves. Loads, stores and AMOs
// look up the hart's own TLB entries inline (EngineView) and go to the
// interpreter on a miss, which makes A/D updates, faults, dirty tracking
// and device accesses the interpreter's by construction. Jumps within a
// page are patched direct jumps; jumps to other pages and indirect ones
// check the hart's fetch TLB, as an interpreted fetch would, and find the
// block in a jump table (ctx.jt).
//
// What is cheaper interpreted is interpreted: code reached for the first
// time (a block is translated at the second arrival: much of a kernel's
// code runs once), the rest of a block where Exec resumes in its middle
// (where the last Run stopped, or an interrupt was taken; a block is
// translated from there only if that happens often) and the end of a Run
// (fewer instructions left than a block holds).
//
// Self-modifying code: pages holding decoded code never enter the write
// TLB, so every store to them is interpreted, and the decode cache tells the
// engine (CodeChanged), which drops the page's blocks. After FENCE.I
// (CodeFlushed) a page's blocks are kept if its bytes are unchanged.
//
// Safety: generated code addresses guest RAM only through TLB entries Go
// filled (a page of RAM) plus an offset checked to stay in the page, jumps
// only to labels of its own block, to blocks Go linked (codeBuf checks the
// targets) or through the jump table Go fills, and divides only after
// ruling out the cases x86 faults on. TestJumpsStayInBuffer checks the
// jumps of the code it emits for random programs.
package jit

import (
	"bytes"
	"errors"
	"runtime"
	"unsafe"

	"ftvm/riscv"
)

// Exit reasons, set in ctx.reason by generated code.
const (
	exitSlow   = iota // interpret the instruction at PC
	exitBudget        // the block at PC needs more budget than is left
	exitChain         // PC is a jump target in the same page; site may be linked
	exitJump          // PC is a jump target elsewhere: look it up
)

const (
	codeSize = 64 << 20 // bytes of code buffer per hart
	maxBlock = 128      // instructions per block
	// maxSlice bounds one entry into generated code, so the goroutine
	// reaches a Go safe point (garbage collection, preemption) every few
	// milliseconds whatever the guest does.
	maxSlice = 1 << 22
	// A block is not translated for fewer instructions than this left in
	// the budget: the end of a Run is interpreted, instead of translating
	// a block at each instruction of it.
	minTranslate = 2 * maxBlock
)

// ctx is the part of the engine's state generated code reads and writes
// (through R13). It holds no Go pointers: generated code writes it without
// write barriers.
type ctx struct {
	budget int64   // instructions left; in R12 while code runs
	reason uint64  // exit reason
	site   uint64  // exitChain: address of the jump's rel32, or 0
	ram    uintptr // address of RAM[0]

	// FP: the MXCSR for each rounding mode, a scratch word for STMXCSR,
	// and MXCSR's exception flags as fflags (fp.go).
	mxcsr   [4]uint32
	scratch uint32
	_       uint32
	flags   [64]uint8

	// jt finds the block of a jump target that generated code cannot link
	// directly (indirect jumps, other pages): after the target's page
	// passed the fetch TLB, the entry at jtIndex(pc) is the block when its
	// pc and RAM offset match. Go fills it; an empty entry has an odd pc,
	// which no target has.
	jt [jtSize]jtEntry
}

type jtEntry struct {
	pc, off uint64
	code    uintptr
	_       uint64
}

const jtSize = 1 << jtBits

// jtIndex hashes the address's low 32 bits (Fibonacci hashing): the low
// bits alone put hot code a multiple of 16 KiB apart (the guest's SHA-256
// and its caller, say) in one entry, where they evict each other at every
// call.
func jtIndex(pc uint64) uint64 { return uint64(uint32(pc) * jtMul >> (32 - jtBits)) }

const (
	jtBits = 16
	jtMul  = 0x9e3779b1 // 2^32 divided by the golden ratio
)

func (c *ctx) clearJT() {
	for i := range c.jt {
		c.jt[i] = jtEntry{pc: 1}
	}
}

// setJT fills the jump table's entry idx.
func (j *JIT) setJT(idx uint64, e jtEntry, b *block) {
	if j.c.jt[idx].pc == 1 && len(j.jtUsed) <= jtSize/4 {
		j.jtUsed = append(j.jtUsed, uint32(idx)) // past jtSize/4, emptyJT clears it all
	}
	j.c.jt[idx] = e
	j.jtb[idx] = b
}

// emptyJT empties the jump table: the entries used since it was last
// emptied, or all of it when that is most of it.
func (j *JIT) emptyJT() {
	if len(j.jtUsed) > jtSize/4 {
		j.c.clearJT()
	} else {
		for _, i := range j.jtUsed {
			j.c.jt[i] = jtEntry{pc: 1}
		}
	}
	j.jtUsed = j.jtUsed[:0]
}

// layout is where generated code finds the hart's state, as displacements
// from R15 (which points hartBias bytes into the Hart, so that every
// integer register is a one-byte displacement).
type layout struct {
	x, f, pc                 int32
	readTLB, writeTLB, fetch int32
	dataKey, fetchKey        int32
	mstatus, fflags, frm     int32
	resValid, resAddr        int32
	resVal                   int32
	priv, mip, mie, sscratch int32
	checkIRQ, attention      int32
}

// JIT is the translator of one hart.
type JIT struct {
	h    *riscv.Hart
	view riscv.EngineView
	c    *ctx
	buf  *codeBuf
	lay  layout
	bias uintptr

	blocks map[blockKey]*block
	jtb    [jtSize]*block // the block of each jump table entry
	jtUsed []uint32       // the entries filled since the table was last emptied
	pages  []*codePage    // by RAM page; nil for none
	live   []uint64       // the pages with blocks

	// churn counts, per RAM page, how often its blocks were dropped
	// because the page was written. Pages that mix code with data being
	// written get shorter blocks, so each write throws away less
	// translation (see blockLimit); the counts halve every churnDecay
	// drops.
	churn    []uint8
	churnAll int

	// heat counts, by RAM page and halfword, the times execution came to
	// an address without a block: a block is translated there the
	// hotBlock-th time. Until then the interpreter runs its instructions:
	// much of a kernel's code (at boot, say) runs once, and interpreting
	// it costs a fraction of translating it.
	heat []*[2048]uint8

	t tr // translation scratch

	// Statistics.
	Stats Stats
}

// Stats counts what the translator did.
type Stats struct {
	Blocks      uint64 // blocks translated
	GuestInsns  uint64 // guest instructions in them
	CodeBytes   uint64 // host code bytes emitted
	Flushes     uint64 // times every block was dropped (the code buffer was full)
	Suspended   uint64 // times every page became suspect (FENCE.I and the like)
	Verified    uint64 // suspect pages found unchanged
	Invalidated uint64 // pages whose blocks were dropped
	Entries     uint64 // entries into generated code
	Native      uint64 // instructions retired by generated code
	// TranslateNanos is the time spent translating, when Clock is set.
	TranslateNanos int64
	// CodePeak is the most code the buffer held at once, in bytes.
	CodePeak uint64
	Links    uint64 // direct jumps patched between blocks
	// Fused counts the instruction groups translated as one (rotates and
	// extensions written as shifts).
	Fused uint64
}

type blockKey struct{ pc, off uint64 }

// codePage is a RAM page with translated code: its blocks, and its bytes
// as they were translated. A FENCE.I (or anything else that empties the
// decode cache) leaves the page suspect: its decodes are gone, so stores no
// longer have to go through the interpreter, and generated code may not
// jump into it until Go has checked that its bytes are unchanged (and so
// the blocks still right) and the page is code again in the decode cache.
// A kernel executes FENCE.I often (Linux at every new executable
// mapping); comparing 4 KiB is much cheaper than translating a page again.
type codePage struct {
	blocks  []*block
	bytes   []byte
	suspect bool
	live    int // index in JIT.live
	// cover says, for each halfword of the page where an instruction of
	// one of its blocks starts, how many instructions that block executes
	// from there to its end (at most 255), and 0 elsewhere.
	cover [2048]uint8
	// resumes counts the times Exec started in the middle of a block, by
	// halfword; at hotResume, a block is translated from there.
	resumes [2048]uint8
}

const hotResume = 8

const hotBlock = 2

// warm counts one more arrival at RAM offset off, where there is no block,
// and reports whether it is still too early to translate one.
func (j *JIT) warm(off uint64) bool {
	p := j.heat[off>>12]
	if p == nil {
		p = new([2048]uint8)
		j.heat[off>>12] = p
	}
	if c := &p[off&4095>>1]; *c < hotBlock {
		*c++
		return *c < hotBlock
	}
	return false
}

// hot reports whether execution has come to RAM offset off often enough
// for a block there (warm counts).
func (j *JIT) hot(off uint64) bool {
	p := j.heat[off>>12]
	return p != nil && p[off&4095>>1] >= hotBlock
}

// basicBlock returns the number of instructions from RAM offset off to
// the first that may jump (included), before anything not translated or
// the end of the page: what the interpreter runs before Exec comes again,
// at an address where a block may start.
func (j *JIT) basicBlock(off uint64) uint64 {
	ram := j.view.RAM
	n, page := uint64(0), off>>12
	for n < maxBlock && off>>12 == page {
		raw, whole := rawAt(ram, off)
		if !whole {
			break
		}
		in := riscv.Decode(raw)
		if !translated(in) {
			break
		}
		n++
		if endsBlock(in.Op) || isBranch(in.Op) {
			break
		}
		off += uint64(in.Size)
	}
	return max(n, 1)
}

type block struct {
	size    int // bytes of host code
	pc, off uint64
	n       uint64  // instructions; 0: leave the first to the interpreter
	entry   uintptr // host address; 0 for a block not kept (translate)
}

// Clock, when set, times translation (Stats.TranslateNanos). It is for
// benchmarks: nothing the translator does depends on it.
var Clock func() int64

// Available reports whether translation is supported on this host.
func Available() bool { return true }

// New returns a translator for h and attaches it. It fails when the host
// cannot map executable memory or h's RAM is not page-aligned.
func New(h *riscv.Hart) (*JIT, error) {
	v := h.EngineView()
	if len(v.RAM) == 0 || len(v.RAM)%4096 != 0 || h.RAMBase()%4096 != 0 {
		return nil, errors.New("jit: RAM must be a whole number of pages at a page-aligned address")
	}
	j := &JIT{h: h, view: v, c: new(ctx)}
	if err := j.computeLayout(); err != nil {
		return nil, err
	}
	buf, err := newCodeBuf(codeSize)
	if err != nil {
		return nil, err
	}
	j.buf = buf
	j.c.ram = uintptr(unsafe.Pointer(&v.RAM[0]))
	j.c.clearJT()
	j.c.initFP()
	j.blocks = make(map[blockKey]*block)
	j.pages = make([]*codePage, len(v.RAM)>>12)
	j.churn = make([]uint8, len(v.RAM)>>12)
	j.heat = make([]*[2048]uint8, len(v.RAM)>>12)
	runtime.AddCleanup(j, func(b *codeBuf) { b.free() }, buf)
	h.SetEngine(j)
	return j, nil
}

func (j *JIT) computeLayout() error {
	h := j.h
	base := uintptr(unsafe.Pointer(h))
	size := unsafe.Sizeof(*h)
	j.bias = unsafe.Offsetof(h.X) + 128
	var bad bool
	off := func(p unsafe.Pointer, n uintptr) int32 {
		a := uintptr(p)
		if a < base || a+n > base+size {
			bad = true
			return 0
		}
		return int32(int64(a-base) - int64(j.bias))
	}
	v := j.view
	tlb := unsafe.Sizeof(*v.ReadTLB)
	j.lay = layout{
		x:         off(unsafe.Pointer(&h.X), 256),
		f:         off(unsafe.Pointer(&h.F), 256),
		pc:        off(unsafe.Pointer(&h.PC), 8),
		readTLB:   off(unsafe.Pointer(v.ReadTLB), tlb),
		writeTLB:  off(unsafe.Pointer(v.WriteTLB), tlb),
		fetch:     off(unsafe.Pointer(v.FetchTLB), tlb),
		dataKey:   off(unsafe.Pointer(v.DataKey), 8),
		fetchKey:  off(unsafe.Pointer(v.FetchKey), 8),
		mstatus:   off(unsafe.Pointer(v.Mstatus), 8),
		fflags:    off(unsafe.Pointer(v.Fflags), 8),
		frm:       off(unsafe.Pointer(v.Frm), 8),
		resValid:  off(unsafe.Pointer(v.ResValid), 1),
		resAddr:   off(unsafe.Pointer(v.ResAddr), 8),
		resVal:    off(unsafe.Pointer(v.ResVal), 8),
		priv:      off(unsafe.Pointer(v.Priv), 1),
		mip:       off(unsafe.Pointer(v.Mip), 8),
		mie:       off(unsafe.Pointer(v.Mie), 8),
		sscratch:  off(unsafe.Pointer(v.Sscratch), 8),
		checkIRQ:  off(unsafe.Pointer(v.CheckIRQ), 1),
		attention: off(unsafe.Pointer(v.Attention), 1),
	}
	if bad || unsafe.Sizeof(riscv.TLBEntry{}) != 16 || tlb != 16*riscv.TLBSize {
		return errors.New("jit: the hart's state is not laid out as the translator expects")
	}
	return nil
}

//go:noescape
func enter(code uintptr, hart, c unsafe.Pointer)

// Exec implements riscv.Engine. It leaves to the interpreter what is
// cheaper there than translated: the end of a Run (fewer instructions left
// than a block holds, or than make translating worthwhile), and, when it
// is entered in the middle of a block (where the last Run stopped, or an
// interrupt was taken), the rest of that block, instead of translating a
// block from there that would hardly run again.
func (j *JIT) Exec(h *riscv.Hart, limit uint64) (interp uint64) {
	for resumed := true; h.Instret < limit; resumed = false {
		off, ok := h.FetchPage()
		if !ok {
			return 1
		}
		if cp := j.pages[off>>12]; cp != nil && cp.suspect {
			j.verify(off>>12, cp)
		}
		left := limit - h.Instret
		idx := jtIndex(h.PC)
		var b *block
		if e := &j.c.jt[idx]; e.pc == h.PC && e.off == off {
			b = j.jtb[idx] // the jump table doubles as a cache of the map
		} else {
			b = j.blocks[blockKey{h.PC, off}]
		}
		if b == nil {
			if left < minTranslate {
				return left
			}
			if cp := j.pages[off>>12]; resumed && cp != nil && cp.cover[off&4095>>1] != 0 {
				// Inside a block: interpret the rest of it, unless
				// execution comes back here often (the instruction
				// after a load that misses the TLB, say).
				if r := &cp.resumes[off&4095>>1]; *r < hotResume {
					*r++
					return uint64(cp.cover[off&4095>>1])
				}
			}
			if j.warm(off) {
				return j.basicBlock(off)
			}
			b = j.translate(h.PC, off)
		}
		if b.entry == 0 {
			return 1 // not kept (translate)
		}
		// Jumps from generated code to here may stay in generated code.
		j.setJT(idx, jtEntry{pc: h.PC, off: off, code: b.entry}, b)
		if b.n == 0 {
			return 1
		}
		if left < b.n {
			return left
		}
		if left > maxSlice {
			left = maxSlice
		}
		j.c.budget = int64(left)
		j.c.site = 0
		j.Stats.Entries++
		enter(b.entry, unsafe.Pointer(uintptr(unsafe.Pointer(h))+j.bias), unsafe.Pointer(j.c))
		done := left - uint64(j.c.budget)
		h.Instret += done
		j.Stats.Native += done
		switch j.c.reason {
		case exitSlow:
			return 1
		case exitChain:
			j.link(h, limit)
		}
	}
	return 1
}

// link points the direct jump that just exited (ctx.site) at the block of
// its target, translating it if needed. Source and target are in the same
// page, so they are dropped together and the link never outlives either.
func (j *JIT) link(h *riscv.Hart, limit uint64) {
	site := uintptr(j.c.site)
	if site == 0 {
		return
	}
	off, ok := h.FetchPage() // the current page: this cannot fault
	if !ok {
		return
	}
	b := j.blocks[blockKey{h.PC, off}]
	if b == nil {
		if limit-h.Instret < minTranslate || !j.hot(off) {
			return // Exec decides
		}
		b = j.translate(h.PC, off)
	}
	if b.entry == 0 {
		return
	}
	j.buf.patchRel32(site, b.entry)
	j.Stats.Links++
}

// CodeChanged implements riscv.Engine: page's blocks are dropped.
func (j *JIT) CodeChanged(page uint64) {
	if j.pages[page] == nil {
		return
	}
	j.dropPage(page)
	if j.churn[page] < 255 {
		j.churn[page]++
	}
	if j.churnAll++; j.churnAll == churnDecay {
		j.churnAll = 0
		for i := range j.churn {
			j.churn[i] >>= 1
		}
	}
}

func (j *JIT) dropPage(page uint64) {
	for _, b := range j.pages[page].blocks {
		delete(j.blocks, blockKey{b.pc, b.off})
		if e := &j.c.jt[jtIndex(b.pc)]; e.pc == b.pc && e.off == b.off {
			*e = jtEntry{pc: 1}
		}
	}
	i := j.pages[page].live
	last := j.live[len(j.live)-1]
	j.live[i] = last
	j.pages[last].live = i
	j.live = j.live[:len(j.live)-1]
	j.pages[page] = nil
	j.Stats.Invalidated++
}

// verify checks a suspect page, which is the current instruction page
// again (FetchPage put it back in the decode cache): its blocks stay if
// its bytes are those they were translated from.
func (j *JIT) verify(page uint64, cp *codePage) {
	if bytes.Equal(cp.bytes, j.view.RAM[page<<12:(page+1)<<12]) {
		cp.suspect = false
		j.Stats.Verified++
		return
	}
	j.dropPage(page)
}

const churnDecay = 1024

// blockLimit is the most instructions a block in RAM page page may hold.
func (j *JIT) blockLimit(page uint64) int {
	return maxBlock >> min(j.churn[page], 5)
}

// CodeFlushed implements riscv.Engine: every page becomes suspect (see
// codePage), and the jump table is emptied so that generated code enters
// no page before Go has checked it.
func (j *JIT) CodeFlushed() {
	if len(j.live) == 0 {
		return
	}
	for _, p := range j.live {
		j.pages[p].suspect = true
	}
	j.emptyJT()
	j.Stats.Suspended++
}

// dropAll drops every block and reuses the code buffer.
func (j *JIT) dropAll() {
	clear(j.blocks)
	for _, p := range j.live {
		j.pages[p] = nil
	}
	j.live = j.live[:0]
	j.emptyJT()
	j.buf.reset()
	j.Stats.Flushes++
}
