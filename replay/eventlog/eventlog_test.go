package eventlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/small.ftvmlog from the current encoder")

func testHeader() Header {
	return Header{
		Engine:      "ftvm-riscv64",
		MemoryBytes: 256 << 20,
		Cmdline:     "console=ttyS0 quiet",
		Images: []Image{
			{Role: "kernel", SHA256: sha256.Sum256([]byte("kernel")), Size: 6},
			{Role: "initrd", SHA256: sha256.Sum256([]byte("initrd"))},
		},
		InstructionsPerTick: 10,
		RNGSeed:             HexBytes{1, 2, 3, 0xff},
		MAC:                 MAC{0x52, 0x54, 0, 0x12, 0x34, 0x56},
		Params:              []Param{{Key: "recorder", Value: "test"}, {Key: "empty", Value: ""}},
	}
}

func sum(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// sampleRecords has every kind, including edge cases: zero deltas, a time
// going backwards, empty and large payloads, digests with and without
// components.
func sampleRecords() []Record {
	return []Record{
		AdvanceTimeAt(0, 5),
		ConsoleInputAt(1000, []byte("root\n")),
		ConsoleInputAt(1000, []byte{0}),
		NetReceiveAt(123456, bytes.Repeat([]byte{0xab}, 60)),
		AdvanceTimeAt(123456, 100000),
		AdvanceTimeAt(200000, 99), // backwards: the format does not judge
		DigestAt(1<<30, Digest{Sum: sum("all")}),
		ConsoleInputAt(1<<30+1, nil),
		Record{Instret: 1<<30 + 1, Kind: 0x41, Data: []byte("note")},
		DigestAt(1<<40, Digest{Sum: sum("all2"), Components: []Component{
			{Name: "cpu", Sum: sum("cpu")}, {Name: "ram", Sum: sum("ram")}, {Name: "uart", Sum: sum("uart")},
		}}),
		AdvanceTimeAt(1<<40, 1<<63),
		EndAt(1<<40+7, "poweroff", Digest{Sum: sum("end"), Components: []Component{{Name: "cpu", Sum: sum("cpu2")}}}),
	}
}

// encode writes a log and returns it with the offset at which each frame
// ends (ends[0] is the end of the header).
func encode(t testing.TB, hdr Header, recs []Record) ([]byte, []int64) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, hdr)
	if err != nil {
		t.Fatal(err)
	}
	ends := []int64{w.Offset()}
	for _, r := range recs {
		if err := w.Append(r); err != nil {
			t.Fatal(err)
		}
		ends = append(ends, w.Offset())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if int64(buf.Len()) != w.Offset() {
		t.Fatalf("Offset %d, wrote %d", w.Offset(), buf.Len())
	}
	return buf.Bytes(), ends
}

// readAll reads a whole log; err is nil when it ended with End and io.EOF.
func readAll(data []byte) (Header, []Record, error) {
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		return Header{}, nil, err
	}
	var recs []Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return r.Header(), recs, nil
		}
		if err != nil {
			return r.Header(), recs, err
		}
		recs = append(recs, rec)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, start := range []uint64{0, 12345} {
		hdr := testHeader()
		hdr.StartInstret = start
		recs := sampleRecords()
		for i := range recs {
			recs[i].Instret += start
		}
		data, _ := encode(t, hdr, recs)
		gotHdr, got, err := readAll(data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(gotHdr, hdr) {
			t.Errorf("header:\n got %+v\nwant %+v", gotHdr, hdr)
		}
		if !reflect.DeepEqual(got, recs) {
			t.Errorf("records:\n got %+v\nwant %+v", got, recs)
		}
		// Next keeps returning io.EOF.
		r, _ := NewReader(bytes.NewReader(data))
		for range len(recs) {
			r.Next()
		}
		for range 2 {
			if _, err := r.Next(); err != io.EOF {
				t.Fatalf("after End: %v, want io.EOF", err)
			}
		}
	}
}

// Minimal header: every optional field empty.
func TestMinimalHeader(t *testing.T) {
	hdr := Header{Engine: "x"}
	data, _ := encode(t, hdr, []Record{EndAt(0, "", Digest{})})
	got, recs, err := readAll(data)
	if err != nil || !reflect.DeepEqual(got, hdr) || len(recs) != 1 {
		t.Fatalf("got %+v %v %v", got, recs, err)
	}
	if !strings.Contains(string(data), `{"engine":"x","memory_bytes":0,"instructions_per_tick":0}`) {
		t.Errorf("header JSON not minimal: %q", data)
	}
}

// The reader stops at End: it must not block on (or fail because of) what
// follows, as when a connection stays open.
func TestNoReadPastEnd(t *testing.T) {
	data, _ := encode(t, testHeader(), sampleRecords())
	r, err := NewReader(io.MultiReader(bytes.NewReader(data), failReader{t}))
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

type failReader struct{ t *testing.T }

func (f failReader) Read([]byte) (int, error) {
	f.t.Error("read past the End record")
	return 0, io.EOF
}

func goldenRecords() []Record {
	return []Record{
		AdvanceTimeAt(100, 1000),
		ConsoleInputAt(250000, []byte("ls\n")),
		NetReceiveAt(250000, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x06}),
		DigestAt(1000000, Digest{Sum: sum("d"), Components: []Component{{Name: "cpu", Sum: sum("c")}}}),
		{Instret: 1000001, Kind: 0x40, Data: []byte("a")},
		AdvanceTimeAt(1500000, 51000),
		EndAt(2000000, "poweroff", Digest{Sum: sum("e")}),
	}
}

func goldenHeader() Header {
	return Header{
		Engine: "ftvm-riscv64", MemoryBytes: 64 << 20, Cmdline: "console=ttyS0",
		Images:              []Image{{Role: "elf", SHA256: sum("elf"), Size: 4096}},
		InstructionsPerTick: 10, RNGSeed: HexBytes{7}, MAC: MAC{2, 0, 0, 0, 0, 1},
		Params: []Param{{Key: "k", Value: "v"}},
	}
}

// The golden file pins the byte format: an encoder change that alters it
// fails here (regenerate with go test -run Golden -update only if the
// change is intended and the version or the spec says so), and a decoder
// change that cannot read old logs fails too.
func TestGolden(t *testing.T) {
	path := filepath.Join("testdata", "small.ftvmlog")
	data, _ := encode(t, goldenHeader(), goldenRecords())
	if *update {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, want) {
		t.Errorf("encoding changed:\n got %x\nwant %x", data, want)
	}
	hdr, recs, err := readAll(want)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(hdr, goldenHeader()) || !reflect.DeepEqual(recs, goldenRecords()) {
		t.Errorf("golden file decodes to\n%+v\n%+v", hdr, recs)
	}
}

// frameOf returns the frame containing byte off (0 for the header).
func frameOf(ends []int64, off int) int64 {
	for i, e := range ends {
		if int64(off) < e {
			return int64(i)
		}
	}
	return -1
}

// sameRecords is reflect.DeepEqual, except that an empty list is one.
func sameRecords(a, b []Record) bool {
	return len(a) == 0 && len(b) == 0 || reflect.DeepEqual(a, b)
}

func frameStart(ends []int64, frame int64) int64 {
	if frame == 0 {
		return 0
	}
	return ends[frame-1]
}

// Every single-bit flip and every whole-byte inversion of a small log must
// fail at the frame that holds it, as corruption (or a version error for
// the version byte), after returning exactly the frames before it.
func TestCorruptEveryByte(t *testing.T) {
	recs := goldenRecords()
	data, ends := encode(t, goldenHeader(), recs)
	masks := []byte{1, 2, 4, 8, 16, 32, 64, 128, 0xff}
	for i := range data {
		for _, m := range masks {
			bad := bytes.Clone(data)
			bad[i] ^= m
			_, got, err := readAll(bad)
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("byte %d ^ %#x: error %v, want a *FormatError", i, m, err)
			}
			wantFrame := frameOf(ends, i)
			if fe.Frame != wantFrame || fe.Offset != frameStart(ends, wantFrame) {
				t.Errorf("byte %d ^ %#x: %v: want frame %d at byte %d", i, m, err, wantFrame, frameStart(ends, wantFrame))
			}
			wantKind := ErrCorrupt
			if i == len(magic) {
				wantKind = ErrVersion
			}
			if !errors.Is(err, wantKind) {
				t.Errorf("byte %d ^ %#x: %v: want %v", i, m, err, wantKind)
			}
			if wantFrame > 0 && !sameRecords(got, recs[:wantFrame-1]) {
				t.Errorf("byte %d ^ %#x: returned %d records, want the %d before the damage", i, m, len(got), wantFrame-1)
			}
		}
	}
}

// Cut at every offset: the frames wholly before the cut come back, then
// ErrTruncated naming the next frame; only the whole log ends in io.EOF.
func TestTruncateEveryOffset(t *testing.T) {
	recs := goldenRecords()
	data, ends := encode(t, goldenHeader(), recs)
	for n := 0; n <= len(data); n++ {
		_, got, err := readAll(data[:n])
		if n == len(data) {
			if err != nil {
				t.Fatalf("whole log: %v", err)
			}
			continue
		}
		var fe *FormatError
		if !errors.Is(err, ErrTruncated) || !errors.As(err, &fe) {
			t.Fatalf("cut at %d: %v, want ErrTruncated", n, err)
		}
		complete := 0
		for _, e := range ends[1:] {
			if e <= int64(n) {
				complete++
			}
		}
		if int64(n) < ends[0] {
			if fe.Frame != 0 {
				t.Errorf("cut at %d in the header: %v", n, err)
			}
			continue
		}
		if !sameRecords(got, recs[:complete]) {
			t.Errorf("cut at %d: %d records, want %d", n, len(got), complete)
		}
		if fe.Frame != int64(complete+1) || fe.Offset != ends[complete] {
			t.Errorf("cut at %d: %v, want frame %d at byte %d", n, err, complete+1, ends[complete])
		}
	}
}

// frame builds a frame by hand with valid checks; crc is the running CRC
// before it.
func frame(crc uint32, kind Kind, delta, length uint64, payload []byte) ([]byte, uint32) {
	b := []byte{byte(kind)}
	b = binary.AppendUvarint(b, delta)
	b = binary.AppendUvarint(b, length)
	b = append(b, crc8(b))
	b = append(b, payload...)
	crc = crc32.Update(crc, castagnoli, b)
	return binary.LittleEndian.AppendUint32(b, crc), crc
}

// header returns an encoded header and its CRC.
func header(t *testing.T, hdr Header) ([]byte, uint32) {
	data, ends := encode(t, hdr, nil)
	return data, binary.LittleEndian.Uint32(data[ends[0]-4:])
}

func expectErr(t *testing.T, data []byte, kind error, frame int64, detail string) {
	t.Helper()
	_, _, err := readAll(data)
	var fe *FormatError
	if !errors.Is(err, kind) || !errors.As(err, &fe) || fe.Frame != frame || !strings.Contains(err.Error(), detail) {
		t.Fatalf("got %v; want %v in frame %d mentioning %q", err, kind, frame, detail)
	}
	t.Log(err)
}

func TestDecreasingInstret(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, testHeader())
	if err := w.Append(ConsoleInputAt(10, []byte("a"))); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ConsoleInputAt(9, []byte("b"))); err == nil || !strings.Contains(err.Error(), "decrease") {
		t.Fatalf("Append of a decreasing count: %v", err)
	}
	// Nothing was appended by the refused record.
	w.Append(EndAt(10, "", Digest{}))
	w.Close()
	if _, recs, err := readAll(buf.Bytes()); err != nil || len(recs) != 2 {
		t.Fatalf("%v %v", recs, err)
	}

	// On the wire a decrease can only be a delta that wraps around.
	data, crc := header(t, Header{Engine: "x", StartInstret: 5})
	f, _ := frame(crc, KindConsoleInput, 1<<64-1, 1, []byte("a"))
	expectErr(t, append(data, f...), ErrCorrupt, 1, "decreases")
}

func TestOversize(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, testHeader())
	if err := w.Append(NetReceiveAt(0, make([]byte, MaxPayload+1))); err == nil {
		t.Error("writer accepted an oversize payload")
	}
	if err := w.Append(NetReceiveAt(0, make([]byte, MaxPayload))); err != nil {
		t.Errorf("writer refused a payload of exactly the limit: %v", err)
	}
	long := EndAt(0, strings.Repeat("x", MaxReason+1), Digest{})
	if err := w.Append(long); err == nil {
		t.Error("writer accepted an oversize reason")
	}
	many := DigestAt(0, Digest{Components: make([]Component, MaxPayload/33)})
	for i := range many.Digest.Components {
		many.Digest.Components[i].Name = "c"
	}
	if err := w.Append(many); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("writer accepted an oversize digest: %v", err)
	}
	if _, err := NewWriter(io.Discard, Header{Engine: "x", Cmdline: strings.Repeat("x", MaxHeader)}); err == nil {
		t.Error("writer accepted an oversize header")
	}

	data, crc := header(t, Header{Engine: "x"})
	f, _ := frame(crc, KindNetReceive, 0, 4<<30, nil)
	expectErr(t, append(data, f...), ErrCorrupt, 1, "payload length 4294967296 exceeds")

	h := append([]byte{}, magic[:]...)
	h = append(h, Version)
	h = binary.AppendUvarint(h, MaxHeader+1)
	h = append(h, crc8(h))
	expectErr(t, h, ErrCorrupt, 0, "out of range")
}

// A lying length costs about what the peer actually sends, not what it
// claims.
func TestLyingLengthAllocation(t *testing.T) {
	data, crc := header(t, Header{Engine: "x"})
	f, _ := frame(crc, KindNetReceive, 0, MaxPayload, nil)
	data = append(data, f[:len(f)-4]...)
	data = append(data, make([]byte, 100)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		_, _, err := readAll(data)
		if !errors.Is(err, ErrTruncated) {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / 10; per > 200<<10 {
		t.Errorf("%d bytes allocated per read of a %d-byte log", per, len(data))
	}
}

func TestUnknownKind(t *testing.T) {
	data, crc := header(t, Header{Engine: "x"})
	f1, crc := frame(crc, KindConsoleInput, 3, 1, []byte("a"))
	f2, _ := frame(crc, 0x20, 4, 2, []byte("zz"))
	expectErr(t, append(append(data, f1...), f2...), ErrUnknownKind, 2, "kind 32")
	for _, k := range []Kind{0, 6, 0x3f, 0x80, 0xff} {
		f, _ := frame(crc, k, 0, 0, nil)
		expectErr(t, append(append(data, f1...), f...), ErrUnknownKind, 2, "unknown record")
	}
	if err := (&Writer{}).Append(Record{Kind: 6}); err == nil {
		t.Error("writer accepted kind 6")
	}

	// Ancillary kinds pass through raw.
	f2, crc = frame(crc, 0x7f, 0, 2, []byte("hi"))
	f3, _ := frame(crc, KindEnd, 0, 34, make([]byte, 34))
	_, recs, err := readAll(append(append(append(data, f1...), f2...), f3...))
	if err != nil || len(recs) != 3 || recs[1].Kind != 0x7f || string(recs[1].Data) != "hi" {
		t.Fatalf("%+v %v", recs, err)
	}
}

func TestUnknownVersion(t *testing.T) {
	data, _ := encode(t, testHeader(), sampleRecords())
	for _, v := range []byte{0, 2, 255} {
		bad := bytes.Clone(data)
		bad[len(magic)] = v
		expectErr(t, bad, ErrVersion, 0, fmt.Sprintf("format version %d", v))
	}
	expectErr(t, []byte("GIF89a.........."), ErrCorrupt, 0, "not an ftvm event log")
	expectErr(t, nil, ErrTruncated, 0, "truncated")
}

// A newer writer may add header fields; this reader ignores them.
func TestHeaderForwardCompatible(t *testing.T) {
	js := []byte(`{"engine":"ftvm-riscv64","memory_bytes":1024,"future_field":{"a":[1,2]},"instructions_per_tick":10}`)
	h := append([]byte{}, magic[:]...)
	h = append(h, Version)
	h = binary.AppendUvarint(h, uint64(len(js)))
	h = append(h, crc8(h))
	h = append(h, js...)
	crc := crc32.Checksum(h, castagnoli)
	h = binary.LittleEndian.AppendUint32(h, crc)
	f, _ := frame(crc, KindEnd, 0, 34, make([]byte, 34))
	hdr, recs, err := readAll(append(h, f...))
	if err != nil || len(recs) != 1 {
		t.Fatal(err)
	}
	if want := (Header{Engine: "ftvm-riscv64", MemoryBytes: 1024, InstructionsPerTick: 10}); !reflect.DeepEqual(hdr, want) {
		t.Errorf("got %+v", hdr)
	}
}

func TestNonCanonicalVarint(t *testing.T) {
	data, crc := header(t, Header{Engine: "x"})
	b := []byte{byte(KindConsoleInput), 0x81, 0x00, 1} // delta 1 in two bytes
	b = append(b, crc8(b), 'a')
	crc = crc32.Update(crc, castagnoli, b)
	b = binary.LittleEndian.AppendUint32(b, crc)
	expectErr(t, append(data, b...), ErrCorrupt, 1, "shortest form")

	// The same inside a payload: AdvanceTime's time delta.
	data2, crc2 := header(t, Header{Engine: "x"})
	f, _ := frame(crc2, KindAdvanceTime, 0, 2, []byte{0x80, 0x00})
	expectErr(t, append(data2, f...), ErrCorrupt, 1, "shortest form")
}

func TestMalformedPayloads(t *testing.T) {
	data, crc := header(t, Header{Engine: "x"})
	z := make([]byte, 32)
	for _, c := range []struct {
		kind    Kind
		payload []byte
		detail  string
	}{
		{KindAdvanceTime, nil, "varint runs past"},
		{KindAdvanceTime, []byte{1, 2}, "trailing"},
		{KindDigest, z[:31], "shorter than 32"},
		{KindDigest, append(z, 1), "cannot fit"},
		{KindDigest, append(append(z, 0), 9), "trailing"},
		{KindDigest, append(append(append(z, 1, 0), z...), 0), "name length 0"},
		{KindEnd, append([]byte{0x7f, 'a'}, z...), "reason length 127 exceeds"},
		{KindEnd, []byte{0}, "shorter than 32"},
	} {
		f, _ := frame(crc, c.kind, 0, uint64(len(c.payload)), c.payload)
		expectErr(t, append(bytes.Clone(data), f...), ErrCorrupt, 1, c.detail)
	}
}

// A frame moved, dropped or repeated is caught by the running CRC even
// though each frame is intact.
func TestSpliceDetected(t *testing.T) {
	recs := []Record{ConsoleInputAt(1, []byte("a")), ConsoleInputAt(2, []byte("b")), EndAt(3, "", Digest{})}
	data, ends := encode(t, Header{Engine: "x"}, recs)
	f1, f2 := data[ends[0]:ends[1]], data[ends[1]:ends[2]]
	swapped := append(append(append(bytes.Clone(data[:ends[0]]), f2...), f1...), data[ends[2]:]...)
	expectErr(t, swapped, ErrCorrupt, 1, "checksum")
	dup := append(append(bytes.Clone(data[:ends[1]]), f1...), data[ends[1]:]...)
	expectErr(t, dup, ErrCorrupt, 2, "checksum")
	dropped := append(bytes.Clone(data[:ends[0]]), data[ends[1]:]...)
	expectErr(t, dropped, ErrCorrupt, 1, "checksum")
}

func TestWriterChecks(t *testing.T) {
	w, _ := NewWriter(io.Discard, Header{Engine: "x"})
	for _, r := range []Record{
		{Kind: KindConsoleInput, Time: 1},
		{Kind: KindNetReceive, Reason: "x"},
		{Kind: KindAdvanceTime, Data: []byte{1}},
		{Kind: KindDigest, Reason: "x"},
		{Kind: KindEnd, Data: []byte{1}},
		{Kind: KindDigest, Digest: Digest{Components: []Component{{Name: ""}}}},
		{Kind: KindDigest, Digest: Digest{Components: []Component{{Name: strings.Repeat("n", 256)}}}},
		{Kind: 0x40, Digest: Digest{Sum: [32]byte{1}}},
	} {
		if err := w.Append(r); err == nil {
			t.Errorf("Append(%+v) accepted", r)
		}
	}
	for _, h := range []Header{{}, {Engine: "\xff"}, {Engine: "x", Images: []Image{{}}}, {Engine: "x", Params: []Param{{Value: "v"}}}} {
		if _, err := NewWriter(io.Discard, h); err == nil {
			t.Errorf("NewWriter(%+v) accepted", h)
		}
	}
	w.Append(EndAt(0, "", Digest{}))
	if err := w.Append(ConsoleInputAt(0, nil)); err == nil {
		t.Error("Append after End accepted")
	}
	w.Close()
	if err := w.Append(ConsoleInputAt(0, nil)); err != ErrClosed {
		t.Errorf("Append after Close: %v", err)
	}
}

type errWriter struct{ n int }

func (e *errWriter) Write(p []byte) (int, error) {
	if e.n < len(p) {
		n := e.n
		e.n = 0
		return n, errors.New("disk full")
	}
	e.n -= len(p)
	return len(p), nil
}

func TestWriteErrorSticky(t *testing.T) {
	w, _ := NewWriter(&errWriter{n: 10}, Header{Engine: "x"})
	if err := w.Flush(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatal(err)
	}
	if err := w.Append(ConsoleInputAt(0, nil)); err == nil {
		t.Error("Append after a write error accepted")
	}
	if err := w.Close(); err == nil {
		t.Error("Close after a write error succeeded")
	}
}

// An I/O error is passed through with the position, not called truncation.
func TestReadError(t *testing.T) {
	data, ends := encode(t, testHeader(), sampleRecords())
	boom := errors.New("connection reset")
	r, err := NewReader(io.MultiReader(bytes.NewReader(data[:ends[2]+3]), errReader{boom}))
	if err != nil {
		t.Fatal(err)
	}
	r.Next()
	r.Next()
	_, err = r.Next()
	var fe *FormatError
	if !errors.Is(err, boom) || errors.Is(err, ErrTruncated) || !errors.As(err, &fe) || fe.Frame != 3 {
		t.Fatalf("%v", err)
	}
	if _, err2 := r.Next(); err2 != err {
		t.Errorf("error not sticky: %v", err2)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestHeaderDiff(t *testing.T) {
	a := testHeader()
	if d := a.Diff(testHeader()); d != nil {
		t.Errorf("identical headers differ: %v", d)
	}
	b := testHeader()
	b.MemoryBytes = 512 << 20
	b.Images[1].SHA256[0] ^= 1
	b.MAC[5] = 0x57
	d := a.Diff(b)
	if len(d) != 3 || !strings.HasPrefix(d[0], "memory_bytes: log has 268435456, machine has 536870912") ||
		!strings.HasPrefix(d[1], "images") || !strings.Contains(d[2], "52:54:00:12:34:57") {
		t.Errorf("%q", d)
	}
}

func TestDigestMismatch(t *testing.T) {
	a := Digest{Sum: sum("a"), Components: []Component{{"cpu", sum("c")}, {"ram", sum("r")}, {"uart", sum("u")}}}
	if m := a.Mismatch(a); m != nil {
		t.Error(m)
	}
	b := Digest{Sum: sum("b"), Components: []Component{{"cpu", sum("c")}, {"ram", sum("R")}, {"net", sum("n")}}}
	if m := a.Mismatch(b); !reflect.DeepEqual(m, []string{"overall", "ram", "uart", "net"}) {
		t.Error(m)
	}
}

// Per-record sizes of typical records, so that a change that fattens the
// format is noticed.
func TestOverhead(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, Header{Engine: "x"})
	w.Append(AdvanceTimeAt(1_000_000_000, 100_000_000))
	prev := w.Offset()
	for _, c := range []struct {
		rec  Record
		max  int64
		name string
	}{
		{AdvanceTimeAt(1_000_100_000, 100_010_000), 13, "AdvanceTime 100k instructions later, +1 ms"},
		{AdvanceTimeAt(1_100_000_000, 110_000_000), 15, "AdvanceTime 100M instructions later, +1 s"},
		{ConsoleInputAt(1_100_050_000, []byte("x")), 11, "1-byte ConsoleInput"},
		{ConsoleInputAt(1_100_050_000, []byte("y")), 9, "1-byte ConsoleInput, same count"},
		{NetReceiveAt(1_100_100_000, make([]byte, 1514)), 1514 + 12, "1514-byte NetReceive"},
		{DigestAt(2_000_000_000, Digest{}), 32 + 1 + 12, "Digest, no components"},
	} {
		if err := w.Append(c.rec); err != nil {
			t.Fatal(err)
		}
		n := w.Offset() - prev
		prev = w.Offset()
		t.Logf("%-45s %4d bytes", c.name, n)
		if n > c.max {
			t.Errorf("%s: %d bytes, want at most %d", c.name, n, c.max)
		}
	}
}
