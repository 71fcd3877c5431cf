package virtio

import (
	"encoding/binary"
	"testing"
)

// testMem is guest RAM: a byte slice at base. It counts accesses so tests
// can bound the work a device does.
type testMem struct {
	base   uint64
	b      []byte
	reads  int
	writes int
	fails  int
	// bytes copied by successful calls
	readBytes, writtenBytes uint64
}

func newTestMem(base uint64, size int) *testMem { return &testMem{base: base, b: make([]byte, size)} }

func (m *testMem) off(addr uint64, n int) (uint64, bool) {
	if addr < m.base {
		return 0, false
	}
	o := addr - m.base
	if o > uint64(len(m.b)) || uint64(n) > uint64(len(m.b))-o {
		return 0, false
	}
	return o, true
}

func (m *testMem) ReadPhys(addr uint64, p []byte) bool {
	m.reads++
	o, ok := m.off(addr, len(p))
	if !ok {
		m.fails++
		return false
	}
	copy(p, m.b[o:])
	m.readBytes += uint64(len(p))
	return true
}

func (m *testMem) WritePhys(addr uint64, p []byte) bool {
	m.writes++
	o, ok := m.off(addr, len(p))
	if !ok {
		m.fails++
		return false
	}
	copy(m.b[o:], p)
	m.writtenBytes += uint64(len(p))
	return true
}

func (m *testMem) clone() *testMem {
	return &testMem{base: m.base, b: append([]byte(nil), m.b...)}
}

func (m *testMem) r16(a uint64) uint16 {
	o, _ := m.off(a, 2)
	return binary.LittleEndian.Uint16(m.b[o:])
}
func (m *testMem) r32(a uint64) uint32 {
	o, _ := m.off(a, 4)
	return binary.LittleEndian.Uint32(m.b[o:])
}
func (m *testMem) w16(a uint64, v uint16) {
	o, _ := m.off(a, 2)
	binary.LittleEndian.PutUint16(m.b[o:], v)
}
func (m *testMem) w32(a uint64, v uint32) {
	o, _ := m.off(a, 4)
	binary.LittleEndian.PutUint32(m.b[o:], v)
}
func (m *testMem) w64(a uint64, v uint64) {
	o, _ := m.off(a, 8)
	binary.LittleEndian.PutUint64(m.b[o:], v)
}

// desc writes descriptor i of the table at base.
func (m *testMem) desc(base uint64, i int, addr uint64, length uint32, flags, next uint16) {
	p := base + descSize*uint64(i)
	m.w64(p, addr)
	m.w32(p+8, length)
	m.w16(p+12, flags)
	m.w16(p+14, next)
}

func (m *testMem) bytes(a uint64, n int) []byte {
	o, ok := m.off(a, n)
	if !ok {
		panic("test bug: bytes outside test memory")
	}
	return m.b[o : o+uint64(n)]
}

// irqRec records the interrupt line.
type irqRec struct {
	level bool
	edges int // number of SetLevel calls that changed the level
	calls int
}

func (r *irqRec) SetLevel(high bool) {
	r.calls++
	if high != r.level {
		r.edges++
	}
	r.level = high
}

// buf is one descriptor's buffer for the test driver.
type buf struct {
	addr  uint64
	len   uint32
	write bool
}

// dq is the test driver's view of one virtqueue.
type dq struct {
	num               uint16
	desc, avail, used uint64
	free              []uint16 // free descriptor indices
	availIdx          uint16
	lastUsed          uint16
	chains            map[uint16][]uint16 // head -> descriptors, for freeing
}

type usedElem struct {
	id  uint16
	len uint32
}

// driver is a minimal virtio-mmio driver doing what Linux's virtio_mmio.c
// and virtio_ring.c do, against a testMem.
type driver struct {
	t      testing.TB
	m      *MMIO
	mem    *testMem
	irq    *irqRec
	q      []*dq
	next   uint64 // bump allocator
	feats  uint64
	status uint32
}

const (
	memBase = 0x8000_0000
	memSize = 4 << 20
)

func newDriver(t testing.TB, dev Device) *driver {
	mem := newTestMem(memBase, memSize)
	irq := &irqRec{}
	d := &driver{t: t, mem: mem, irq: irq, next: memBase + 0x1000}
	d.m = NewMMIO(dev, mem, irq)
	return d
}

func (d *driver) r(off uint64) uint32    { return uint32(d.m.Read(off, 4)) }
func (d *driver) w(off uint64, v uint32) { d.m.Write(off, 4, uint64(v)) }
func (d *driver) setStatus(bits uint32)  { d.status |= bits; d.w(regStatus, d.status) }
func (d *driver) alloc(n, align uint64) uint64 {
	d.next = (d.next + align - 1) &^ (align - 1)
	a := d.next
	d.next += n
	if d.next > memBase+memSize {
		d.t.Fatalf("test memory exhausted")
	}
	return a
}

// handshake performs spec 3.1.1 device initialisation, accepting want
// (masked by what the device offers), with queues of size qsize.
func (d *driver) handshake(want uint64, qsize uint16) {
	d.t.Helper()
	if d.r(regMagicValue) != MagicValue || d.r(regVersion) != 2 {
		d.t.Fatalf("bad magic/version")
	}
	d.w(regStatus, 0)
	d.status = 0
	if d.r(regStatus) != 0 {
		d.t.Fatalf("status not 0 after reset")
	}
	d.setStatus(StatusAcknowledge)
	d.setStatus(StatusDriver)
	d.w(regDeviceFeaturesSel, 0)
	offered := uint64(d.r(regDeviceFeatures))
	d.w(regDeviceFeaturesSel, 1)
	offered |= uint64(d.r(regDeviceFeatures)) << 32
	d.feats = offered & want
	d.w(regDriverFeaturesSel, 0)
	d.w(regDriverFeatures, uint32(d.feats))
	d.w(regDriverFeaturesSel, 1)
	d.w(regDriverFeatures, uint32(d.feats>>32))
	d.setStatus(StatusFeaturesOK)
	if d.r(regStatus)&StatusFeaturesOK == 0 {
		d.t.Fatalf("FEATURES_OK refused for %#x", d.feats)
	}
	d.q = nil
	for i := 0; ; i++ {
		d.w(regQueueSel, uint32(i))
		max := d.r(regQueueNumMax)
		if max == 0 {
			break
		}
		if d.r(regQueueReady) != 0 {
			d.t.Fatalf("queue %d ready before setup", i)
		}
		n := min(uint32(qsize), max)
		q := &dq{num: uint16(n), chains: map[uint16][]uint16{}}
		q.desc = d.alloc(16*uint64(n), 16)
		q.avail = d.alloc(6+2*uint64(n), 2)
		q.used = d.alloc(6+8*uint64(n), 4)
		for j := int(n) - 1; j >= 0; j-- {
			q.free = append(q.free, uint16(j))
		}
		d.w(regQueueNum, n)
		d.w(regQueueDescLow, uint32(q.desc))
		d.w(regQueueDescHigh, uint32(q.desc>>32))
		d.w(regQueueDriverLow, uint32(q.avail))
		d.w(regQueueDriverHigh, uint32(q.avail>>32))
		d.w(regQueueDeviceLow, uint32(q.used))
		d.w(regQueueDeviceHigh, uint32(q.used>>32))
		d.w(regQueueReady, 1)
		d.q = append(d.q, q)
	}
	d.setStatus(StatusDriverOK)
	if d.r(regStatus)&StatusDeviceNeedsReset != 0 {
		d.t.Fatalf("device needs reset after handshake: %v", d.m.Err())
	}
}

// add posts a chain without notifying; returns the head.
func (d *driver) add(qi int, bufs ...buf) uint16 {
	d.t.Helper()
	q := d.q[qi]
	if len(bufs) > len(q.free) {
		d.t.Fatalf("queue %d full", qi)
	}
	idx := make([]uint16, len(bufs))
	for i := range bufs {
		idx[i] = q.free[len(q.free)-1]
		q.free = q.free[:len(q.free)-1]
	}
	for i, b := range bufs {
		a := q.desc + 16*uint64(idx[i])
		d.mem.w64(a, b.addr)
		d.mem.w32(a+8, b.len)
		var fl uint16
		if b.write {
			fl |= descFWrite
		}
		var next uint16
		if i+1 < len(bufs) {
			fl |= descFNext
			next = idx[i+1]
		}
		d.mem.w16(a+12, fl)
		d.mem.w16(a+14, next)
	}
	head := idx[0]
	q.chains[head] = idx
	d.mem.w16(q.avail+4+2*uint64(q.availIdx%q.num), head)
	q.availIdx++
	d.mem.w16(q.avail+2, q.availIdx)
	return head
}

func (d *driver) notify(qi int) { d.w(regQueueNotify, uint32(qi)) }

// used collects completed chains.
func (d *driver) used(qi int) []usedElem {
	q := d.q[qi]
	var out []usedElem
	for idx := d.mem.r16(q.used + 2); q.lastUsed != idx; q.lastUsed++ {
		e := q.used + 4 + 8*uint64(q.lastUsed%q.num)
		u := usedElem{id: uint16(d.mem.r32(e)), len: d.mem.r32(e + 4)}
		ch, ok := q.chains[u.id]
		if !ok {
			d.t.Fatalf("used id %d not outstanding", u.id)
		}
		delete(q.chains, u.id)
		q.free = append(q.free, ch...)
		out = append(out, u)
	}
	return out
}

// ack acknowledges all pending interrupts as the Linux vm_interrupt does.
func (d *driver) ack() uint32 {
	s := d.r(regInterruptStatus)
	d.w(regInterruptACK, s)
	return s
}

func (d *driver) needsReset() bool { return d.r(regStatus)&StatusDeviceNeedsReset != 0 }
