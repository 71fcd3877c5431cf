package statesync

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"ftvm/vm"
)

// TestRepair: two replicas ran the program to the same point (the last
// sync, whose page hashes a witness keeps), then on; a bit flips in one of
// them, in a page neither wrote since. The three hash sets name the faulty
// replica, whichever it is, by majority; the page copied from the other
// makes the replicas identical again. Without the witness the primary is
// assumed right, and the report says so. A flip in a page written since
// the sync has no majority either.
func TestRepair(t *testing.T) {
	h := NewHasher(0)
	for _, c := range []struct {
		name    string
		faulty  Party
		witness bool
		dirty   bool // the flipped page was written since the sync
	}{
		{"backup, with a witness", Backup, true, false},
		{"primary, with a witness", Primary, true, false},
		{"backup, no witness", Backup, false, false},
		{"primary, no witness", Primary, false, false},
		{"primary, in a page written since the sync", Primary, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, b, lp, lb := identical(t, 1e6, false)
			witness, err := HashPages(h, p.m, nil) // at the last sync
			if err != nil {
				t.Fatal(err)
			}
			run(t, p.m, 1.5e6)
			run(t, b.m, 1.5e6)
			since := Union(nil, lp.Collect(nil), lb.Collect(nil))
			page := 0 // code: never written by the program
			if c.dirty {
				page = since.Indices(nil)[7]
			}
			bad, good := b.m, p.m
			if c.faulty == Primary {
				bad, good = p.m, b.m
			}
			if err := bad.InjectBitFlip(page, 40, 6); err != nil {
				t.Fatal(err)
			}
			hp, err := HashPages(h, p.m, nil)
			if err != nil {
				t.Fatal(err)
			}
			hb, err := HashPages(h, b.m, nil)
			if err != nil {
				t.Fatal(err)
			}
			var w *Hashes
			if c.witness {
				ws := witness.Without(since)
				w = &ws
			}
			r, err := Compare(hp, hb, w)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(r)
			wantFaulty, majority := c.faulty, c.witness && !c.dirty
			if !majority {
				wantFaulty = Backup // the primary is assumed right
			}
			if len(r.Findings) != 1 || r.Findings[0] != (Finding{Page: page, Faulty: wantFaulty, Majority: majority}) {
				t.Fatalf("findings %+v, want page %d, %v faulty, majority %v", r.Findings, page, wantFaulty, majority)
			}
			if !majority && !strings.Contains(r.String(), "the primary is assumed right") {
				t.Errorf("the report does not say the primary was assumed right: %s", r)
			}
			if majority && !strings.Contains(r.String(), "the witness agrees with the "+(1-c.faulty).String()) {
				t.Errorf("the report does not say who the witness agrees with: %s", r)
			}

			// Repair: the page from the replica taken to be right.
			from, to := vm.Syncable(p.m), vm.Syncable(b.m)
			if wantFaulty == Primary {
				from, to = b.m, p.m
			}
			var msg bytes.Buffer
			if _, err := EncodePages(&msg, testKey, 1, from, r.Faulty(wantFaulty)); err != nil {
				t.Fatal(err)
			}
			written, err := ApplyPages(to, testKey, 1, msg.Bytes())
			if err != nil || !slices.Equal(written, []int{page}) {
				t.Fatalf("repair wrote %v: %v", written, err)
			}
			if p.m.Digest().Sum != b.m.Digest().Sum {
				t.Fatal("after the repair the replicas differ")
			}
			if !majority {
				// Identical, but when the primary was the faulty one both
				// now hold its corrupted page, which the witness's hash of
				// the last sync shows.
				hs, _ := HashPages(h, b.m, []int{page})
				if matches := hs.Sums[0] == mustFind(t, witness, page); matches != (c.faulty == Backup && !c.dirty) {
					t.Errorf("the backup's page matches the last sync's: %v", matches)
				}
				return
			}
			// The faulty replica was repaired from the good one, which
			// was not touched: both run on as the good one would have
			// (the flip was in the program's code).
			n := p.m.Instret() + 5e5
			run(t, good, n)
			run(t, bad, n)
			if good.Digest().Sum != bad.Digest().Sum {
				t.Fatal("after the repair the replicas ran to different states")
			}
		})
	}
}

func mustFind(t *testing.T, hs Hashes, p int) Sum {
	t.Helper()
	s, ok := hs.find(p)
	if !ok {
		t.Fatalf("no hash of page %d", p)
	}
	return s
}

// TestApplyPagesRefusals: a repair message torn, forged, with trailing
// bytes, of another sequence or carrying a state writes nothing.
func TestApplyPagesRefusals(t *testing.T) {
	p, b, _, _ := identical(t, 1e5, false)
	run(t, p.m, 2e5)
	pages := differing(t, p.m, b.m)
	var msg bytes.Buffer
	if _, err := EncodePages(&msg, testKey, 4, p.m, pages); err != nil {
		t.Fatal(err)
	}
	var withState bytes.Buffer
	enc, _ := NewEncoder(&withState, testKey, 4, p.m.PageSize())
	enc.Pages(p.m, pages)
	enc.State([]byte("x"))
	enc.End(0, [32]byte{})
	before := b.m.Digest().Sum
	for _, c := range []struct {
		name string
		key  []byte
		seq  uint64
		msg  []byte
	}{
		{"torn", testKey, 4, msg.Bytes()[:msg.Len()-1]},
		{"another key", []byte("k"), 4, msg.Bytes()},
		{"another sequence", testKey, 5, msg.Bytes()},
		{"trailing bytes", testKey, 4, append(slices.Clone(msg.Bytes()), 0)},
		{"a state", testKey, 4, withState.Bytes()},
	} {
		if _, err := ApplyPages(b.m, c.key, c.seq, c.msg); err == nil {
			t.Errorf("%s: applied", c.name)
		}
		if b.m.Digest().Sum != before {
			t.Fatalf("%s: the replica changed", c.name)
		}
	}
	if _, err := ApplyPages(b.m, testKey, 4, msg.Bytes()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(differing(t, p.m, b.m), nil) {
		t.Error("the pages were not all applied")
	}
}

func TestHashesEncoding(t *testing.T) {
	hs := Hashes{Pages: []int{1, 5, 4095}, Sums: []Sum{{1}, {2}, {3}}}
	b := AppendHashes(nil, hs)
	got, err := DecodeHashes(b, 4096)
	if err != nil || !slices.Equal(got.Pages, hs.Pages) || !slices.Equal(got.Sums, hs.Sums) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range [][]byte{b[:len(b)-1], append(slices.Clone(b), 0), AppendHashes(nil, Hashes{Pages: []int{5, 1}, Sums: []Sum{{}, {}}})} {
		if _, err := DecodeHashes(bad, 4096); err == nil {
			t.Errorf("decoded %x", bad)
		}
	}
	if _, err := DecodeHashes(b, 4095); err == nil {
		t.Error("a page beyond the limit decoded")
	}
}
