package virtio

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"ftvm/internal/testsupport"
)

// TestBlockStateMidQueue saves a block device with requests made available
// but not yet notified, restores it into a fresh transport over a copy of
// guest memory and disk, and checks that Kick completes them exactly as
// the original would, with the pending interrupt re-raised.
func TestBlockStateMidQueue(t *testing.T) {
	md := testsupport.NewDisk(pattern(16*512, 1))
	e := newBlkEnv(t, md, false, 8)
	// One completed request, interrupt left unacknowledged.
	if st, _, _ := e.do(blkTOut, 2, pattern(512, 7), 512); st != blkSOK {
		t.Fatal(st)
	}
	// Two requests posted, not notified (the notification is "lost").
	e.req(blkTIn, 2, nil, 512)
	e.req(blkTOut, 3, pattern(1024, 8), 1024)

	ms, bs := e.m.State(), e.blk.State()
	mem2 := e.mem.clone()
	md2 := testsupport.NewDisk(append([]byte(nil), md.Bytes()...))
	irq2 := &irqRec{}
	b2 := NewBlock(md2, false)
	m2 := NewMMIO(b2, mem2, irq2)
	if err := m2.SetState(ms); err != nil {
		t.Fatal(err)
	}
	if err := b2.SetState(bs); err != nil {
		t.Fatal(err)
	}
	if !irq2.level {
		t.Fatalf("pending interrupt not re-raised after restore")
	}
	if !reflect.DeepEqual(m2.State(), ms) {
		t.Fatalf("state round trip differs")
	}

	// Original: the guest notifies. Restored: the board kicks.
	e.notify(0)
	m2.Kick()
	if !bytes.Equal(e.mem.b, mem2.b) || !bytes.Equal(md.Bytes(), md2.Bytes()) {
		t.Fatalf("restored device diverged from original")
	}
	if !reflect.DeepEqual(e.m.State(), m2.State()) || !reflect.DeepEqual(e.blk.State(), b2.State()) {
		t.Fatalf("states diverged")
	}
	if us := e.used(0); len(us) != 2 {
		t.Fatalf("used %+v", us)
	}
	// Kick with nothing pending does nothing.
	w := mem2.writes
	m2.Kick()
	if mem2.writes != w {
		t.Fatalf("idle kick wrote memory")
	}
}

func TestNetStateRoundTrip(t *testing.T) {
	e := newNetEnv(t, 8)
	f1, f2 := frame(60, 1), frame(70, 2)
	e.net.Receive(f1)
	e.net.Receive(f2)
	e.net.SetLinkUp(false)
	ms, ns := e.m.State(), e.net.State()
	// The snapshot is a deep copy.
	ns.Pending[0][0] ^= 0xff
	ns = e.net.State()

	tx := &txRec{}
	n2 := NewNet(testMAC, tx)
	mem2 := e.mem.clone()
	m2 := NewMMIO(n2, mem2, &irqRec{})
	if err := m2.SetState(ms); err != nil {
		t.Fatal(err)
	}
	if err := n2.SetState(ns); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(n2.State(), ns) || n2.Pending() != 2 || n2.ReadConfigStatus() != 0 {
		t.Fatalf("net state round trip")
	}
	// The guest had posted a buffer without notifying before the snapshot.
	a := e.alloc(2048, 8)
	e.add(0, buf{a, 2048, true})
	copy(mem2.b, e.mem.b)
	m2.Kick()
	if n2.Pending() != 1 {
		t.Fatalf("kick did not deliver: pending %d", n2.Pending())
	}
	if !bytes.Equal(mem2.bytes(a+netHdrSize, len(f1)), f1) {
		t.Fatalf("wrong frame delivered after restore")
	}
}

// ReadConfigStatus is a test helper reading the status config field.
func (n *Net) ReadConfigStatus() uint16 {
	var b [2]byte
	n.ReadConfig(6, b[:])
	return le16(b[:])
}

func TestSetStateValidation(t *testing.T) {
	e := newBlkEnv(t, testsupport.NewDisk(make([]byte, 4096)), false, 8)
	good := e.m.State()
	bad := []func(s *MMIOState){
		func(s *MMIOState) { s.Queues = nil },
		func(s *MMIOState) { s.Queues = append(s.Queues, QueueState{}) },
		func(s *MMIOState) { s.Status |= 0x10 },
		func(s *MMIOState) { s.InterruptStatus = 4 },
		func(s *MMIOState) { s.DriverFeatures = 0 },                // FEATURES_OK without VERSION_1
		func(s *MMIOState) { s.DriverFeatures |= FeatureEventIdx }, // not offered
		func(s *MMIOState) { s.Queues[0].Num = 6 },
		func(s *MMIOState) { s.Queues[0].Num = 512 },
		func(s *MMIOState) { s.Queues[0].Num = 0 },
		func(s *MMIOState) { s.Queues[0].DescAddr |= 8 },
		func(s *MMIOState) { s.Queues[0].DriverAddr |= 1 },
		func(s *MMIOState) { s.Queues[0].DeviceAddr |= 2 },
		func(s *MMIOState) { s.Queues[0].DeviceAddr = ^uint64(3) },
	}
	for i, f := range bad {
		s := e.m.State()
		s.Queues = append([]QueueState(nil), s.Queues...)
		f(&s)
		if err := e.m.SetState(s); !errors.Is(err, ErrBadState) {
			t.Errorf("case %d: SetState error %v", i, err)
		}
		if !reflect.DeepEqual(e.m.State(), good) {
			t.Fatalf("case %d: failed SetState changed the transport", i)
		}
	}
	// A not-ready queue may hold any driver-written value.
	s := e.m.State()
	s.Queues[0] = QueueState{Num: 0xffffffff, DescAddr: 3}
	if err := e.m.SetState(s); err != nil {
		t.Fatalf("not-ready queue rejected: %v", err)
	}

	n := NewNet(testMAC, &txRec{})
	NewMMIO(n, newTestMem(0, 4096), &irqRec{})
	for i, ns := range []NetState{
		{Pending: make([][]byte, RXFIFOFrames+1)},
		{Pending: [][]byte{{}}},
		{Pending: [][]byte{make([]byte, MaxFrameSize+1)}},
	} {
		if err := n.SetState(ns); !errors.Is(err, ErrBadState) {
			t.Errorf("net case %d: %v", i, err)
		}
	}
	big := make([][]byte, 65)
	for i := range big {
		big[i] = make([]byte, MaxFrameSize)
	}
	if err := n.SetState(NetState{Pending: big}); !errors.Is(err, ErrBadState) {
		t.Errorf("byte bound not validated: %v", err)
	}
}
