package machine

import (
	"errors"
	"fmt"
	"io"

	"ftvm/snapshot"
	"ftvm/vm"
)

// Applying another replica's state to a live machine (vm.Syncable), for
// the state synchronisation of package statesync, and injecting a memory
// error, for the tests of its repair.

var _ vm.Syncable = (*Machine)(nil)

// WritePage implements vm.Syncable: it overwrites RAM page i with p, which
// must be PageSize bytes long. The page counts as written (by DMA, say):
// the digest hashes it again, dirty logs report it, cached decodes of it
// are dropped. It must be called between Run calls.
func (m *Machine) WritePage(i int, p []byte) error {
	if i < 0 || i >= m.Pages() || len(p) != pageSize {
		return fmt.Errorf("machine: WritePage(%d) with %d bytes: the machine has %d pages of %d bytes", i, len(p), m.Pages(), pageSize)
	}
	copy(m.ram[i*pageSize:], p)
	m.noteWrite(RAMBase+uint64(i)*pageSize, pageSize)
	return nil
}

// LoadState implements vm.Syncable: it replaces the hart, device and clock
// state with a snapshot written by SaveState, keeping RAM and the disk.
//
// The snapshot is untrusted. It is validated by the code that restores
// snapshots (restoreSections), which builds it into a scratch board sharing
// this machine's RAM and disk; that board's states, accepted by the same
// devices, are then put into this machine the way Rewind puts a
// checkpoint's. Nothing changes on error. The rings are not rescanned (see
// vm.Syncable), and the scratch board never touches RAM or disk: it only
// reads the disk's size.
func (m *Machine) LoadState(r io.Reader) error {
	secs, err := snapshot.Read(r)
	if err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	for _, name := range []string{"ram", "disk"} {
		if _, ok := snapshot.Find(secs, name); ok {
			return fmt.Errorf("load state: the snapshot has a %q section (LoadState takes one written by SaveState)", name)
		}
	}
	s, err := restoreSections(secs, m.ram, RestoreOptions{Disk: m.cfg.Disk, SharedDisk: m.cfg.SharedDisk, SharedDiskID: m.cfg.SharedDiskID,
		Exec: ExecInterp}) // a scratch board: it never runs
	if err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	if err := m.sameBoard(s); err != nil {
		return fmt.Errorf("load state: the snapshot describes another machine: %w", err)
	}
	old := m.captureStates()
	if err := m.setStates(s.captureStates()); err != nil {
		// Not expected: the same devices accepted these states on the
		// scratch board. Put the machine back as it was.
		if err2 := m.setStates(old); err2 != nil {
			panic(fmt.Sprintf("machine: load state: restoring the previous state failed: %v", err2))
		}
		return fmt.Errorf("load state: %w", err)
	}
	return nil
}

// sameBoard reports how a machine restored from a state differs from m in
// what the state does not change: memory size (checked by restoreSections),
// devices, wiring and speed.
func (m *Machine) sameBoard(s *Machine) error {
	switch {
	case s.sbiActive != m.sbiActive:
		return errors.New("built-in SBI differs")
	case len(s.harts) != len(m.harts) || s.sched.quantum != m.sched.quantum:
		return errors.New("harts differ")
	case (s.blk == nil) != (m.blk == nil) || (s.net == nil) != (m.net == nil) || (s.shared == nil) != (m.shared == nil):
		return errors.New("devices differ")
	case s.cfg.DiskReadOnly != m.cfg.DiskReadOnly || s.cfg.MAC != m.cfg.MAC:
		return errors.New("device configuration differs")
	case s.clock.ipt != m.clock.ipt:
		return errors.New("instructions per tick differ")
	case (s.htif == nil) != (m.htif == nil) || (s.htif != nil && (s.htif.tohost != m.htif.tohost || s.htif.fromhost != m.htif.fromhost)):
		return errors.New("HTIF addresses differ")
	}
	return nil
}

// InjectBitFlip flips bit (0-7) of byte off of RAM page i, as a memory
// error would: no guest write, so no dirty log reports the page, but the
// hart sees the new contents (its cached decodes of the page are dropped)
// and so does the next digest. It is for fault-injection tests of replica
// comparison and repair, and must be called between Run calls.
func (m *Machine) InjectBitFlip(i, off, bit int) error {
	if i < 0 || i >= m.Pages() || off < 0 || off >= pageSize || bit < 0 || bit > 7 {
		return fmt.Errorf("machine: InjectBitFlip(page %d, byte %d, bit %d): outside the machine's %d pages of %d bytes", i, off, bit, m.Pages(), pageSize)
	}
	// Hand the writes made so far to every consumer, so that the hart's
	// bitmap holds the flipped page alone (and its write TLB is empty).
	m.foldDirty()
	m.ram[i*pageSize+off] ^= 1 << bit
	m.noteWrite(RAMBase+uint64(i)*pageSize+uint64(off), 1)
	// The set of pages that may be non-zero (ram.go), the digest's page
	// hashes and in-memory checkpoints describe RAM and must see it; dirty
	// logs record guest writes and must not.
	for _, h := range m.harts {
		orInto(m.written, h.Dirty())
		orInto(m.digestDirty, h.Dirty())
		if m.ck.log != nil {
			orInto(m.ck.log.bits, h.Dirty())
		}
		h.ClearDirty()
	}
	return nil
}
