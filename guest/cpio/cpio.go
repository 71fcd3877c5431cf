// Package cpio writes "newc" (SVR4, magic 070701) cpio archives, the format
// the Linux kernel unpacks as an initramfs.
//
// The writer is deliberately reproducible: every entry gets mtime 0, uid and
// gid 0 and inode numbers counted from 1 in write order, so the same sequence
// of calls always yields the same bytes. It never touches the host
// filesystem, so device nodes can be created without root.
package cpio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// Mode type bits as stored in the c_mode field (the classic stat S_IF* values).
const (
	TypeDir     = 0o040000
	TypeFile    = 0o100000
	TypeSymlink = 0o120000
	TypeChar    = 0o020000
	typeMask    = 0o170000
)

// Trailer is the name of the entry that ends every archive.
const Trailer = "TRAILER!!!"

const (
	magic      = "070701"
	headerSize = 110 // magic + 13 eight-digit hex fields
)

// Header describes one archive entry as stored on disk.
type Header struct {
	Name     string
	Mode     uint32 // type bits | permission bits
	Ino      uint32
	Nlink    uint32
	Size     uint32
	RdevMaj  uint32
	RdevMin  uint32
	Linkname string // symlink target (stored as the entry's data)
}

// Writer appends entries to a newc archive. Errors are sticky: after the
// first failure every later call returns the same error.
type Writer struct {
	w   io.Writer
	off int64
	ino uint32
	err error
}

// NewWriter returns a Writer that writes an archive to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Dir adds a directory. Parents are not created implicitly: the kernel does
// not need them to exist first, but listing them keeps the archive explicit.
func (w *Writer) Dir(name string, perm fs.FileMode) error {
	return w.entry(name, TypeDir|unixPerm(perm), 2, 0, 0, nil)
}

// File adds a regular file with the given contents.
func (w *Writer) File(name string, perm fs.FileMode, data []byte) error {
	return w.entry(name, TypeFile|unixPerm(perm), 1, 0, 0, data)
}

// CharDev adds a character device node, e.g. /dev/console is (5, 1).
func (w *Writer) CharDev(name string, perm fs.FileMode, major, minor uint32) error {
	return w.entry(name, TypeChar|unixPerm(perm), 1, major, minor, nil)
}

// Symlink adds a symbolic link name -> target.
func (w *Writer) Symlink(name, target string) error {
	return w.entry(name, TypeSymlink|0o777, 1, 0, 0, []byte(target))
}

// unixPerm converts permission, setuid, setgid and sticky bits from Go's
// representation to the st_mode one.
func unixPerm(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

// Close writes the trailer entry. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	w.writeHeader(Trailer, 0, 0, 1, 0, 0, 0)
	w.pad()
	return w.err
}

func (w *Writer) entry(name string, mode, nlink, major, minor uint32, data []byte) error {
	if w.err != nil {
		return w.err
	}
	// The kernel wants names relative to the archive root, without "./".
	name = strings.TrimPrefix(strings.TrimPrefix(name, "./"), "/")
	if name == "" || name == Trailer || strings.Contains(name, "\x00") {
		w.err = fmt.Errorf("cpio: invalid entry name %q", name)
		return w.err
	}
	if uint64(len(data)) > 0xffffffff {
		w.err = errors.New("cpio: file larger than 4 GiB")
		return w.err
	}
	w.ino++
	w.writeHeader(name, mode, w.ino, nlink, uint32(len(data)), major, minor)
	w.write(data)
	w.pad()
	return w.err
}

func (w *Writer) writeHeader(name string, mode, ino, nlink, size, major, minor uint32) {
	// Fields: ino mode uid gid nlink mtime filesize devmajor devminor
	// rdevmajor rdevminor namesize check. uid, gid, mtime, dev and check are 0.
	h := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		magic, ino, mode, 0, 0, nlink, 0, size, 0, 0, major, minor, len(name)+1, 0)
	w.write([]byte(h))
	w.write([]byte(name))
	w.write([]byte{0})
	// The name is padded so that header+name ends on a 4-byte boundary.
	w.pad()
}

// pad writes zeros up to the next multiple of four bytes.
func (w *Writer) pad() {
	if n := (4 - w.off%4) % 4; n > 0 {
		w.write(make([]byte, n))
	}
}

func (w *Writer) write(p []byte) {
	if w.err != nil || len(p) == 0 {
		return
	}
	n, err := w.w.Write(p)
	w.off += int64(n)
	w.err = err
}
