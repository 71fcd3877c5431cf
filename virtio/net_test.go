package virtio

import (
	"bytes"
	"fmt"
	"testing"
)

type txRec struct{ frames [][]byte }

func (r *txRec) Transmit(f []byte) { r.frames = append(r.frames, append([]byte(nil), f...)) }

type netEnv struct {
	*driver
	net *Net
	tx  *txRec
}

var testMAC = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

func newNetEnv(t testing.TB, qsize uint16) *netEnv {
	tx := &txRec{}
	n := NewNet(testMAC, tx)
	d := newDriver(t, n)
	d.handshake(^uint64(0), qsize)
	return &netEnv{driver: d, net: n, tx: tx}
}

// postRX posts one receive buffer of size n (one descriptor, like Linux's
// small-buffer mode) and returns its address.
func (e *netEnv) postRX(n int) (uint16, uint64) {
	a := e.alloc(uint64(n), 8)
	return e.add(0, buf{a, uint32(n), true}), a
}

func frame(n int, seed byte) []byte {
	f := pattern(n, seed)
	copy(f, testMAC[:])
	return f
}

func TestNetConfig(t *testing.T) {
	e := newNetEnv(t, 8)
	if e.feats&(netFMAC|netFStatus) != netFMAC|netFStatus || e.feats&FeatureVersion1 == 0 {
		t.Fatalf("features %#x", e.feats)
	}
	var mac [6]byte
	for i := range mac {
		mac[i] = byte(e.m.Read(regConfig+uint64(i), 1))
	}
	if mac != testMAC || e.m.Read(regConfig+6, 2) != netSLinkUp {
		t.Fatalf("config mac %x status %d", mac, e.m.Read(regConfig+6, 2))
	}
	gen := e.r(regConfigGeneration)
	e.ack()
	e.net.SetLinkUp(false)
	if e.m.Read(regConfig+6, 2) != 0 || e.r(regConfigGeneration) == gen || e.r(regInterruptStatus) != InterruptConfigChanged {
		t.Fatalf("link down not signalled")
	}
}

func TestNetTX(t *testing.T) {
	e := newNetEnv(t, 8)
	for i := range 20 { // wraps the ring
		f := frame(60+i, byte(i))
		hdr := e.alloc(netHdrSize, 8)
		p := e.alloc(uint64(len(f)), 8)
		copy(e.mem.bytes(p, len(f)), f)
		// Header and frame split differently each time.
		cut := uint64(i % 12)
		h := e.add(1, buf{hdr, uint32(cut), false}, buf{hdr + cut, uint32(netHdrSize - cut), false}, buf{p, uint32(len(f)), false})
		e.notify(1)
		us := e.used(1)
		if len(us) != 1 || us[0].id != h || us[0].len != 0 {
			t.Fatalf("tx used %+v", us)
		}
		if len(e.tx.frames) != i+1 || !bytes.Equal(e.tx.frames[i], f) {
			t.Fatalf("frame %d mismatch", i)
		}
	}
	// A chain shorter than the header is dropped but returned.
	h := e.add(1, buf{e.alloc(4, 8), 4, false})
	e.notify(1)
	if us := e.used(1); len(us) != 1 || us[0].id != h || len(e.tx.frames) != 20 || e.net.State().TXDropped != 1 {
		t.Fatalf("short tx chain not dropped cleanly")
	}
	if e.needsReset() {
		t.Fatalf("needs reset: %v", e.m.Err())
	}
}

func checkRX(t *testing.T, e *netEnv, u usedElem, addr uint64, want []byte) {
	t.Helper()
	if u.len != uint32(netHdrSize+len(want)) {
		t.Fatalf("rx used len %d want %d", u.len, netHdrSize+len(want))
	}
	hdr := e.mem.bytes(addr, netHdrSize)
	wantHdr := make([]byte, netHdrSize)
	wantHdr[10] = 1 // num_buffers
	if !bytes.Equal(hdr, wantHdr) {
		t.Fatalf("rx header %x", hdr)
	}
	if got := e.mem.bytes(addr+netHdrSize, len(want)); !bytes.Equal(got, want) {
		t.Fatalf("rx frame mismatch")
	}
}

func TestNetRX(t *testing.T) {
	e := newNetEnv(t, 8)
	// Nothing posted: frames wait in the FIFO.
	f1, f2, f3 := frame(60, 1), frame(1514, 2), frame(100, 3)
	for _, f := range [][]byte{f1, f2, f3} {
		if !e.net.Receive(f) {
			t.Fatalf("frame dropped while FIFO has room")
		}
	}
	if e.net.Pending() != 3 || e.irq.level {
		t.Fatalf("pending %d, irq %v", e.net.Pending(), e.irq.level)
	}
	// Posting two buffers and notifying delivers the two oldest in order.
	h1, a1 := e.postRX(1526)
	h2, a2 := e.postRX(1526)
	e.notify(0)
	us := e.used(0)
	if len(us) != 2 || us[0].id != h1 || us[1].id != h2 {
		t.Fatalf("used %+v", us)
	}
	checkRX(t, e, us[0], a1, f1)
	checkRX(t, e, us[1], a2, f2)
	if !e.irq.level || e.net.Pending() != 1 {
		t.Fatalf("irq %v pending %d", e.irq.level, e.net.Pending())
	}
	e.ack()
	// A new frame queues behind the pending one.
	f4 := frame(64, 4)
	e.net.Receive(f4)
	h3, a3 := e.postRX(1526)
	h4, a4 := e.postRX(1526)
	h5, a5 := e.postRX(1526)
	e.notify(0)
	us = e.used(0)
	if len(us) != 2 || us[0].id != h3 || us[1].id != h4 {
		t.Fatalf("used %+v", us)
	}
	checkRX(t, e, us[0], a3, f3)
	checkRX(t, e, us[1], a4, f4)
	// Direct delivery with a buffer already posted.
	f5 := frame(70, 5)
	if !e.net.Receive(f5) {
		t.Fatalf("direct delivery failed")
	}
	us = e.used(0)
	if len(us) != 1 || us[0].id != h5 {
		t.Fatalf("used %+v", us)
	}
	checkRX(t, e, us[0], a5, f5)

	// Frame larger than the posted buffer: dropped, buffer kept.
	h6, a6 := e.postRX(100)
	if e.net.Receive(frame(200, 6)) {
		t.Fatalf("oversized frame accepted")
	}
	f7 := frame(80, 7)
	if !e.net.Receive(f7) {
		t.Fatalf("frame after oversized one dropped")
	}
	us = e.used(0)
	if len(us) != 1 || us[0].id != h6 {
		t.Fatalf("used %+v", us)
	}
	checkRX(t, e, us[0], a6, f7)
	// Empty and too-large frames are rejected.
	if e.net.Receive(nil) || e.net.Receive(make([]byte, MaxFrameSize+1)) {
		t.Fatalf("invalid frame accepted")
	}
	st := e.net.State()
	if st.RXFrames != 6 || st.RXDropped != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNetRXFIFOBound(t *testing.T) {
	e := newNetEnv(t, 8)
	for i := range RXFIFOFrames {
		if !e.net.Receive(frame(60, byte(i))) {
			t.Fatalf("frame %d dropped", i)
		}
	}
	if e.net.Receive(frame(60, 0xee)) {
		t.Fatalf("FIFO overflow accepted")
	}
	if e.net.Pending() != RXFIFOFrames || e.net.State().RXDropped != 1 {
		t.Fatalf("pending %d", e.net.Pending())
	}
	// Drain all through an 8-entry ring, oldest first (tail drop kept
	// the oldest frames).
	for got := 0; got < RXFIFOFrames; {
		addrs := map[uint16]uint64{}
		for range 8 {
			h, a := e.postRX(1526)
			addrs[h] = a
		}
		e.notify(0)
		for _, u := range e.used(0) {
			checkRX(t, e, u, addrs[u.id], frame(60, byte(got)))
			got++
		}
	}
	if e.net.Pending() != 0 {
		t.Fatalf("pending %d", e.net.Pending())
	}
	// Byte bound.
	big := frame(MaxFrameSize, 1)
	n := 0
	for e.net.Receive(big) {
		n++
		if n > RXFIFOFrames {
			t.Fatalf("byte bound not enforced")
		}
	}
	if n != RXFIFOBytes/MaxFrameSize {
		t.Fatalf("accepted %d large frames", n)
	}
}

func TestNetRXNotLive(t *testing.T) {
	n := NewNet(testMAC, &txRec{})
	d := newDriver(t, n)
	if n.Receive(frame(60, 0)) {
		t.Fatalf("frame accepted before driver init")
	}
	d.handshake(^uint64(0), 8)
	n.Receive(frame(60, 0))
	if n.Pending() != 1 {
		t.Fatalf("pending %d", n.Pending())
	}
	d.w(regStatus, 0) // reset drops queued frames
	if n.Pending() != 0 {
		t.Fatalf("reset kept %d frames", n.Pending())
	}
}

func TestNetRXNoInterrupt(t *testing.T) {
	e := newNetEnv(t, 8)
	e.mem.w16(e.q[0].avail, availFNoInterrupt)
	_, a := e.postRX(1526)
	f := frame(60, 9)
	e.net.Receive(f)
	if e.irq.level {
		t.Fatalf("interrupt despite NO_INTERRUPT")
	}
	us := e.used(0)
	if len(us) != 1 {
		t.Fatalf("used %+v", us)
	}
	checkRX(t, e, us[0], a, f)
}

// TestNetRXBufferOutsideRAM: a request error, buffer returned empty.
func TestNetRXBufferOutsideRAM(t *testing.T) {
	e := newNetEnv(t, 8)
	h := e.add(0, buf{1 << 40, 2048, true})
	if e.net.Receive(frame(60, 1)) {
		t.Fatalf("frame reported delivered")
	}
	if us := e.used(0); len(us) != 1 || us[0].id != h || us[0].len != 0 || e.needsReset() {
		t.Fatalf("used %+v reset %v", us, e.needsReset())
	}
}

func TestNetRXMultiDescriptorBuffer(t *testing.T) {
	e := newNetEnv(t, 8)
	a := e.alloc(2048, 8)
	h := e.add(0, buf{a, 5, true}, buf{a + 5, 20, true}, buf{a + 25, 2000, true})
	f := frame(1000, 3)
	e.net.Receive(f)
	us := e.used(0)
	if len(us) != 1 || us[0].id != h {
		t.Fatalf("used %+v", us)
	}
	checkRX(t, e, us[0], a, f)
}

func Example_netFIFO() {
	n := NewNet([6]byte{2, 0, 0, 0, 0, 1}, &txRec{})
	_ = NewMMIO(n, newTestMem(0, 4096), &irqRec{})
	fmt.Println(n.Receive([]byte{1, 2, 3}), n.Pending())
	// Output: false 0
}
