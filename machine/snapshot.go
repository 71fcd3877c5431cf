package machine

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"ftvm/devices"
	"ftvm/riscv"
	"ftvm/snapshot"
	"ftvm/virtio"
	"ftvm/vm"
)

// boardState is the "machine" section: what the board is made of, so a
// restore builds the same hardware before loading component states.
type boardState struct {
	MemoryMiB           int
	InstructionsPerTick uint64
	SBI                 bool
	Disk                bool
	DiskReadOnly        bool
	Net                 bool
	MAC                 [6]byte
	HTIFToHost          uint64 `json:",omitempty"`
	HTIFFromHost        uint64 `json:",omitempty"`
	Clock               clockState
	Stopped             bool
	Stop                vm.StopReason
	ExitCode            uint32

	// DiskSize is the disk's size in bytes, so that a restore without the
	// disk contents (RestoreState) can check the backend it is given.
	DiskSize int64 `json:",omitempty"`

	// Harts and Quantum are the machine's (omitted for one hart, whose
	// snapshot has the form it had before machines had several); Sched
	// is whose turn it is and each hart's HSM state. The states of harts
	// 1 and up are sections "hart1", "hart2", ...
	Harts   int         `json:",omitempty"`
	Quantum uint64      `json:",omitempty"`
	Sched   *SchedState `json:",omitempty"`
	// The shared disk is never saved: its size and identity are, and a
	// restore must be given the same image.
	SharedDiskSize int64    `json:",omitempty"`
	SharedDiskID   [32]byte `json:",omitzero"`
	WallClock      uint64   `json:",omitempty"`
}

type clockState struct{ Base, At, IPT uint64 }

type virtioState[T any] struct {
	Transport virtio.MMIOState
	Device    T
}

// Save writes a snapshot of the whole machine: hart, RAM, every device, the
// clock, and the disk contents (the state the guest depends on). Host
// connections (the TAP device, the terminal) are not state; the restoring
// side supplies its own. Save must be called between Run calls.
func (m *Machine) Save(w io.Writer) error {
	secs, err := m.stateSections()
	if err != nil {
		return err
	}
	if m.blk != nil {
		// Copied from the disk as the snapshot is written, not held in
		// memory: a disk can be much larger than the RAM a host has.
		secs = append(secs, snapshot.Section{Name: "disk", From: m.cfg.Disk, Size: m.cfg.Disk.Size()})
	}
	secs = append(secs, snapshot.Section{Name: "ram", Data: m.sparsePages()})
	return snapshot.Write(w, secs)
}

// SaveState writes a snapshot of the machine without RAM and without the
// disk contents: the hart, every device, the clock and what the board is
// made of, a few KiB. A state transfer sends RAM and disk by other means
// (page by page while the guest runs) and restores with RestoreState. It
// must be called between Run calls.
func (m *Machine) SaveState(w io.Writer) error {
	secs, err := m.stateSections()
	if err != nil {
		return err
	}
	return snapshot.Write(w, secs)
}

// stateSections encodes every section but "ram" and "disk".
func (m *Machine) stateSections() ([]snapshot.Section, error) {
	b := boardState{
		MemoryMiB: len(m.ram) >> 20, InstructionsPerTick: m.clock.ipt, SBI: m.sbiActive,
		Disk: m.blk != nil, DiskReadOnly: m.cfg.DiskReadOnly, Net: m.net != nil, MAC: m.cfg.MAC,
		Clock:   clockState{m.clock.base, m.clock.at, m.clock.ipt},
		Stopped: m.stopped, Stop: m.stop, ExitCode: m.exitCode,
	}
	if m.blk != nil {
		b.DiskSize = m.cfg.Disk.Size()
	}
	if m.shared != nil {
		b.SharedDiskSize, b.SharedDiskID = m.cfg.SharedDisk.Size(), m.cfg.SharedDiskID
	}
	b.WallClock = m.cfg.WallClock
	if m.htif != nil {
		b.HTIFToHost, b.HTIFFromHost = m.htif.tohost, m.htif.fromhost
	}
	if len(m.harts) > 1 {
		st := m.schedState()
		b.Harts, b.Quantum, b.Sched = len(m.harts), m.cfg.Quantum, &st
	}
	type comp struct {
		name string
		v    any
	}
	comps := []comp{{"machine", b}, {"hart", m.harts[0].State()}}
	for i, h := range m.harts[1:] {
		comps = append(comps, comp{hartSection(i + 1), h.State()})
	}
	comps = append(comps, comp{"clint", m.clint.State()}, comp{"plic", m.plic.State()}, comp{"uart", m.uart.State()}, comp{"rtc", m.rtc.State()})
	if m.blk != nil {
		comps = append(comps, struct {
			name string
			v    any
		}{"virtio-blk", virtioState[virtio.BlockState]{m.blkTr.State(), m.blk.State()}})
	}
	if m.net != nil {
		comps = append(comps, struct {
			name string
			v    any
		}{"virtio-net", virtioState[virtio.NetState]{m.netTr.State(), m.net.State()}})
	}
	if m.shared != nil {
		comps = append(comps, struct {
			name string
			v    any
		}{"virtio-shared-blk", virtioState[virtio.BlockState]{m.sharedTr.State(), m.shared.State()}})
	}
	var secs []snapshot.Section
	for _, c := range comps {
		j, err := json.Marshal(c.v)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", c.name, err)
		}
		secs = append(secs, snapshot.Section{Name: c.name, Data: j})
	}
	return secs, nil
}

// sparsePages encodes RAM as (page-index delta, page) pairs for the pages
// that are not all zero: a booted 256 MiB guest touches a fraction of it.
// Only the pages ever written are looked at (ram.go).
func (m *Machine) sparsePages() []byte {
	var out []byte
	last := -1
	m.writtenPages(func(p int) {
		pg := m.ram[p*pageSize : (p+1)*pageSize]
		if isZero(pg) {
			return
		}
		out = binary.AppendUvarint(out, uint64(p-last))
		out = append(out, pg...)
		last = p
	})
	return out
}

const pageSize = 4096

var zeroPage [pageSize]byte

// isZero reports whether a page (or less) is all zero; bytes.Equal is the
// vectorised comparison.
func isZero(b []byte) bool { return bytes.Equal(b, zeroPage[:len(b)]) }

// RestoreOptions supplies what a snapshot does not contain: where outputs
// go, and optionally the disk backend to use (by default the snapshot's own
// disk contents, in memory).
type RestoreOptions struct {
	Outputs Outputs
	Disk    vm.Disk
	Exec    string // the execution engine (Config.Exec)
	// Parallel runs the restored machine's harts in parallel.
	Parallel bool
	// SharedDisk is required when the machine had one (Config.SharedDisk):
	// the same image, named by the same SharedDiskID.
	SharedDisk   vm.Disk
	SharedDiskID [32]byte
}

// Restore builds a machine from a snapshot written by Save. The snapshot is
// untrusted input: every section is validated, and any inconsistency is an
// error naming the section.
func Restore(r io.Reader, opts RestoreOptions) (*Machine, error) {
	secs, err := snapshot.Read(r)
	if err != nil {
		return nil, err
	}
	if _, ok := snapshot.Find(secs, "ram"); !ok {
		return nil, errors.New(`snapshot: no "ram" section (a snapshot written by SaveState is restored with RestoreState)`)
	}
	m, err := restoreSections(secs, nil, opts)
	if err != nil {
		return nil, err
	}
	m.rescan()
	if opts.Parallel {
		m.startParallel()
	}
	return m, nil
}

// RestoreState builds a machine from a snapshot written by SaveState, with
// ram as its RAM image and opts.Disk (required when the machine has a disk)
// as its disk, both taken as they are: the machine owns ram from then on.
// len(ram) must be the snapshot's memory size. The snapshot is validated
// like Restore's.
func RestoreState(r io.Reader, ram []byte, opts RestoreOptions) (*Machine, error) {
	secs, err := snapshot.Read(r)
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"ram", "disk"} {
		if _, ok := snapshot.Find(secs, name); ok {
			return nil, fmt.Errorf("snapshot: state-only restore of a snapshot with a %q section (use Restore)", name)
		}
	}
	if ram == nil {
		return nil, errors.New("snapshot: state-only restore without a RAM image")
	}
	m, err := restoreSections(secs, ram, opts)
	if err != nil {
		return nil, err
	}
	m.noteNonzeroPages()
	m.rescan()
	if opts.Parallel {
		m.startParallel()
	}
	return m, nil
}

// restoreSections builds the machine. With ram nil, RAM and disk contents
// come from the snapshot's sections; otherwise ram is the RAM image and
// opts.Disk the disk, contents included; neither is read nor written then
// (the caller notes the image's non-zero pages and rescans the rings).
func restoreSections(secs []snapshot.Section, ram []byte, opts RestoreOptions) (*Machine, error) {
	get := func(name string, v any) error {
		d, ok := snapshot.Find(secs, name)
		if !ok {
			return fmt.Errorf("snapshot: no %q section", name)
		}
		dec := json.NewDecoder(bytes.NewReader(d))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return fmt.Errorf("snapshot: %s: %w", name, err)
		}
		return nil
	}
	var b boardState
	if err := get("machine", &b); err != nil {
		return nil, err
	}
	if b.MemoryMiB < 16 || b.MemoryMiB > 16384 {
		return nil, fmt.Errorf("snapshot: machine: memory size %d MiB (a machine has 16 to 16384 MiB)", b.MemoryMiB)
	}
	if b.InstructionsPerTick == 0 || b.Clock.IPT != b.InstructionsPerTick {
		return nil, fmt.Errorf("snapshot: machine: invalid clock (%d and %d instructions per tick)", b.InstructionsPerTick, b.Clock.IPT)
	}
	if b.DiskSize < 0 || b.DiskSize%512 != 0 || (b.DiskSize != 0 && !b.Disk) {
		return nil, fmt.Errorf("snapshot: machine: invalid disk size %d", b.DiskSize)
	}
	if b.Harts < 0 || b.Harts == 1 || b.Harts > MaxHarts || (b.Harts > 1) != (b.Sched != nil && b.Quantum != 0) {
		return nil, fmt.Errorf("snapshot: machine: invalid hart count %d", b.Harts)
	}
	cfg := Config{MemoryMiB: b.MemoryMiB, InstructionsPerTick: b.InstructionsPerTick, Net: b.Net, MAC: b.MAC,
		DiskReadOnly: b.DiskReadOnly, Outputs: opts.Outputs, WallClock: b.WallClock,
		Harts: b.Harts, Quantum: b.Quantum}
	if b.SharedDiskSize < 0 || b.SharedDiskSize%512 != 0 {
		return nil, fmt.Errorf("snapshot: machine: invalid shared disk size %d", b.SharedDiskSize)
	}
	if b.SharedDiskSize != 0 {
		switch {
		case opts.SharedDisk == nil:
			return nil, errors.New("snapshot: the machine has a shared read-only disk but none was given")
		case opts.SharedDiskID != b.SharedDiskID:
			return nil, fmt.Errorf("snapshot: the given shared disk is %x, the machine's %x", opts.SharedDiskID[:8], b.SharedDiskID[:8])
		case opts.SharedDisk.Size() != b.SharedDiskSize:
			return nil, fmt.Errorf("snapshot: the given shared disk has %d bytes, the machine's %d", opts.SharedDisk.Size(), b.SharedDiskSize)
		}
		cfg.SharedDisk, cfg.SharedDiskID = opts.SharedDisk, opts.SharedDiskID
	}
	var err error
	if cfg.Exec, err = checkExec(opts.Exec); err != nil {
		return nil, err
	}
	switch {
	case ram != nil:
		if uint64(len(ram)) != uint64(b.MemoryMiB)<<20 {
			return nil, fmt.Errorf("snapshot: the RAM image has %d bytes, the machine %d MiB", len(ram), b.MemoryMiB)
		}
		if b.Disk {
			if opts.Disk == nil {
				return nil, errors.New("snapshot: the machine has a disk but no disk backend was given")
			}
			if b.DiskSize == 0 || opts.Disk.Size() != b.DiskSize {
				return nil, fmt.Errorf("snapshot: the given disk has %d bytes, the machine's %d", opts.Disk.Size(), b.DiskSize)
			}
			cfg.Disk = opts.Disk
		}
	case b.Disk:
		disk, ok := snapshot.Find(secs, "disk")
		if !ok || len(disk)%512 != 0 || len(disk) == 0 || (b.DiskSize != 0 && int64(len(disk)) != b.DiskSize) {
			return nil, errors.New("snapshot: the machine has a disk but the disk section is missing or malformed")
		}
		cfg.Disk = opts.Disk
		if cfg.Disk == nil {
			cfg.Disk = vm.NewMemDisk(disk)
		} else if cfg.Disk.Size() != int64(len(disk)) {
			return nil, fmt.Errorf("snapshot: the given disk has %d bytes, the snapshot's %d", cfg.Disk.Size(), len(disk))
		} else if _, err := cfg.Disk.WriteAt(disk, 0); err != nil {
			return nil, fmt.Errorf("snapshot: writing the disk: %w", err)
		}
	}
	full := ram == nil
	m, err := newBoard(cfg, ram)
	if err != nil {
		return nil, err
	}
	m.attachTimer(b.SBI)
	m.clock = clock{b.Clock.Base, b.Clock.At, b.Clock.IPT}
	m.stopped, m.stop, m.exitCode = b.Stopped, b.Stop, b.ExitCode
	if b.HTIFToHost != 0 {
		m.htif = &htif{tohost: b.HTIFToHost, fromhost: b.HTIFFromHost}
	}

	if full {
		enc, _ := snapshot.Find(secs, "ram")
		if err := m.loadSparsePages(enc); err != nil {
			return nil, err
		}
	}
	for i, h := range m.harts {
		var hs riscv.State
		if err := get(hartSection(i), &hs); err != nil {
			return nil, err
		}
		if err := h.SetState(hs); err != nil {
			return nil, fmt.Errorf("snapshot: %s: %w", hartSection(i), err)
		}
	}
	if b.Sched != nil {
		if err := m.setSchedState(*b.Sched); err != nil {
			return nil, fmt.Errorf("snapshot: machine: %w", err)
		}
	} else {
		m.resetCount()
	}
	var cs devices.CLINTState
	var ps devices.PLICState
	var us devices.UARTState
	for _, c := range []struct {
		name string
		v    any
		set  func() error
	}{
		{"plic", &ps, func() error { return m.plic.SetState(ps) }},
		{"uart", &us, func() error { return m.uart.SetState(us) }},
		{"clint", &cs, func() error { return m.clint.SetState(cs) }},
	} {
		if err := get(c.name, c.v); err != nil {
			return nil, err
		}
		if err := c.set(); err != nil {
			return nil, fmt.Errorf("snapshot: %s: %w", c.name, err)
		}
	}
	if m.blk != nil {
		var v virtioState[virtio.BlockState]
		if err := get("virtio-blk", &v); err != nil {
			return nil, err
		}
		if err := m.blkTr.SetState(v.Transport); err != nil {
			return nil, fmt.Errorf("snapshot: virtio-blk: %w", err)
		}
		if err := m.blk.SetState(v.Device); err != nil {
			return nil, fmt.Errorf("snapshot: virtio-blk: %w", err)
		}
	}
	if m.net != nil {
		var v virtioState[virtio.NetState]
		if err := get("virtio-net", &v); err != nil {
			return nil, err
		}
		if err := m.netTr.SetState(v.Transport); err != nil {
			return nil, fmt.Errorf("snapshot: virtio-net: %w", err)
		}
		if err := m.net.SetState(v.Device); err != nil {
			return nil, fmt.Errorf("snapshot: virtio-net: %w", err)
		}
	}
	if m.shared != nil {
		var v virtioState[virtio.BlockState]
		if err := get("virtio-shared-blk", &v); err != nil {
			return nil, err
		}
		if err := m.sharedTr.SetState(v.Transport); err != nil {
			return nil, fmt.Errorf("snapshot: virtio-shared-blk: %w", err)
		}
		if err := m.shared.SetState(v.Device); err != nil {
			return nil, fmt.Errorf("snapshot: virtio-shared-blk: %w", err)
		}
	}
	// Snapshots older than the real-time clock have no "rtc" section: the
	// clock then starts from the board's time.
	if _, ok := snapshot.Find(secs, "rtc"); ok {
		var rs devices.RTCState
		if err := get("rtc", &rs); err != nil {
			return nil, err
		}
		if err := m.rtc.SetState(rs); err != nil {
			return nil, fmt.Errorf("snapshot: rtc: %w", err)
		}
	}
	return m, nil
}

// rescan re-drives every interrupt line from a restored state, then looks
// at the rings again: a notification the guest sent just before the
// snapshot must not be lost (with suppression on, it will not send it
// twice). Restore and RestoreState do it; LoadState, which validates a
// state by restoring it on a board that shares the live machine's RAM and
// disk, must not.
func (m *Machine) rescan() {
	m.clint.Update()
	for _, tr := range []*virtio.MMIO{m.blkTr, m.netTr, m.sharedTr} {
		if tr != nil {
			tr.SyncIRQ()
			tr.Kick()
		}
	}
}

// loadSparsePages fills RAM from a "ram" section: only the pages it holds
// are touched.
func (m *Machine) loadSparsePages(enc []byte) error {
	p := -1
	npages := m.Pages()
	for len(enc) > 0 {
		d, n := binary.Uvarint(enc)
		if n <= 0 || d == 0 || d > uint64(npages) {
			return errors.New("snapshot: ram: malformed page index")
		}
		p += int(d)
		enc = enc[n:]
		if p >= npages || len(enc) < pageSize {
			return errors.New("snapshot: ram: page outside memory or truncated")
		}
		m.loadRAM(uint64(p)*pageSize, enc[:pageSize])
		enc = enc[pageSize:]
	}
	return nil
}

// hartSection names the snapshot section of hart i.
func hartSection(i int) string {
	if i == 0 {
		return "hart"
	}
	return fmt.Sprintf("hart%d", i)
}
