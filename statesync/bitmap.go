package statesync

import "math/bits"

// Bitmap is a set of page (or disk chunk) indices: bit i%64 of word i/64
// is index i, the layout of vm.DirtyLog's bitmaps.
type Bitmap []uint64

// NewBitmap returns an empty bitmap for indices 0 to n-1.
func NewBitmap(n int) Bitmap { return make(Bitmap, (n+63)/64) }

// Set adds index i, which must be within the bitmap.
func (b Bitmap) Set(i int) { b[i/64] |= 1 << (i % 64) }

// Has reports whether index i is in the set (false outside the bitmap).
func (b Bitmap) Has(i int) bool {
	return i >= 0 && i/64 < len(b) && b[i/64]&(1<<(i%64)) != 0
}

// Count returns the number of indices in the set.
func (b Bitmap) Count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// Indices appends the set's indices to dst, ascending.
func (b Bitmap) Indices(dst []int) []int {
	for wi, w := range b {
		for w != 0 {
			dst = append(dst, wi*64+bits.TrailingZeros64(w))
			w &= w - 1
		}
	}
	return dst
}

// Union returns a ∪ b in dst (reused when large enough). The result is as
// long as the longer of the two.
func Union(dst, a, b Bitmap) Bitmap {
	if len(a) < len(b) {
		a, b = b, a
	}
	dst = resize(dst, len(a))
	for i := range a {
		w := a[i]
		if i < len(b) {
			w |= b[i]
		}
		dst[i] = w
	}
	return dst
}

// Diff returns a \ b (the indices of a not in b) in dst (reused when large
// enough). The result is as long as a.
func Diff(dst, a, b Bitmap) Bitmap {
	dst = resize(dst, len(a))
	for i := range a {
		w := a[i]
		if i < len(b) {
			w &^= b[i]
		}
		dst[i] = w
	}
	return dst
}

func resize(b Bitmap, n int) Bitmap {
	if cap(b) < n {
		return make(Bitmap, n)
	}
	return b[:n]
}

// within reports whether the bitmap has no index at n or beyond.
func (b Bitmap) within(n int) bool {
	if len(b) > (n+63)/64 {
		for _, w := range b[(n+63)/64:] {
			if w != 0 {
				return false
			}
		}
		b = b[:(n+63)/64]
	}
	if n%64 != 0 && len(b) == (n+63)/64 {
		return b[len(b)-1]>>(n%64) == 0
	}
	return true
}
