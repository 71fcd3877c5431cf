package netcompare

import (
	"testing"

	"ftvm/internal/testsupport"
)

// TestSharedFrames runs frames from the project's shared frame builder
// (IPv4 only) through both parts: the comparator matches two differently
// segmented replies, the rewriter maps the client's acknowledgement with
// a checksum gVisor accepts.
func TestSharedFrames(t *testing.T) {
	guest := testsupport.Station{MAC: guestMAC, IP: guestIP.As4()}
	client := testsupport.Station{MAC: clientMAC, IP: clientIP.As4()}
	const pISN, sISN = 1000, 900000
	seg := func(isn uint32, flags byte, off int, data []byte) []byte {
		s := testsupport.TCPSegment{SrcPort: 6379, DstPort: 40100, Seq: isn + 1 + uint32(off), Ack: clientISN + 1,
			Flags: flags | testsupport.TCPACK, Window: 65535, Data: data}
		if flags&testsupport.TCPSYN != 0 {
			s.Seq = isn
		}
		return testsupport.TCP(guest, client, s)
	}
	c := New(Config{}, 0)
	rw := NewRewriter(0, 0)
	ps, ss := seg(pISN, testsupport.TCPSYN, 0, nil), seg(sISN, testsupport.TCPSYN, 0, nil)
	c.Primary(ps, 0)
	c.Secondary(ss, 0)
	rw.Observe(ss, 0)
	data := payload(5000, 11)
	var pf [][]byte
	for off := 0; off < len(data); off += 1460 {
		pf = append(pf, seg(pISN, testsupport.TCPPSH, off, data[off:min(off+1460, len(data))]))
	}
	for _, f := range pf {
		c.Primary(f, 0)
	}
	for off := 0; off < len(data); off += 999 {
		c.Secondary(seg(sISN, 0, off, data[off:min(off+999, len(data))]), 0)
	}
	out := c.Released(nil)
	if _, ok := c.Want(); ok || len(out) != 1+len(pf) {
		t.Fatalf("%d frames released of %d, stats %+v", len(out), 1+len(pf), c.Stats())
	}
	// The client's handshake ACK, then its acknowledgement of the reply.
	for _, n := range []uint32{0, 5000} {
		ack := testsupport.TCP(client, guest, testsupport.TCPSegment{SrcPort: 40100, DstPort: 6379, Seq: clientISN + 1, Ack: pISN + 1 + n,
			Flags: testsupport.TCPACK, Window: 65535})
		if !rw.ToSecondary(ack, 0) || tcpOf(ack).AckNumber() != sISN+1+n || !tcpChecksumOK(t, ack) {
			t.Fatalf("rewritten ack %d, want %d; checksum ok %v", tcpOf(ack).AckNumber(), sISN+1+n, tcpChecksumOK(t, ack))
		}
	}
}
