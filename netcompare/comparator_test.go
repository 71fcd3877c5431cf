package netcompare

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// harness feeds a comparator and collects what it releases.
type harness struct {
	t        *testing.T
	c        *Comparator
	now      time.Duration
	released [][]byte
}

func newHarness(t *testing.T, cfg Config) *harness {
	return &harness{t: t, c: New(cfg, 0)}
}

func (h *harness) pri(fs ...[]byte) {
	for _, f := range fs {
		h.c.Primary(f, h.now)
	}
	h.released = h.c.Released(h.released)
}

func (h *harness) sec(fs ...[]byte) {
	for _, f := range fs {
		h.c.Secondary(f, h.now)
	}
	h.released = h.c.Released(h.released)
}

func (h *harness) tick(d time.Duration) {
	h.now += d
	h.c.Tick(h.now)
	h.released = h.c.Released(h.released)
}

// isReleased reports whether frame f (by identity) was released.
func (h *harness) isReleased(f []byte) bool {
	for _, r := range h.released {
		if &r[0] == &f[0] {
			return true
		}
	}
	return false
}

func (h *harness) noTrigger() {
	h.t.Helper()
	if tr, ok := h.c.Want(); ok {
		h.t.Fatalf("unexpected checkpoint request: %v", tr)
	}
}

func (h *harness) wantTrigger(r Reason) Trigger {
	h.t.Helper()
	tr, ok := h.c.Want()
	if !ok {
		h.t.Fatalf("no checkpoint request, want %v", r)
	}
	if tr.Reason != r {
		h.t.Fatalf("checkpoint request %v, want %v", tr, r)
	}
	return tr
}

// gconn is a guest's end of a TCP connection, as a stack would send it.
type gconn struct {
	g, cl    ep
	isn      uint32
	next     uint32 // next sequence number to send
	rcvNext  uint32 // the client's next sequence number (what we ack)
	tsval    uint32
	noTS     bool
	extraOpt []byte
}

func newGConn(g, cl ep, isn, clientISN uint32) *gconn {
	return &gconn{g: g, cl: cl, isn: isn, next: isn + 1, rcvNext: clientISN + 1, tsval: isn ^ 0x5a5a}
}

func (c *gconn) opts() []byte {
	if c.noTS {
		return c.extraOpt
	}
	c.tsval++
	return append(tsOpt(c.tsval, 777), c.extraOpt...)
}

// synAck is the guest's answer to the client's SYN.
func (c *gconn) synAck() []byte {
	return tcpFrame(seg{src: c.g, dst: c.cl, seq: c.isn, ack: c.rcvNext, flags: header.TCPFlagSyn | header.TCPFlagAck, opts: synOpts(c.tsval)})
}

// syn is the guest's SYN when it connects.
func (c *gconn) syn() []byte {
	return tcpFrame(seg{src: c.g, dst: c.cl, seq: c.isn, flags: header.TCPFlagSyn, opts: synOpts(c.tsval)})
}

// send segments data into frames of the given sizes (cycled).
func (c *gconn) send(data []byte, sizes ...int) [][]byte {
	var fs [][]byte
	for i := 0; len(data) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(data))
		fs = append(fs, c.segment(c.next, data[:n], header.TCPFlagAck|header.TCPFlagPsh))
		c.next += uint32(n)
		data = data[n:]
	}
	return fs
}

func (c *gconn) segment(seq uint32, data []byte, flags header.TCPFlags) []byte {
	return tcpFrame(seg{src: c.g, dst: c.cl, seq: seq, ack: c.rcvNext, flags: flags, opts: c.opts(), payload: data})
}

// ackOnly is a pure acknowledgement.
func (c *gconn) ackOnly() []byte { return c.segment(c.next, nil, header.TCPFlagAck) }

// fin closes the guest's side.
func (c *gconn) fin() []byte {
	f := c.segment(c.next, nil, header.TCPFlagAck|header.TCPFlagFin)
	c.next++
	return f
}

func (c *gconn) rst() []byte {
	return tcpFrame(seg{src: c.g, dst: c.cl, seq: c.next, ack: c.rcvNext, flags: header.TCPFlagRst | header.TCPFlagAck})
}

// recv makes the guest acknowledge n more bytes from the client.
func (c *gconn) recv(n int) { c.rcvNext += uint32(n) }

// pair is one connection as both replicas' guests see it.
type pair struct{ p, s *gconn }

const clientISN = 1_000_000

func newPair(port uint16, pISN, sISN uint32) pair {
	return pair{
		p: newGConn(guestEP(6379), clientEP(port), pISN, clientISN),
		s: newGConn(guestEP(6379), clientEP(port), sISN, clientISN),
	}
}

func payload(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// open runs the handshake of a client connecting to the guest.
func (h *harness) open(cp pair) {
	h.t.Helper()
	ps, ss := cp.p.synAck(), cp.s.synAck()
	h.pri(ps)
	if h.isReleased(ps) {
		h.t.Fatal("primary SYN-ACK released before the secondary's")
	}
	h.sec(ss)
	if !h.isReleased(ps) {
		h.t.Fatal("primary SYN-ACK not released after the secondary's")
	}
}

func TestSegmentationIndependent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ps, ss []int
	}{
		{"same", []int{1448}, []int{1448}},
		{"small-vs-large", []int{100}, []int{1448}},
		{"odd", []int{1, 7, 1000, 3}, []int{333, 2, 1448}},
		{"one-byte", []int{1}, []int{64}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			cp := newPair(40000, 0xfffff000, 12345) // the primary's wraps
			h.open(cp)
			data := payload(20000, 1)
			pf, sf := cp.p.send(data, tc.ps...), cp.s.send(data, tc.ss...)
			// Interleave: the primary a little ahead, then the secondary.
			for i := 0; i < max(len(pf), len(sf)); i++ {
				if i < len(pf) {
					h.pri(pf[i])
				}
				if i < len(sf) {
					h.sec(sf[i])
				}
			}
			h.noTrigger()
			for i, f := range pf {
				if !h.isReleased(f) {
					t.Fatalf("primary frame %d of %d not released", i, len(pf))
				}
			}
			st := h.c.Stats()
			if st.MatchedBytes != uint64(len(data)) || st.HeldFrames != 0 || st.BufferedBytes != 0 {
				t.Fatalf("stats %+v", st)
			}
			t.Logf("%d primary frames, %d secondary frames, %d bytes matched", len(pf), len(sf), st.MatchedBytes)
		})
	}
}

func TestIPv6(t *testing.T) {
	h := newHarness(t, Config{})
	g, cl := ep{guestMAC, guestIP6, 6379}, ep{clientMAC, clientIP6, 40000}
	cp := pair{newGConn(g, cl, 1, clientISN), newGConn(g, cl, 0x9000_0000, clientISN)}
	h.open(cp)
	data := payload(10000, 7)
	other := bytes.Clone(data)
	other[4321] = ^other[4321]
	pf := cp.p.send(data, 1000)
	h.pri(pf...)
	h.sec(cp.s.send(other, 1200)...)
	tr := h.wantTrigger(Mismatch)
	if tr.Offset != 4321 || tr.Flow.Guest != netip.AddrPortFrom(guestIP6, 6379) {
		t.Fatalf("mismatch %v, want offset 4321 on the IPv6 connection", tr)
	}
	if !h.isReleased(pf[3]) || h.isReleased(pf[4]) {
		t.Fatal("want frames 0-3 released, 4 held")
	}
}

// TestMidStream: a connection whose SYN the comparator never saw (it
// predates the comparator, or was forgotten) is compared from the first
// sequence number seen, both replicas sharing the primary's numbers.
func TestMidStream(t *testing.T) {
	h := newHarness(t, Config{})
	cp := newPair(40060, 0x7000_0000, 0x7000_0000)
	cp.p.next += 5000
	cp.s.next += 5000
	data := payload(3000, 8)
	pf := cp.p.send(data, 1000)
	sf := cp.s.send(data, 600)
	h.sec(sf[0])
	h.pri(pf...)
	h.sec(sf[1:]...)
	h.noTrigger()
	for i, f := range pf {
		if !h.isReleased(f) {
			t.Fatalf("frame %d held", i)
		}
	}
	// The reset of a connection, then a new one on the same 4-tuple.
	h.pri(cp.p.rst())
	h.sec(cp.s.rst())
	cp2 := newPair(40060, 99, 999)
	// And a refused connection (only RSTs seen), then a new one there.
	refused := newPair(40061, 0, 0)
	h.pri(refused.p.rst())
	h.sec(refused.s.rst())
	cp3 := newPair(40061, 5, 55)
	h.open(cp3)
	h.open(cp2)
	d2 := payload(100, 9)
	pf2 := cp2.p.send(d2, 100)
	h.pri(pf2...)
	h.sec(cp2.s.send(d2, 30)...)
	if !h.isReleased(pf2[0]) {
		t.Fatal("data of the connection after the reset held")
	}
	h.noTrigger()
	// The checkpoint keeps them (they are open).
	h.c.Checkpoint(h.now)
	if st := h.c.Stats(); st.Flows != 2 {
		t.Fatalf("%d flows after the checkpoint, want 2", st.Flows)
	}
}

func TestOneByteDifference(t *testing.T) {
	for _, off := range []int{0, 1, 99, 100, 101, 1447, 1448, 5000, 19999} {
		t.Run(fmt.Sprint(off), func(t *testing.T) {
			h := newHarness(t, Config{})
			cp := newPair(40000, 7, 0x80000000)
			h.open(cp)
			data := payload(20000, 2)
			other := bytes.Clone(data)
			other[off] ^= 0x20
			pf, sf := cp.p.send(data, 100), cp.s.send(other, 1448)
			h.pri(pf...)
			h.sec(sf...)
			tr := h.wantTrigger(Mismatch)
			if tr.Offset != int64(off) || tr.Seq != 7+1+uint32(off) {
				t.Fatalf("mismatch reported at offset %d seq %d, want offset %d seq %d", tr.Offset, tr.Seq, off, 8+off)
			}
			if tr.Flow.Guest != guestEP(6379).addrPort() || tr.Flow.Peer != clientEP(40000).addrPort() || tr.Flow.Proto != 6 {
				t.Fatalf("mismatch on flow %v", tr.Flow)
			}
			// Frames wholly before the difference left; the rest are held.
			for i, f := range pf {
				before := (i+1)*100 <= off
				if h.isReleased(f) != before {
					t.Fatalf("frame %d (bytes %d-%d) released=%v with the difference at %d", i, i*100, i*100+100, !before, off)
				}
			}
			t.Logf("%v", tr)
		})
	}
}

func (e ep) addrPort() netip.AddrPort { return netip.AddrPortFrom(e.ip, e.port) }

func sack(start, end uint32) header.SACKBlock {
	return header.SACKBlock{Start: seqnum.Value(start), End: seqnum.Value(end)}
}

func checksumOf(b []byte) uint16 { return checksum.Checksum(b, 0) }

func TestRetransmissions(t *testing.T) {
	h := newHarness(t, Config{})
	cp := newPair(40001, 1000, 2000)
	h.open(cp)
	data := payload(6000, 3)
	pf := cp.p.send(data, 1000)
	sf := cp.s.send(data, 1500)
	// The primary sends 0-3, retransmits 1 and 2, sends 4-5; the
	// secondary sends 0, retransmits 0, then the rest, then retransmits 3
	// overlapping and a range straddling its front.
	h.pri(pf[0], pf[1], pf[2], pf[3], pf[1], pf[2])
	h.sec(sf[0], sf[0])
	straddle := cp.s.segment(2000+1+1000, data[1000:2500], header.TCPFlagAck)
	h.sec(straddle)
	h.pri(pf[4], pf[5])
	h.sec(sf[1:]...)
	h.sec(sf[3])
	h.noTrigger()
	if st := h.c.Stats(); st.MatchedBytes != 6000 || st.HeldFrames != 0 {
		t.Fatalf("stats %+v", st)
	}
	// A retransmission of compared bytes after everything matched
	// leaves at once.
	re := cp.p.segment(1000+1+2000, data[2000:3000], header.TCPFlagAck)
	h.pri(re)
	if !h.isReleased(re) {
		t.Fatal("retransmission of compared bytes held")
	}
}

// TestRetransmissionPassesHeldData: the client lost a released segment;
// the primary's retransmission of it must not wait behind newer segments
// the secondary has not matched (the secondary may be waiting for the
// client's acknowledgement of that very segment to send them).
func TestRetransmissionPassesHeldData(t *testing.T) {
	h := newHarness(t, Config{})
	cp := newPair(40070, 100, 200)
	h.open(cp)
	data := payload(4000, 1)
	pf := cp.p.send(data, 1000)
	h.pri(pf...)
	h.sec(cp.s.send(data[:1000], 1000)...)
	if !h.isReleased(pf[0]) || h.isReleased(pf[1]) {
		t.Fatal("want the first segment released, the rest held")
	}
	re := cp.p.segment(100+1, data[:1000], header.TCPFlagAck)
	h.pri(re)
	if !h.isReleased(re) {
		t.Fatal("retransmission of compared bytes held behind unmatched ones")
	}
	// A pure ACK (a window update, say) does not wait for data either.
	pa := cp.p.ackOnly()
	h.pri(pa)
	if !h.isReleased(pa) {
		t.Fatal("pure ACK held behind unmatched data")
	}
	// A retransmission of bytes not yet compared is dropped: its first
	// copy is held.
	re2 := cp.p.segment(100+1+2000, data[2000:3000], header.TCPFlagAck)
	h.pri(re2)
	if st := h.c.Stats(); st.Dropped != 1 || st.HeldFrames != 3 {
		t.Fatalf("stats %+v, want 1 dropped and the 3 first copies held", st)
	}
	h.sec(cp.s.send(data[1000:], 3000)...)
	for i, f := range pf {
		if !h.isReleased(f) {
			t.Fatalf("frame %d held after the secondary caught up", i)
		}
	}
}

// TestRetransmissionCutShort: a retransmission that runs past the
// compared bytes leaves cut short to them, its checksums right.
func TestRetransmissionCutShort(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprint("ipv6=", v6), func(t *testing.T) {
			h := newHarness(t, Config{})
			g, cl := guestEP(6379), clientEP(40071)
			if v6 {
				g.ip, cl.ip = guestIP6, clientIP6
			}
			var isn uint32 = 0xffffff00 // the retransmission wraps
			cp := pair{newGConn(g, cl, isn, clientISN), newGConn(g, cl, 7, clientISN)}
			h.open(cp)
			data := payload(3000, 2)
			pf := cp.p.send(data, 1448)
			h.pri(pf...)
			h.sec(cp.s.send(data[:2000], 2000)...)
			// The primary retransmits its second segment, with a FIN now.
			re := tcpFrame(seg{src: g, dst: cl, seq: isn + 1 + 1448, ack: cp.p.rcvNext,
				flags: header.TCPFlagAck | header.TCPFlagPsh | header.TCPFlagFin, opts: tsOpt(9, 9), payload: data[1448:2896], pad: 4})
			h.pri(re)
			out := h.released[len(h.released)-1]
			tcp := tcpOf(out)
			if st := h.c.Stats(); st.Trimmed != 1 || &out[0] == &re[0] {
				t.Fatalf("stats %+v: want the retransmission cut short", st)
			}
			if !bytes.Equal(tcp.Payload(), data[1448:2000]) || tcp.SequenceNumber() != isn+1+1448 {
				t.Fatalf("cut-short copy: seq %#x, %d bytes", tcp.SequenceNumber(), len(tcp.Payload()))
			}
			if tcp.Flags()&header.TCPFlagFin != 0 || tcp.Flags()&header.TCPFlagAck == 0 {
				t.Fatalf("cut-short copy flags %v", tcp.Flags())
			}
			if !tcpChecksumOK(t, out) {
				t.Fatal("cut-short copy: TCP checksum invalid")
			}
			if !v6 {
				ip := header.IPv4(out[header.EthernetMinimumSize:])
				if !ip.IsChecksumValid() || int(ip.TotalLength()) != len(out)-header.EthernetMinimumSize {
					t.Fatalf("cut-short copy: IPv4 checksum valid %v, total length %d of %d", ip.IsChecksumValid(), ip.TotalLength(), len(out)-header.EthernetMinimumSize)
				}
			}
			// A corrupt retransmission is not cut (a copy would be valid).
			bad := bytes.Clone(re)
			bad[len(bad)-10] ^= 1
			h.pri(bad)
			if st := h.c.Stats(); st.Trimmed != 1 || st.Dropped != 1 {
				t.Fatalf("stats %+v: want the corrupt retransmission dropped", st)
			}
		})
	}
}

func TestReordering(t *testing.T) {
	h := newHarness(t, Config{})
	cp := newPair(40002, 5, 6)
	h.open(cp)
	data := payload(10000, 4)
	pf := cp.p.send(data, 1000)
	sf := cp.s.send(data, 700)
	r := rand.New(rand.NewPCG(9, 9))
	r.Shuffle(len(sf), func(i, j int) { sf[i], sf[j] = sf[j], sf[i] })
	r.Shuffle(len(pf), func(i, j int) { pf[i], pf[j] = pf[j], pf[i] })
	for i := range max(len(pf), len(sf)) {
		if i < len(sf) {
			h.sec(sf[i])
		}
		if i < len(pf) {
			h.pri(pf[i])
		}
	}
	h.noTrigger()
	st := h.c.Stats()
	if st.MatchedBytes != 10000 || st.HeldFrames != 0 || st.BufferedBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
	// A difference in a segment that arrived out of order is found too.
	h2 := newHarness(t, Config{})
	cp2 := newPair(40003, 5, 6)
	h2.open(cp2)
	other := bytes.Clone(data)
	other[8765] ^= 1
	pf2, sf2 := cp2.p.send(data, 1000), cp2.s.send(other, 1000)
	h2.pri(pf2...)
	h2.sec(sf2[9], sf2[8])
	h2.sec(sf2[:8]...)
	if tr := h2.wantTrigger(Mismatch); tr.Offset != 8765 {
		t.Fatalf("mismatch at %d, want 8765", tr.Offset)
	}
}

func TestOpenClose(t *testing.T) {
	t.Run("fin-matched", func(t *testing.T) {
		h := newHarness(t, Config{})
		cp := newPair(40010, 100, 200)
		h.open(cp)
		data := payload(3000, 5)
		pf, sf := cp.p.send(data, 1000), cp.s.send(data, 3000)
		pfin, sfin := cp.p.fin(), cp.s.fin()
		h.pri(pf...)
		h.pri(pfin)
		if h.isReleased(pfin) {
			t.Fatal("FIN released before the secondary's")
		}
		h.sec(sf...)
		if h.isReleased(pfin) {
			t.Fatal("FIN released before the secondary's FIN")
		}
		h.sec(sfin)
		if !h.isReleased(pfin) {
			t.Fatal("FIN held after both matched")
		}
		h.noTrigger()
		// The last ACK (of the client's FIN) leaves once the secondary's
		// acknowledges as much.
		cp.p.recv(1)
		cp.s.recv(1)
		pa := cp.p.ackOnly()
		h.pri(pa)
		if h.isReleased(pa) {
			t.Fatal("ACK of the client's FIN released before the secondary acknowledged it")
		}
		h.sec(cp.s.ackOnly())
		if !h.isReleased(pa) {
			t.Fatal("ACK of the client's FIN held")
		}
		// A closed connection lingers for the rewriter, then goes.
		if st := h.c.Stats(); st.Flows != 1 {
			t.Fatalf("%d flows after the close, want 1 (lingering)", st.Flows)
		}
		h.tick(defaultLinger)
		if st := h.c.Stats(); st.Flows != 0 {
			t.Fatalf("%d flows after the linger, want 0", st.Flows)
		}
	})
	t.Run("fin-early", func(t *testing.T) {
		h := newHarness(t, Config{})
		cp := newPair(40011, 100, 200)
		h.open(cp)
		data := payload(3000, 5)
		h.pri(cp.p.send(data, 1000)...)
		h.sec(cp.s.send(data[:2000], 1000)...)
		h.sec(cp.s.fin())
		if tr := h.wantTrigger(Mismatch); tr.Offset != 2000 {
			t.Fatalf("mismatch at %d, want 2000 (the secondary's FIN)", tr.Offset)
		}
	})
	t.Run("fin-late", func(t *testing.T) {
		h := newHarness(t, Config{})
		cp := newPair(40012, 100, 200)
		h.open(cp)
		data := payload(3000, 5)
		h.pri(cp.p.send(data[:1000], 1000)...)
		h.pri(cp.p.fin())
		h.sec(cp.s.send(data, 1000)...)
		if tr := h.wantTrigger(Mismatch); tr.Offset != 1000 {
			t.Fatalf("mismatch at %d, want 1000 (the primary's FIN)", tr.Offset)
		}
	})
	t.Run("reset", func(t *testing.T) {
		h := newHarness(t, Config{})
		cp := newPair(40013, 100, 200)
		h.open(cp)
		data := payload(500, 6)
		pf := cp.p.send(data, 500)
		pr := cp.p.rst()
		h.pri(pf[0], pr)
		h.sec(cp.s.send(data, 250)...)
		if !h.isReleased(pf[0]) || h.isReleased(pr) {
			t.Fatal("data should leave, the RST wait for the secondary's")
		}
		h.sec(cp.s.rst())
		if !h.isReleased(pr) {
			t.Fatal("RST held after the secondary reset too")
		}
		h.noTrigger()
	})
	t.Run("reset-vs-data", func(t *testing.T) {
		h := newHarness(t, Config{})
		cp := newPair(40014, 100, 200)
		h.open(cp)
		data := payload(500, 6)
		h.pri(cp.p.rst())
		h.sec(cp.s.send(data, 500)...)
		if tr := h.wantTrigger(Mismatch); tr.Offset != 0 {
			t.Fatalf("mismatch at %d, want 0", tr.Offset)
		}
	})
	t.Run("reset-unanswered", func(t *testing.T) {
		h := newHarness(t, Config{HoldTimeout: 100 * time.Millisecond})
		cp := newPair(40015, 100, 200)
		h.open(cp)
		pr := cp.p.rst()
		h.pri(pr)
		h.tick(99 * time.Millisecond)
		h.noTrigger()
		h.tick(time.Millisecond)
		if tr := h.wantTrigger(HoldTimeout); tr.Age != 100*time.Millisecond {
			t.Fatalf("age %v", tr.Age)
		}
		if got := h.c.Checkpoint(h.now); len(got) != 1 || &got[0][0] != &pr[0] {
			t.Fatalf("checkpoint returned %d frames, want the RST", len(got))
		}
	})
	t.Run("active-open", func(t *testing.T) {
		// The guest connects out: its SYN waits for the secondary's, the
		// server's SYN-ACK is mapped for the secondary.
		h := newHarness(t, Config{})
		server := ep{clientMAC, clientIP, 80}
		p := &gconn{g: guestEP(50000), cl: server, isn: 4000, next: 4001, tsval: 1}
		s := &gconn{g: guestEP(50000), cl: server, isn: 9000, next: 9001, tsval: 2}
		ps := p.syn()
		h.pri(ps)
		if h.isReleased(ps) {
			t.Fatal("SYN released before the secondary's")
		}
		h.sec(s.syn())
		if !h.isReleased(ps) {
			t.Fatal("SYN held after the secondary's")
		}
		rw := NewRewriter(0, 0)
		rw.Observe(s.syn(), h.now)
		sa := tcpFrame(seg{src: server, dst: guestEP(50000), seq: 555, ack: 4001, flags: header.TCPFlagSyn | header.TCPFlagAck, opts: synOpts(3)})
		if !rw.ToSecondary(sa, h.now) || tcpOf(sa).AckNumber() != 9001 || !tcpChecksumOK(t, sa) {
			t.Fatalf("SYN-ACK for the secondary: ack %d, checksum ok %v", tcpOf(sa).AckNumber(), tcpChecksumOK(t, sa))
		}
		h.noTrigger()
	})
	t.Run("syn-options-differ", func(t *testing.T) {
		h := newHarness(t, Config{})
		cp := newPair(40016, 100, 200)
		h.pri(cp.p.synAck())
		sa := tcpFrame(seg{src: cp.s.g, dst: cp.s.cl, seq: cp.s.isn, ack: cp.s.rcvNext, flags: header.TCPFlagSyn | header.TCPFlagAck})
		h.sec(sa)
		if tr := h.wantTrigger(Mismatch); tr.Offset != -1 {
			t.Fatalf("mismatch at %d, want -1 (the SYN)", tr.Offset)
		}
	})
	t.Run("port-reuse", func(t *testing.T) {
		// A new connection on the same 4-tuple after a close.
		h := newHarness(t, Config{})
		cp := newPair(40017, 100, 200)
		h.open(cp)
		h.pri(cp.p.fin())
		h.sec(cp.s.fin())
		h.noTrigger()
		cp2 := newPair(40017, 77777, 88888)
		h.open(cp2)
		data := payload(100, 1)
		pf := cp2.p.send(data, 100)
		h.pri(pf...)
		h.sec(cp2.s.send(data, 50)...)
		if !h.isReleased(pf[0]) {
			t.Fatal("data of the new incarnation held")
		}
		h.noTrigger()
	})
}

func TestAckRule(t *testing.T) {
	h := newHarness(t, Config{})
	cp := newPair(40020, 100, 200)
	h.open(cp)
	// The client sent 50 bytes; the primary acknowledges them with its
	// reply, the secondary has not received them yet.
	cp.p.recv(50)
	data := payload(10, 1)
	pf := cp.p.send(data, 10)
	h.pri(pf...)
	h.sec(cp.s.send(data, 10)...)
	if h.isReleased(pf[0]) {
		t.Fatal("reply released while it acknowledges bytes the secondary has not")
	}
	cp.s.recv(50)
	h.sec(cp.s.ackOnly())
	if !h.isReleased(pf[0]) {
		t.Fatal("reply held after the secondary acknowledged")
	}
	// A pure ACK of the primary follows the same rule.
	cp.p.recv(10)
	pa := cp.p.ackOnly()
	h.pri(pa)
	if h.isReleased(pa) {
		t.Fatal("ACK released ahead of the secondary's")
	}
	cp.s.recv(10)
	h.sec(cp.s.ackOnly())
	if !h.isReleased(pa) {
		t.Fatal("ACK held")
	}
	h.noTrigger()
}

func TestManyConnections(t *testing.T) {
	h := newHarness(t, Config{})
	const n = 1000
	r := rand.New(rand.NewPCG(1, 2))
	type job struct {
		cp     pair
		pf, sf [][]byte
	}
	jobs := make([]*job, n)
	bad := 617
	for i := range jobs {
		cp := newPair(uint16(10000+i), r.Uint32(), r.Uint32())
		h.open(cp)
		data := payload(1+r.IntN(5000), uint64(i))
		other := data
		if i == bad {
			other = bytes.Clone(data)
			other[len(other)/2] ^= 0xff
		}
		jobs[i] = &job{cp: cp, pf: cp.p.send(data, 1+r.IntN(1448)), sf: cp.s.send(other, 1+r.IntN(1448))}
	}
	// Interleave every connection's frames at random.
	for {
		var live []*job
		for _, j := range jobs {
			if len(j.pf)+len(j.sf) > 0 {
				live = append(live, j)
			}
		}
		if len(live) == 0 {
			break
		}
		j := live[r.IntN(len(live))]
		if len(j.pf) > 0 && (len(j.sf) == 0 || r.IntN(2) == 0) {
			h.pri(j.pf[0])
			j.pf = j.pf[1:]
		} else {
			h.sec(j.sf[0])
			j.sf = j.sf[1:]
		}
	}
	tr := h.wantTrigger(Mismatch)
	if tr.Flow.Peer.Port() != uint16(10000+bad) {
		t.Fatalf("mismatch on %v, want port %d", tr.Flow, 10000+bad)
	}
	st := h.c.Stats()
	if st.Flows != n || st.Mismatches != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Only the bad connection holds frames.
	for hd := h.c.heldHead; hd != nil; hd = hd.next {
		if hd.owner == nil || hd.owner.key.rport != uint16(10000+bad) {
			t.Fatalf("a frame of another connection is held")
		}
	}
	t.Logf("%d connections, %d frames held (all on the differing one), %d bytes matched", n, st.HeldFrames, st.MatchedBytes)
}

func TestNonTCP(t *testing.T) {
	h := newHarness(t, Config{})
	// ARP and neighbour discovery leave at once.
	a := arpReply()
	na := neighbourAdvert(ep{guestMAC, guestIP6, 0}, ep{clientMAC, clientIP6, 0})
	h.pri(a, na)
	if !h.isReleased(a) || !h.isReleased(na) {
		t.Fatal("ARP or neighbour advertisement held")
	}
	// UDP: compared whole, in order, whatever the IP identification.
	u1p := udpFrame(guestEP(53), clientEP(5353), []byte("answer one"), 1)
	u2p := udpFrame(guestEP(53), clientEP(5353), []byte("answer two"), 2)
	h.pri(u1p, u2p)
	if h.isReleased(u1p) {
		t.Fatal("UDP released unmatched")
	}
	h.sec(udpFrame(guestEP(53), clientEP(5353), []byte("answer one"), 77))
	if !h.isReleased(u1p) || h.isReleased(u2p) {
		t.Fatal("first datagram should leave, not the second")
	}
	h.sec(udpFrame(guestEP(53), clientEP(5353), []byte("answer two"), 78))
	if !h.isReleased(u2p) {
		t.Fatal("second datagram held")
	}
	// The secondary first this time.
	e := icmpEcho(ep{guestMAC, guestIP, 0}, ep{clientMAC, clientIP, 0}, 1, 1, []byte("ping"))
	h.sec(icmpEcho(ep{guestMAC, guestIP, 0}, ep{clientMAC, clientIP, 0}, 1, 1, []byte("ping")))
	h.pri(e)
	if !h.isReleased(e) {
		t.Fatal("echo reply held")
	}
	h.noTrigger()
	if st := h.c.Stats(); st.Flows != 0 || st.BufferedBytes != 0 {
		t.Fatalf("datagram flows left state: %+v", st)
	}
	// A different datagram.
	d := udpFrame(guestEP(123), clientEP(123), []byte{1, 2, 3, 4}, 0)
	h.pri(d)
	h.sec(udpFrame(guestEP(123), clientEP(123), []byte{1, 2, 9, 4}, 0))
	tr := h.wantTrigger(Mismatch)
	if tr.Flow.Proto != 17 || tr.Offset != 6 {
		// The UDP checksum (offset 6) differs first.
		t.Fatalf("mismatch %v, want at offset 6", tr)
	}
	if h.isReleased(d) {
		t.Fatal("different datagram released")
	}
	// An unknown EtherType is compared whole.
	h2 := newHarness(t, Config{})
	raw := func(b byte) []byte {
		f := make([]byte, 60)
		copy(f, clientMAC[:])
		copy(f[6:], guestMAC[:])
		f[12], f[13] = 0x88, 0xb5 // local experimental
		f[20] = b
		return f
	}
	r1 := raw(1)
	h2.pri(r1)
	h2.sec(raw(1))
	if !h2.isReleased(r1) {
		t.Fatal("equal raw frame held")
	}
	h2.pri(raw(2))
	h2.sec(raw(3))
	if tr := h2.wantTrigger(Mismatch); tr.Offset != 6 {
		t.Fatalf("raw mismatch %v, want offset 6", tr)
	}
}

func TestHeldBounds(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		h := newHarness(t, Config{HoldTimeout: 200 * time.Millisecond})
		cp := newPair(40030, 1, 2)
		h.open(cp)
		pf := cp.p.send(payload(100, 1), 100)
		h.pri(pf...)
		h.tick(150 * time.Millisecond)
		h.pri(cp.p.send(payload(100, 2), 100)...)
		h.tick(49 * time.Millisecond)
		h.noTrigger()
		h.tick(time.Millisecond)
		tr := h.wantTrigger(HoldTimeout)
		if tr.Age != 200*time.Millisecond || tr.At != 200*time.Millisecond {
			t.Fatalf("trigger %+v", tr)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		h := newHarness(t, Config{MaxHeldBytes: 10000})
		cp := newPair(40031, 1, 2)
		h.open(cp)
		pf := cp.p.send(payload(30000, 1), 1000)
		var sizes int
		dropped := 0
		for i, f := range pf {
			h.pri(f)
			sizes += len(f)
			if _, ok := h.c.Want(); ok != (sizes >= 10000) {
				t.Fatalf("after %d frames (%d bytes) want=%v", i+1, sizes, ok)
			}
		}
		st := h.c.Stats()
		if st.HeldBytes > 20000 || st.Dropped == 0 {
			t.Fatalf("held %d bytes (bound 20000), dropped %d", st.HeldBytes, st.Dropped)
		}
		dropped = int(st.Dropped)
		tr := h.wantTrigger(HeldBytes)
		t.Logf("%v; %d frames held (%d bytes), %d dropped", tr, st.HeldFrames, st.HeldBytes, dropped)
		// The secondary matches everything: what was held leaves, and
		// the dropped frames' bytes were still compared.
		h.sec(cp.s.send(payload(30000, 1), 1448)...)
		if st := h.c.Stats(); st.HeldFrames != 0 || st.MatchedBytes != 30000 || st.Mismatches != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("secondary-ahead", func(t *testing.T) {
		h := newHarness(t, Config{MaxBufferedBytes: 5000})
		cp := newPair(40032, 1, 2)
		h.open(cp)
		h.sec(cp.s.send(payload(6000, 1), 1000)...)
		tr := h.wantTrigger(BufferFull)
		if st := h.c.Stats(); st.BufferedBytes > 5000 {
			t.Fatalf("buffered %d > 5000", st.BufferedBytes)
		}
		t.Logf("%v", tr)
	})
	t.Run("gaps", func(t *testing.T) {
		h := newHarness(t, Config{})
		cp := newPair(40033, 1, 2)
		h.open(cp)
		sf := cp.s.send(payload(100*(2*maxGaps+4), 1), 100)
		for i := 2; i < len(sf); i += 2 { // every other segment: one gap each
			h.sec(sf[i])
		}
		h.wantTrigger(BufferFull)
	})
	t.Run("period", func(t *testing.T) {
		h := newHarness(t, Config{MaxPeriod: time.Second})
		h.tick(999 * time.Millisecond)
		h.noTrigger()
		h.tick(time.Millisecond)
		h.wantTrigger(Period)
		h.c.Checkpoint(h.now)
		h.tick(999 * time.Millisecond)
		h.noTrigger()
	})
	t.Run("deadline", func(t *testing.T) {
		h := newHarness(t, Config{HoldTimeout: 200 * time.Millisecond, MaxPeriod: time.Second, Linger: 300 * time.Millisecond})
		if d, ok := h.c.Deadline(); !ok || d != time.Second {
			t.Fatalf("deadline %v %v, want the period at 1s", d, ok)
		}
		cp := newPair(40034, 1, 2)
		h.now = 100 * time.Millisecond
		h.open(cp)
		pf := cp.p.send(payload(10, 1), 10)
		h.pri(pf...)
		if d, _ := h.c.Deadline(); d != 300*time.Millisecond {
			t.Fatalf("deadline %v, want the hold timeout at 300ms", d)
		}
		// Ticking at the deadline finds the timeout.
		h.tick(200*time.Millisecond - 1)
		h.noTrigger()
		h.tick(1)
		h.wantTrigger(HoldTimeout)
		h.c.Checkpoint(h.now)
		// A closed connection's linger.
		cp2 := newPair(40035, 1, 2)
		h.open(cp2)
		h.pri(cp2.p.rst())
		h.sec(cp2.s.rst())
		if d, _ := h.c.Deadline(); d != h.now+300*time.Millisecond {
			t.Fatalf("deadline %v, want the linger at %v", d, h.now+300*time.Millisecond)
		}
		h.tick(300*time.Millisecond - 1)
		if n := h.c.Stats().Flows; n != 2 {
			t.Fatalf("%d flows before the linger ends, want 2", n)
		}
		h.tick(1)
		if n := h.c.Stats().Flows; n != 1 {
			t.Fatalf("%d flows after the linger, want 1 (the open one)", n)
		}
	})
	t.Run("table", func(t *testing.T) {
		h := newHarness(t, Config{MaxConnections: 50})
		for i := range 200 {
			cp := newPair(uint16(20000+i), uint32(i), uint32(i+1000))
			h.pri(cp.p.synAck())
			h.sec(cp.s.synAck())
			if st := h.c.Stats(); st.Flows > 50 {
				t.Fatalf("%d flows > 50", st.Flows)
			}
		}
		// Idle connections with a sequence offset were forgotten: the
		// rewriter can no longer map them.
		h.wantTrigger(TableFull)
		// Closed connections go first, without a request.
		h2 := newHarness(t, Config{MaxConnections: 10})
		for i := range 30 {
			cp := newPair(uint16(20000+i), uint32(i), uint32(i+1000))
			h2.open(cp)
			h2.pri(cp.p.fin())
			h2.sec(cp.s.fin())
		}
		h2.noTrigger()
	})
}

func TestCheckpointReset(t *testing.T) {
	h := newHarness(t, Config{})
	cp := newPair(40040, 0x10000000, 0x20000000)
	h.open(cp)
	data := payload(3000, 1)
	other := bytes.Clone(data)
	other[1500] ^= 1
	pf := cp.p.send(data, 1000)
	h.pri(pf...)
	h.sec(cp.s.send(other, 1000)...)
	h.wantTrigger(Mismatch)
	if !h.isReleased(pf[0]) || h.isReleased(pf[1]) || h.isReleased(pf[2]) {
		t.Fatal("want frame 0 released, 1 and 2 held")
	}
	// A frame sent after the mismatch is held too.
	more := cp.p.send(payload(500, 2), 500)
	h.pri(more...)
	got := h.c.Checkpoint(h.now)
	if len(got) != 3 || &got[0][0] != &pf[1][0] || &got[1][0] != &pf[2][0] || &got[2][0] != &more[0][0] {
		t.Fatalf("checkpoint returned %d frames, want frames 1, 2 and the later one in order", len(got))
	}
	if _, ok := h.c.Want(); ok {
		t.Fatal("request not cleared by the checkpoint")
	}
	// The secondary now has the primary's state: its sequence numbers
	// are the primary's from where the primary was.
	cp.s.next, cp.s.isn = cp.p.next, cp.p.isn
	next := payload(4000, 3)
	pf2 := cp.p.send(next, 1448)
	h.pri(pf2...)
	h.sec(cp.s.send(next, 600)...)
	h.noTrigger()
	for i, f := range pf2 {
		if !h.isReleased(f) {
			t.Fatalf("frame %d after the checkpoint held", i)
		}
	}
	// Retransmissions of bytes from before the checkpoint leave at once.
	re := cp.p.segment(0x10000000+1, data[:1000], header.TCPFlagAck)
	h.pri(re)
	if !h.isReleased(re) {
		t.Fatal("retransmission from before the checkpoint held")
	}
}

func TestRewrite(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprint("ipv6=", v6), func(t *testing.T) {
			rw := NewRewriter(0, 0)
			g, cl := guestEP(6379), clientEP(40050)
			if v6 {
				g.ip, cl.ip = guestIP6, clientIP6
			}
			var pISN, sISN uint32 = 0xfffffff0, 0x00001000 // the offset wraps
			p := newGConn(g, cl, pISN, clientISN)
			s := newGConn(g, cl, sISN, clientISN)
			delta := sISN - pISN
			p.tsval, s.tsval = 0x10, 0xfffff000 // their timestamp clocks
			tsDelta := s.tsval - p.tsval
			rw.Observe(s.synAck(), 0)
			for i, tc := range []seg{
				{flags: header.TCPFlagAck, ack: pISN + 1, opts: tsOpt(900, p.tsval)}, // the handshake's ACK
				{flags: header.TCPFlagAck | header.TCPFlagPsh, ack: pISN + 100, payload: []byte("GET key\r\n"), opts: tsOpt(5, 6)},
				{flags: header.TCPFlagAck, ack: pISN + 100, opts: sackOpt(sack(pISN+200, pISN+300))},
				{flags: header.TCPFlagAck, ack: pISN + 100, opts: append(tsOpt(1, 2)[2:], sackOpt(
					sack(pISN+200, pISN+300),
					sack(pISN+400, pISN+500),
					sack(pISN+600, pISN+700))...)},
				{flags: header.TCPFlagAck, ack: pISN + 5, pad: 6},                     // Ethernet padding
				{flags: header.TCPFlagAck, ack: pISN + 5, ipOpts: []byte{1, 1, 1, 0}}, // IPv4 options
				{flags: header.TCPFlagRst | header.TCPFlagAck, ack: pISN + 9},
				{flags: header.TCPFlagRst, ack: 12345}, // no ACK: the field is not mapped
			} {
				if v6 && tc.ipOpts != nil {
					continue
				}
				tc.src, tc.dst, tc.seq = cl, g, clientISN+1
				f := tcpFrame(tc)
				before := bytes.Clone(f)
				changed := rw.ToSecondary(f, 0)
				tcp := tcpOf(f)
				wantAck := tc.ack
				if tc.flags&header.TCPFlagAck != 0 {
					wantAck += delta
				}
				if tcp.AckNumber() != wantAck {
					t.Fatalf("case %d: ack %#x, want %#x", i, tcp.AckNumber(), wantAck)
				}
				if !tcpChecksumOK(t, f) {
					t.Fatalf("case %d: checksum invalid after rewriting", i)
				}
				// SACK blocks shifted, everything else as it was.
				wantOpts := header.ParseTCPOptions(tcpOf(before).Options())
				gotOpts := header.ParseTCPOptions(tcp.Options())
				for j := range wantOpts.SACKBlocks {
					wantOpts.SACKBlocks[j].Start += seqnum.Value(delta)
					wantOpts.SACKBlocks[j].End += seqnum.Value(delta)
				}
				if wantOpts.TS && tc.flags&header.TCPFlagAck != 0 {
					wantOpts.TSEcr += tsDelta
				}
				if fmt.Sprint(wantOpts) != fmt.Sprint(gotOpts) {
					t.Fatalf("case %d: options %+v, want %+v", i, gotOpts, wantOpts)
				}
				if changed != (tc.flags&header.TCPFlagAck != 0) {
					t.Fatalf("case %d: changed=%v", i, changed)
				}
				diff := 0
				for j := range f {
					if f[j] != before[j] {
						diff++
					}
				}
				// At most the ack, 8 bytes per SACK block, TSecr and the
				// checksum.
				if diff > 4+8*len(wantOpts.SACKBlocks)+4+2 {
					t.Fatalf("case %d: %d bytes changed", i, diff)
				}
			}
			// After a failover, the secondary's own frames map back into
			// the primary's space.
			rw.Failover()
			sf := s.send([]byte("+OK\r\n"), 100)[0]
			if !rw.FromSecondary(sf, 0) || tcpOf(sf).SequenceNumber() != p.next || !tcpChecksumOK(t, sf) {
				t.Fatalf("from the secondary: seq %#x, want %#x, checksum ok %v", tcpOf(sf).SequenceNumber(), p.next, tcpChecksumOK(t, sf))
			}
			if ts := tcpOf(sf).ParsedOptions(); !ts.TS || ts.TSVal != s.tsval-tsDelta {
				t.Fatalf("from the secondary: TSval %#x, want %#x", ts.TSVal, s.tsval-tsDelta)
			}
			// Unknown connections and other protocols pass unchanged.
			other := tcpFrame(seg{src: clientEP(1), dst: g, ack: 5, flags: header.TCPFlagAck})
			u := udpFrame(cl, g, []byte("x"), 0)
			if rw.ToSecondary(other, 0) || rw.ToSecondary(u, 0) || rw.ToSecondary(arpReply(), 0) {
				t.Fatal("rewrote a frame of an unknown connection or another protocol")
			}
			// A checkpoint makes every mapping the identity.
			rw.Checkpoint()
			f := tcpFrame(seg{src: cl, dst: g, seq: clientISN + 1, ack: pISN + 1000, flags: header.TCPFlagAck})
			if rw.ToSecondary(f, 0) || rw.Len() != 0 {
				t.Fatal("a frame rewritten after a checkpoint")
			}
		})
	}
}

func TestRewriterBounds(t *testing.T) {
	rw := NewRewriter(100, time.Second)
	for i := range 1000 {
		s := newGConn(guestEP(6379), clientEP(uint16(1000+i)), uint32(i*7919), clientISN)
		rw.Observe(s.synAck(), time.Duration(i))
		if rw.Len() > 100 {
			t.Fatalf("%d mappings > 100", rw.Len())
		}
	}
	// Closed connections leave after the linger, open ones stay.
	rw2 := NewRewriter(0, time.Second)
	for i := range 10 {
		s := newGConn(guestEP(6379), clientEP(uint16(1000+i)), 5000, clientISN)
		rw2.Observe(s.synAck(), 0)
		ack := tcpFrame(seg{src: clientEP(uint16(1000 + i)), dst: guestEP(6379), seq: clientISN + 1, ack: 77, flags: header.TCPFlagAck})
		rw2.ToSecondary(ack, 0)
		if i%2 == 0 {
			rw2.Observe(s.rst(), 0)
		}
	}
	rw2.Tick(time.Second - 1)
	if rw2.Len() != 10 {
		t.Fatalf("%d mappings before the linger, want 10", rw2.Len())
	}
	rw2.Tick(time.Second)
	if rw2.Len() != 5 {
		t.Fatalf("%d mappings after the linger, want the 5 open ones", rw2.Len())
	}
}

func TestChecksumUpdateExhaustive(t *testing.T) {
	// RFC 1624's update against a recomputation, including the values
	// where one's complement arithmetic has two zeros.
	r := rand.New(rand.NewPCG(3, 4))
	words := []uint32{0, 0xffffffff, 0xffff0000, 0x0000ffff, 1, 0x80000000}
	for range 2000 {
		words = append(words, r.Uint32())
	}
	for i, old := range words {
		buf := make([]byte, 20)
		for j := range buf {
			buf[j] = byte(r.Uint32())
		}
		if i%7 == 0 {
			clear(buf)
		}
		put := func(v uint32) {
			buf[8], buf[9], buf[10], buf[11] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
		}
		put(old)
		sum := ^checksumOf(buf)
		nw := words[(i*31+7)%len(words)]
		put(nw)
		got := checksumUpdate32(sum, old, nw)
		if want := ^checksumOf(buf); got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
			t.Fatalf("update %#x->%#x: %#x, recomputed %#x", old, nw, got, want)
		}
	}
}
