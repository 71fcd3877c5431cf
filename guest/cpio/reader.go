package cpio

import (
	"fmt"
	"io"
	"strconv"
)

// Reader reads a newc archive entry by entry. It exists so tests (and
// tools) can check what an archive holds without an external cpio binary.
type Reader struct {
	r   io.Reader
	off int64
}

// NewReader returns a Reader reading an archive from r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Next returns the next entry and its data. It returns io.EOF after the
// trailer entry.
func (r *Reader) Next() (*Header, []byte, error) {
	var raw [headerSize]byte
	if err := r.read(raw[:]); err != nil {
		return nil, nil, err
	}
	if string(raw[:6]) != magic {
		return nil, nil, fmt.Errorf("cpio: bad magic %q at offset %d", raw[:6], r.off-headerSize)
	}
	var f [13]uint32
	for i := range f {
		v, err := strconv.ParseUint(string(raw[6+8*i:14+8*i]), 16, 32)
		if err != nil {
			return nil, nil, fmt.Errorf("cpio: bad header field %d: %v", i, err)
		}
		f[i] = uint32(v)
	}
	name := make([]byte, f[11])
	if err := r.read(name); err != nil {
		return nil, nil, err
	}
	if len(name) == 0 || name[len(name)-1] != 0 {
		return nil, nil, fmt.Errorf("cpio: name not NUL-terminated")
	}
	if err := r.skipPad(); err != nil {
		return nil, nil, err
	}
	h := &Header{Name: string(name[:len(name)-1]), Ino: f[0], Mode: f[1],
		Nlink: f[4], Size: f[6], RdevMaj: f[9], RdevMin: f[10]}
	if h.Name == Trailer {
		return nil, nil, io.EOF
	}
	data := make([]byte, h.Size)
	if err := r.read(data); err != nil {
		return nil, nil, err
	}
	if h.Mode&typeMask == TypeSymlink {
		h.Linkname = string(data)
	}
	return h, data, r.skipPad()
}

func (r *Reader) read(p []byte) error {
	n, err := io.ReadFull(r.r, p)
	r.off += int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (r *Reader) skipPad() error {
	var pad [3]byte
	return r.read(pad[:(4-r.off%4)%4])
}
