package machine

import "math/bits"

// The machine keeps track of the RAM pages that have ever been written
// (by the guest, by device DMA, by a loader or a restore): a page outside
// that set is all zero and has never been touched by this process, so it
// is never read either. The digest, Save, ReadPage and Checkpoint take such
// a page for zeros without looking at it, so memory and time spent on RAM
// are proportional to what the guest used, not to its size: a 16 GiB
// machine that ran briefly costs about what a 256 MiB one does. (Reading
// an untouched page would map it, and with transparent huge pages a read
// can cost 2 MiB of resident memory.)
//
// written holds the pages folded from the harts' dirty bitmaps so far
// (dirty.go); a page written since the last fold is still only in a
// hart's bitmap, so "may be non-zero" is the union of them all.

// loadRAM copies b into RAM at offset off (in range: the caller checked)
// and notes the write, as a device's DMA does.
func (m *Machine) loadRAM(off uint64, b []byte) {
	copy(m.ram[off:], b)
	m.noteWrite(RAMBase+off, uint64(len(b)))
}

// mayBeNonzero reports whether RAM page p may hold anything but zeros.
func (m *Machine) mayBeNonzero(p int) bool {
	bit := uint64(1) << (p & 63)
	w := m.written[p>>6]
	for _, h := range m.harts {
		w |= h.Dirty()[p>>6]
	}
	return w&bit != 0
}

// writtenPages calls f for each RAM page that may hold anything but zeros,
// in increasing order. f must not write RAM.
func (m *Machine) writtenPages(f func(p int)) {
	m.foldDirty()
	forEachBit(m.written, m.Pages(), f)
}

// forEachBit calls f(i) for every bit i < n set in bitmap, in order.
func forEachBit(bitmap []uint64, n int, f func(i int)) {
	for w, word := range bitmap {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			word &^= 1 << b
			if i := w*64 + b; i < n {
				f(i)
			}
		}
	}
}

// noteNonzeroPages marks the pages of a RAM image given to the machine
// (a state transfer's) that are not all zero.
func (m *Machine) noteNonzeroPages() {
	for p := range m.Pages() {
		if !isZero(m.ram[p*pageSize : (p+1)*pageSize]) {
			m.written[p>>6] |= 1 << (p & 63)
		}
	}
}
