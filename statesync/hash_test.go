package statesync

import (
	"crypto/sha256"
	"math/rand/v2"
	"slices"
	"testing"

	"ftvm/vm"
)

func TestBitmap(t *testing.T) {
	a, b := NewBitmap(130), NewBitmap(70)
	for _, i := range []int{0, 5, 64, 129} {
		a.Set(i)
	}
	for _, i := range []int{5, 6, 69} {
		b.Set(i)
	}
	if got, want := Union(nil, a, b).Indices(nil), []int{0, 5, 6, 64, 69, 129}; !slices.Equal(got, want) {
		t.Errorf("union %v, want %v", got, want)
	}
	if got, want := Union(nil, b, a).Indices(nil), []int{0, 5, 6, 64, 69, 129}; !slices.Equal(got, want) {
		t.Errorf("union the other way %v, want %v", got, want)
	}
	if got, want := Diff(nil, a, b).Indices(nil), []int{0, 64, 129}; !slices.Equal(got, want) {
		t.Errorf("a - b %v, want %v", got, want)
	}
	if got, want := Diff(nil, b, a).Indices(nil), []int{6, 69}; !slices.Equal(got, want) {
		t.Errorf("b - a %v, want %v", got, want)
	}
	if a.Count() != 4 || !a.Has(129) || a.Has(130) || a.Has(-1) || a.Has(1000) {
		t.Error("Count or Has wrong")
	}
	if !a.within(130) || a.within(129) || !b.within(70) || !b.within(1000) || b.within(69) {
		t.Error("within wrong")
	}
	// dst is reused when large enough.
	dst := make(Bitmap, 0, 8)
	if u := Union(dst, a, b); &u[0] != &dst[:1][0] {
		t.Error("Union did not reuse dst")
	}
}

// TestHash hashes the pages of a machine that ran the program (changed
// pages, zero pages, code) and of a disk, serially and on several
// workers, in a shuffled order, and requires the SHA-256 of each page as
// read, in the order asked.
func TestHash(t *testing.T) {
	m := newScribbler(t, nil)
	run(t, m, 3e6)
	pages := make([]int, m.Pages())
	for i := range pages {
		pages[i] = i
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(pages), func(i, j int) { pages[i], pages[j] = pages[j], pages[i] })
	want := make([]Sum, len(pages))
	buf := make([]byte, m.PageSize())
	nonzero := 0
	for k, p := range pages {
		m.ReadPage(p, buf)
		want[k] = sha256.Sum256(buf)
		if !isZero(buf) {
			nonzero++
		}
	}
	t.Logf("%d pages, %d not zero", len(pages), nonzero)
	if nonzero < 400 {
		t.Fatalf("only %d pages not zero: the program did not run", nonzero)
	}
	for _, w := range []int{1, 2, 3, 8} {
		got, err := NewHasher(w).Hash(m, pages, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%d workers: hashes differ from SHA-256 of each page in order", w)
		}
	}
	// An unreadable page is an error, whichever worker meets it.
	bad := append(slices.Clone(pages[:500]), m.Pages(), 3)
	if _, err := NewHasher(4).Hash(m, bad, nil); err == nil {
		t.Error("hashing a page past the end succeeded")
	}

	// A disk as chunks: the last chunk is short and hashed zero-padded.
	img := make([]byte, 3*DefaultChunkSize+4096)
	for i := range img {
		img[i] = byte(i * 7)
	}
	dc := DiskChunks{Disk: vm.NewMemDisk(img), ChunkSize: DefaultChunkSize}
	if dc.Pages() != 4 {
		t.Fatalf("%d chunks, want 4", dc.Pages())
	}
	got, err := NewHasher(2).Hash(dc, []int{3, 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	last := make([]byte, DefaultChunkSize)
	copy(last, img[3*DefaultChunkSize:])
	if got[0] != sha256.Sum256(last) || got[1] != sha256.Sum256(img[:DefaultChunkSize]) {
		t.Error("disk chunk hashes wrong")
	}
}
