package machinelog

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"ftvm/machine"
)

// TestHeaderHashesDiskAsStream: a log's header hashes the disk image
// without reading it whole into memory (a large image would not fit), and
// the hash is the image's.
func TestHeaderHashesDiskAsStream(t *testing.T) {
	const size = 128 << 20
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil { // sparse: no disk space
		t.Fatal(err)
	}
	f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	h, err := Header(machine.Config{MemoryMiB: 16}, path)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("hashing a %d MiB disk allocated %d KiB", size>>20, alloc>>10)
	if alloc > size/4 {
		t.Errorf("hashing a %d MiB disk allocated %d MiB", size>>20, alloc>>20)
	}
	d := sha256.New()
	zero := make([]byte, 1<<20)
	for range size >> 20 {
		d.Write(zero)
	}
	im := h.Images[len(h.Images)-1]
	if im.Role != "disk" || im.Size != size || string(im.SHA256[:]) != string(d.Sum(nil)) {
		t.Errorf("disk image in the header: %+v", im)
	}
}
