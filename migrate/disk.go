package migrate

import (
	"sync"

	"ftvm/vm"
)

// Disk is a disk image as the machine's block device sees it (vm.Disk: a
// TrackedDisk is one too).
type Disk = vm.Disk

// TrackedDisk is a Disk that records which ChunkSize chunks have been
// written, so a state transfer can send again what the guest wrote while
// the transfer ran. Install it when the machine is built, between the
// machine and the disk file:
//
//	td := migrate.TrackWrites(file)
//	m, err := machine.New(machine.Config{..., Disk: td})
//
// and give the same td to NewSender. Tracking costs one bit per write
// request; with no transfer running the bits are simply never read. One
// transfer at a time may use a TrackedDisk.
type TrackedDisk struct {
	d Disk

	// mu guards dirty: the machine writes from its goroutine, and nothing
	// forbids a caller from running the sender in another.
	mu    sync.Mutex
	dirty []uint64 // bit c: chunk c written since the last collect
}

var _ Disk = (*TrackedDisk)(nil)

// TrackWrites wraps d. Its size must not change afterwards (as for any
// block backend).
func TrackWrites(d Disk) *TrackedDisk {
	n := chunks(d.Size())
	return &TrackedDisk{d: d, dirty: make([]uint64, (n+63)/64)}
}

func chunks(size int64) int { return int((size + ChunkSize - 1) / ChunkSize) }

// Unwrap returns the disk underneath.
func (t *TrackedDisk) Unwrap() Disk { return t.d }

// ReadAt implements Disk.
func (t *TrackedDisk) ReadAt(p []byte, off int64) (int, error) { return t.d.ReadAt(p, off) }

// WriteAt implements Disk. The chunks are marked even when the write
// fails, since part of it may have reached the disk.
func (t *TrackedDisk) WriteAt(p []byte, off int64) (int, error) {
	n, err := t.d.WriteAt(p, off)
	if len(p) > 0 && off >= 0 {
		t.mu.Lock()
		last := min((off+int64(len(p))-1)/ChunkSize, int64(len(t.dirty))*64-1)
		for c := off / ChunkSize; c <= last; c++ {
			t.dirty[c/64] |= 1 << (c % 64)
		}
		t.mu.Unlock()
	}
	return n, err
}

// Flush implements Disk.
func (t *TrackedDisk) Flush() error { return t.d.Flush() }

// Size implements Disk.
func (t *TrackedDisk) Size() int64 { return t.d.Size() }

// collect returns the chunks written since the previous collect (bit c of
// word c/64) and starts afresh.
func (t *TrackedDisk) collect(dst []uint64) []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	dst = append(dst[:0], t.dirty...)
	clear(t.dirty)
	return dst
}

func (t *TrackedDisk) clearChunk(c int) {
	t.mu.Lock()
	t.dirty[c/64] &^= 1 << (c % 64)
	t.mu.Unlock()
}
