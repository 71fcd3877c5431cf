package netcompare

import (
	"fmt"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// benchStreams prebuilds conns connections' frames: both replicas send
// the same segs*1448 bytes, the secondary in segments of sSize bytes.
func benchStreams(conns, segs, sSize int) (pf, sf [][]byte) {
	for i := range conns {
		cp := newPair(uint16(10000+i), uint32(i)*0x01000193, uint32(i)*0x2545f491)
		pf = append(pf, cp.p.synAck())
		sf = append(sf, cp.s.synAck())
		data := payload(segs*1448, uint64(i))
		pf = append(pf, cp.p.send(data, 1448)...)
		sf = append(sf, cp.s.send(data, sSize)...)
	}
	// Interleave the connections, as a busy server would.
	var pi, si [][]byte
	per := len(pf) / conns
	for k := range per {
		for i := range conns {
			pi = append(pi, pf[i*per+k])
		}
	}
	sper := len(sf) / conns
	for k := range sper {
		for i := range conns {
			si = append(si, sf[i*sper+k])
		}
	}
	return pi, si
}

// BenchmarkComparator measures frames through the comparator: each
// operation is one primary frame (a 1448-byte segment) and the secondary's
// frames for the same bytes, matched and released.
func BenchmarkComparator(b *testing.B) {
	for _, tc := range []struct {
		conns, sSize int
	}{{1, 1448}, {64, 1448}, {64, 500}, {1024, 1448}} {
		b.Run(fmt.Sprintf("conns=%d/secondary=%dB", tc.conns, tc.sSize), func(b *testing.B) {
			segs := max(4096/tc.conns, 4)
			pf, sf := benchStreams(tc.conns, segs, tc.sSize)
			ratio := float64(len(sf)) / float64(len(pf))
			var c *Comparator
			var out [][]byte
			i := len(pf)
			b.SetBytes(1448)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if i == len(pf) {
					c, i = New(Config{}, 0), 0
				}
				c.Primary(pf[i], 0)
				// The secondary's frames covering the same bytes.
				for j := int(float64(i) * ratio); j < int(float64(i+1)*ratio); j++ {
					c.Secondary(sf[j], 0)
				}
				out = c.Released(out[:0])
				i++
			}
			b.StopTimer()
			if st := c.Stats(); st.Mismatches != 0 {
				b.Fatalf("stats %+v", st)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "primary-frames/s")
		})
	}
}

// BenchmarkRewriter measures a client's frame through the secondary's
// rewriter (acknowledgement, SACK and timestamp mapped).
func BenchmarkRewriter(b *testing.B) {
	rw := NewRewriter(0, 0)
	s := newGConn(guestEP(6379), clientEP(40000), 5, clientISN)
	rw.Observe(s.synAck(), 0)
	ack := tcpFrame(seg{src: clientEP(40000), dst: guestEP(6379), seq: clientISN + 1, ack: 0xfffff001, flags: header.TCPFlagAck, opts: tsOpt(1, 2)})
	rw.ToSecondary(ack, 0)
	f := tcpFrame(seg{src: clientEP(40000), dst: guestEP(6379), seq: clientISN + 1, ack: 0xfffff001, flags: header.TCPFlagAck,
		opts: append(tsOpt(3, 4)[2:], sackOpt(sack(1, 2))...), payload: make([]byte, 100)})
	b.ReportAllocs()
	for range b.N {
		rw.ToSecondary(f, 0)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}
