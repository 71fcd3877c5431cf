package riscv

// Several harts sharing one RAM. Each hart keeps its own caches (TLB,
// decodes, dirty bitmap); what crosses between harts is written down here:
// LR/SC reservations broken by other harts' stores, and, for harts running
// in parallel on host threads, the memory operations that must be atomic
// on the host.
//
// Instruction fetch is not coherent with other harts' stores, as the
// privileged spec allows (Zifencei): a hart sees code another hart wrote
// once it executes fence.i, which Linux asks of every hart through the
// SBI's remote fence.i before it runs new code. A hart's own stores, DMA
// (NoteWrite) and fence.i keep its decodes current.

// resGranule is the size of a reservation set: the naturally aligned
// doubleword holding the reserved address.
const resGranule = 8

// resOverlaps reports whether a store of n bytes at RAM offset off touches
// the reservation set of a reservation at RAM offset res.
func resOverlaps(res, off, n uint64) bool {
	g := res &^ (resGranule - 1)
	return off < g+resGranule && off+n > g
}

// watchPeers prepares a Run of h for peers that hold reservations: their
// pages leave h's write TLB, so every store h makes to them takes the slow
// path (noteStore), which breaks the reservation it hits. Peers only run
// between runs of h, so their reservations cannot change while h runs.
func (h *Hart) watchPeers() {
	h.peerRes = 0
	for _, p := range h.peers {
		if p != h && p.resValid {
			h.peerRes++
			h.dropWriteTLBPage(p.resAddr &^ (pageSize - 1))
		}
	}
}

// peerWatches reports whether a peer holds a reservation in RAM page p.
func (h *Hart) peerWatches(p uint64) bool {
	for _, q := range h.peers {
		if q != h && q.resValid && q.resAddr>>pageShift == p {
			return true
		}
	}
	return false
}

// breakPeers breaks the reservations of peers that a store of n bytes at
// RAM offset off touches.
func (h *Hart) breakPeers(off, n uint64) {
	for _, q := range h.peers {
		if q != h && q.resValid && resOverlaps(q.resAddr, off, n) {
			q.resValid = false
			h.peerRes--
		}
	}
}

// dropWriteTLBPage removes the write-TLB entries that map the RAM page at
// offset pageOff.
func (h *Hart) dropWriteTLBPage(pageOff uint64) {
	for i := range h.mmu.w {
		if h.mmu.w[i].tag != 0 && h.mmu.w[i].pageOff() == pageOff {
			h.mmu.w[i].tag = 0
		}
	}
}

// Atomics are the operations on RAM that a hart running in parallel with
// others on host threads performs through the host's atomic instructions.
// Offsets are offsets in the hart's RAM, naturally aligned for size (4 or
// 8; Load and Store also 1 and 2, and any alignment within a page).
type Atomics interface {
	// CompareAndSwap writes new at off if it holds old, atomically.
	CompareAndSwap(off uint64, size int, old, new uint64) bool
	// Load and Store are single-copy atomic accesses. They are used for
	// every RAM access only in race-detector builds (see race.go), so that
	// races between guest harts, which are the guest's business and
	// governed by RVWMO, are not reported as races of the emulator.
	Load(off uint64, size int) uint64
	Store(off uint64, size int, v uint64)
	// Fence orders every access before it before every access after it,
	// as a full host barrier.
	Fence()
}

// SetAtomics makes h use a for AMOs (a compare-and-swap loop), LR/SC (SC
// is a compare-and-swap against the value LR read, as in QEMU's parallel
// mode: it fails when the word changed, and also misses an A-B-A change,
// which no lock or counter built on LR/SC can observe), page-table A/D
// updates (a compare-and-swap, so that no other hart's PTE write is lost),
// and FENCE. Nil returns h to the interleaved mode. A reservation is
// kept: LR records the value it read in either mode (and a state restored
// carries it).
func (h *Hart) SetAtomics(a Atomics) {
	h.atomics = a
}

// Interprets reports whether an engine (SetEngine) must leave in to the
// interpreter on this hart, whatever it can translate: the pause hint when
// yield hints are on (Run returns there, so that another hart takes its
// turn), and every FENCE when the hart runs in parallel (SetAtomics: the
// fence is then a host barrier). Yield hints and atomics are set before a
// hart runs and never change, so an engine may decide this once per
// instruction it translates.
func (h *Hart) Interprets(in Inst) bool {
	if in.Op != opFENCE {
		return false
	}
	return h.atomics != nil || h.yieldHints && in.Imm == pauseHint && in.Rd|in.Rs1 == 0
}
