package vm

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestMemDiskEnds: a MemDisk answers reads as the disk file it stands for
// does (the same bytes, and io.EOF in the same cases), and refuses writes
// that would grow it, changing nothing.
func TestMemDiskEnds(t *testing.T) {
	img := make([]byte, 1024)
	for i := range img {
		img[i] = byte(i * 7)
	}
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := NewMemDisk(append([]byte(nil), img...))
	for _, c := range []struct{ off, n int64 }{
		{0, 512}, {512, 512}, {0, 1024}, {1000, 24}, {1000, 100}, {1023, 2}, {1024, 1}, {1024, 0}, {5000, 10}, {0, 2000}, {-1, 10},
	} {
		pf, pm := make([]byte, c.n), make([]byte, c.n)
		nf, errf := f.ReadAt(pf, c.off)
		nm, errm := d.ReadAt(pm, c.off)
		if nf != nm || !bytes.Equal(pf, pm) || errors.Is(errf, io.EOF) != errors.Is(errm, io.EOF) || (errf == nil) != (errm == nil) {
			t.Errorf("read of %d at %d: file (%d, %v), memory (%d, %v)", c.n, c.off, nf, errf, nm, errm)
		}
	}
	for _, c := range []struct {
		off, n int64
		ok     bool
	}{{0, 1024, true}, {512, 512, true}, {1024, 0, true}, {1000, 25, false}, {1024, 1, false}, {-1, 1, false}, {1 << 40, 1, false}} {
		before := append([]byte(nil), d.Bytes()...)
		n, err := d.WriteAt(bytes.Repeat([]byte{0xee}, int(c.n)), c.off)
		switch {
		case c.ok && (err != nil || n != int(c.n)):
			t.Errorf("write of %d at %d: (%d, %v)", c.n, c.off, n, err)
		case !c.ok && (err == nil || !errors.Is(err, io.ErrShortWrite) && c.off >= 0 || n != 0 || !bytes.Equal(d.Bytes(), before)):
			t.Errorf("write of %d at %d past the end: (%d, %v), disk changed %v", c.n, c.off, n, err, !bytes.Equal(d.Bytes(), before))
		}
		if d.Size() != 1024 {
			t.Fatalf("size %d after a write of %d at %d", d.Size(), c.n, c.off)
		}
	}
}
