package machine

import (
	"bytes"
	"encoding/json"
	"testing"

	"ftvm/internal/testsupport"
	"ftvm/snapshot"
)

// fuzzSnapshot is a small machine's snapshot (bare kernel header, disk,
// NIC), the starting point of FuzzRestore.
func fuzzSnapshot(tb testing.TB) []snapshot.Section {
	tb.Helper()
	m, err := New(Config{MemoryMiB: 16, Kernel: fakeKernel(), Disk: testsupport.NewDisk(make([]byte, 8192)), Net: true,
		MAC: [6]byte{0x52, 0x54, 0, 0, 0, 1}})
	if err != nil {
		tb.Fatal(err)
	}
	var b bytes.Buffer
	if err := m.Save(&b); err != nil {
		tb.Fatal(err)
	}
	secs, err := snapshot.Read(&b)
	if err != nil {
		tb.Fatal(err)
	}
	return secs
}

// FuzzRestore replaces one section of a valid snapshot with the input
// (checksummed, so that it reaches the machine's validation) and restores
// it. A snapshot is untrusted input: whatever it says, Restore refuses it
// with an error or builds a machine that runs, digests, saves, and
// restores again to the same digest, all without panicking.
func FuzzRestore(f *testing.F) {
	base := fuzzSnapshot(f)
	for i, s := range base {
		f.Add(uint8(i), s.Data)
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		secs := append([]snapshot.Section(nil), base...)
		name := secs[int(which)%len(secs)].Name
		if name == "machine" {
			// Memory sizes are checked, and large ones cost the
			// fuzzer time (the Go heap clears recycled memory).
			var b struct{ MemoryMiB int }
			if json.Unmarshal(data, &b) == nil && b.MemoryMiB > 64 {
				return
			}
		}
		secs[int(which)%len(secs)] = snapshot.Section{Name: name, Data: data}
		var enc bytes.Buffer
		if err := snapshot.Write(&enc, secs); err != nil {
			return
		}
		m, err := Restore(bytes.NewReader(enc.Bytes()), RestoreOptions{})
		if err != nil {
			return
		}
		m.Run(m.Instret() + 20000)
		d := m.Digest()
		var again bytes.Buffer
		if err := m.Save(&again); err != nil {
			t.Fatalf("a restored machine cannot be saved: %v", err)
		}
		m2, err := Restore(bytes.NewReader(again.Bytes()), RestoreOptions{})
		if err != nil {
			t.Fatalf("a machine's own snapshot is refused: %v", err)
		}
		if m2.Digest().Sum != d.Sum {
			t.Fatalf("a machine restored from its own snapshot differs: %v vs %v", m2.Digest().Parts, d.Parts)
		}
	})
}
