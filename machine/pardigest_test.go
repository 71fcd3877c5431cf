package machine

import (
	"bytes"
	"testing"

	"ftvm/internal/testsupport"
)

// freshRAMDigest is the RAM part of the digest computed from the memory
// itself, every page hashed, without the page hashes the machine keeps or
// the set of pages it thinks were written.
func freshRAMDigest(m *Machine) [32]byte {
	f := &Machine{ram: m.ram, written: make([]uint64, len(m.written)), digestDirty: make([]uint64, len(m.digestDirty))}
	for i := range f.written {
		f.written[i] = ^uint64(0)
	}
	return f.ramDigest()
}

// TestParallelStateConsistent boots the default guest with two harts
// running in parallel and, at every Run boundary, checks what a replica
// brought to this machine's state (statesync: its pages, then LoadState)
// relies on:
//
//   - the RAM digest (kept up to date from the harts' dirty bitmaps) is the
//     digest of what RAM holds. A write a dirty bitmap missed leaves the
//     digest with a stale page hash: two replicas with the same memory
//     then have different digests, and a dirty log (a state transfer's, a
//     checkpoint's) misses the page;
//   - loading the machine's own state leaves its digest as it was: the
//     harts' interrupt lines are those the devices drive (LoadState drives
//     them from the devices' states).
func TestParallelStateConsistent(t *testing.T) {
	k, i := testsupport.DefaultGuest(t)
	var con bytes.Buffer
	m, err := New(Config{Kernel: k, Initrd: i, Cmdline: poweroffCmdline, Harts: 2, Parallel: true,
		Outputs: Outputs{Console: func(_ uint64, b []byte) { con.Write(b) }}})
	if err != nil {
		t.Fatal(err)
	}
	r, checks := StopLimit, 0
	for r == StopLimit && m.Instret() < 4e9 {
		r = m.Run(m.Instret() + 1<<21)
		checks++
		got := m.Digest().Parts[1]
		if got.Name != "ram" {
			t.Fatalf("digest part %q, want ram", got.Name)
		}
		if want := freshRAMDigest(m); got.Sum != want {
			t.Fatalf("at instruction %d (check %d) the RAM digest is %x, the memory's %x", m.Instret(), checks, got.Sum[:8], want[:8])
		}
		before := m.Digest()
		var st bytes.Buffer
		if err := m.SaveState(&st); err != nil {
			t.Fatal(err)
		}
		if err := m.LoadState(&st); err != nil {
			t.Fatal(err)
		}
		if after := m.Digest(); after.Sum != before.Sum {
			t.Fatalf("at instruction %d (check %d) loading the machine's own state changed its digest: %v, then %v", m.Instret(), checks, before.Parts, after.Parts)
		}
	}
	if r != StopPowerOff {
		t.Fatalf("stopped with %v after %d instructions; console:\n%s", r, m.Instret(), tail(con.String(), 3000))
	}
	t.Logf("%d checks up to power-off at %d instructions", checks, m.Instret())
}
