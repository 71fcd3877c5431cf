package eventlog

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"runtime"
	"testing"
)

// FuzzReader: no input makes the reader panic or allocate without bound,
// every error is a *FormatError, and whatever it accepts re-encodes to the
// same header and records (and, when the header bytes are the writer's, to
// the same bytes). Each input is read twice: as it is, and with checksums
// ignored so that the fuzzer can reach the decoders behind them.
func FuzzReader(f *testing.F) {
	add := func(hdr Header, recs []Record) {
		var buf bytes.Buffer
		w, _ := NewWriter(&buf, hdr)
		for _, r := range recs {
			w.Append(r)
		}
		w.Close()
		f.Add(buf.Bytes())
		f.Add(buf.Bytes()[:buf.Len()*2/3])
	}
	add(goldenHeader(), goldenRecords())
	add(testHeader(), sampleRecords())
	add(Header{Engine: "x"}, nil)
	add(Header{Engine: "x", StartInstret: 1 << 62}, []Record{AdvanceTimeAt(1<<62, 1), EndAt(1<<63, "lockup", Digest{})})
	f.Add([]byte{})
	f.Add(magic[:])

	f.Fuzz(func(t *testing.T, data []byte) {
		check(t, data, false)
		check(t, data, true)
	})
}

func check(t *testing.T, data []byte, ignoreChecksums bool) {
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	r, err := newReader(bytes.NewReader(data), ignoreChecksums)
	if err != nil {
		var fe *FormatError
		if !errors.As(err, &fe) || fe.Frame != 0 {
			t.Fatalf("NewReader: %v is not a header *FormatError", err)
		}
		return
	}
	hdrLen := r.Offset()
	var recs []Record
	good := r.Offset() // end of the last record returned
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Frame != int64(len(recs)+1) || fe.Offset != good {
				t.Fatalf("Next after %d records: %v is not a *FormatError for frame %d at %d", len(recs), err, len(recs)+1, good)
			}
			break
		}
		recs = append(recs, rec)
		good = r.Offset()
	}
	runtime.ReadMemStats(&m1)
	// The bufio buffer, one 64 KiB step of readN, and a generous
	// multiple of the input (records copy and own their payloads).
	if a := m1.TotalAlloc - m0.TotalAlloc; a > 1<<20+64*uint64(len(data)) {
		t.Fatalf("%d bytes allocated reading %d bytes", a, len(data))
	}

	ended := len(recs) > 0 && recs[len(recs)-1].Kind == KindEnd
	var buf bytes.Buffer
	w, err := NewWriter(&buf, r.Header())
	if err != nil {
		t.Fatalf("accepted header does not re-encode: %v", err)
	}
	for i, rec := range recs {
		if err := w.Append(rec); err != nil {
			t.Fatalf("accepted record %d does not re-encode: %v", i, err)
		}
	}
	w.Close()
	hdr2, recs2, err := readAll(buf.Bytes())
	if ended != (err == nil) || !ended && !errors.Is(err, ErrTruncated) {
		t.Fatalf("re-encoded log (ended %v) reads with %v", ended, err)
	}
	if !reflect.DeepEqual(hdr2, r.Header()) {
		t.Fatalf("header re-encodes to\n%+v, read\n%+v", hdr2, r.Header())
	}
	if !sameRecords(recs2, recs) {
		t.Fatalf("records re-encode to\n%+v, read\n%+v", recs2, recs)
	}
	// The encoding is canonical: with the same header bytes (and valid
	// checksums) the frames are byte for byte those that were read.
	if !ignoreChecksums && bytes.Equal(buf.Bytes()[:min(hdrLen, int64(buf.Len()))], data[:hdrLen]) &&
		!bytes.Equal(buf.Bytes(), data[:good]) {
		t.Fatalf("re-encoding differs:\n%x\n%x", buf.Bytes(), data[:good])
	}
}

// FuzzAncillary decodes arbitrary Outputs and Snapshot payloads: no panic,
// and what decodes re-encodes to the same bytes.
func FuzzAncillary(f *testing.F) {
	f.Add(OutputsAt(0, []OutputSum{{Name: "console", Count: 12, Sum: [32]byte{1}}}).Data)
	f.Add(SnapshotAt(0, SnapshotInfo{Name: "s-1.snap"}).Data)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, p []byte) {
		if o, err := DecodeOutputs(p); err == nil {
			if got := OutputsAt(0, o).Data; !bytes.Equal(got, p) {
				t.Fatalf("outputs %x re-encode to %x", p, got)
			}
		}
		if s, err := DecodeSnapshot(p); err == nil {
			if got := SnapshotAt(0, s).Data; !bytes.Equal(got, p) {
				t.Fatalf("snapshot %x re-encodes to %x", p, got)
			}
		}
	})
}
