package testsupport

import (
	"errors"

	"ftvm/vm"
)

// ErrInjected is the error of a read or write a Disk was told to fail.
var ErrInjected = errors.New("testsupport: injected disk error")

// Disk is package vm's in-memory disk with the faults and the counts that
// tests need.
type Disk struct {
	*vm.MemDisk
	// FailReads and FailWrites make reads and writes that end past
	// FailFrom (0: all of them) fail with Err (nil: ErrInjected), reading
	// or writing nothing.
	FailReads, FailWrites bool
	FailFrom              int64
	Err                   error
	// What succeeded: bytes read and written, flushes.
	BytesRead, BytesWritten int64
	Flushes                 int
}

// NewDisk makes a disk of the bytes of b (which it keeps).
func NewDisk(b []byte) *Disk { return &Disk{MemDisk: vm.NewMemDisk(b)} }

func (d *Disk) fails(on bool, p []byte, off int64) bool {
	return on && off+int64(len(p)) > d.FailFrom
}

func (d *Disk) err() error {
	if d.Err != nil {
		return d.Err
	}
	return ErrInjected
}

// ReadAt implements vm.Disk.
func (d *Disk) ReadAt(p []byte, off int64) (int, error) {
	if d.fails(d.FailReads, p, off) {
		return 0, d.err()
	}
	n, err := d.MemDisk.ReadAt(p, off)
	d.BytesRead += int64(n)
	return n, err
}

// WriteAt implements vm.Disk.
func (d *Disk) WriteAt(p []byte, off int64) (int, error) {
	if d.fails(d.FailWrites, p, off) {
		return 0, d.err()
	}
	n, err := d.MemDisk.WriteAt(p, off)
	d.BytesWritten += int64(n)
	return n, err
}

// Flush implements vm.Disk.
func (d *Disk) Flush() error {
	d.Flushes++
	return nil
}
