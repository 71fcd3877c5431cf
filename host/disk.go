package host

import (
	"fmt"
	"os"

	"ftvm/vm"
)

// Disk is a raw disk image file, the virtio-blk backend.
type Disk struct {
	f    *os.File
	size int64
}

// OpenDisk opens a raw image. Its size must be a whole number of 512-byte
// sectors.
func OpenDisk(path string, readOnly bool) (*Disk, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("disk: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("disk %s: not a regular file", path)
	}
	if st.Size() == 0 || st.Size()%512 != 0 {
		f.Close()
		return nil, fmt.Errorf("disk %s: size %d is not a positive multiple of 512 bytes", path, st.Size())
	}
	return &Disk{f: f, size: st.Size()}, nil
}

func (d *Disk) ReadAt(p []byte, off int64) (int, error)  { return d.f.ReadAt(p, off) }
func (d *Disk) WriteAt(p []byte, off int64) (int, error) { return d.f.WriteAt(p, off) }
func (d *Disk) Flush() error                             { return d.f.Sync() }
func (d *Disk) Size() int64                              { return d.size }
func (d *Disk) Close() error                             { return d.f.Close() }

// MemDisk is a disk image held in memory (package vm's): replays and
// tests use it so the file they started from is never modified.
type MemDisk = vm.MemDisk

// LoadDisk reads a raw image into memory.
func LoadDisk(path string) (*MemDisk, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	if len(b) == 0 || len(b)%512 != 0 {
		return nil, fmt.Errorf("disk %s: size %d is not a positive multiple of 512 bytes", path, len(b))
	}
	return vm.NewMemDisk(b), nil
}
