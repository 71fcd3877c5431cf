package machine

import (
	"fmt"
	"io"
	"slices"

	"ftvm/vm"
)

// Each hart keeps one dirty bitmap, and a page enters its write TLB only
// after being marked there, so the store fast path never marks anything
// (riscv/mmu.go, noteStore). Clearing that bitmap is therefore the only way
// to learn about later writes again, and it can be done for one consumer
// only. Several consumers (the digest's page hashes, a state transfer to a
// new backup) each keep a bitmap of their own here: whenever one of them
// collects, the harts' bitmaps are first ORed into every consumer's bitmap
// and then cleared. No consumer ever loses a write another one collected,
// and the instruction hot path is unchanged. Harts running in parallel
// each write only their own bitmap, and collecting happens between Run
// calls, when none runs.

var _ vm.Migratable = (*Machine)(nil)

// dirtyLog is one consumer's view of the pages written since it last
// collected.
type dirtyLog struct {
	m    *Machine
	bits []uint64
}

// foldDirty moves the hart's dirty bits into every consumer's bitmap and
// clears the hart's, which also empties its write TLB so the next store to
// each page marks it again.
func (m *Machine) foldDirty() {
	for _, h := range m.harts {
		m.fold(h.Dirty(), h.ClearDirty)
	}
}

// fold ORs one source bitmap into every consumer's and clears it.
func (m *Machine) fold(src []uint64, clearSrc func()) {
	var marked uint64
	for _, w := range src {
		marked |= w
	}
	if marked == 0 {
		// Nothing marked since the last fold: the write TLB holds no
		// entries either (each entered it after marking its page, and
		// the last clear emptied both), so there is nothing to clear.
		return
	}
	orInto(m.written, src)
	orInto(m.digestDirty, src)
	for _, l := range m.dirtyLogs {
		orInto(l.bits, src)
	}
	clearSrc()
}

func orInto(dst, src []uint64) {
	for i, w := range src {
		dst[i] |= w
	}
}

// TrackDirty starts a dirty log of its own for a consumer such as a state
// transfer: it reports the pages written from now on, whatever other
// consumers (the digest, another log) collect in between.
func (m *Machine) TrackDirty() vm.DirtyLog {
	// Pages written before now belong to the consumers that exist already.
	m.foldDirty()
	l := &dirtyLog{m: m, bits: make([]uint64, len(m.digestDirty))}
	m.dirtyLogs = append(m.dirtyLogs, l)
	return l
}

// Collect implements vm.DirtyLog.
func (l *dirtyLog) Collect(dst []uint64) []uint64 {
	if l.m == nil {
		panic("machine: Collect on a stopped dirty log")
	}
	l.m.foldDirty()
	dst = append(dst[:0], l.bits...)
	clear(l.bits)
	return dst
}

// Stop implements vm.DirtyLog.
func (l *dirtyLog) Stop() {
	if l.m == nil {
		return
	}
	l.m.dirtyLogs = slices.DeleteFunc(l.m.dirtyLogs, func(x *dirtyLog) bool { return x == l })
	l.m = nil
}

// PageSize implements vm.Migratable: RAM pages and dirty bits are 4 KiB.
func (m *Machine) PageSize() int { return pageSize }

// Pages implements vm.Migratable: the number of RAM pages.
func (m *Machine) Pages() int { return len(m.ram) / pageSize }

// ReadPage implements vm.Migratable: it copies RAM page i into p, which
// must be PageSize bytes long. Reading marks nothing and changes nothing;
// a page never written is not read at all (ram.go).
func (m *Machine) ReadPage(i int, p []byte) error {
	if i < 0 || i >= m.Pages() || len(p) != pageSize {
		return fmt.Errorf("machine: ReadPage(%d) with %d bytes: the machine has %d pages of %d bytes", i, len(p), m.Pages(), pageSize)
	}
	if !m.mayBeNonzero(i) {
		clear(p)
		return nil
	}
	copy(p, m.ram[i*pageSize:])
	return nil
}

// MigrationFactory returns the function a state transfer's receiver
// (migrate.Receive) builds the machine with: RestoreState on the received
// state and RAM image, with opts.Disk the backup's disk (the one Receive
// brought up to date) and opts.Outputs where the guest's output goes.
func MigrationFactory(opts RestoreOptions) func(state io.Reader, ram []byte) (vm.Migratable, error) {
	return func(state io.Reader, ram []byte) (vm.Migratable, error) {
		m, err := RestoreState(state, ram, opts)
		if err != nil {
			return nil, err // not a typed nil inside the interface
		}
		return m, nil
	}
}
