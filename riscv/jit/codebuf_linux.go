//go:build linux && amd64

package jit

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// codeBuf is the executable memory of one translator: a memfd mapped twice,
// writable at rw and executable at rx, so no page is ever both writable and
// executable. Code is appended at pos and reclaimed only all at once
// (reset), when the buffer is full or the guest's code is flushed.
type codeBuf struct {
	rw, rx []byte
	pos    int
}

func newCodeBuf(size int) (*codeBuf, error) {
	fd, err := unix.MemfdCreate("ftvm-jit", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("jit: memfd_create: %w", err)
	}
	defer unix.Close(fd) // the mappings keep the memory
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return nil, fmt.Errorf("jit: ftruncate: %w", err)
	}
	rw, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("jit: mmap: %w", err)
	}
	rx, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_SHARED)
	if err != nil {
		unix.Munmap(rw)
		return nil, fmt.Errorf("jit: mmap executable: %w", err)
	}
	return &codeBuf{rw: rw, rx: rx}, nil
}

func (c *codeBuf) free() {
	unix.Munmap(c.rw)
	unix.Munmap(c.rx)
}

// base is the executable address of offset 0.
func (c *codeBuf) base() uintptr { return uintptr(unsafe.Pointer(&c.rx[0])) }

// next is the executable address where the next code will go.
func (c *codeBuf) next() uintptr { return c.base() + uintptr(c.pos) }

// room reports whether n more bytes fit.
func (c *codeBuf) room(n int) bool { return c.pos+n <= len(c.rw) }

// add appends code assembled for address next() and returns that address.
func (c *codeBuf) add(code []byte) uintptr {
	a := c.next()
	copy(c.rw[c.pos:], code)
	c.pos += len(code)
	// Keep blocks 16-byte aligned: jump targets decode faster.
	c.pos = (c.pos + 15) &^ 15
	return a
}

// contains reports whether [a, a+n) lies in the code written so far.
func (c *codeBuf) contains(a uintptr, n int) bool {
	return a >= c.base() && a+uintptr(n) <= c.base()+uintptr(c.pos)
}

// patchRel32 points the rel32 field at executable address site to target.
// Both must be inside the buffer: a bad link is a bug, never a jump into
// host memory.
func (c *codeBuf) patchRel32(site, target uintptr) {
	if !c.contains(site, 4) || !c.contains(target, 1) {
		panic("jit: jump patch outside the code buffer")
	}
	off := site - c.base()
	rel := int32(int64(target) - int64(site+4))
	c.rw[off] = byte(rel)
	c.rw[off+1] = byte(rel >> 8)
	c.rw[off+2] = byte(rel >> 16)
	c.rw[off+3] = byte(rel >> 24)
}

func (c *codeBuf) reset() { c.pos = 0 }
