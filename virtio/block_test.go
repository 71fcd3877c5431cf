package virtio

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"ftvm/host"
	"ftvm/internal/testsupport"
	"ftvm/vm"
)

type blkEnv struct {
	*driver
	blk *Block
}

func newBlkEnv(t testing.TB, be vm.Disk, ro bool, qsize uint16) *blkEnv {
	b := NewBlock(be, ro)
	d := newDriver(t, b)
	d.handshake(^uint64(0), qsize)
	return &blkEnv{driver: d, blk: b}
}

// req posts one request (header, data, status) and returns the addresses
// of the data and status buffers. For IN/GET_ID data is device-writable.
func (e *blkEnv) req(typ uint32, sector uint64, data []byte, dataLen int) (head uint16, dataAddr, statusAddr uint64) {
	hdr := e.alloc(16, 16)
	e.mem.w32(hdr, typ)
	e.mem.w64(hdr+8, sector)
	statusAddr = e.alloc(1, 1)
	e.mem.bytes(statusAddr, 1)[0] = 0xff
	bufs := []buf{{hdr, 16, false}}
	if dataLen > 0 {
		dataAddr = e.alloc(uint64(dataLen), 8)
		write := typ != blkTOut
		if !write {
			copy(e.mem.bytes(dataAddr, dataLen), data)
		}
		bufs = append(bufs, buf{dataAddr, uint32(dataLen), write})
	}
	bufs = append(bufs, buf{statusAddr, 1, true})
	head = e.add(0, bufs...)
	return
}

func (e *blkEnv) do(typ uint32, sector uint64, data []byte, dataLen int) (status byte, out []byte, u usedElem) {
	e.t.Helper()
	head, da, sa := e.req(typ, sector, data, dataLen)
	e.notify(0)
	us := e.used(0)
	if len(us) != 1 || us[0].id != head {
		e.t.Fatalf("used = %+v, want head %d (needs reset %v: %v)", us, head, e.needsReset(), e.m.Err())
	}
	if dataLen > 0 {
		out = append([]byte(nil), e.mem.bytes(da, dataLen)...)
	}
	return e.mem.bytes(sa, 1)[0], out, us[0]
}

func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7) ^ seed
	}
	return p
}

func TestBlockConfigAndFeatures(t *testing.T) {
	e := newBlkEnv(t, testsupport.NewDisk(make([]byte, 1<<20+100)), false, 16)
	if got := e.m.Read(regDeviceID, 4); got != DeviceIDBlock {
		t.Fatalf("device id %d", got)
	}
	// capacity: 64-bit field read as two 32-bit halves, as Linux does.
	lo, hi := e.m.Read(regConfig, 4), e.m.Read(regConfig+4, 4)
	if c := lo | hi<<32; c != (1<<20)/512 {
		t.Fatalf("capacity %d", c)
	}
	if c := e.m.Read(regConfig, 8); c != (1<<20)/512 {
		t.Fatalf("capacity (8-byte read) %d", c)
	}
	if e.m.Read(regConfig+12, 4) != BlockSegMax || e.m.Read(regConfig+8, 4) != BlockSizeMax {
		t.Fatalf("seg_max/size_max")
	}
	if e.m.Read(regConfig+0x200, 4) != 0 || e.m.Read(0x2000, 4) != 0 {
		t.Fatalf("config beyond end not 0")
	}
	if e.feats&blkFFlush == 0 || e.feats&blkFRO != 0 || e.feats&FeatureVersion1 == 0 {
		t.Fatalf("features %#x", e.feats)
	}
	ro := newBlkEnv(t, testsupport.NewDisk(make([]byte, 4096)), true, 16)
	if ro.feats&blkFRO == 0 {
		t.Fatalf("RO not offered")
	}
}

func testBlockRoundTrip(t *testing.T, be vm.Disk) {
	e := newBlkEnv(t, be, false, 8)
	data := pattern(3*512, 0x5a)
	if st, _, u := e.do(blkTOut, 5, data, len(data)); st != blkSOK || u.len != 1 {
		t.Fatalf("write status %d len %d", st, u.len)
	}
	st, out, u := e.do(blkTIn, 5, nil, len(data))
	if st != blkSOK || !bytes.Equal(out, data) || u.len != uint32(len(data)+1) {
		t.Fatalf("read status %d len %d equal %v", st, u.len, bytes.Equal(out, data))
	}
	if st, _, _ := e.do(blkTFlush, 0, nil, 0); st != blkSOK {
		t.Fatalf("flush status %d", st)
	}
	st, out, u = e.do(blkTGetID, 0, nil, blkIDBytes)
	if st != blkSOK || u.len != blkIDBytes+1 || string(bytes.TrimRight(out, "\x00")) != BlockSerial {
		t.Fatalf("get id %d %q len %d", st, out, u.len)
	}
	// Many requests to wrap the ring indices several times (size 8).
	for i := range 40 {
		d := pattern(512, byte(i))
		if st, _, _ := e.do(blkTOut, uint64(i%16), d, 512); st != blkSOK {
			t.Fatalf("write %d: %d", i, st)
		}
		if st, out, _ := e.do(blkTIn, uint64(i%16), nil, 512); st != blkSOK || !bytes.Equal(out, d) {
			t.Fatalf("read %d: %d", i, st)
		}
	}
	s := e.blk.State()
	if s.Flushes != 1 || s.GetIDs != 1 || s.Writes != 41 || s.Reads != 41 || s.Errors != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestBlockRoundTripMemory(t *testing.T) {
	md := testsupport.NewDisk(make([]byte, 64<<10))
	testBlockRoundTrip(t, md)
	if md.Flushes != 1 {
		t.Fatalf("flushes %d", md.Flushes)
	}
}

func TestBlockRoundTripFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := host.OpenDisk(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	testBlockRoundTrip(t, d)
	// The data really went to the file (the last write to sector 5 was
	// loop iteration 37).
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got[5*512:6*512], pattern(512, 37)) {
		t.Fatalf("file content mismatch (%v)", err)
	}
}

func TestBlockErrors(t *testing.T) {
	md := testsupport.NewDisk(make([]byte, 16*512))
	e := newBlkEnv(t, md, false, 8)
	cases := []struct {
		name   string
		typ    uint32
		sector uint64
		n      int
		want   byte
	}{
		{"read past end", blkTIn, 15, 1024, blkSIOErr},
		{"read at end", blkTIn, 16, 512, blkSIOErr},
		{"huge sector", blkTIn, 1 << 60, 512, blkSIOErr},
		{"sector overflow", blkTOut, ^uint64(0), 512, blkSIOErr},
		{"write past end", blkTOut, 16, 512, blkSIOErr},
		{"unaligned length", blkTIn, 0, 100, blkSIOErr},
		{"discard", 11, 0, 0, blkSUnsupp},
		{"unknown", 0x1234, 0, 0, blkSUnsupp},
		{"last sector ok", blkTIn, 15, 512, blkSOK},
	}
	for _, c := range cases {
		if st, _, _ := e.do(c.typ, c.sector, make([]byte, c.n), c.n); st != c.want {
			t.Errorf("%s: status %d want %d", c.name, st, c.want)
		}
	}
	// Data buffer outside RAM is a request error, not a device error.
	hdr := e.alloc(16, 16)
	e.mem.w32(hdr, blkTIn)
	sa := e.alloc(1, 1)
	head := e.add(0, buf{hdr, 16, false}, buf{0x1000, 512, true}, buf{sa, 1, true})
	e.notify(0)
	if us := e.used(0); len(us) != 1 || us[0].id != head || e.mem.bytes(sa, 1)[0] != blkSIOErr {
		t.Fatalf("outside-RAM data: used %+v status %d", us, e.mem.bytes(sa, 1)[0])
	}
	// Backend failure.
	md.FailReads, md.FailWrites = true, true
	if st, _, _ := e.do(blkTIn, 0, nil, 512); st != blkSIOErr {
		t.Fatalf("backend error: status %d", st)
	}
	md.FailReads, md.FailWrites = false, false
	if e.needsReset() {
		t.Fatalf("request errors must not need reset: %v", e.m.Err())
	}
	// Read-only device: write fails, data untouched.
	md2 := testsupport.NewDisk(make([]byte, 4096))
	ro := newBlkEnv(t, md2, true, 8)
	if st, _, _ := ro.do(blkTOut, 0, pattern(512, 1), 512); st != blkSIOErr {
		t.Fatalf("RO write status %d", st)
	}
	if !bytes.Equal(md2.Bytes(), make([]byte, 4096)) {
		t.Fatalf("RO device wrote data")
	}
}

// TestBlockSplitDescriptors checks message framing independence (spec
// 2.6.4): header split across descriptors, status sharing the data buffer.
func TestBlockSplitDescriptors(t *testing.T) {
	md := testsupport.NewDisk(pattern(8*512, 3))
	e := newBlkEnv(t, md, false, 8)
	hdr := e.alloc(16, 16)
	e.mem.w32(hdr, blkTIn)
	e.mem.w64(hdr+8, 2)
	data := e.alloc(1024+1, 8)
	head := e.add(0, buf{hdr, 5, false}, buf{hdr + 5, 11, false}, buf{data, 300, true}, buf{data + 300, 1024 + 1 - 300, true})
	e.notify(0)
	us := e.used(0)
	if len(us) != 1 || us[0].id != head || us[0].len != 1025 {
		t.Fatalf("used %+v", us)
	}
	if !bytes.Equal(e.mem.bytes(data, 1024), md.Bytes()[1024:2048]) || e.mem.bytes(data+1024, 1)[0] != blkSOK {
		t.Fatalf("split read mismatch")
	}
}

func TestBlockIndirect(t *testing.T) {
	md := testsupport.NewDisk(make([]byte, 8*512))
	e := newBlkEnv(t, md, false, 8)
	if e.feats&FeatureIndirectDesc == 0 {
		t.Fatalf("indirect not offered")
	}
	hdr := e.alloc(16, 16)
	e.mem.w32(hdr, blkTOut)
	e.mem.w64(hdr+8, 1)
	data := e.alloc(1024, 8)
	copy(e.mem.bytes(data, 1024), pattern(1024, 9))
	sa := e.alloc(1, 1)
	// Indirect table of 4 entries, chained 0 -> 2 -> 1 -> 3.
	tbl := e.alloc(64, 16)
	e.mem.desc(tbl, 0, hdr, 16, descFNext, 2)
	e.mem.desc(tbl, 2, data, 512, descFNext, 1)
	e.mem.desc(tbl, 1, data+512, 512, descFNext, 3)
	e.mem.desc(tbl, 3, sa, 1, descFWrite, 0)
	head := e.add(0, buf{tbl, 64, false})
	e.mem.w16(e.q[0].desc+16*uint64(head)+12, descFIndirect)
	e.notify(0)
	if us := e.used(0); len(us) != 1 || us[0].id != head || e.mem.bytes(sa, 1)[0] != blkSOK {
		t.Fatalf("indirect write: used %+v, reset %v (%v)", us, e.needsReset(), e.m.Err())
	}
	if !bytes.Equal(md.Bytes()[512:1536], pattern(1024, 9)) {
		t.Fatalf("indirect data mismatch")
	}
}

// TestWorstCaseNotifyBounded builds the most expensive notification a
// guest can cause with a 256-entry queue: every avail slot names the same
// head, whose chain has 255 direct descriptors and a full 256-entry
// indirect table, all carrying data. It checks the work stays within the
// documented bound and completes.
func TestWorstCaseNotifyBounded(t *testing.T) {
	md := testsupport.NewDisk(make([]byte, 1<<20))
	e := newBlkEnv(t, md, false, 256)
	q := e.q[0]
	hdr := e.alloc(16, 16)
	e.mem.w32(hdr, blkTOut)
	data := e.alloc(512, 8)
	st := e.alloc(1, 1)
	tbl := e.alloc(256*16, 16)
	e.mem.desc(q.desc, 0, hdr, 16, descFNext, 1)
	for i := 1; i < 255; i++ {
		e.mem.desc(q.desc, i, data, 512, descFNext, uint16(i+1))
	}
	e.mem.desc(q.desc, 255, tbl, 256*16, descFIndirect, 0)
	for i := range 255 {
		e.mem.desc(tbl, i, data, 512, descFNext, uint16(i+1))
	}
	e.mem.desc(tbl, 255, st, 1, descFWrite, 0)
	for i := range 256 {
		e.mem.w16(q.avail+4+2*uint64(i), 0)
	}
	e.mem.w16(q.avail+2, 256)
	calls := e.mem.reads + e.mem.writes
	e.notify(0)
	calls = e.mem.reads + e.mem.writes - calls
	if e.needsReset() || e.mem.r16(q.used+2) != 256 || e.mem.bytes(st, 1)[0] != blkSOK {
		t.Fatalf("worst case not processed: %v", e.m.Err())
	}
	// Per chain: 512 descriptor reads, 509 segment reads of data + header,
	// status and used ring writes.
	if calls > 256*1100+10 {
		t.Fatalf("%d memory calls", calls)
	}
	t.Logf("%d memory calls", calls)
}
