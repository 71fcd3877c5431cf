package eventlog

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// typicalMix is a plausible stream for a networked guest: mostly time
// advances and small frames (ACKs), some full-size frames, keystrokes, and
// a digest every 1000 records. Instruction gaps are exponential around
// 200k (about 2 ms of guest time at 100 M instructions/s).
func typicalMix(n int) (recs []Record, payload int) {
	rng := rand.New(rand.NewPCG(1, 2))
	var instret, mtime uint64 = 1 << 32, 1 << 28
	for i := range n {
		instret += uint64(rng.ExpFloat64() * 200_000)
		var r Record
		switch x := rng.IntN(100); {
		case i%1000 == 999:
			d := Digest{Sum: sum("x")}
			for _, name := range []string{"cpu", "ram", "uart", "net"} {
				d.Components = append(d.Components, Component{Name: name, Sum: sum(name)})
			}
			r = DigestAt(instret, d)
		case x < 55:
			mtime += uint64(rng.IntN(40_000))
			r = AdvanceTimeAt(instret, mtime)
		case x < 85:
			r = NetReceiveAt(instret, make([]byte, 66))
		case x < 95:
			r = NetReceiveAt(instret, make([]byte, 1514))
		default:
			r = ConsoleInputAt(instret, []byte{'a'})
		}
		payload += len(r.Data)
		recs = append(recs, r)
	}
	return recs, payload
}

func smallMix(n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		if i%2 == 0 {
			recs[i] = AdvanceTimeAt(uint64(i)*100_000, uint64(i)*10_000)
		} else {
			recs[i] = ConsoleInputAt(uint64(i)*100_000, []byte{'a'})
		}
	}
	return recs
}

func benchEncode(b *testing.B, recs []Record, dataBytes int) {
	var size int64
	for b.Loop() {
		w, _ := NewWriter(io.Discard, Header{Engine: "x"})
		base := w.Offset()
		for _, r := range recs {
			if err := w.Append(r); err != nil {
				b.Fatal(err)
			}
		}
		w.Close()
		size = w.Offset() - base
	}
	b.SetBytes(size)
	report(b, recs, size, dataBytes)
}

func report(b *testing.B, recs []Record, size int64, dataBytes int) {
	n := float64(len(recs))
	b.ReportMetric(float64(size)/n, "B/record")
	// Overhead: everything but ConsoleInput/NetReceive data (digests and
	// time values count as overhead).
	b.ReportMetric(float64(size-int64(dataBytes))/n, "overheadB/record")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/record")
}

func benchDecode(b *testing.B, recs []Record, dataBytes int) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, Header{Engine: "x"})
	base := w.Offset()
	for _, r := range recs {
		w.Append(r)
	}
	w.Close()
	data := buf.Bytes()
	for b.Loop() {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		for {
			_, err := r.Next()
			if err != nil {
				// The log has no End record.
				if !errors.Is(err, ErrTruncated) || r.Frame() != int64(len(recs))+1 {
					b.Fatal(err)
				}
				break
			}
		}
	}
	b.SetBytes(int64(len(data)) - base)
	report(b, recs, int64(len(data))-base, dataBytes)
}

func BenchmarkEncodeTypical(b *testing.B) {
	recs, data := typicalMix(10000)
	benchEncode(b, recs, data)
}

func BenchmarkDecodeTypical(b *testing.B) {
	recs, data := typicalMix(10000)
	benchDecode(b, recs, data)
}

func BenchmarkEncodeSmall(b *testing.B) { benchEncode(b, smallMix(10000), 5000) }

func BenchmarkDecodeSmall(b *testing.B) { benchDecode(b, smallMix(10000), 5000) }
