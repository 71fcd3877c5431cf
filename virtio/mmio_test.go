package virtio

import (
	"testing"

	"ftvm/internal/testsupport"
)

func TestRegisters(t *testing.T) {
	b := NewBlock(testsupport.NewDisk(make([]byte, 4096)), false)
	d := newDriver(t, b)
	checks := []struct {
		off  uint64
		want uint32
	}{
		{regMagicValue, 0x74726976}, {regVersion, 2}, {regDeviceID, 2}, {regVendorID, VendorID},
		{regSHMLenLow, 0xffffffff}, {regConfigGeneration, 0}, {0x0f0, 0}, {regStatus, 0},
	}
	for _, c := range checks {
		if got := d.r(c.off); got != c.want {
			t.Errorf("reg %#x = %#x want %#x", c.off, got, c.want)
		}
	}
	// Non-32-bit accesses to control registers read 0 (spec 4.2.2.2).
	if d.m.Read(regMagicValue, 2) != 0 || d.m.Read(regMagicValue, 8) != 0 || d.m.Read(regMagicValue+1, 4) != 0 || d.m.Read(0, 3) != 0 {
		t.Errorf("narrow/misaligned register access not 0")
	}
	d.w(regDeviceFeaturesSel, 1)
	if d.r(regDeviceFeatures)&1 == 0 {
		t.Errorf("VERSION_1 not offered")
	}
	d.w(regDeviceFeaturesSel, 7)
	if d.r(regDeviceFeatures) != 0 {
		t.Errorf("features sel 7 not 0")
	}
	d.w(regQueueSel, 0)
	if d.r(regQueueNumMax) != BlockQueueSize {
		t.Errorf("QueueNumMax %d", d.r(regQueueNumMax))
	}
	d.w(regQueueSel, 1)
	if d.r(regQueueNumMax) != 0 {
		t.Errorf("QueueNumMax of missing queue not 0")
	}
	// Writes to unknown offsets or sizes are ignored without panicking.
	for off := uint64(0); off < 0x1100; off += 1 {
		for _, sz := range []int{1, 2, 4, 8, 3, 0, -1} {
			d.m.Write(off+0x10000000, sz, ^uint64(0))
			_ = d.m.Read(off, sz)
		}
	}
}

func TestFeatureNegotiation(t *testing.T) {
	b := NewBlock(testsupport.NewDisk(make([]byte, 4096)), false)
	d := newDriver(t, b)
	neg := func(f uint64) bool {
		d.w(regStatus, 0)
		d.w(regStatus, StatusAcknowledge|StatusDriver)
		d.w(regDriverFeaturesSel, 0)
		d.w(regDriverFeatures, uint32(f))
		d.w(regDriverFeaturesSel, 1)
		d.w(regDriverFeatures, uint32(f>>32))
		d.w(regStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
		return d.r(regStatus)&StatusFeaturesOK != 0
	}
	if neg(blkFFlush) {
		t.Errorf("FEATURES_OK accepted without VERSION_1")
	}
	if neg(FeatureVersion1 | FeatureEventIdx) {
		t.Errorf("FEATURES_OK accepted with unoffered EVENT_IDX")
	}
	if neg(FeatureVersion1 | blkFRO) {
		t.Errorf("FEATURES_OK accepted with unoffered RO")
	}
	if !neg(FeatureVersion1 | blkFFlush) {
		t.Fatalf("FEATURES_OK refused for valid set")
	}
	if d.m.DriverFeatures() != FeatureVersion1|blkFFlush {
		t.Fatalf("negotiated %#x", d.m.DriverFeatures())
	}
	// Features are frozen after FEATURES_OK.
	d.w(regDriverFeaturesSel, 0)
	d.w(regDriverFeatures, 0)
	if d.m.DriverFeatures() != FeatureVersion1|blkFFlush {
		t.Fatalf("features changed after FEATURES_OK")
	}
	// Reset clears everything.
	d.w(regStatus, 0)
	if d.r(regStatus) != 0 || d.m.DriverFeatures() != 0 {
		t.Fatalf("reset incomplete")
	}
}

func TestQueueNotLiveBeforeDriverOK(t *testing.T) {
	md := testsupport.NewDisk(make([]byte, 4096))
	b := NewBlock(md, false)
	d := newDriver(t, b)
	d.handshake(^uint64(0), 8)
	e := &blkEnv{driver: d, blk: b}
	// Reset and redo everything but DRIVER_OK; post a request and notify.
	d.w(regStatus, 0)
	d.status = 0
	d.setStatus(StatusAcknowledge | StatusDriver)
	d.w(regDriverFeaturesSel, 1)
	d.w(regDriverFeatures, 1)
	d.setStatus(StatusFeaturesOK)
	q := d.q[0]
	*q = dq{num: 8, desc: q.desc, avail: q.avail, used: q.used, chains: map[uint16][]uint16{}}
	for j := 7; j >= 0; j-- {
		q.free = append(q.free, uint16(j))
	}
	for _, a := range []uint64{q.desc, q.avail, q.used} {
		clear(d.mem.bytes(a, 64))
	}
	d.w(regQueueSel, 0)
	d.w(regQueueNum, 8)
	d.w(regQueueDescLow, uint32(q.desc))
	d.w(regQueueDriverLow, uint32(q.avail))
	d.w(regQueueDeviceLow, uint32(q.used))
	d.w(regQueueReady, 1)
	e.req(blkTFlush, 0, nil, 0)
	d.notify(0)
	if len(d.used(0)) != 0 || md.Flushes != 0 {
		t.Fatalf("request processed before DRIVER_OK")
	}
	// DRIVER_OK picks up the already-available request.
	d.setStatus(StatusDriverOK)
	if len(d.used(0)) != 1 || md.Flushes != 1 {
		t.Fatalf("request not processed at DRIVER_OK")
	}
}

func TestInterruptLevels(t *testing.T) {
	e := newBlkEnv(t, testsupport.NewDisk(make([]byte, 4096)), false, 8)
	if e.irq.level {
		t.Fatalf("line high after handshake")
	}
	e.req(blkTFlush, 0, nil, 0)
	e.notify(0)
	if !e.irq.level || e.r(regInterruptStatus) != InterruptUsedBuffer {
		t.Fatalf("no interrupt after completion: line %v isr %#x", e.irq.level, e.r(regInterruptStatus))
	}
	// Acking a bit that is not set keeps the line high.
	e.w(regInterruptACK, InterruptConfigChanged)
	if !e.irq.level {
		t.Fatalf("line dropped on unrelated ack")
	}
	e.w(regInterruptACK, InterruptUsedBuffer)
	if e.irq.level || e.r(regInterruptStatus) != 0 {
		t.Fatalf("line still high after ack")
	}
	e.used(0)

	// VIRTQ_AVAIL_F_NO_INTERRUPT suppresses the notification but the
	// buffer is still used.
	e.mem.w16(e.q[0].avail, availFNoInterrupt)
	e.req(blkTFlush, 0, nil, 0)
	e.notify(0)
	if e.irq.level || e.r(regInterruptStatus) != 0 {
		t.Fatalf("interrupt despite NO_INTERRUPT")
	}
	if len(e.used(0)) != 1 {
		t.Fatalf("request not completed under NO_INTERRUPT")
	}
	e.mem.w16(e.q[0].avail, 0)
	e.req(blkTFlush, 0, nil, 0)
	e.notify(0)
	if !e.irq.level {
		t.Fatalf("no interrupt after clearing NO_INTERRUPT")
	}
	// Reset deasserts.
	e.w(regStatus, 0)
	if e.irq.level {
		t.Fatalf("line high after reset")
	}
}

// TestStructuralErrors checks the DEVICE_NEEDS_RESET policy.
func TestStructuralErrors(t *testing.T) {
	type setup func(e *blkEnv)
	flushHead := func(e *blkEnv) uint16 { h, _, _ := e.req(blkTFlush, 0, nil, 0); return h }
	desc := func(e *blkEnv, i uint16) uint64 { return e.q[0].desc + 16*uint64(i) }
	cases := []struct {
		name string
		f    setup
	}{
		{"head out of range", func(e *blkEnv) {
			flushHead(e)
			e.mem.w16(e.q[0].avail+4, 200)
		}},
		{"avail idx jump", func(e *blkEnv) {
			flushHead(e)
			e.mem.w16(e.q[0].avail+2, 9)
		}},
		{"chain loop", func(e *blkEnv) {
			h := flushHead(e)
			e.mem.w16(desc(e, h)+12, descFNext)
			e.mem.w16(desc(e, h)+14, h)
		}},
		{"next out of range", func(e *blkEnv) {
			h := flushHead(e)
			e.mem.w16(desc(e, h)+12, descFNext)
			e.mem.w16(desc(e, h)+14, 8)
		}},
		{"readable after writable", func(e *blkEnv) {
			hdr := e.alloc(16, 16)
			e.mem.w32(hdr, blkTFlush)
			s := e.alloc(1, 1)
			e.add(0, buf{s, 1, true}, buf{hdr, 16, false})
		}},
		{"no status byte", func(e *blkEnv) {
			hdr := e.alloc(16, 16)
			e.add(0, buf{hdr, 16, false})
		}},
		{"short header", func(e *blkEnv) {
			hdr := e.alloc(16, 16)
			s := e.alloc(1, 1)
			e.add(0, buf{hdr, 8, false}, buf{s, 1, true})
		}},
		{"status outside RAM", func(e *blkEnv) {
			hdr := e.alloc(16, 16)
			e.add(0, buf{hdr, 16, false}, buf{1 << 40, 1, true})
		}},
		{"descriptor wraps", func(e *blkEnv) {
			hdr := e.alloc(16, 16)
			e.add(0, buf{hdr, 16, false}, buf{^uint64(0) - 1, 16, true})
		}},
		{"nested indirect", func(e *blkEnv) {
			tbl := e.alloc(16, 16)
			e.mem.w64(tbl, tbl)
			e.mem.w32(tbl+8, 16)
			e.mem.w16(tbl+12, descFIndirect)
			h := e.add(0, buf{tbl, 16, false})
			e.mem.w16(desc(e, h)+12, descFIndirect)
		}},
		{"indirect bad length", func(e *blkEnv) {
			tbl := e.alloc(32, 16)
			h := e.add(0, buf{tbl, 17, false})
			e.mem.w16(desc(e, h)+12, descFIndirect)
		}},
		{"indirect loop", func(e *blkEnv) {
			tbl := e.alloc(32, 16)
			e.mem.w16(tbl+12, descFNext)
			e.mem.w16(tbl+14, 1)
			e.mem.w16(tbl+16+12, descFNext)
			e.mem.w16(tbl+16+14, 0)
			h := e.add(0, buf{tbl, 32, false})
			e.mem.w16(desc(e, h)+12, descFIndirect)
		}},
		{"used ring outside RAM", func(e *blkEnv) {
			// Re-point the used ring: reset and set up the queue again.
			e.w(regStatus, 0)
			e.w(regStatus, StatusAcknowledge|StatusDriver)
			e.w(regDriverFeaturesSel, 1)
			e.w(regDriverFeatures, 1)
			e.w(regStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
			e.w(regQueueNum, 8)
			e.w(regQueueDescLow, uint32(e.q[0].desc))
			e.w(regQueueDriverLow, uint32(e.q[0].avail))
			e.w(regQueueDeviceLow, 0x100)
			e.w(regQueueReady, 1)
			e.w(regStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
			e.mem.w16(e.q[0].avail+2, 0)
			e.q[0].availIdx = 0
			e.req(99, 0, nil, 0) // completes (UNSUPP) but cannot be returned
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			md := testsupport.NewDisk(make([]byte, 4096))
			e := newBlkEnv(t, md, false, 8)
			c.f(e)
			e.ack()
			e.notify(0)
			if !e.needsReset() {
				t.Fatalf("DEVICE_NEEDS_RESET not set")
			}
			if e.m.Err() == nil {
				t.Fatalf("no error recorded")
			}
			if e.r(regInterruptStatus)&InterruptConfigChanged == 0 || !e.irq.level {
				t.Fatalf("no config change interrupt")
			}
			if md.Flushes != 0 {
				t.Fatalf("request executed")
			}
			// The device stays stopped until reset...
			w := e.mem.writes
			e.notify(0)
			e.m.Kick()
			if e.mem.writes != w {
				t.Fatalf("device wrote memory while needing reset")
			}
			// ...and works again after a full re-initialisation.
			e.handshake(^uint64(0), 8)
			clear(e.mem.bytes(e.q[0].avail, 64))
			if st, _, _ := e.do(blkTFlush, 0, nil, 0); st != blkSOK || e.needsReset() {
				t.Fatalf("device not usable after reset")
			}
		})
	}
}

func TestQueueReadyValidation(t *testing.T) {
	for _, c := range []struct {
		name              string
		num               uint32
		desc, avail, used uint64
	}{
		{"size 0", 0, 0x1000, 0x2000, 0x3000},
		{"size not power of 2", 6, 0x1000, 0x2000, 0x3000},
		{"size above max", 512, 0x1000, 0x2000, 0x3000},
		{"desc misaligned", 8, 0x1008, 0x2000, 0x3000},
		{"avail misaligned", 8, 0x1000, 0x2001, 0x3000},
		{"used misaligned", 8, 0x1000, 0x2000, 0x3002},
		{"desc wraps", 8, ^uint64(0) &^ 15, 0x2000, 0x3000},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDriver(t, NewBlock(testsupport.NewDisk(make([]byte, 4096)), false))
			d.setStatus(StatusAcknowledge | StatusDriver)
			d.w(regQueueSel, 0)
			d.w(regQueueNum, c.num)
			d.w(regQueueDescLow, uint32(c.desc))
			d.w(regQueueDescHigh, uint32(c.desc>>32))
			d.w(regQueueDriverLow, uint32(c.avail))
			d.w(regQueueDeviceLow, uint32(c.used))
			d.w(regQueueReady, 1)
			if d.r(regQueueReady) != 0 || !d.needsReset() {
				t.Fatalf("invalid queue enabled (ready %d status %#x)", d.r(regQueueReady), d.r(regStatus))
			}
		})
	}
}
