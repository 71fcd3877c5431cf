package riscv

import "encoding/binary"

const (
	pageShift = 12
	pageSize  = 1 << pageShift
	tlbSize   = 1024
)

type access uint8

const (
	accRead access = iota
	accWrite
	accFetch
)

// TLBEntry maps one virtual page to a RAM page. tag is zero when invalid;
// a valid tag is the page's virtual address | key, where key (4 bits, bit
// 3 set) encodes the effective privilege and SUM (for fetches, the
// privilege alone), so a change of mode never needs a flush. add is what
// turns a virtual address in the page into its RAM offset (RAM offset of
// the page less its virtual address, modulo 2^64), so that translated code
// needs one addition. Translated code reads these entries directly (see
// EngineView): the layout, two words tag then add, is part of that
// contract.
type TLBEntry struct {
	tag uint64
	add uint64
}

// set maps the page holding va to the RAM page at offset off (any offset
// in the page).
func (e *TLBEntry) set(va, key, off uint64) {
	e.tag = va&^(pageSize-1) | key
	e.add = off&^(pageSize-1) - va&^(pageSize-1)
}

// hit reports whether e maps the page holding va under key.
func (e *TLBEntry) hit(va, key uint64) bool { return e.tag == va&^(pageSize-1)|key }

// pageOff returns the RAM offset of the page e maps.
func (e *TLBEntry) pageOff() uint64 { return e.add + e.tag&^(pageSize-1) }

type tlbEntry = TLBEntry

type mmu struct {
	r, w [tlbSize]tlbEntry
	key  uint64 // tag bits for data accesses in the current mode

	// x is the fetch TLB, tagged with xkey (the privilege). A fetch from a
	// page other than the current one looks here before walking the page
	// table, so both execution engines see the same translations: the
	// translator's jumps between pages consult the same entries.
	x    [tlbSize]tlbEntry
	xkey uint64

	// level is the level of the last translation's leaf PTE (0: a 4 KiB
	// page; 1 and 2: superpages); levels holds it for each entry of r, w
	// and x, so that an SFENCE.VMA for one address (flushPage) drops
	// every entry that address's leaf may have made.
	level  uint8
	levels [3][tlbSize]uint8

	// Fetch translation of the page currently executing (always one of the
	// fetch TLB's entries).
	fetchTag  uint64
	fetchOff  uint64
	fetchPage *decodedPage
}

func (m *mmu) flush() {
	m.r = [tlbSize]tlbEntry{}
	m.w = [tlbSize]tlbEntry{}
	m.x = [tlbSize]tlbEntry{}
	m.flushFetch()
}

// fill enters the last translation (of va, to RAM offset off) in TLB t
// with key.
func (m *mmu) fill(t *[tlbSize]tlbEntry, va, key, off uint64) {
	i := va >> pageShift & (tlbSize - 1)
	t[i].set(va, key, off)
	m.levels[m.which(t)][i] = m.level
}

// which returns the index in levels of TLB t.
func (m *mmu) which(t *[tlbSize]tlbEntry) int {
	switch t {
	case &m.r:
		return 0
	case &m.w:
		return 1
	}
	return 2
}

// flushPage is SFENCE.VMA for the address va (any address space: there
// are no ASIDs): the entries for va's page go, in every TLB and for every
// key, and so do the entries of other pages made from a superpage leaf
// that also maps va. Linux fences one page after each change of a PTE (a
// page fault among them); dropping everything then made the next
// thousand accesses miss.
func (m *mmu) flushPage(va uint64) {
	for k, t := range []*[tlbSize]tlbEntry{&m.r, &m.w, &m.x} {
		for i, lv := range &m.levels[k] {
			e := &t[i]
			if e.tag == 0 {
				continue
			}
			mask := uint64(pageSize)<<(9*lv) - 1
			if e.tag&^mask == va&^mask {
				e.tag = 0
			}
		}
	}
	m.flushFetch()
}

func (m *mmu) flushFetch() { m.fetchTag = 0; m.fetchPage = nil }

// dataPriv is the effective privilege of loads and stores (MPRV).
func (h *Hart) dataPriv() uint8 {
	if h.Priv == PrivM && h.csr.mstatus&msMPRV != 0 {
		return uint8(h.csr.mstatus >> 11 & 3)
	}
	return h.Priv
}

// updateKey recomputes the data TLB key after a change of privilege or of
// mstatus.
func (h *Hart) updateKey() {
	k := uint64(8) | uint64(h.dataPriv())<<1
	if h.csr.mstatus&msSUM != 0 {
		k |= 1
	}
	h.mmu.key = k
	h.mmu.xkey = 8 | uint64(h.Priv)<<1
}

func faultCause(acc access, page bool) uint64 {
	switch acc {
	case accFetch:
		if page {
			return causeFetchPage
		}
		return causeFetchAccess
	case accWrite:
		if page {
			return causeStorePage
		}
		return causeStoreAccess
	}
	if page {
		return causeLoadPage
	}
	return causeLoadAccess
}

// translate maps va to a physical address for acc, raising the fault on
// failure (ok=false). Sv39 walk with hardware A/D update, privileged spec
// 4.3.2 and 4.4.
func (h *Hart) translate(va uint64, acc access) (uint64, bool) {
	priv := h.Priv
	if acc != accFetch {
		priv = h.dataPriv()
	}
	h.mmu.level = 0
	if priv == PrivM || h.csr.satp>>60 == 0 {
		return va, true
	}
	if uint64(int64(va<<25)>>25) != va {
		h.trap(faultCause(acc, true), va)
		return 0, false
	}
walk:
	a := (h.csr.satp & (1<<44 - 1)) << pageShift
	for level := 2; level >= 0; level-- {
		pteAddr := a + (va>>(pageShift+9*uint(level))&0x1ff)*8
		pte, ok := h.physLoad64(pteAddr)
		if !ok {
			h.trap(faultCause(acc, false), va)
			return 0, false
		}
		if pte&pteV == 0 || pte&(pteR|pteW) == pteW || pte>>54 != 0 {
			break
		}
		ppn := pte >> 10 & (1<<44 - 1)
		if pte&(pteR|pteX) == 0 {
			a = ppn << pageShift
			continue
		}
		if !h.permitted(pte, acc, priv) {
			break
		}
		if level > 0 && ppn&(1<<(9*uint(level))-1) != 0 {
			break // misaligned superpage
		}
		want := pte | pteA
		if acc == accWrite {
			want |= pteD
		}
		if want != pte {
			if h.atomics != nil {
				// Another hart may be changing this PTE: the update
				// must not lose its write (privileged spec 4.3.1, the
				// A/D update is atomic with respect to other accesses
				// to the PTE). On a race, walk again.
				off, _ := h.ramOffset(pteAddr, 8)
				if !h.atomics.CompareAndSwap(off, 8, pte, want) {
					goto walk
				}
				h.noteStore(off, 8)
			} else if !h.physStore64(pteAddr, want) {
				h.trap(faultCause(acc, false), va)
				return 0, false
			}
		}
		h.mmu.level = uint8(level)
		return ppn<<pageShift | va&(1<<(pageShift+9*uint(level))-1), true
	}
	h.trap(faultCause(acc, true), va)
	return 0, false
}

const (
	pteV = 1 << 0
	pteR = 1 << 1
	pteW = 1 << 2
	pteX = 1 << 3
	pteU = 1 << 4
	pteA = 1 << 6
	pteD = 1 << 7
)

func (h *Hart) permitted(pte uint64, acc access, priv uint8) bool {
	if pte&pteU != 0 {
		if priv == PrivS && (acc == accFetch || h.csr.mstatus&msSUM == 0) {
			return false
		}
	} else if priv == PrivU {
		return false
	}
	switch acc {
	case accFetch:
		return pte&pteX != 0
	case accWrite:
		return pte&pteW != 0
	}
	return pte&pteR != 0 || h.csr.mstatus&msMXR != 0 && pte&pteX != 0
}

// ramOffset returns pa's offset in RAM when the n bytes at pa are RAM.
func (h *Hart) ramOffset(pa uint64, n uint64) (uint64, bool) {
	if pa >= h.ramBase && pa+n <= h.ramEnd && pa+n > pa {
		return pa - h.ramBase, true
	}
	return 0, false
}

func (h *Hart) physLoad64(pa uint64) (uint64, bool) {
	if off, ok := h.ramOffset(pa, 8); ok {
		return h.readRAM(off, 8), true
	}
	return 0, false
}

func (h *Hart) physStore64(pa uint64, v uint64) bool {
	if off, ok := h.ramOffset(pa, 8); ok {
		h.noteStore(off, 8)
		h.writeRAM(off, 8, v)
		return true
	}
	return false
}

// readRAM and writeRAM are every access of the hart to RAM. In a
// race-detector build, harts running in parallel go through their Atomics
// (see race.go); otherwise these are plain accesses, which on the hosts
// ftvm runs on (amd64, arm64) compile to single loads and stores, so
// aligned accesses are single-copy atomic as RVWMO requires.
func (h *Hart) readRAM(off, size uint64) uint64 {
	if raceEnabled && h.atomics != nil {
		return h.atomics.Load(off, int(size))
	}
	return readRAM(h.ram[off:], size)
}

func (h *Hart) writeRAM(off, size, v uint64) {
	if raceEnabled && h.atomics != nil {
		h.atomics.Store(off, int(size), v)
		return
	}
	writeRAM(h.ram[off:], size, v)
}

// noteStore keeps the decode cache coherent with a store of n bytes at RAM
// offset off.
//
// It also marks the pages dirty. Every page that enters the write TLB passes
// through here first, and ClearDirty empties the write TLB, so stores that
// hit the TLB never need to mark anything: dirty tracking costs nothing on
// the fast path.
func (h *Hart) noteStore(off, n uint64) {
	p := off >> pageShift
	h.dirty[p>>6] |= 1 << (p & 63)
	if q := (off + n - 1) >> pageShift; q != p {
		h.dirty[q>>6] |= 1 << (q & 63)
	}
	if h.decoded.pages[p] != nil {
		h.invalidatePage(p)
	}
	if q := (off + n - 1) >> pageShift; q != p && h.decoded.pages[q] != nil {
		h.invalidatePage(q)
	}
	if h.peerRes != 0 {
		h.breakPeers(off, n)
	}
}

func (h *Hart) invalidatePage(p uint64) {
	if h.mmu.fetchPage != nil && h.mmu.fetchPage == h.decoded.pages[p] {
		h.mmu.flushFetch()
	}
	h.decoded.invalidate(p)
}

// tlbLookup returns the RAM offset of va through the data TLB, or ok=false
// on a miss.
func (m *mmu) lookup(t *[tlbSize]tlbEntry, va uint64) (uint64, bool) {
	e := &t[va>>pageShift&(tlbSize-1)]
	if e.hit(va, m.key) {
		return va + e.add, true
	}
	return 0, false
}

// load reads size bytes at va. On a fault it has already entered the trap
// handler and returns ok=false.
func (h *Hart) load(va uint64, size uint64) (uint64, bool) {
	if va&(pageSize-1) <= pageSize-size {
		if off, ok := h.mmu.lookup(&h.mmu.r, va); ok {
			return h.readRAM(off, size), true
		}
	}
	return h.loadSlow(va, size)
}

func readRAM(b []byte, size uint64) uint64 {
	switch size {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.LittleEndian.Uint16(b))
	case 4:
		return uint64(binary.LittleEndian.Uint32(b))
	}
	return binary.LittleEndian.Uint64(b)
}

func writeRAM(b []byte, size uint64, v uint64) {
	switch size {
	case 1:
		b[0] = byte(v)
	case 2:
		binary.LittleEndian.PutUint16(b, uint16(v))
	case 4:
		binary.LittleEndian.PutUint32(b, uint32(v))
	default:
		binary.LittleEndian.PutUint64(b, v)
	}
}

func (h *Hart) loadSlow(va uint64, size uint64) (uint64, bool) {
	if va&(pageSize-1) > pageSize-size {
		// Misaligned across a page boundary: byte by byte, so each page
		// is translated (and faults) on its own.
		var v uint64
		for i := uint64(0); i < size; i++ {
			b, ok := h.loadSlow(va+i, 1)
			if !ok {
				return 0, false
			}
			v |= b << (8 * i)
		}
		return v, true
	}
	pa, ok := h.translate(va, accRead)
	if !ok {
		return 0, false
	}
	if off, ok := h.ramOffset(pa, size); ok {
		h.mmu.fill(&h.mmu.r, va, h.mmu.key, off)
		return h.readRAM(off, size), true
	}
	if pa&(size-1) != 0 {
		h.trap(causeMisalignedLoad, va) // MMIO must be naturally aligned
		return 0, false
	}
	v, ok := h.sys.Load(pa, int(size))
	if !ok {
		h.trap(causeLoadAccess, va)
		return 0, false
	}
	return v, true
}

// store writes size bytes at va; ok=false after a fault.
func (h *Hart) store(va uint64, size uint64, v uint64) bool {
	if va&(pageSize-1) <= pageSize-size {
		if off, ok := h.mmu.lookup(&h.mmu.w, va); ok {
			h.writeRAM(off, size, v)
			return true
		}
	}
	return h.storeSlow(va, size, v)
}

func (h *Hart) storeSlow(va uint64, size uint64, v uint64) bool {
	if va&(pageSize-1) > pageSize-size {
		// Translate both pages first so a fault leaves memory untouched.
		if _, ok := h.translate(va, accWrite); !ok {
			return false
		}
		if _, ok := h.translate(va+size-1, accWrite); !ok {
			return false
		}
		for i := uint64(0); i < size; i++ {
			if !h.storeSlow(va+i, 1, v>>(8*i)) {
				return false
			}
		}
		return true
	}
	pa, ok := h.translate(va, accWrite)
	if !ok {
		return false
	}
	if off, ok := h.ramOffset(pa, size); ok {
		h.noteStore(off, size)
		// Pages holding decoded code never enter the write TLB, so every
		// store to them comes here and invalidates the decodes; nor do
		// pages where a peer holds a reservation (watchPeers).
		if h.decoded.pages[off>>pageShift] == nil && (h.peerRes == 0 || !h.peerWatches(off>>pageShift)) {
			h.mmu.fill(&h.mmu.w, va, h.mmu.key, off)
		}
		h.writeRAM(off, size, v)
		return true
	}
	if pa&(size-1) != 0 {
		h.trap(causeMisalignedStore, va)
		return false
	}
	if !h.sys.Store(pa, int(size), v) {
		h.trap(causeStoreAccess, va)
		return false
	}
	return true
}

// translateAMO translates va for a read-modify-write (AMO or SC), which
// must be naturally aligned and in RAM. It returns the RAM offset; the
// caller notes the store (noteStore) if it writes.
func (h *Hart) translateAMO(va uint64, size uint64, acc access) (uint64, bool) {
	if va&(size-1) != 0 {
		if acc == accRead {
			h.trap(causeMisalignedLoad, va)
		} else {
			h.trap(causeMisalignedStore, va)
		}
		return 0, false
	}
	// A page the TLB maps for this kind of access needs no page walk, as
	// for loads and stores (nor any noting of the store: pages in the write
	// TLB are dirty and hold no code). The translator does the same.
	t := &h.mmu.r
	if acc == accWrite {
		t = &h.mmu.w
	}
	if off, ok := h.mmu.lookup(t, va); ok {
		return off, true
	}
	pa, ok := h.translate(va, acc)
	if !ok {
		return 0, false
	}
	off, ok := h.ramOffset(pa, size)
	if !ok {
		h.trap(faultCause(acc, false), va)
		return 0, false
	}
	return off, true
}
