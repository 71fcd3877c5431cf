package host

import (
	"fmt"
	"io"
	"io/fs"
	"os"
)

// MaxImage bounds an image file (kernel, initramfs, program, device
// tree): none can be larger than the largest machine's memory.
const MaxImage = 16 << 30

// ReadImage reads an image file. It must be a regular file of at most
// MaxImage bytes: a device, a pipe or a directory is refused at once
// (reading /dev/zero until it ends would never end, and would take all of
// the host's memory on the way).
func ReadImage(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %s, not a regular file", path, fileKind(st.Mode()))
	}
	if st.Size() > MaxImage {
		return nil, fmt.Errorf("%s: %d bytes, larger than any machine's memory (%d MiB)", path, st.Size(), MaxImage>>20)
	}
	b := make([]byte, st.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeNamedPipe != 0:
		return "a pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "something else"
}
