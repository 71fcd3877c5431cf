package netcompare

import (
	"bytes"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// TestRewriterState: a promoted secondary's mappings, written and loaded
// on another host, map its frames (out and in) exactly as it does; the
// loaded rewriter learns no new connection; damaged states are refused.
func TestRewriterState(t *testing.T) {
	rw := NewRewriter(0, 0)
	g, cl := guestEP(6379), clientEP(40050)
	var pISN, sISN uint32 = 0x1000, 0x9000
	p := newGConn(g, cl, pISN, clientISN)
	s := newGConn(g, cl, sISN, clientISN)
	p.tsval, s.tsval = 0x10, 0x5000
	rw.Observe(s.synAck(), 0)
	rw.ToSecondary(tcpFrame(seg{src: cl, dst: g, seq: clientISN + 1, flags: header.TCPFlagAck, ack: pISN + 1, opts: tsOpt(900, p.tsval)}), 0)
	rw.Failover()
	state := rw.AppendState(nil)
	lr, err := LoadRewriter(state, 0, 0, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if lr.Len() != 1 {
		t.Fatalf("loaded %d mappings, want 1", lr.Len())
	}
	out := s.send([]byte("+OK\r\n"), 100)[0]
	a, b := bytes.Clone(out), bytes.Clone(out)
	rw.FromSecondary(a, 0)
	if !lr.FromSecondary(b, 0) || !bytes.Equal(a, b) || tcpOf(b).SequenceNumber() != p.next {
		t.Fatalf("the loaded rewriter maps the secondary's frame to seq %#x, the original to %#x (want %#x)",
			tcpOf(b).SequenceNumber(), tcpOf(a).SequenceNumber(), p.next)
	}
	in := tcpFrame(seg{src: cl, dst: g, seq: clientISN + 1, flags: header.TCPFlagAck, ack: pISN + 50, opts: tsOpt(901, p.tsval)})
	a, b = bytes.Clone(in), bytes.Clone(in)
	rw.ToSecondary(a, 0)
	if !lr.ToSecondary(b, 0) || !bytes.Equal(a, b) {
		t.Fatal("the loaded rewriter maps a frame for the guest otherwise")
	}
	// A new connection is the promoted guest's own.
	n := newGConn(g, clientEP(40051), 0x7000, clientISN)
	lr.Observe(n.synAck(), 0)
	if lr.Len() != 1 {
		t.Fatal("a failed-over rewriter learnt a new connection")
	}
	for _, bad := range [][]byte{nil, {2}, state[:len(state)-1], append(bytes.Clone(state), 0),
		func() []byte { b := bytes.Clone(state); b[3] = 17; return b }()} {
		if _, err := LoadRewriter(bad, 0, 0, 0); err == nil {
			t.Fatalf("loaded a damaged state %x", bad)
		}
	}
	if _, err := LoadRewriter(state, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
}

// FuzzRewriterState loads anything: no panic, and what loads writes back
// the same.
func FuzzRewriterState(f *testing.F) {
	rw := NewRewriter(0, 0)
	rw.Observe(newGConn(guestEP(1), clientEP(2), 3, 4).synAck(), 0)
	f.Add(rw.AppendState(nil))
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := LoadRewriter(b, 64, 0, 0)
		if err != nil {
			return
		}
		if got := r.AppendState(nil); !bytes.Equal(got, b) {
			t.Fatalf("state %x wrote back as %x", b, got)
		}
	})
}
