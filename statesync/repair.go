package statesync

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Repair of a replica whose memory was corrupted (a memory error flipped
// a bit): a replica that compares itself with another by page hashes can
// find the bad page and copy it from the good replica instead of
// diverging. Two replicas' hashes say where they differ, not who is
// right; a third party that keeps the hashes of the replicas' last common
// state (PLOVER's witness, after a sync) decides by majority, for the
// pages neither replica has written since. Without one the primary is
// assumed right, and the report says so.

// Hashes is a set of page hashes: Sums[k] is the hash of page Pages[k],
// Pages ascending.
type Hashes struct {
	Pages []int
	Sums  []Sum
}

// HashPages hashes the pages of src listed in pages (nil: every page), in
// parallel on h.
func HashPages(h *Hasher, src PageReader, pages []int) (Hashes, error) {
	if pages == nil {
		pages = make([]int, src.Pages())
		for i := range pages {
			pages[i] = i
		}
	}
	sums, err := h.Hash(src, pages, nil)
	if err != nil {
		return Hashes{}, err
	}
	return Hashes{Pages: pages, Sums: sums}, nil
}

// Without returns the hashes of the pages not in b: a witness's hashes of
// the last sync say nothing of the pages either replica wrote since.
func (hs Hashes) Without(b Bitmap) Hashes {
	var out Hashes
	for k, p := range hs.Pages {
		if !b.Has(p) {
			out.Pages = append(out.Pages, p)
			out.Sums = append(out.Sums, hs.Sums[k])
		}
	}
	return out
}

// find returns the hash of page p, if the set has it.
func (hs Hashes) find(p int) (Sum, bool) {
	lo, hi := 0, len(hs.Pages)
	for lo < hi {
		m := (lo + hi) / 2
		if hs.Pages[m] < p {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(hs.Pages) && hs.Pages[lo] == p {
		return hs.Sums[lo], true
	}
	return Sum{}, false
}

func (hs Hashes) check(name string) error {
	if len(hs.Pages) != len(hs.Sums) {
		return fmt.Errorf("statesync: the %s's hashes: %d pages and %d sums", name, len(hs.Pages), len(hs.Sums))
	}
	for k := 1; k < len(hs.Pages); k++ {
		if hs.Pages[k] <= hs.Pages[k-1] {
			return fmt.Errorf("statesync: the %s's hashes are not in ascending page order", name)
		}
	}
	return nil
}

// Finding is a page whose hashes differ between the replicas.
type Finding struct {
	Page   int
	Faulty Party // the replica whose page is taken to be wrong
	// Majority: the witness's hash agrees with the other replica's. When
	// false, the primary was assumed right (no witness, the witness has no
	// hash for the page, or it agrees with neither).
	Majority bool
}

// Report is the outcome of a comparison.
type Report struct {
	Compared int       // pages compared
	Witness  bool      // a witness's hashes were given
	Findings []Finding // ascending by page
}

// Compare compares the primary's and the backup's hashes of the same
// pages and names, for each page where they differ, the replica taken to
// be faulty: the one the witness disagrees with when the witness (may be
// nil) has a hash for the page that agrees with the other, the backup
// otherwise (the primary is assumed right).
func Compare(primary, backup Hashes, witness *Hashes) (Report, error) {
	if err := primary.check("primary"); err != nil {
		return Report{}, err
	}
	if err := backup.check("backup"); err != nil {
		return Report{}, err
	}
	if len(primary.Pages) != len(backup.Pages) {
		return Report{}, fmt.Errorf("statesync: the primary hashed %d pages, the backup %d", len(primary.Pages), len(backup.Pages))
	}
	r := Report{Compared: len(primary.Pages), Witness: witness != nil}
	if witness != nil {
		if err := witness.check("witness"); err != nil {
			return Report{}, err
		}
	}
	for k, p := range primary.Pages {
		if backup.Pages[k] != p {
			return Report{}, fmt.Errorf("statesync: the primary and the backup hashed different pages (%d and %d)", p, backup.Pages[k])
		}
		a, b := primary.Sums[k], backup.Sums[k]
		if a == b {
			continue
		}
		f := Finding{Page: p, Faulty: Backup}
		if witness != nil {
			if w, ok := witness.find(p); ok {
				switch w {
				case a:
					f.Majority = true
				case b:
					f.Faulty, f.Majority = Primary, true
				}
			}
		}
		r.Findings = append(r.Findings, f)
	}
	return r, nil
}

// Faulty returns the pages on which party was found faulty, ascending:
// those to copy to it from the other replica.
func (r Report) Faulty(party Party) []int {
	var out []int
	for _, f := range r.Findings {
		if f.Faulty == party {
			out = append(out, f.Page)
		}
	}
	return out
}

// String says, page by page, which replica is taken to be faulty and why.
func (r Report) String() string {
	if len(r.Findings) == 0 {
		return fmt.Sprintf("%d pages compared, all identical", r.Compared)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d pages compared, %d differ:", r.Compared, len(r.Findings))
	for _, f := range r.Findings {
		why := "the witness agrees with the " + (1 - f.Faulty).String()
		if !f.Majority {
			why = "no majority, the primary is assumed right"
			if !r.Witness {
				why = "no witness, the primary is assumed right"
			}
		}
		fmt.Fprintf(&b, "\n  page %d: %v faulty (%s)", f.Page, f.Faulty, why)
	}
	return b.String()
}

// EncodePages writes the pages of src listed in pages to w as a checkpoint
// with no state, sequence number seq: what the good replica sends the
// faulty one.
func EncodePages(w io.Writer, key []byte, seq uint64, src PageReader, pages []int) (int64, error) {
	enc, err := NewEncoder(w, key, seq, src.PageSize())
	if err != nil {
		return 0, err
	}
	if _, err := enc.Pages(src, pages); err != nil {
		return 0, err
	}
	return enc.End(0, [32]byte{})
}

// ApplyPages checks msg, written by EncodePages with key and seq, against
// dst and writes its pages into dst. It returns the pages written. A
// message that is torn, damaged, forged, carries a state or disk writes,
// or is followed by anything, is refused with nothing written.
func ApplyPages(dst PageWriter, key []byte, seq uint64, msg []byte) ([]int, error) {
	dec, err := NewDecoder(key, Geometry{PageSize: dst.PageSize(), Pages: dst.Pages()}, Limits{MaxState: 1})
	if err != nil {
		return nil, err
	}
	dec.Expect(seq)
	n, c, err := dec.Feed(msg)
	switch {
	case err != nil:
		return nil, err
	case c == nil:
		return nil, fmt.Errorf("statesync: %w: the pages message is cut short (%d bytes)", ErrBadCheckpoint, len(msg))
	case n != len(msg):
		return nil, fmt.Errorf("statesync: %w: %d bytes after the pages message", ErrBadCheckpoint, len(msg)-n)
	case c.State != nil:
		return nil, fmt.Errorf("statesync: %w: a pages message with a state", ErrBadCheckpoint)
	}
	if err := c.Apply(dst, nil); err != nil {
		return nil, err
	}
	return c.Pages, nil
}

// AppendHashes encodes a set of hashes (for a witness to keep or send):
// count uint32, then per page index uint32 and sum [32].
func AppendHashes(b []byte, hs Hashes) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(hs.Pages)))
	for k, p := range hs.Pages {
		b = binary.LittleEndian.AppendUint32(b, uint32(p))
		b = append(b, hs.Sums[k][:]...)
	}
	return b
}

// DecodeHashes decodes what AppendHashes wrote, from an untrusted source:
// at most pages entries, page indices below pages and ascending.
func DecodeHashes(b []byte, pages int) (Hashes, error) {
	if len(b) < 4 {
		return Hashes{}, errors.New("statesync: hashes: truncated")
	}
	n := int(binary.LittleEndian.Uint32(b))
	b = b[4:]
	if n > pages || len(b) != n*36 {
		return Hashes{}, fmt.Errorf("statesync: hashes: %d entries in %d bytes (at most %d pages)", n, len(b), pages)
	}
	hs := Hashes{Pages: make([]int, n), Sums: make([]Sum, n)}
	r := bytes.NewReader(b)
	for k := range n {
		var idx [4]byte
		r.Read(idx[:])
		r.Read(hs.Sums[k][:])
		hs.Pages[k] = int(binary.LittleEndian.Uint32(idx[:]))
		if hs.Pages[k] >= pages || (k > 0 && hs.Pages[k] <= hs.Pages[k-1]) {
			return Hashes{}, fmt.Errorf("statesync: hashes: page %d out of order or beyond %d", hs.Pages[k], pages)
		}
	}
	return hs, nil
}
