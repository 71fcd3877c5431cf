package statesync

import (
	"bytes"
	"cmp"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"ftvm/internal/testsupport"
	"ftvm/machine"
	"ftvm/vm"
)

// primary is a Remus primary in a test: a machine, its disk, and a dirty
// log since the last checkpoint.
type primary struct {
	m    *machine.Machine
	disk *vm.MemDisk
	log  vm.DirtyLog
	seq  uint64
	rng  *rand.Rand
	// sectors bounds the size of a disk write (default 16 sectors).
	sectors int
}

// epoch runs the primary for n instructions, makes disk writes on the way
// (as a guest would, told to the encoder as they happen), pauses and
// completes the checkpoint: the pages written, the state, the digest
// (when withDigest).
func (p *primary) epoch(t *testing.T, n uint64, writes int, withDigest bool) (msg []byte, digest [32]byte) {
	t.Helper()
	p.seq++
	var buf bytes.Buffer
	enc, err := NewEncoder(&buf, testKey, p.seq, p.m.PageSize())
	if err != nil {
		t.Fatal(err)
	}
	end := p.m.Instret() + n
	for w := range writes {
		run(t, p.m, p.m.Instret()+n/uint64(writes+1))
		data := make([]byte, 512*(1+p.rng.IntN(cmp.Or(p.sectors, 16))))
		for i := range data {
			data[i] = byte(p.seq) + byte(w) + byte(i>>9)
		}
		off := int64(p.rng.IntN(int(p.disk.Size())/512-len(data)/512+1)) * 512
		if _, err := p.disk.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
		if err := enc.DiskWrite(off, data); err != nil {
			t.Fatal(err)
		}
	}
	run(t, p.m, end)
	if _, err := enc.Pages(p.m, Bitmap(p.log.Collect(nil)).Indices(nil)); err != nil {
		t.Fatal(err)
	}
	var st bytes.Buffer
	if err := p.m.SaveState(&st); err != nil {
		t.Fatal(err)
	}
	enc.State(st.Bytes())
	digest = p.m.Digest().Sum
	sent := digest
	if !withDigest {
		sent = [32]byte{}
	}
	if _, err := enc.End(p.m.Instret(), sent); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), digest
}

// remusPair is a primary and a backup built from the same program, the
// backup never running, with an applier.
func remusPair(t *testing.T) (*primary, *machine.Machine, *vm.MemDisk, *Applier, *[]Commit) {
	t.Helper()
	const diskSize = 128 << 10
	p := &primary{disk: vm.NewMemDisk(make([]byte, diskSize)), rng: rand.New(rand.NewPCG(3, 4))}
	p.m = newScribbler(t, p.disk)
	bdisk := vm.NewMemDisk(make([]byte, diskSize))
	b := newScribbler(t, bdisk)
	p.log = p.m.TrackDirty()
	var commits []Commit
	a, err := NewApplier(b, bdisk, ApplierOptions{Key: testKey, OnCommit: func(c Commit) { commits = append(commits, c) }})
	if err != nil {
		t.Fatal(err)
	}
	return p, b, bdisk, a, &commits
}

// committedPair is a remusPair whose backup has applied a first
// checkpoint, which it returns.
func committedPair(t *testing.T) (*primary, *machine.Machine, *vm.MemDisk, *Applier, []byte) {
	t.Helper()
	p, b, bdisk, a, _ := remusPair(t)
	first, _ := p.epoch(t, 50_000, 1, true)
	if _, err := a.Write(first); err != nil {
		t.Fatal(err)
	}
	return p, b, bdisk, a, first
}

// TestRemusCheckpoints applies a sequence of checkpoints of a running
// program to a backup that does not execute, each delivered in random
// pieces. Until a checkpoint's last byte the backup stays in the previous
// one's state, disk included (its disk writes are held back); at each
// commit it has the primary's digest and disk at that checkpoint. On
// failover it resumes from there and runs exactly as the primary does.
func TestRemusCheckpoints(t *testing.T) {
	p, b, bdisk, a, commits := remusPair(t)
	rng := rand.New(rand.NewPCG(5, 6))
	prevDigest, prevDisk := b.Digest().Sum, slices.Clone(bdisk.Bytes())
	for i := range 10 {
		msg, want := p.epoch(t, 150_000+uint64(rng.IntN(100_000)), rng.IntN(4), i%3 != 2)
		// Deliver in pieces; check the backup before the last one.
		for len(msg) > 0 {
			n := min(len(msg), 1+rng.IntN(3000))
			if n == len(msg) {
				if b.Digest().Sum != prevDigest || !bytes.Equal(bdisk.Bytes(), prevDisk) {
					t.Fatalf("checkpoint %d: the backup changed before the checkpoint was complete", p.seq)
				}
				if a.Pending() == 0 && len(msg) < 2000 {
					t.Fatalf("checkpoint %d: nothing pending before its last piece", p.seq)
				}
			}
			if _, err := a.Write(msg[:n]); err != nil {
				t.Fatalf("checkpoint %d: %v", p.seq, err)
			}
			msg = msg[n:]
		}
		if a.Committed() != p.seq || a.Pending() != 0 {
			t.Fatalf("checkpoint %d: committed %d, %d bytes pending", p.seq, a.Committed(), a.Pending())
		}
		if got := b.Digest().Sum; got != want || b.Instret() != p.m.Instret() {
			t.Fatalf("checkpoint %d: the backup is at %d with digest %x, the primary at %d with %x", p.seq, b.Instret(), got[:8], p.m.Instret(), want[:8])
		}
		if !bytes.Equal(bdisk.Bytes(), p.disk.Bytes()) {
			t.Fatalf("checkpoint %d: the disks differ", p.seq)
		}
		prevDigest, prevDisk = want, slices.Clone(bdisk.Bytes())
	}
	for _, c := range *commits {
		t.Logf("checkpoint %d at %d: %d pages (%d zero), state %d bytes, %d disk writes of %d bytes, %d bytes in all",
			c.Seq, c.Instret, c.Pages, c.ZeroPages, c.StateBytes, c.DiskWrites, c.DiskBytes, c.Bytes)
	}
	// Failover: the backup runs from the last checkpoint.
	n := p.m.Instret() + 2e6
	run(t, p.m, n)
	run(t, b, n)
	if p.m.Digest().Sum != b.Digest().Sum {
		t.Fatal("after failover the backup ran to another state than the primary")
	}
}

// TestRemusGuest: the same with the default guest booting (virtio devices,
// interrupts, the timer, Sv39), a checkpoint every 8 million instructions;
// after failover the backup boots on to power-off exactly as the primary
// does.
func TestRemusGuest(t *testing.T) {
	k, i := testsupport.DefaultGuest(t)
	var conP, conB bytes.Buffer
	build := func(con *bytes.Buffer, disk vm.Disk) *machine.Machine {
		m, err := machine.New(machine.Config{Kernel: k, Initrd: i, Cmdline: "console=ttyS0 ftvm.mode=poweroff",
			Net: true, Disk: disk, Outputs: machine.Outputs{Console: func(_ uint64, b []byte) { con.Write(b) }}})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	pdisk, bdisk := vm.NewMemDisk(make([]byte, 1<<20)), vm.NewMemDisk(make([]byte, 1<<20))
	p := &primary{m: build(&conP, pdisk), disk: pdisk, rng: rand.New(rand.NewPCG(1, 1))}
	b := build(&conB, bdisk)
	p.log = p.m.TrackDirty()
	var pages, bytesSent int
	a, err := NewApplier(b, bdisk, ApplierOptions{Key: testKey, OnCommit: func(c Commit) { pages += c.Pages; bytesSent += int(c.Bytes) }})
	if err != nil {
		t.Fatal(err)
	}
	for range 6 {
		msg, want := p.epoch(t, 8e6, 1, true)
		if _, err := a.Write(msg); err != nil {
			t.Fatal(err)
		}
		if b.Digest().Sum != want {
			t.Fatalf("checkpoint %d: digests differ", p.seq)
		}
	}
	t.Logf("%d checkpoints to instruction %d: %d pages, %d bytes", p.seq, p.m.Instret(), pages, bytesSent)
	mark := conP.Len()
	rp, rb := p.m.Run(3e9), b.Run(3e9)
	if rp != machine.StopPowerOff || rb != machine.StopPowerOff || p.m.Instret() != b.Instret() {
		t.Fatalf("primary stopped with %v at %d, the backup after failover with %v at %d", rp, p.m.Instret(), rb, b.Instret())
	}
	if conP.String()[mark:] != conB.String() || p.m.Digest().Sum != b.Digest().Sum {
		t.Errorf("after failover the backup's run differs (console %q vs %q)", conB.String(), conP.String()[mark:])
	}
}

// TestTornCheckpoint cuts a checkpoint at every byte: the backup applies
// nothing, stays in the previous checkpoint's state (disk included), and
// the next complete checkpoint is applied. Fed in two pieces cut at any
// byte, the decoder gives the same checkpoint.
func TestTornCheckpoint(t *testing.T) {
	p, b, bdisk, a, _ := committedPair(t)
	before, beforeDisk := b.Digest().Sum, slices.Clone(bdisk.Bytes())
	p.sectors = 2
	msg, want := p.epoch(t, 40, 1, true)
	t.Logf("a checkpoint of %d bytes", len(msg))
	for cut := range len(msg) {
		if _, err := a.Write(msg[:cut]); err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if a.Committed() != 1 || a.Pending() != int64(cut) {
			t.Fatalf("cut at %d: committed %d with %d bytes pending", cut, a.Committed(), a.Pending())
		}
		if b.Digest().Sum != before || !bytes.Equal(bdisk.Bytes(), beforeDisk) {
			t.Fatalf("cut at %d: the backup changed", cut)
		}
		a.Discard() // the link broke
	}
	if _, err := a.Write(msg); err != nil || a.Committed() != 2 || b.Digest().Sum != want {
		t.Fatalf("the whole checkpoint after the torn ones: %v, committed %d", err, a.Committed())
	}

	geo := Geometry{PageSize: b.PageSize(), Pages: b.Pages(), DiskSize: bdisk.Size()}
	dec, _ := NewDecoder(testKey, geo, Limits{})
	_, ref, err := dec.Feed(msg)
	if err != nil || ref == nil {
		t.Fatalf("whole: %v", err)
	}
	for cut := range len(msg) {
		n1, c1, err := dec.Feed(msg[:cut])
		if err != nil || c1 != nil || n1 != cut {
			t.Fatalf("cut at %d, first piece: took %d, %v", cut, n1, err)
		}
		n2, c2, err := dec.Feed(msg[cut:])
		if err != nil || c2 == nil || n2 != len(msg)-cut {
			t.Fatalf("cut at %d, second piece: took %d, %v", cut, n2, err)
		}
		if !sameCheckpoint(c2, ref) {
			t.Fatalf("cut at %d: another checkpoint decoded", cut)
		}
	}
}

func sameCheckpoint(a, b *Checkpoint) bool {
	if a.Seq != b.Seq || a.Instret != b.Instret || a.Digest != b.Digest || a.Size != b.Size ||
		!slices.Equal(a.Pages, b.Pages) || !bytes.Equal(a.State, b.State) || len(a.Writes) != len(b.Writes) {
		return false
	}
	for k := range a.Data {
		if !bytes.Equal(a.Data[k], b.Data[k]) {
			return false
		}
	}
	for k := range a.Writes {
		if a.Writes[k].Off != b.Writes[k].Off || !bytes.Equal(a.Writes[k].Data, b.Writes[k].Data) {
			return false
		}
	}
	return true
}

// TestForgedCheckpoint: a checkpoint made with another key, one with any
// bit flipped, one replayed or skipping ahead, one whose (authentic) state
// the engine refuses: none is applied, and the backup stays as it was.
func TestForgedCheckpoint(t *testing.T) {
	p, b, bdisk, a, first := committedPair(t)
	before, beforeDisk := b.Digest().Sum, slices.Clone(bdisk.Bytes())
	unchanged := func(what string) {
		t.Helper()
		if a.Committed() != 1 || b.Digest().Sum != before || !bytes.Equal(bdisk.Bytes(), beforeDisk) {
			t.Fatalf("%s: the backup changed (committed %d)", what, a.Committed())
		}
	}
	refused := func(what string, msg []byte, want string) {
		t.Helper()
		_, err := a.Write(msg)
		if !errors.Is(err, ErrBadCheckpoint) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want a refusal containing %q", what, err, want)
		}
		unchanged(what)
		a.Discard()
	}
	msg, want := p.epoch(t, 40, 1, true)

	// Another key.
	var other bytes.Buffer
	enc, _ := NewEncoder(&other, []byte("not the key"), 2, p.m.PageSize())
	enc.Pages(p.m, []int{0, 1, 300})
	enc.State([]byte("whatever"))
	enc.End(0, [32]byte{})
	refused("another key", other.Bytes(), "MAC mismatch")

	// Every bit flip: refused (a damaged field, or the MAC), or left
	// waiting for bytes that never come (a length made larger) and then
	// discarded; never applied.
	var nRefused, nWaiting int
	for i := range len(msg) {
		bad := slices.Clone(msg)
		bad[i] ^= 1 << (i % 8)
		_, err := a.Write(bad)
		switch {
		case errors.Is(err, ErrBadCheckpoint):
			nRefused++
		case err == nil && a.Committed() == 1:
			nWaiting++
		default:
			t.Fatalf("bit %d of byte %d flipped: %v, committed %d", i%8, i, err, a.Committed())
		}
		unchanged("a flipped bit")
		a.Discard()
	}
	t.Logf("%d bytes each with a bit flipped: %d refused, %d waiting for more (then discarded)", len(msg), nRefused, nWaiting)
	if nRefused < len(msg)*9/10 {
		t.Errorf("only %d of %d damaged checkpoints refused outright", nRefused, len(msg))
	}

	// Out of sequence: a skip ahead, a replay of the committed one.
	p.seq = 5
	skip, _ := p.epoch(t, 100, 0, true)
	refused("sequence number 6 after 1", skip, "sequence number 6, expected 2")
	refused("a replay of checkpoint 1", first, "sequence number 1, expected 2")

	// Authentic, with pages, but a state the engine refuses: nothing of it
	// is applied.
	var badState bytes.Buffer
	enc, _ = NewEncoder(&badState, testKey, 2, p.m.PageSize())
	enc.Pages(p.m, []int{256, 257, 300})
	enc.State([]byte("not a machine state"))
	enc.End(0, [32]byte{})
	refused("an invalid state", badState.Bytes(), "its state")

	// The genuine checkpoint still applies.
	if _, err := a.Write(msg); err != nil || b.Digest().Sum != want {
		t.Fatalf("the genuine checkpoint: %v", err)
	}
}
