package host

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadImage: a regular file is read whole; a device (that would never
// end), a pipe and a directory are refused at once.
func TestReadImage(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "Image")
	want := bytes.Repeat([]byte("kernel"), 1000)
	if err := os.WriteFile(p, want, 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadImage(p); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("regular file: %d bytes, %v", len(b), err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Keep a writer on the pipe so that opening it for reading returns.
	go func() {
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			time.Sleep(10 * time.Second)
			w.Close()
		}
	}()
	for _, bad := range []string{"/dev/zero", dir, fifo} {
		done := make(chan error, 1)
		go func() {
			_, err := ReadImage(bad)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("%s: %v, want a refusal", bad, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: ReadImage has not returned after 5 s", bad)
		}
	}
	if _, err := ReadImage(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file was read")
	}
}
