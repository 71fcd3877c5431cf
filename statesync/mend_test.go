package statesync

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// mendBoth runs a mend between p (primary) and b to its end, moving the
// messages in order, with the witness's hashes w (nil: none).
func mendBoth(t *testing.T, mp, mb *Mend, w *Hashes) error {
	t.Helper()
	toP, err := mb.Start()
	if err != nil {
		return err
	}
	var toB [][]byte
	if toB, err = mp.Start(); err != nil {
		return err
	}
	decided := false
	for range 1000 {
		if mp.Done() && mb.Done() {
			return nil
		}
		if len(toP) == 0 && len(toB) == 0 {
			if _, need := mp.NeedWitness(); need && !decided {
				decided = true
				if toB, err = mp.Decide(w); err != nil {
					return err
				}
				continue
			}
			t.Fatal("the mend stalls")
		}
		if len(toP) > 0 {
			out, err := mp.Receive(toP[0])
			toP = toP[1:]
			toB = append(toB, out...)
			if err != nil {
				return err
			}
			continue
		}
		out, err := mb.Receive(toB[0])
		toB = toB[1:]
		toP = append(toP, out...)
		if err != nil {
			return err
		}
	}
	t.Fatal("the mend does not end")
	return nil
}

// TestMend: a bit flipped in either replica, found by the step-wise mend
// over every page and repaired from the other, whichever the witness's
// hashes of the last common state name; without a witness the primary is
// assumed right; with State the backup takes the primary's processor and
// devices too.
func TestMend(t *testing.T) {
	h := NewHasher(0)
	for _, c := range []struct {
		name    string
		faulty  Party
		witness bool
	}{
		{"backup, with a witness", Backup, true},
		{"primary, with a witness", Primary, true},
		{"backup, no witness", Backup, false},
		{"primary, no witness", Primary, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, b, _, _ := identical(t, 1e6, false)
			witness, err := HashPages(h, p.m, nil)
			if err != nil {
				t.Fatal(err)
			}
			bad := b.m
			if c.faulty == Primary {
				bad = p.m
			}
			if err := bad.InjectBitFlip(0, 40, 6); err != nil {
				t.Fatal(err)
			}
			var w *Hashes
			if c.witness {
				w = &witness
			}
			mp, err := NewMend(MendConfig{Role: Primary, ID: 9, Engine: p.m, Key: testKey, Hasher: h, State: !c.witness})
			if err != nil {
				t.Fatal(err)
			}
			mb, err := NewMend(MendConfig{Role: Backup, ID: 9, Engine: b.m, Key: testKey, Hasher: h})
			if err != nil {
				t.Fatal(err)
			}
			if err := mendBoth(t, mp, mb, w); err != nil {
				t.Fatal(err)
			}
			if p.m.Digest().Sum != b.m.Digest().Sum {
				t.Fatal("the replicas differ after the mend")
			}
			r := mp.Stats().Report
			t.Log(r)
			want := c.faulty
			if !c.witness {
				want = Backup
			}
			if len(r.Findings) != 1 || r.Findings[0].Page != 0 || r.Findings[0].Faulty != want || r.Findings[0].Majority != c.witness {
				t.Fatalf("findings %+v", r.Findings)
			}
			if !c.witness && !strings.Contains(r.String(), "the primary is assumed right") {
				t.Fatalf("the report does not say the primary was assumed right: %s", r)
			}
			repaired := mb.Stats().Received
			if want == Primary {
				repaired = mp.Stats().Received
			}
			if !slices.Equal(repaired, []int{0}) {
				t.Fatalf("repaired %v", repaired)
			}
			hs, _ := HashPages(h, p.m, []int{0})
			if agrees := hs.Sums[0] == witness.Sums[0]; agrees != (c.witness || c.faulty == Backup) {
				t.Fatalf("page 0 matches the last common state: %v", agrees)
			}
		})
	}
}

// TestMendRefusals: a mend message of another mend, or from the wrong
// side, ends the mend with an error and changes nothing.
func TestMendRefusals(t *testing.T) {
	p, b, _, _ := identical(t, 1e5, false)
	mp, _ := NewMend(MendConfig{Role: Primary, ID: 1, Engine: p.m, Key: testKey})
	mb, _ := NewMend(MendConfig{Role: Backup, ID: 2, Engine: b.m, Key: testKey})
	msgs, err := mb.Start()
	if err != nil {
		t.Fatal(err)
	}
	mp.Start()
	if _, err := mp.Receive(msgs[0]); err == nil {
		t.Fatal("a message of another mend was taken")
	}
	mb2, _ := NewMend(MendConfig{Role: Backup, ID: 1, Engine: b.m, Key: testKey})
	mb2.Start()
	if _, err := mb2.Receive(msgs[0]); err == nil {
		t.Fatal("the backup took hashes")
	}
	before := b.m.Digest().Sum
	if b.m.Digest().Sum != before {
		t.Fatal("a refused mend changed the replica")
	}
}

// TestMendNamesDifferingState: when the digests still differ after the
// pages are repaired (here a register of the backup's hart, which no page
// comparison finds and a mend without State does not carry), the error
// names the part of the state that differs.
func TestMendNamesDifferingState(t *testing.T) {
	p, b, _, _ := identical(t, 1e5, false)
	b.m.Hart(0).X[5] ^= 1
	mp, _ := NewMend(MendConfig{Role: Primary, ID: 3, Engine: p.m, Key: testKey})
	mb, _ := NewMend(MendConfig{Role: Backup, ID: 3, Engine: b.m, Key: testKey})
	err := mendBoth(t, mp, mb, nil)
	if !errors.Is(err, ErrDiverged) || !strings.Contains(err.Error(), "(differing state: cpu)") {
		t.Fatalf("the mend ended with %v, want a divergence of the processor state", err)
	}
}
