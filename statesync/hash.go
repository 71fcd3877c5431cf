package statesync

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"ftvm/vm"
)

// Sum is the SHA-256 of a page. It is the hash the machine's digest keeps
// per page, so a page's Sum does not depend on who computed it.
type Sum [32]byte

// PageReader is what pages are hashed and sent from: an engine's RAM
// (every vm.Migratable is one) or a disk seen as chunks (DiskChunks).
// ReadPage must allow concurrent calls while nothing writes the pages:
// the hasher reads from several goroutines.
type PageReader interface {
	PageSize() int
	Pages() int
	ReadPage(i int, p []byte) error
}

// PageWriter is what pages are applied to: a live replica's RAM (every
// vm.Syncable is one) or a disk seen as chunks.
type PageWriter interface {
	PageReader
	WritePage(i int, p []byte) error
}

// hashBatch is how many consecutive pages a hashing worker claims at a
// time: enough to make the claim's cost negligible, few enough to keep
// the workers evenly loaded near the end.
const hashBatch = 32

// Hasher computes page hashes on up to Workers goroutines per call.
type Hasher struct {
	workers int
	zero    sync.Map // page size -> Sum of an all-zero page
}

// NewHasher returns a hasher using workers goroutines (<= 0: as many as
// the Go runtime runs in parallel, GOMAXPROCS). NewHasher(1) hashes on
// the caller's goroutine.
func NewHasher(workers int) *Hasher {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	return &Hasher{workers: workers}
}

// Workers is the number of goroutines a call may use.
func (h *Hasher) Workers() int { return h.workers }

// Hash returns, in dst (reused when large enough), the Sum of each page of
// src listed in pages: dst[k] is the hash of page pages[k], whatever the
// number of workers. The pages must not change during the call (an
// engine's, between Run calls). An error reading a page is returned for
// the first such page in the list.
func (h *Hasher) Hash(src PageReader, pages []int, dst []Sum) ([]Sum, error) {
	n := len(pages)
	if cap(dst) < n {
		dst = make([]Sum, n)
	}
	dst = dst[:n]
	ps := src.PageSize()
	if ps <= 0 {
		return nil, fmt.Errorf("statesync: page size %d", ps)
	}
	zero := h.zeroSum(ps)
	workers := min(h.workers, (n+hashBatch-1)/hashBatch)
	if workers <= 1 {
		buf := make([]byte, ps)
		for k, p := range pages {
			if err := hashPage(src, p, buf, &dst[k], zero); err != nil {
				return nil, err
			}
		}
		return dst, nil
	}
	var (
		next   atomic.Int64
		wg     sync.WaitGroup
		mu     sync.Mutex
		errAt  = n
		errVal error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, ps)
			for {
				start := int(next.Add(hashBatch)) - hashBatch
				if start >= n {
					return
				}
				for k := start; k < min(start+hashBatch, n); k++ {
					if err := hashPage(src, pages[k], buf, &dst[k], zero); err != nil {
						mu.Lock()
						if k < errAt {
							errAt, errVal = k, err
						}
						mu.Unlock()
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if errVal != nil {
		return nil, errVal
	}
	return dst, nil
}

func hashPage(src PageReader, p int, buf []byte, out *Sum, zero Sum) error {
	if err := src.ReadPage(p, buf); err != nil {
		return fmt.Errorf("statesync: reading page %d: %w", p, err)
	}
	// Most of a guest's memory is zero, and comparing is much faster than
	// hashing.
	if isZero(buf) {
		*out = zero
		return nil
	}
	*out = sha256.Sum256(buf)
	return nil
}

func (h *Hasher) zeroSum(ps int) Sum {
	if s, ok := h.zero.Load(ps); ok {
		return s.(Sum)
	}
	s := Sum(sha256.Sum256(make([]byte, ps)))
	h.zero.Store(ps, s)
	return s
}

var zeros [64 << 10]byte

func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// DefaultChunkSize is the unit in which disks are compared and sent.
const DefaultChunkSize = 64 << 10

// DiskChunks presents a disk as pages of ChunkSize bytes (the last one
// zero-padded past the end of the disk when reading and cut there when
// writing), so that a disk is hashed, compared and repaired like RAM. The
// hasher reads chunks in parallel: the disk's ReadAt must allow it, as
// io.ReaderAt's contract says (a file's does, and an in-memory disk's).
type DiskChunks struct {
	Disk      vm.Disk
	ChunkSize int
}

// PageSize implements PageReader.
func (d DiskChunks) PageSize() int { return d.ChunkSize }

// Pages implements PageReader: the number of chunks.
func (d DiskChunks) Pages() int {
	return int((d.Disk.Size() + int64(d.ChunkSize) - 1) / int64(d.ChunkSize))
}

// ReadPage implements PageReader.
func (d DiskChunks) ReadPage(i int, p []byte) error {
	off, n, err := d.chunk(i, p)
	if err != nil {
		return err
	}
	if k, err := d.Disk.ReadAt(p[:n], off); k < n {
		return fmt.Errorf("statesync: disk chunk %d: %w", i, err)
	}
	clear(p[n:])
	return nil
}

// WritePage implements PageWriter.
func (d DiskChunks) WritePage(i int, p []byte) error {
	off, n, err := d.chunk(i, p)
	if err != nil {
		return err
	}
	if _, err := d.Disk.WriteAt(p[:n], off); err != nil {
		return fmt.Errorf("statesync: disk chunk %d: %w", i, err)
	}
	return nil
}

// chunk returns the offset of chunk i and how many of its bytes lie on
// the disk.
func (d DiskChunks) chunk(i int, p []byte) (int64, int, error) {
	if i < 0 || i >= d.Pages() || len(p) != d.ChunkSize {
		return 0, 0, fmt.Errorf("statesync: disk chunk %d with %d bytes: the disk has %d chunks of %d bytes", i, len(p), d.Pages(), d.ChunkSize)
	}
	off := int64(i) * int64(d.ChunkSize)
	return off, int(min(int64(d.ChunkSize), d.Disk.Size()-off)), nil
}
