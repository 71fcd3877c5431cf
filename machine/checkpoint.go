package machine

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"ftvm/devices"
	"ftvm/riscv"
	"ftvm/virtio"
	"ftvm/vm"
)

// In-memory checkpoints, for reverse execution: a replay keeps a few of
// them and goes back in time by rewinding to the nearest earlier one and
// re-executing with the log's events. Unlike Save, a checkpoint is not a
// file and is never untrusted: it is taken and used by the same process,
// on the same machine.
//
// RAM and disk are kept as tables of 4 KiB pages shared between
// checkpoints: a checkpoint copies only the pages written since the one
// before it (a dirty log of its own says which, dirty.go), so a series of them
// costs memory in proportion to what the guest wrote, not to its size.

var _ vm.Checkpointer = (*Machine)(nil)

type page = [pageSize]byte

// pageTable is 64 consecutive RAM pages of a checkpoint; nil: a zero page.
type pageTable [64]*page

// Checkpoint is a copy of a machine's state at an instruction count.
type Checkpoint struct {
	instret  uint64
	harts    []riscv.State
	sched    SchedState
	clint    devices.CLINTState
	plic     devices.PLICState
	uart     devices.UARTState
	syscon   devices.SysconState
	blkTr    virtio.MMIOState
	blk      virtio.BlockState
	netTr    virtio.MMIOState
	net      virtio.NetState
	sharedTr virtio.MMIOState
	shared   virtio.BlockState
	rtc      devices.RTCState
	clock    clock
	stopped  bool
	stop     vm.StopReason
	exitCode uint32
	htif     *htif
	// ram holds RAM by tables of 64 pages (nil: 64 zero pages), shared
	// with the previous checkpoint where nothing changed.
	ram  []*pageTable
	disk map[int]*page // disk blocks written since the machine was built
	m    *Machine
}

// Instret is the instruction count at which the checkpoint was taken.
func (c *Checkpoint) Instret() uint64 { return c.instret }

// ckState is what the machine keeps between checkpoints.
type ckState struct {
	base *Checkpoint // the checkpoint the dirty log is relative to
	log  *dirtyLog   // RAM pages written since base (dirty.go)
	buf  []uint64
}

// dirtySinceBase collects the pages written since the base checkpoint.
func (m *Machine) dirtySinceBase() []uint64 {
	m.ck.buf = m.ck.log.Collect(m.ck.buf)
	return m.ck.buf
}

// Checkpoint copies the machine's state. It must be called between Run
// calls.
func (m *Machine) Checkpoint() (vm.Checkpoint, error) {
	if m.cfg.Disk != nil && m.disk == nil {
		return nil, errors.New("checkpoint: the disk is not tracked")
	}
	c := m.captureStates()
	base := m.ck.base
	// The disk first: it is the part that can fail (a backend read), and
	// a failure must leave the machine's checkpoint state as it was.
	if m.disk != nil {
		var err error
		if c.disk, err = m.disk.checkpoint(baseDisk(base)); err != nil {
			return nil, err
		}
	}
	npages := m.Pages()
	c.ram = make([]*pageTable, (npages+63)/64)
	if m.ck.log == nil {
		m.ck.log = m.TrackDirty().(*dirtyLog)
	}
	dirty := m.dirtySinceBase()
	if base == nil {
		// The pages never written are zero (ram.go): nil in the table.
		m.writtenPages(func(p int) { c.setPage(p, copyPage(nil, m.ram[p*pageSize:(p+1)*pageSize])) })
	} else {
		copy(c.ram, base.ram)
		forEachBit(dirty, npages, func(p int) {
			if c.ram[p/64] == base.ram[p/64] {
				// Still shared with base: copy the table before
				// changing it.
				t := new(pageTable)
				if base.ram[p/64] != nil {
					*t = *base.ram[p/64]
				}
				c.ram[p/64] = t
			}
			c.setPage(p, copyPage(base.page(p), m.ram[p*pageSize:(p+1)*pageSize]))
		})
	}
	m.ck.base = c
	return c, nil
}

// page returns RAM page p as the checkpoint holds it (nil: all zero).
func (c *Checkpoint) page(p int) *page {
	if t := c.ram[p/64]; t != nil {
		return t[p%64]
	}
	return nil
}

// setPage sets RAM page p in a table the checkpoint owns.
func (c *Checkpoint) setPage(p int, pg *page) {
	if c.ram[p/64] == nil {
		if pg == nil {
			return
		}
		c.ram[p/64] = new(pageTable)
	}
	c.ram[p/64][p%64] = pg
}

func baseDisk(c *Checkpoint) map[int]*page {
	if c == nil {
		return nil
	}
	return c.disk
}

// copyPage returns old if src has the same contents (sharing it), nil if
// src is all zero, or a new copy.
func copyPage(old *page, src []byte) *page {
	if old != nil && bytes.Equal(old[:], src) {
		return old
	}
	if isZero(src) {
		return nil
	}
	p := new(page)
	copy(p[:], src)
	return p
}

// captureStates copies the processor, device and clock states into a new
// Checkpoint (without RAM or disk).
func (m *Machine) captureStates() *Checkpoint {
	c := &Checkpoint{
		instret: m.count(), sched: m.schedState(),
		clint: m.clint.State(), plic: m.plic.State(), uart: m.uart.State(), syscon: m.syscon.State(), rtc: m.rtc.State(),
		clock: m.clock, stopped: m.stopped, stop: m.stop, exitCode: m.exitCode, m: m,
	}
	for _, h := range m.harts {
		c.harts = append(c.harts, h.State())
	}
	if m.htif != nil {
		h := *m.htif
		c.htif = &h
	}
	if m.blk != nil {
		c.blkTr, c.blk = m.blkTr.State(), m.blk.State()
	}
	if m.net != nil {
		c.netTr, c.net = m.netTr.State(), m.net.State()
	}
	if m.shared != nil {
		c.sharedTr, c.shared = m.sharedTr.State(), m.shared.State()
	}
	return c
}

// Rewind puts the machine back in the state of a checkpoint it took. Only
// what may differ is copied back: the pages written since the current
// base checkpoint and those in which the two checkpoints differ.
func (m *Machine) Rewind(vc vm.Checkpoint) error {
	c, ok := vc.(*Checkpoint)
	if !ok || c.m != m {
		return errors.New("rewind: not a checkpoint of this machine")
	}
	base := m.ck.base
	if base == nil {
		return errors.New("rewind: no checkpoint taken")
	}
	restore := func(p int) {
		dst := m.ram[p*pageSize : (p+1)*pageSize]
		if src := c.page(p); src != nil {
			copy(dst, src[:])
		} else {
			clear(dst)
		}
		// Marks the page for the digest and drops decoded instructions.
		m.noteWrite(RAMBase+uint64(p)*pageSize, pageSize)
	}
	npages := m.Pages()
	forEachBit(m.dirtySinceBase(), npages, restore)
	if base != c {
		for g := range c.ram {
			if base.ram[g] == c.ram[g] {
				continue // the same table: the same pages
			}
			for p := g * 64; p < min(g*64+64, npages); p++ {
				if base.page(p) != c.page(p) {
					restore(p)
				}
			}
		}
	}
	if m.disk != nil {
		if err := m.disk.rewind(base.disk, c.disk); err != nil {
			return err
		}
	}
	if err := m.setStates(c); err != nil {
		return fmt.Errorf("rewind: %w", err)
	}
	m.ck.base = c
	// The restored pages are marked (NoteWrite) and will be seen by the
	// next checkpoint, which shares them with c as they are equal.
	return nil
}

// setStates puts the processor, device and clock states of c (taken by
// captureStates on a machine of the same configuration) into m and drives
// the interrupt lines from them.
func (m *Machine) setStates(c *Checkpoint) error {
	if len(c.harts) != len(m.harts) {
		return errors.New("the state has another number of harts")
	}
	for i, h := range m.harts {
		if err := h.SetState(c.harts[i]); err != nil {
			return err
		}
	}
	if err := m.setSchedState(c.sched); err != nil {
		return err
	}
	m.clock = c.clock
	m.stopped, m.stop, m.exitCode = c.stopped, c.stop, c.exitCode
	m.paused = false
	if c.htif != nil {
		h := *c.htif
		m.htif = &h
	}
	errs := []error{m.plic.SetState(c.plic), m.uart.SetState(c.uart), m.clint.SetState(c.clint), m.syscon.SetState(c.syscon), m.rtc.SetState(c.rtc)}
	if m.blk != nil {
		errs = append(errs, m.blkTr.SetState(c.blkTr), m.blk.SetState(c.blk))
	}
	if m.net != nil {
		errs = append(errs, m.netTr.SetState(c.netTr), m.net.SetState(c.net))
	}
	if m.shared != nil {
		errs = append(errs, m.sharedTr.SetState(c.sharedTr), m.shared.SetState(c.shared))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Interrupt lines follow the restored device states. Unlike Restore,
	// the rings are not rescanned: the states were taken between Run
	// calls, where nothing was left unprocessed, and a rescan could
	// complete a request earlier than the original run did.
	m.clint.Update()
	for _, tr := range []*virtio.MMIO{m.blkTr, m.netTr, m.sharedTr} {
		if tr != nil {
			tr.SyncIRQ()
		}
	}
	return nil
}

// trackedDisk is the machine's view of its disk: it records which 4 KiB
// blocks the guest writes and keeps their original contents, so that
// checkpoints can hold only the blocks that changed.
type trackedDisk struct {
	vm.Disk
	written func(off int64, p []byte) // nil: nobody is told
	// on: checkpoints are being taken. Until the first one nothing is
	// kept: a machine that never checkpoints pays nothing, and no rewind
	// goes back before the first checkpoint.
	on    bool
	orig  map[int]*page // contents before the first write, by block
	dirty map[int]bool  // written since the last checkpoint or rewind
}

func newTrackedDisk(b vm.Disk) *trackedDisk {
	return &trackedDisk{Disk: b, orig: map[int]*page{}, dirty: map[int]bool{}}
}

func (d *trackedDisk) WriteAt(p []byte, off int64) (int, error) {
	if d.on && len(p) > 0 && off >= 0 {
		for b := int(off / pageSize); int64(b)*pageSize < off+int64(len(p)); b++ {
			if _, ok := d.orig[b]; !ok {
				// Without the block's contents before the write, a rewind
				// could not undo it: the write fails instead (the guest
				// sees an I/O error), and the disk is left unchanged.
				pg, err := d.read(b)
				if err != nil {
					return 0, err
				}
				d.orig[b] = pg
			}
			d.dirty[b] = true
		}
	}
	n, err := d.Disk.WriteAt(p, off)
	if d.written != nil && n > 0 {
		d.written(off, p[:n])
	}
	return n, err
}

// read returns block b's current contents (zero-padded past the end of
// the disk), or the backend's error: a block that could not be read must
// never be taken for a block of zeros, which a rewind would write back.
func (d *trackedDisk) read(b int) (*page, error) {
	pg := new(page)
	n, err := d.Disk.ReadAt(pg[:], int64(b)*pageSize)
	if err != nil && !(errors.Is(err, io.EOF) && int64(b)*pageSize+int64(n) >= d.Size()) {
		return nil, fmt.Errorf("disk block %d: %w", b, err)
	}
	return pg, nil
}

// checkpoint returns the table of written blocks as they are now, sharing
// the unchanged ones with base. On error nothing changes.
func (d *trackedDisk) checkpoint(base map[int]*page) (map[int]*page, error) {
	out := make(map[int]*page, len(d.orig))
	for b := range d.orig {
		if !d.dirty[b] && base != nil {
			if pg, ok := base[b]; ok {
				out[b] = pg
				continue
			}
		}
		pg, err := d.read(b)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: %w", err)
		}
		out[b] = pg
	}
	d.on = true
	clear(d.dirty)
	return out, nil
}

// rewind writes back the blocks that may differ from the checkpoint
// table to: those written since base, and those the two tables disagree on.
func (d *trackedDisk) rewind(base, to map[int]*page) error {
	for b := range d.orig {
		src, ok := to[b]
		if !ok {
			src = d.orig[b] // not yet written when the checkpoint was taken
		}
		if !d.dirty[b] && base[b] == src && src != nil {
			continue
		}
		n := int64(pageSize)
		if end := d.Size() - int64(b)*pageSize; end < n {
			n = end
		}
		if _, err := d.Disk.WriteAt(src[:n], int64(b)*pageSize); err != nil {
			return fmt.Errorf("rewind: disk block %d: %w", b, err)
		}
	}
	clear(d.dirty)
	return nil
}

// DiskBackend returns the disk the machine was built with (nil: none).
func (m *Machine) DiskBackend() vm.Disk { return m.cfg.Disk }
