package statesync

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"ftvm/machine"
	"ftvm/vm"
)

var testKey = []byte("the replicas' shared secret")

// side is one replica in a sync test.
type side struct {
	m     *machine.Machine
	disk  *vm.MemDisk // nil: none
	dirty Bitmap      // RAM pages written since the replicas were identical
	dd    Bitmap      // disk chunks written since
}

func (s *side) vmDisk() vm.Disk {
	if s.disk == nil {
		return nil
	}
	return s.disk
}

// syncPair runs a sync between primary p and backup b, carrying the
// messages in an order drawn from seed: each direction in order, the two
// directions interleaved at random, and the backup started only after a
// random number of deliveries (its first messages may find it not yet
// started). It returns both sides' stats and errors.
func syncPair(t *testing.T, p, b *side, id uint64, seed uint64) (ps, bs SyncStats, perr, berr error) {
	t.Helper()
	mk := func(role Party, s *side) *Sync {
		sy, err := NewSync(SyncConfig{Role: role, ID: id, Engine: s.m, Disk: s.vmDisk(), Key: testKey, Hasher: NewHasher(3)})
		if err != nil {
			t.Fatal(err)
		}
		return sy
	}
	sp, sb := mk(Primary, p), mk(Backup, b)
	rng := rand.New(rand.NewPCG(seed, 7))
	var toB, toP [][]byte
	out, err := sp.Start(p.dirty, p.dd)
	if err != nil {
		t.Fatalf("primary start: %v", err)
	}
	toB = append(toB, out...)
	startB := rng.IntN(3)
	bStarted := false
	for steps := 0; ; steps++ {
		if !bStarted && steps >= startB {
			out, err := sb.Start(b.dirty, b.dd)
			if err != nil {
				t.Fatalf("backup start: %v", err)
			}
			toP = append(toP, out...)
			bStarted = true
		}
		canB, canP := len(toB) > 0 && berr == nil, len(toP) > 0 && perr == nil
		if !canB && !canP {
			if bStarted {
				break
			}
			continue
		}
		if canB && (!canP || rng.IntN(2) == 0) {
			berr = deliver(sb, &toB, &toP)
		} else {
			perr = deliver(sp, &toP, &toB)
		}
	}
	if perr == nil && !sp.Done() || berr == nil && !sb.Done() {
		t.Fatalf("the sync stopped without completing or failing (primary done %v, backup done %v)", sp.Done(), sb.Done())
	}
	return sp.Stats(), sb.Stats(), perr, berr
}

// deliver hands the first message of in to s and queues its answer on out.
func deliver(s *Sync, in, out *[][]byte) error {
	msgs, err := s.Receive((*in)[0])
	*in = (*in)[1:]
	*out = append(*out, msgs...)
	return err
}

// identical runs two machines of the program to the same count, starts
// dirty logs there (they are identical: the last sync), and returns the
// logs.
func identical(t *testing.T, at uint64, withDisk bool) (p, b *side, lp, lb vm.DirtyLog) {
	t.Helper()
	p, b = &side{}, &side{}
	for _, s := range []*side{p, b} {
		if withDisk {
			img := make([]byte, 8*DefaultChunkSize+3*512)
			for i := range img {
				img[i] = byte(i / 512)
			}
			s.disk = vm.NewMemDisk(img)
		}
		s.m = newScribbler(t, s.vmDisk())
		run(t, s.m, at)
	}
	if p.m.Digest().Sum != b.m.Digest().Sum {
		t.Fatal("two runs of the program to the same count differ")
	}
	return p, b, p.m.TrackDirty(), b.m.TrackDirty()
}

// afterSync checks that the backup is now the primary: same digest, same
// disk, and the same run from there.
func afterSync(t *testing.T, p, b *side) {
	t.Helper()
	if dp, db := p.m.Digest(), b.m.Digest(); dp.Sum != db.Sum || p.m.Instret() != b.m.Instret() {
		t.Fatalf("after the sync: backup at %d with %v, primary at %d with %v", b.m.Instret(), db.Parts, p.m.Instret(), dp.Parts)
	}
	if p.disk != nil && !bytes.Equal(p.disk.Bytes(), b.disk.Bytes()) {
		t.Fatal("after the sync the disks differ")
	}
	n := p.m.Instret() + 1e6
	run(t, p.m, n)
	run(t, b.m, n)
	if p.m.Digest().Sum != b.m.Digest().Sum {
		t.Fatal("after the sync, the replicas ran the same instructions to different states")
	}
}

// TestSyncFlippedBit: two machines ran the program to the same point and
// one page of the backup has a bit flipped (in a page the program wrote
// since they were last identical, so it is in the dirty union). The sync
// must send exactly that page, and leave the replicas identical.
func TestSyncFlippedBit(t *testing.T) {
	for seed := range uint64(3) {
		p, b, lp, lb := identical(t, 2e6, false)
		run(t, p.m, 3e6)
		run(t, b.m, 3e6)
		p.dirty, b.dirty = lp.Collect(nil), lb.Collect(nil)
		dirty := p.dirty.Indices(nil)
		flip := dirty[len(dirty)/2+int(seed)]
		if err := b.m.InjectBitFlip(flip, 1000, int(seed)); err != nil {
			t.Fatal(err)
		}
		truth := differing(t, p.m, b.m)
		if !slices.Equal(truth, []int{flip}) {
			t.Fatalf("pages differing before the sync: %v, want [%d]", truth, flip)
		}
		ps, bs, perr, berr := syncPair(t, p, b, 1+seed, seed)
		if perr != nil || berr != nil {
			t.Fatalf("sync: primary %v, backup %v", perr, berr)
		}
		t.Logf("union %d pages, %d identical; sent %v; state %d bytes; checkpoint %d bytes; messages %d bytes out, %d in (primary)",
			ps.Pages, ps.SamePages, ps.SentPages, ps.StateBytes, ps.CheckpointBytes, ps.BytesOut, ps.BytesIn)
		if !slices.Equal(ps.SentPages, truth) || !slices.Equal(bs.SentPages, truth) {
			t.Errorf("sent %v, received %v; the pages that differed: %v", ps.SentPages, bs.SentPages, truth)
		}
		if ps.Pages != len(dirty) || ps.SamePages != ps.Pages-1 {
			t.Errorf("union of %d pages with %d identical; the dirty set has %d", ps.Pages, ps.SamePages, len(dirty))
		}
		afterSync(t, p, b)
	}
}

// TestSyncDiverged: the backup executed further than the primary, and the
// two disks were written differently (a chunk on each side only, a chunk
// the same on both). The sync sends exactly the pages and chunks that
// differ, and the state; the backup then continues as the primary.
func TestSyncDiverged(t *testing.T) {
	p, b, lp, lb := identical(t, 2e6, true)
	run(t, p.m, 3e6)
	run(t, b.m, 3e6+123457)
	p.dirty, b.dirty = lp.Collect(nil), lb.Collect(nil)
	nc := DiskChunks{Disk: p.disk, ChunkSize: DefaultChunkSize}.Pages()
	p.dd, b.dd = NewBitmap(nc), NewBitmap(nc)
	write := func(s *side, off int64, data string) {
		s.disk.WriteAt([]byte(data), off)
		for c := off / DefaultChunkSize; c*DefaultChunkSize < off+int64(len(data)); c++ {
			s.dd.Set(int(c))
		}
	}
	write(p, 5, "only the primary wrote this")
	write(b, 2*DefaultChunkSize+9, "only the backup wrote this")
	write(p, 4*DefaultChunkSize-3, "both wrote this, across a chunk boundary")
	write(b, 4*DefaultChunkSize-3, "both wrote this, across a chunk boundary")
	write(b, 8*DefaultChunkSize+100, "the backup, in the last (short) chunk")
	truth := differing(t, p.m, b.m)
	truthChunks := differing(t, DiskChunks{p.disk, DefaultChunkSize}, DiskChunks{b.disk, DefaultChunkSize})
	if !slices.Equal(truthChunks, []int{0, 2, 8}) {
		t.Fatalf("chunks differing %v", truthChunks)
	}
	ps, bs, perr, berr := syncPair(t, p, b, 9, 42)
	if perr != nil || berr != nil {
		t.Fatalf("sync: primary %v, backup %v", perr, berr)
	}
	t.Logf("union %d pages (%d identical), %d chunks (%d identical); sent %d pages, chunks %v; checkpoint %d bytes",
		ps.Pages, ps.SamePages, ps.Chunks, ps.SameChunks, len(ps.SentPages), ps.SentChunks, ps.CheckpointBytes)
	if !slices.Equal(ps.SentPages, truth) || !slices.Equal(bs.SentPages, truth) {
		t.Errorf("sent %d pages, received %d; %d differed", len(ps.SentPages), len(bs.SentPages), len(truth))
	}
	if !slices.Equal(ps.SentChunks, truthChunks) || !slices.Equal(bs.SentChunks, truthChunks) {
		t.Errorf("sent chunks %v, received %v; differing %v", ps.SentChunks, bs.SentChunks, truthChunks)
	}
	// Compared: 0, 2, 3 and 4 (the write across their boundary, the same
	// on both sides) and 8.
	if ps.Chunks != 5 || ps.SameChunks != 2 {
		t.Errorf("%d chunks compared, %d identical; want 5 and 2", ps.Chunks, ps.SameChunks)
	}
	afterSync(t, p, b)
}

// TestSyncCleanPageFlip: a bit flipped outside both dirty sets is not
// compared (that is the point of the union); the digests then differ
// after the sync and both sides say so.
func TestSyncCleanPageFlip(t *testing.T) {
	p, b, lp, lb := identical(t, 2e6, false)
	run(t, p.m, 2.5e6)
	run(t, b.m, 2.5e6)
	p.dirty, b.dirty = lp.Collect(nil), lb.Collect(nil)
	union := Union(nil, p.dirty, b.dirty)
	clean := 0
	for union.Has(clean) {
		clean++
	}
	b.m.InjectBitFlip(clean, 8, 0)
	_, _, perr, berr := syncPair(t, p, b, 3, 1)
	if !errors.Is(berr, ErrDiverged) {
		t.Errorf("backup: %v, want ErrDiverged", berr)
	}
	if !errors.Is(perr, ErrDiverged) && !errors.Is(perr, ErrPeer) {
		t.Errorf("primary: %v, want ErrDiverged or the backup's error", perr)
	}
}

// TestSyncRefusals: messages of another sync, out of protocol, or
// malformed are refused with an error message for the peer, and the
// replica is left as it was.
func TestSyncRefusals(t *testing.T) {
	p, b, lp, lb := identical(t, 1e6, false)
	run(t, p.m, 1.2e6)
	run(t, b.m, 1.1e6)
	p.dirty, b.dirty = lp.Collect(nil), lb.Collect(nil)
	before := b.m.Digest().Sum
	mk := func(role Party, s *side, key []byte) *Sync {
		sy, err := NewSync(SyncConfig{Role: role, ID: 5, Engine: s.m, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		return sy
	}
	sp := mk(Primary, p, testKey)
	bitmap, _ := sp.Start(p.dirty, nil)
	withID := func(m []byte, id uint64) []byte {
		c := slices.Clone(m)
		c[1] = byte(id)
		return c
	}
	for _, c := range []struct {
		name string
		msgs [][]byte
	}{
		{"another sync's bitmap", [][]byte{withID(bitmap[0], 6)}},
		{"a short bitmap", [][]byte{bitmap[0][:len(bitmap[0])-1]}},
		{"two bitmaps", [][]byte{bitmap[0], bitmap[0]}},
		{"a done to a backup", [][]byte{append([]byte{msgDone, 5, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 72)...)}},
		{"a checkpoint before the hashes", [][]byte{append([]byte{msgCkpt, 5, 0, 0, 0, 0, 0, 0, 0}, "FTVMCKPT"...)}},
		{"an unknown message", [][]byte{{99, 5, 0, 0, 0, 0, 0, 0, 0}}},
		{"a tiny message", [][]byte{{1}}},
	} {
		sb := mk(Backup, b, testKey)
		var err error
		var out [][]byte
		for _, m := range c.msgs {
			if out, err = sb.Receive(m); err != nil {
				break
			}
		}
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want ErrProtocol", c.name, err)
		}
		if len(out) == 0 || out[len(out)-1][0] != msgError {
			t.Errorf("%s: no error message for the peer", c.name)
		}
		if b.m.Digest().Sum != before {
			t.Fatalf("%s: the backup changed", c.name)
		}
	}

	// A primary with another key: its checkpoint is refused.
	sp = mk(Primary, p, []byte("another key"))
	sb := mk(Backup, b, testKey)
	toB, _ := sp.Start(p.dirty, nil)
	toP, _ := sb.Start(b.dirty, nil)
	var berr error
	for len(toB)+len(toP) > 0 && berr == nil {
		if len(toP) > 0 {
			if err := deliver(sp, &toP, &toB); err != nil {
				t.Fatal(err)
			}
			continue
		}
		berr = deliver(sb, &toB, &toP)
	}
	if !errors.Is(berr, ErrBadCheckpoint) {
		t.Errorf("a checkpoint made with another key: %v, want ErrBadCheckpoint", berr)
	}
	if b.m.Digest().Sum != before {
		t.Fatal("the refused checkpoint changed the backup")
	}
}

// TestSyncSetsDenseAndSparse: the dirty sets travel as lists when they
// are sparse and as bitmaps when they are dense; either way the sync
// compares the same union and leaves the replicas identical.
func TestSyncSetsDenseAndSparse(t *testing.T) {
	for _, dense := range []bool{false, true} {
		p, b, lp, lb := identical(t, 1e5, true)
		run(t, p.m, 1.0002e5)
		run(t, b.m, 1.0001e5)
		p.dirty, b.dirty = lp.Collect(nil), lb.Collect(nil)
		if dense {
			for i := range p.m.Pages() / 2 {
				p.dirty.Set(i)
			}
		}
		sp, err := NewSync(SyncConfig{Role: Primary, ID: 3, Engine: p.m, Key: testKey})
		if err != nil {
			t.Fatal(err)
		}
		out, err := sp.Start(p.dirty, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("dense %v: %d pages dirty of %d", dense, p.dirty.Count(), p.m.Pages())
		if want := map[bool]byte{false: msgList, true: msgBitmap}[dense]; out[0][0] != want {
			t.Fatalf("dense %v: the sets went as message type %d", dense, out[0][0])
		}
		ps, _, perr, berr := syncPair(t, p, b, 4, 1)
		if perr != nil || berr != nil {
			t.Fatalf("dense %v: %v, %v", dense, perr, berr)
		}
		if want := Union(nil, p.dirty, b.dirty).Count(); ps.Pages != want {
			t.Fatalf("dense %v: %d pages compared, the union has %d", dense, ps.Pages, want)
		}
		afterSync(t, p, b)
	}
}
