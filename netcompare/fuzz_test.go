package netcompare

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// check verifies the comparator's internal invariants and its bounds.
func (c *Comparator) check(t *testing.T) {
	t.Helper()
	n, bytesHeld := 0, 0
	owned := map[*held]bool{}
	for h := c.heldHead; h != nil; h = h.next {
		n++
		bytesHeld += len(h.frame)
		if h.next != nil && h.next.prev != h {
			t.Fatal("held list broken")
		}
		if h.owner != nil {
			owned[h] = true
			if c.conns[h.owner.key] != h.owner {
				t.Fatal("a held frame's owner is not in the table")
			}
		}
	}
	if n != c.heldFrames || bytesHeld != c.heldBytes {
		t.Fatalf("held %d frames %d bytes, counted %d %d", n, bytesHeld, c.heldFrames, c.heldBytes)
	}
	if c.heldBytes > 2*c.cfg.MaxHeldBytes {
		t.Fatalf("held %d bytes, bound %d", c.heldBytes, 2*c.cfg.MaxHeldBytes)
	}
	if len(c.conns) > c.cfg.MaxConnections {
		t.Fatalf("%d flows, bound %d", len(c.conns), c.cfg.MaxConnections)
	}
	lru := 0
	for cn := c.lruHead; cn != nil; cn = cn.lruNext {
		lru++
	}
	if lru != len(c.conns) {
		t.Fatalf("LRU has %d flows, table %d", lru, len(c.conns))
	}
	buffered := 0
	for _, cn := range c.conns {
		b := len(cn.pend) - cn.pendOff
		for _, d := range cn.dgrams[cn.dgHead:] {
			b += len(d)
		}
		for s := range cn.s {
			st := &cn.s[s]
			if len(st.gaps) > maxGaps {
				t.Fatalf("%d gaps", len(st.gaps))
			}
			for i, g := range st.gaps {
				b += len(g.data)
				if !cn.diverged && g.pos <= st.front {
					t.Fatalf("gap at %d not beyond front %d", g.pos, st.front)
				}
				if i > 0 && st.gaps[i-1].pos+int64(len(st.gaps[i-1].data)) > g.pos {
					t.Fatal("gaps overlap")
				}
			}
		}
		if b != cn.buffered {
			t.Fatalf("flow buffers %d bytes, counted %d", b, cn.buffered)
		}
		buffered += b
		for _, h := range append(cn.data.items(), cn.acks.items()...) {
			if !owned[h] || h.owner != cn {
				t.Fatal("a flow's queue holds a frame it does not own")
			}
			delete(owned, h)
		}
		if cn.tcp && !cn.diverged {
			p, s := cn.s[pri].front, cn.s[sec].front
			if min(p, s) != cn.matched {
				t.Fatalf("fronts %d %d, matched %d", p, s, cn.matched)
			}
			if pl := int64(len(cn.pend) - cn.pendOff); max(p, s) != cn.matched+pl {
				t.Fatalf("fronts %d %d, matched %d, %d bytes pending", p, s, cn.matched, pl)
			}
		}
	}
	if len(owned) != 0 {
		t.Fatalf("%d owned frames in no flow's queue", len(owned))
	}
	if buffered != c.buffered {
		t.Fatalf("buffers hold %d bytes, counted %d", buffered, c.buffered)
	}
	if c.buffered > c.cfg.MaxBufferedBytes {
		t.Fatalf("buffered %d bytes, bound %d", c.buffered, c.cfg.MaxBufferedBytes)
	}
}

// script drives a comparator from fuzz input: each operation is a byte
// and its arguments; frames are built from fields (so the fuzzer reaches
// deep states) or taken raw.
type script struct {
	b []byte
}

func (s *script) byte() byte {
	if len(s.b) == 0 {
		return 0
	}
	v := s.b[0]
	s.b = s.b[1:]
	return v
}

func (s *script) u32() uint32 {
	var v uint32
	for range 4 {
		v = v<<8 | uint32(s.byte())
	}
	return v
}

func (s *script) bytes(n int) []byte {
	n = min(n, len(s.b))
	v := s.b[:n]
	s.b = s.b[n:]
	return bytes.Clone(v)
}

// runScript runs a script and returns a transcript of what the
// comparator did: the frames it released, in order, and its requests.
func runScript(t *testing.T, in []byte) string {
	c := New(Config{MaxHeldBytes: 8 << 10, MaxBufferedBytes: 4 << 10, MaxConnections: 6, HoldTimeout: 50 * time.Millisecond, MaxPeriod: time.Second, Linger: 100 * time.Millisecond}, 0)
	rw := NewRewriter(4, 100*time.Millisecond)
	s := &script{b: in}
	var now time.Duration
	var tr strings.Builder
	isn := [2]uint32{1000, 0xfffff000}
	for len(s.b) > 0 {
		op := s.byte()
		switch op % 8 {
		case 0, 1: // a raw frame
			f := s.bytes(int(s.byte()))
			if op%8 == 0 {
				c.Primary(f, now)
			} else {
				c.Secondary(f, now)
				rw.Observe(f, now)
			}
		case 2, 3: // a TCP segment from a replica's guest
			sd := side(op % 2)
			a := s.byte()
			port := 40000 + uint16(a%4)
			flags := header.TCPFlags(s.byte()) & (header.TCPFlagFin | header.TCPFlagSyn | header.TCPFlagRst | header.TCPFlagAck | header.TCPFlagPsh)
			seq := isn[sd] + uint32(int32(int16(binary.BigEndian.Uint16([]byte{s.byte(), s.byte()}))))
			var opts []byte
			if flags&header.TCPFlagSyn != 0 && a&0x80 == 0 {
				opts = synOpts(1)
			}
			f := tcpFrame(seg{src: guestEP(6379), dst: clientEP(port), seq: seq, ack: clientISN + uint32(s.byte()), flags: flags, opts: opts, payload: s.bytes(int(s.byte()) % 64)})
			if sd == pri {
				c.Primary(f, now)
			} else {
				c.Secondary(f, now)
				rw.Observe(f, now)
				if rw.FromSecondary(f, now) && !tcpChecksumOK(t, f) {
					t.Fatal("FromSecondary broke a valid checksum")
				}
			}
		case 4: // a UDP datagram
			f := udpFrame(guestEP(53), clientEP(uint16(s.byte()%3)), s.bytes(int(s.byte()%16)), 0)
			if s.byte()%2 == 0 {
				c.Primary(f, now)
			} else {
				c.Secondary(f, now)
			}
		case 5: // time passes
			now += time.Duration(s.byte()) * time.Millisecond
			c.Tick(now)
			rw.Tick(now)
		case 6:
			for _, f := range c.Checkpoint(now) {
				fmt.Fprintf(&tr, "c%x ", crc32.ChecksumIEEE(f))
			}
			rw.Checkpoint()
		case 7: // a client frame for the secondary
			f := tcpFrame(seg{src: clientEP(40000 + uint16(s.byte()%4)), dst: guestEP(6379), seq: clientISN, ack: s.u32(),
				flags: header.TCPFlagAck, opts: sackOpt(sack(s.u32(), s.u32()))})
			if rw.ToSecondary(f, now) && !tcpChecksumOK(t, f) {
				t.Fatal("ToSecondary broke a valid checksum")
			}
		}
		for _, f := range c.Released(nil) {
			fmt.Fprintf(&tr, "r%x ", crc32.ChecksumIEEE(f))
		}
		if w, ok := c.Want(); ok {
			fmt.Fprintf(&tr, "w%v ", w)
		}
		c.check(t)
	}
	return tr.String()
}

func FuzzComparator(f *testing.F) {
	// A handshake, data from both in different segmentations, a FIN each.
	f.Add([]byte{
		2, 0, 0x12, 0xff, 0xff, 1, 0, // primary SYN-ACK
		3, 0, 0x12, 0xff, 0xff, 1, 0, // secondary SYN-ACK
		2, 0, 0x18, 0, 0, 1, 4, 'a', 'b', 'c', 'd',
		3, 0, 0x18, 0, 0, 1, 2, 'a', 'b',
		3, 0, 0x18, 0, 2, 1, 2, 'c', 'd',
		2, 0, 0x11, 0, 4, 1, 0,
		3, 0, 0x11, 0, 4, 1, 0,
		7, 0, 0, 0, 0x03, 0xe9, 0, 0, 0, 1, 0, 0, 0, 2,
		5, 200, 6,
	})
	f.Add([]byte{4, 1, 3, 'x', 'y', 'z', 0, 4, 1, 3, 'x', 'y', 'q', 1, 5, 100})
	f.Add([]byte{0, 20, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0, 0, 0, 0, 0, 0, 0x08, 0x00, 0x45, 0, 0, 20, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		// Deterministic: the same input, the same releases and requests.
		if a, b := runScript(t, in), runScript(t, in); a != b {
			t.Fatalf("two runs differ:\n%s\n%s", a, b)
		}
	})
}

// FuzzFrames feeds arbitrary frames to both replicas' sides and to the
// rewriter: nothing may panic, the bounds hold, and a frame whose TCP
// checksum was valid stays valid through the rewriter.
func FuzzFrames(f *testing.F) {
	cp := newPair(40000, 0xfffffff0, 1000)
	f.Add(cp.p.synAck(), cp.s.synAck())
	f.Add(cp.p.send([]byte("hello"), 5)[0], cp.s.send([]byte("hellO"), 3)[0])
	cl := tcpFrame(seg{src: clientEP(40000), dst: guestEP(6379), seq: clientISN + 1, ack: 0xfffffff1, flags: header.TCPFlagAck,
		opts: sackOpt(sack(1, 2), sack(3, 4))})
	f.Add(cl, cl)
	f.Add(udpFrame(guestEP(1), clientEP(2), []byte("x"), 0), arpReply())
	f.Fuzz(func(t *testing.T, a, b []byte) {
		c := New(Config{MaxHeldBytes: 4 << 10, MaxBufferedBytes: 4 << 10, MaxConnections: 4}, 0)
		rw := NewRewriter(4, 0)
		rw.Observe(cp.s.synAck(), 0)
		c.Primary(cp.p.synAck(), 0)
		c.Secondary(cp.s.synAck(), 0)
		for i, fr := range [][]byte{a, b, a, b} {
			if i%2 == 0 {
				c.Primary(bytes.Clone(fr), time.Duration(i))
			} else {
				c.Secondary(fr, time.Duration(i))
			}
			c.check(t)
			for _, g := range [][]byte{bytes.Clone(fr), bytes.Clone(fr)} {
				valid := validTCP(g)
				if rw.ToSecondary(g, 0) && valid && !validTCP(g) {
					t.Fatalf("ToSecondary broke a valid checksum")
				}
				valid = validTCP(g)
				if rw.FromSecondary(g, 0) && valid && !validTCP(g) {
					t.Fatalf("FromSecondary broke a valid checksum")
				}
			}
		}
		c.Checkpoint(10)
		c.check(t)
	})
}

// validTCP says whether a frame is well-formed TCP over IPv4 or IPv6 (as
// parse sees it) with a valid checksum, by gVisor's computation.
func validTCP(f []byte) bool {
	var p packet
	parse(f, true, &p)
	return p.kind == kindTCP && tcpChecksumValid(f)
}
