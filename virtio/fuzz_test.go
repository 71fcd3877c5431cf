package virtio

import (
	"encoding/binary"
	"reflect"
	"testing"

	"ftvm/internal/testsupport"
)

// Fuzz geometry: a small RAM so random addresses often hit it.
const (
	fzBase = 0x10000
	fzSize = 0x4000
	// fzMaxCalls bounds the Memory calls one operation may cause. The
	// worst legitimate case is Size() chains of up to Size()+QueueNumMax
	// descriptors each, plus data copies (chunks + segments); with the
	// fuzz queue sizes (<= 256) this stays far below.
	fzMaxCalls = 1 << 19
	// With a pace (kind&4), one operation moves at most the burst plus one
	// chain's data and descriptors, plus ring accesses.
	fzBurst    = 4096
	fzRate     = 64
	fzMaxBytes = fzBurst + MaxBlockRequest + 1024*descSize + 1<<16
)

// fuzzer drives one device through a byte script.
type fuzzer struct {
	t     *testing.T
	kind  byte
	mem   *testMem
	irq   *irqRec
	m     *MMIO
	blk   *Block
	net   *Net
	disk  *testsupport.Disk
	data  []byte
	pos   int
	heads [3]uint16 // next free descriptor index per queue for "post"
	avail [3]uint16
	qaddr [3][3]uint64
	qnum  uint32
	now   uint64 // guest time, for a paced transport
}

func (f *fuzzer) byte() byte {
	if f.pos >= len(f.data) {
		return 0
	}
	b := f.data[f.pos]
	f.pos++
	return b
}
func (f *fuzzer) u16() uint16 { return uint16(f.byte()) | uint16(f.byte())<<8 }
func (f *fuzzer) u32() uint32 { return uint32(f.u16()) | uint32(f.u16())<<16 }

func (f *fuzzer) build() {
	f.irq = &irqRec{}
	if f.kind&1 == 0 {
		f.disk = testsupport.NewDisk(make([]byte, 64<<10))
		f.blk = NewBlock(f.disk, f.kind&2 != 0)
		f.m = NewMMIO(f.blk, f.mem, f.irq)
	} else {
		f.net = NewNet(testMAC, &txRec{})
		f.m = NewMMIO(f.net, f.mem, f.irq)
	}
	if f.kind&4 != 0 {
		f.m.SetPace(Pace{Now: func() uint64 { return f.now }, BytesPerTick: fzRate, Burst: fzBurst})
	}
}

// handshake performs a valid initialisation with rings at
// script-chosen (possibly invalid) places.
func (f *fuzzer) handshake() {
	w := func(off uint64, v uint32) { f.m.Write(off, 4, uint64(v)) }
	w(regStatus, 0)
	w(regStatus, StatusAcknowledge|StatusDriver)
	w(regDriverFeaturesSel, 0)
	feat := f.m.offered() & (uint64(f.u32()) | FeatureVersion1 | FeatureIndirectDesc)
	w(regDriverFeatures, uint32(feat))
	w(regDriverFeaturesSel, 1)
	w(regDriverFeatures, uint32(feat>>32))
	w(regStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
	f.qnum = uint32(1) << (f.byte() % 9) // 1..256
	for q := range f.m.queues {
		w(regQueueSel, uint32(q))
		w(regQueueNum, f.qnum)
		for i, reg := range []uint64{regQueueDescLow, regQueueDriverLow, regQueueDeviceLow} {
			// Mostly inside RAM, aligned; sometimes anywhere.
			a := fzBase + uint64(f.u16())%fzSize&^15
			if f.byte() == 0xff {
				a = uint64(f.u32())
			}
			f.qaddr[q][i] = a
			w(reg, uint32(a))
			w(reg+4, uint32(a>>32))
		}
		w(regQueueReady, 1)
		// Like a driver, start with a zeroed avail header (op 2 can
		// still corrupt it).
		f.mem.WritePhys(f.qaddr[q][1], make([]byte, 4))
		f.heads[q], f.avail[q] = 0, 0
	}
	w(regStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
}

// post builds a chain of 1..4 descriptors in queue q's table and makes it
// available, the way a (possibly buggy) driver would.
func (f *fuzzer) post() {
	q := int(f.byte()) % len(f.m.queues)
	n := int(f.byte()%4) + 1
	if f.qnum == 0 {
		return
	}
	desc, avail := f.qaddr[q][0], f.qaddr[q][1]
	head := f.heads[q] % uint16(f.qnum)
	idx := head
	for i := range n {
		addr := fzBase + uint64(f.u16())%fzSize
		l := uint32(f.u16())
		fl := uint16(f.byte()) & 7
		next := (idx + 1) % uint16(f.qnum)
		if i+1 < n {
			fl |= descFNext
		} else {
			fl &^= descFNext
		}
		var d [16]byte
		put64(d[0:], addr)
		put32(d[8:], l)
		put16(d[12:], fl)
		put16(d[14:], next)
		f.mem.WritePhys(desc+16*uint64(idx), d[:])
		idx = next
	}
	f.heads[q] = idx
	var b [2]byte
	put16(b[:], head)
	f.mem.WritePhys(avail+4+2*uint64(f.avail[q]%uint16(f.qnum)), b[:])
	f.avail[q]++
	put16(b[:], f.avail[q])
	f.mem.WritePhys(avail+2, b[:])
}

// restore snapshots transport and device, and continues on fresh objects
// restored from the snapshot (over the same memory).
func (f *fuzzer) restore() {
	ms := f.m.State()

	var ds any
	if f.blk != nil {
		ds = f.blk.State()
	} else {
		ds = f.net.State()
	}
	f.build()
	if err := f.m.SetState(ms); err != nil {
		f.t.Fatalf("SetState of own state: %v", err)
	}
	if f.blk != nil {
		if err := f.blk.SetState(ds.(BlockState)); err != nil {
			f.t.Fatal(err)
		}
	} else if err := f.net.SetState(ds.(NetState)); err != nil {
		f.t.Fatalf("net SetState of own state: %v", err)
	}
	if !reflect.DeepEqual(f.m.State(), ms) {
		f.t.Fatalf("transport state round trip differs")
	}
	f.m.Kick()
}

func (f *fuzzer) step() {
	op := f.byte() % 11
	before := f.m.status&StatusDeviceNeedsReset != 0
	calls0, writes0 := f.mem.reads+f.mem.writes, f.mem.writes
	bytes0 := f.mem.readBytes + f.mem.writtenBytes
	deviceOp := false
	switch op {
	case 0: // raw register write
		off := uint64(f.byte()) * 4
		f.m.Write(off, 4, uint64(f.u32()))
	case 1:
		deviceOp = true
		f.m.Write(regQueueNotify, 4, uint64(f.byte()%3))
	case 2: // guest scribbles on its RAM
		var b [2]byte
		put16(b[:], f.u16())
		f.mem.WritePhys(fzBase+uint64(f.u16())%fzSize, b[:])
		writes0++
	case 3:
		deviceOp = true
		if f.net != nil {
			n := int(f.u16()) % 2000
			fr := make([]byte, n)
			for i := range fr {
				fr[i] = byte(i)
			}
			f.net.Receive(fr)
		}
	case 4:
		deviceOp = true
		f.m.Kick()
	case 5:
		f.restore()
	case 6:
		f.handshake()
	case 7: // config access of any size at any offset
		off := uint64(f.u16())
		size := int(f.byte() % 10)
		if f.byte()&1 == 0 {
			f.m.Read(off, size)
		} else {
			f.m.Write(off, size, uint64(f.u32()))
		}
	case 8:
		f.post()
		writes0 = f.mem.writes
		calls0 = f.mem.reads + f.mem.writes
	case 9:
		f.m.Write(regInterruptACK, 4, uint64(f.byte()))
	case 10: // guest time passes
		deviceOp = true
		f.now += uint64(f.u16())
		f.m.Update()
	}
	if f.m.pace != nil {
		if n := f.mem.readBytes + f.mem.writtenBytes - bytes0; op != 2 && op != 8 && n > fzMaxBytes {
			f.t.Fatalf("op %d moved %d bytes with a pace of %d", op, n, fzBurst)
		}
		if dl := f.m.Deadline(); f.m.deferred() && (dl == ^uint64(0) || f.m.debtNow(dl) >= fzBurst) {
			f.t.Fatalf("op %d: queues deferred until %d, when the debt will still be %d", op, dl, f.m.debtNow(dl))
		}
	}
	if n := f.mem.reads + f.mem.writes - calls0; n > fzMaxCalls {
		f.t.Fatalf("op %d made %d memory calls", op, n)
	}
	if before && deviceOp && f.mem.writes != writes0 {
		f.t.Fatalf("op %d: device wrote guest memory while needing reset", op)
	}
	if lvl, isr := f.irq.level, f.m.Read(regInterruptStatus, 4) != 0; lvl != isr {
		f.t.Fatalf("op %d: line %v but InterruptStatus %#x", op, lvl, f.m.Read(regInterruptStatus, 4))
	}
	if f.net != nil && f.net.Pending() > RXFIFOFrames {
		f.t.Fatalf("FIFO unbounded")
	}
}

// FuzzTransport builds guest RAM from the input, then runs a script of
// register writes, notifications, guest memory writes, frame deliveries,
// kicks, snapshot/restores and the passing of guest time against a block
// (even first byte) or net (odd) device, paced when bit 2 of the first
// byte is set. It checks: no panic, bounded work per operation (memory
// calls; with a pace, bytes moved), a deferred queue always resuming at
// a deadline when the pace allows it, no guest memory writes by a device
// that needs reset, and the interrupt line level always equal to
// (InterruptStatus != 0). Out-of-RAM accesses simply fail
// in testMem, and the device must cope.
func FuzzTransport(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		fz := &fuzzer{t: t, kind: data[0], data: data, pos: 1}
		fz.mem = newTestMem(fzBase, fzSize)
		// RAM image: the input repeated, so random descriptors exist.
		for i := range fz.mem.b {
			fz.mem.b[i] = data[i%len(data)]
		}
		fz.build()
		for steps := 0; fz.pos < len(data) && steps < 256; steps++ {
			fz.step()
		}
	})
}

// fuzzSeeds are hand-built scripts reaching the interesting paths: a valid
// handshake followed by well-formed block requests / frames.
func fuzzSeeds() [][]byte {
	le16 := func(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	hs := func(qlog byte, nq int) []byte {
		s := []byte{6}
		s = append(s, le32(0xffffffff)...)
		s = append(s, qlog)
		// per queue: desc, avail, used offsets (+ 0 "not random" flag)
		for q := range nq {
			for _, off := range []uint16{0x0000, 0x0800, 0x0c00} {
				s = append(s, le16(off+uint16(q)*0x1000)...)
				s = append(s, 0)
			}
		}
		return s
	}
	desc := func(off, l uint16, flags byte) []byte {
		return append(append(le16(off), le16(l)...), flags)
	}
	var seeds [][]byte
	// Block: header at 0x2000 (type IN=0, sector 0), data 0x2100, status 0x2400.
	blk := []byte{0}
	blk = append(blk, hs(3, 1)...)
	for off := uint16(0x2000); off < 0x2010; off += 2 { // zero header
		blk = append(blk, 2, 0, 0)
		blk = append(blk, le16(off-fzBase%fzSize)...)
	}
	blk = append(blk, 8, 0, 2) // post q0, 3 descriptors
	blk = append(blk, desc(0x2000, 16, 0)...)
	blk = append(blk, desc(0x2100, 512, descFWrite)...)
	blk = append(blk, desc(0x2400, 1, descFWrite)...)
	blk = append(blk, 1, 0) // notify
	blk = append(blk, 2)    // mem write: header type OUT
	blk = append(blk, le16(1)...)
	blk = append(blk, le16(0x2000)...)
	blk = append(blk, 8, 0, 2)
	blk = append(blk, desc(0x2000, 16, 0)...)
	blk = append(blk, desc(0x2100, 1024, 0)...)
	blk = append(blk, desc(0x2400, 1, descFWrite)...)
	blk = append(blk, 5, 4, 9, 3, 1, 0)
	seeds = append(seeds, blk)
	// Net: post RX buffer, receive, post TX chain, notify, snapshot.
	net := []byte{1}
	net = append(net, hs(4, 2)...)
	net = append(net, 3, 60, 0) // frame with no buffer -> FIFO
	net = append(net, 8, 0, 0)
	net = append(net, desc(0x2000, 2048, descFWrite)...)
	net = append(net, 1, 0)
	net = append(net, 8, 1, 1)
	net = append(net, desc(0x2800, 12, 0)...)
	net = append(net, desc(0x2900, 100, 0)...)
	net = append(net, 1, 1, 5, 3, 200, 0, 4)
	seeds = append(seeds, net)
	// Indirect chain on block.
	ind := []byte{2}
	ind = append(ind, hs(2, 1)...)
	ind = append(ind, 8, 0, 0)
	ind = append(ind, desc(0x3000, 48, descFIndirect)...)
	ind = append(ind, 1, 0)
	seeds = append(seeds, ind)
	// The same, paced, with guest time passing.
	for _, s := range [][]byte{blk, net, ind} {
		p := append([]byte{s[0] | 4}, s[1:]...)
		seeds = append(seeds, append(p, 10, 0, 1, 1, 0, 10, 0xff, 0xff))
	}
	return seeds
}
