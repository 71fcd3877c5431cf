package statesync

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"slices"
	"sync"
	"testing"

	"ftvm/machine"
)

// fuzzGeo is the replica the fuzzed decoder checks checkpoints against.
var fuzzGeo = Geometry{PageSize: 4096, Pages: 64, DiskSize: 8192}

// seedCheckpoint encodes a checkpoint for fuzzGeo: some pages (one all
// zero), a state in two records, disk writes.
func seedCheckpoint(seq uint64, key []byte) []byte {
	var buf bytes.Buffer
	enc, _ := NewEncoder(&buf, key, seq, fuzzGeo.PageSize)
	page := make([]byte, fuzzGeo.PageSize)
	for i := range page {
		page[i] = byte(i * 31)
	}
	enc.DiskWrite(512, []byte("a disk write"))
	enc.Page(3, page)
	enc.Page(0, make([]byte, fuzzGeo.PageSize))
	enc.State([]byte("engine state, "))
	enc.Page(63, page)
	enc.State([]byte("in two records"))
	enc.DiskWrite(8192-5, []byte("tail!"))
	enc.End(12345, [32]byte{1, 2, 3})
	return buf.Bytes()
}

// FuzzDecoder feeds arbitrary bytes, in pieces of a fuzzed size, to a
// checkpoint decoder. It must not panic, must allocate in proportion to
// its input (not to lengths the input announces), and may hand over only
// checkpoints that fit the geometry, which re-encode to the bytes they
// were decoded from (only the seeds carry a valid MAC).
func FuzzDecoder(f *testing.F) {
	one := seedCheckpoint(1, testKey)
	f.Add(one, uint16(0))
	f.Add(one, uint16(7))
	f.Add(append(slices.Clone(one), seedCheckpoint(2, testKey)...), uint16(1000))
	f.Add(seedCheckpoint(1, nil), uint16(3))
	f.Add(one[:100], uint16(1))
	// A header, then records announcing more than they carry.
	huge := append(slices.Clone(one[:headerSize]), recState, 0, 0, 0x10, 0)
	f.Add(huge, uint16(2))
	f.Add(append(slices.Clone(one[:headerSize]), recDisk, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0), uint16(2))
	f.Fuzz(func(t *testing.T, data []byte, piece uint16) {
		for _, key := range [][]byte{testKey, nil} {
			dec, err := NewDecoder(key, fuzzGeo, Limits{MaxState: 1 << 20, MaxDisk: 1 << 20, MaxWrites: 64})
			if err != nil {
				t.Fatal(err)
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			before := ms.TotalAlloc
			rest, consumed := data, 0
			for len(rest) > 0 {
				n := min(len(rest), int(piece)%4096+1)
				k, c, err := dec.Feed(rest[:n])
				if err != nil {
					break
				}
				if c != nil {
					checkDecoded(t, c, key, data[consumed:consumed+int(c.Size)])
					consumed += int(c.Size)
				}
				rest = rest[k:]
			}
			runtime.ReadMemStats(&ms)
			// A pending record may be allocated whole (at most 1 MiB of
			// state, grown at most twice) before its bytes arrive.
			if got, bound := ms.TotalAlloc-before, uint64(16*len(data)+3<<20); got > bound {
				t.Fatalf("%d bytes allocated for %d bytes of input", got, len(data))
			}
		}
	})
}

func checkDecoded(t *testing.T, c *Checkpoint, key, from []byte) {
	t.Helper()
	if len(c.Pages) != len(c.Data) || len(c.Pages) > fuzzGeo.Pages {
		t.Fatalf("%d pages, %d contents", len(c.Pages), len(c.Data))
	}
	seen := NewBitmap(fuzzGeo.Pages)
	for k, p := range c.Pages {
		if p < 0 || p >= fuzzGeo.Pages || seen.Has(p) || (c.Data[k] != nil && len(c.Data[k]) != fuzzGeo.PageSize) {
			t.Fatalf("page %d (contents of %d bytes) accepted", p, len(c.Data[k]))
		}
		seen.Set(p)
	}
	for _, w := range c.Writes {
		if w.Off < 0 || w.Off+int64(len(w.Data)) > fuzzGeo.DiskSize || len(w.Data) == 0 {
			t.Fatalf("disk write of %d bytes at %d accepted", len(w.Data), w.Off)
		}
	}
	if int64(len(from)) != c.Size {
		t.Fatalf("a checkpoint of %d bytes decoded from %d", c.Size, len(from))
	}
	// Encoded again (records in another order, the state in one record),
	// it decodes to the same checkpoint.
	var buf bytes.Buffer
	enc, _ := NewEncoder(&buf, key, c.Seq, fuzzGeo.PageSize)
	for k, p := range c.Pages {
		d := c.Data[k]
		if d == nil {
			d = make([]byte, fuzzGeo.PageSize)
		}
		enc.Page(p, d)
	}
	enc.State(c.State)
	for _, w := range c.Writes {
		enc.DiskWrite(w.Off, w.Data)
	}
	if _, err := enc.End(c.Instret, c.Digest); err != nil {
		t.Fatal(err)
	}
	dec, _ := NewDecoder(key, fuzzGeo, Limits{})
	_, again, err := dec.Feed(buf.Bytes())
	if err != nil || again == nil {
		t.Fatalf("the re-encoded checkpoint does not decode: %v", err)
	}
	again.Size = c.Size
	if !sameCheckpoint(again, c) {
		t.Fatal("the re-encoded checkpoint decodes differently")
	}
}

var fuzzMachine struct {
	once sync.Once
	m    *machine.Machine
}

// FuzzSyncReceive hands arbitrary messages (a fuzzed sequence of them)
// to either side of a sync on a real machine that ran the program. It
// must not panic, and nothing may change the machine: without the key no
// checkpoint is applied.
func FuzzSyncReceive(f *testing.F) {
	var seeds [][]byte
	{
		// Genuine messages of a primary, to seed the backup side.
		p := &side{}
		p.m = newScribbler(f, nil)
		run(f, p.m, 1e5)
		sp, _ := NewSync(SyncConfig{Role: Primary, ID: 1, Engine: p.m, Key: []byte("fuzz")})
		dirty := NewBitmap(p.m.Pages())
		dirty.Set(256)
		dirty.Set(300)
		out, _ := sp.Start(dirty, nil)
		seeds = append(seeds, out...)
		hashes := binary.LittleEndian.AppendUint32([]byte{msgHashes, 1, 0, 0, 0, 0, 0, 0, 0}, 0)
		hashes = append(hashes, make([]byte, 64)...)
		seeds = append(seeds, hashes)
	}
	frame := func(msgs ...[]byte) []byte {
		var b []byte
		for _, m := range msgs {
			b = binary.LittleEndian.AppendUint32(b, uint32(len(m)))
			b = append(b, m...)
		}
		return b
	}
	f.Add(byte(1), frame(seeds[0]))
	f.Add(byte(0), frame(seeds[0], seeds[1]))
	f.Add(byte(1), frame(seeds[0], append([]byte{msgCkpt, 1, 0, 0, 0, 0, 0, 0, 0}, seedCheckpoint(1, nil)...)))
	f.Add(byte(0), frame(seeds[0], append([]byte{msgDone, 1, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 72)...)))
	f.Fuzz(func(t *testing.T, role byte, data []byte) {
		fuzzMachine.once.Do(func() {
			fuzzMachine.m = newScribbler(t, nil)
			run(t, fuzzMachine.m, 1e5)
		})
		m := fuzzMachine.m
		before := m.Digest().Sum
		s, err := NewSync(SyncConfig{Role: Party(role % 2), ID: 1, Engine: m, Key: []byte("fuzz"), Hasher: NewHasher(2)})
		if err != nil {
			t.Fatal(err)
		}
		dirty := NewBitmap(m.Pages())
		dirty.Set(257)
		if _, err := s.Start(dirty, nil); err != nil {
			t.Fatal(err)
		}
		for len(data) >= 4 {
			n := int(binary.LittleEndian.Uint32(data))
			data = data[4:]
			if n > len(data) {
				n = len(data)
			}
			if _, err := s.Receive(data[:n]); err != nil {
				break
			}
			data = data[n:]
		}
		if m.Digest().Sum != before {
			t.Fatal("fuzzed messages changed the machine")
		}
	})
}

// FuzzDecodeHashes: arbitrary bytes decode to a valid set or an error.
func FuzzDecodeHashes(f *testing.F) {
	f.Add(AppendHashes(nil, Hashes{Pages: []int{1, 2}, Sums: []Sum{{1}, {2}}}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		hs, err := DecodeHashes(b, 1000)
		if err != nil {
			return
		}
		if err := hs.check("fuzzed"); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(AppendHashes(nil, hs), b) {
			t.Fatal("decoded hashes re-encode differently")
		}
	})
}

// FuzzMendReceive: arbitrary messages to either side of a mend end it
// with an error or leave it waiting, never panic, and change nothing of
// the replica (pages are applied only from a checkpoint whose MAC, under
// a key the fuzzer does not have, checks).
func FuzzMendReceive(f *testing.F) {
	hdr := func(t byte) []byte { return []byte{t, 1, 0, 0, 0, 0, 0, 0, 0} }
	f.Add(byte(0), append(binary.LittleEndian.AppendUint32(hdr(msgMendHashes), 0), make([]byte, 64)...))
	f.Add(byte(1), binary.LittleEndian.AppendUint32(hdr(msgMendWant), 0))
	f.Add(byte(1), append(hdr(msgMendPages), seedCheckpoint(1, nil)...))
	f.Add(byte(0), append(hdr(msgMendDone), make([]byte, 40)...))
	f.Fuzz(func(t *testing.T, role byte, data []byte) {
		fuzzMachine.once.Do(func() {
			fuzzMachine.m = newScribbler(t, nil)
			run(t, fuzzMachine.m, 1e5)
		})
		m := fuzzMachine.m
		before := m.Digest().Sum
		s, err := NewMend(MendConfig{Role: Party(role % 2), ID: 1, Engine: m, Key: []byte("fuzz"), Hasher: NewHasher(2)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Start(); err != nil {
			t.Fatal(err)
		}
		for len(data) >= 4 {
			n := min(int(binary.LittleEndian.Uint32(data)), len(data)-4)
			data = data[4:]
			if _, err := s.Receive(data[:n]); err != nil {
				break
			}
			data = data[n:]
			if _, need := s.NeedWitness(); need {
				if _, err := s.Decide(nil); err != nil {
					break
				}
			}
		}
		if m.Digest().Sum != before {
			t.Fatal("fuzzed messages changed the machine")
		}
	})
}
