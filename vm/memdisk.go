package vm

import (
	"fmt"
	"io"
)

// MemDisk is a disk image held in memory: a restored snapshot's disk, a
// replay's copy of the image it started from, tests.
//
// Its ends follow a disk file's (host.Disk, an *os.File), so that a guest
// sees the same disk on either: a read that reaches the end returns what
// is there with io.EOF (a read of whole bytes up to the end returns nil),
// a read at or past the end returns 0 and io.EOF, and a negative offset is
// an error. Unlike a file, a disk never grows: a write that does not fit
// writes nothing and fails (io.ErrShortWrite).
type MemDisk struct{ b []byte }

var _ Disk = (*MemDisk)(nil)

// NewMemDisk makes a disk of the bytes of b (which it keeps).
func NewMemDisk(b []byte) *MemDisk { return &MemDisk{b} }

// Bytes returns the disk's contents (not a copy).
func (d *MemDisk) Bytes() []byte { return d.b }

// ReadAt implements Disk.
func (d *MemDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("disk: read at negative offset %d", off)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if off >= int64(len(d.b)) {
		return 0, io.EOF
	}
	n := copy(p, d.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt implements Disk.
func (d *MemDisk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(d.b)) || int64(len(p)) > int64(len(d.b))-off {
		return 0, fmt.Errorf("disk: write of %d bytes at %d past the end of a %d-byte disk: %w", len(p), off, len(d.b), io.ErrShortWrite)
	}
	return copy(d.b[off:], p), nil
}

// Flush implements Disk: memory needs no flush.
func (d *MemDisk) Flush() error { return nil }

// Size implements Disk.
func (d *MemDisk) Size() int64 { return int64(len(d.b)) }
