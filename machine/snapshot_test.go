package machine

import (
	"io"
	"runtime"
	"testing"
)

// zeroDisk is a disk of size zero bytes that takes no memory.
type zeroDisk struct{ size int64 }

func (d zeroDisk) ReadAt(p []byte, off int64) (int, error) {
	n := int(max(0, min(int64(len(p)), d.size-off)))
	clear(p[:n])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (d zeroDisk) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }
func (d zeroDisk) Flush() error                             { return nil }
func (d zeroDisk) Size() int64                              { return d.size }

// TestSaveLargeDisk: a snapshot copies the disk as it is written, not
// through a copy of the whole disk in memory (a guest's 1 GiB disk used to
// cost 1 GiB of memory to snapshot, and a large one could kill the
// process).
func TestSaveLargeDisk(t *testing.T) {
	const size = 1 << 30
	m, err := New(Config{Kernel: fakeKernel(), Disk: zeroDisk{size}})
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var n countingWriter
	if err := m.Save(&n); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("a snapshot of %d bytes with a %d MiB disk allocated %d KiB", n, size>>20, alloc>>10)
	if n < size {
		t.Fatalf("the snapshot has %d bytes, less than the disk", n)
	}
	if alloc > size/4 {
		t.Errorf("saving allocated %d MiB for a %d MiB disk", alloc>>20, size>>20)
	}
}

// countingWriter counts what is written to it.
type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}
