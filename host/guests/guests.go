// Package guests knows the guests ftvm boots by name and where their files
// are: the default key-value guest (kv), and the Debian guests (redis,
// postgres, nginx) that run an unmodified Debian service.
//
// Every guest boots the same kernel and initramfs (scripts/build-guest.sh);
// the Debian guests add two disks (scripts/build-rootfs.sh): a read-only
// root filesystem, shared as it is by every replica and replay, and a data
// disk, of which each running guest has its own copy, made from a template
// the first time.
package guests

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"ftvm/host"
)

// Guest is one guest ftvm knows by name.
type Guest struct {
	Name string
	// Service is the Debian service init starts (ftvm.service=), "" for
	// the key-value guest.
	Service string
	// Port is the TCP port the guest's server listens on.
	Port int
	// MemoryMiB is the memory it is given unless told otherwise.
	MemoryMiB int
}

// Default is the guest ftvm boots when none is named.
const Default = "kv"

var known = []Guest{
	{Name: "kv", Port: 6379, MemoryMiB: 256},
	{Name: "redis", Service: "redis", Port: 6379, MemoryMiB: 256},
	// PostgreSQL's default shared_buffers is 128 MiB.
	{Name: "postgres", Service: "postgres", Port: 5432, MemoryMiB: 512},
	{Name: "nginx", Service: "nginx", Port: 80, MemoryMiB: 256},
}

// Names lists the known guests.
func Names() []string {
	var n []string
	for _, g := range known {
		n = append(n, g.Name)
	}
	return n
}

// Lookup returns the guest called name ("" is the default guest).
func Lookup(name string) (Guest, error) {
	if name == "" {
		name = Default
	}
	for _, g := range known {
		if g.Name == name {
			return g, nil
		}
	}
	return Guest{}, fmt.Errorf("unknown guest %q (known: %s)", name, strings.Join(Names(), ", "))
}

// Debian reports whether the guest runs from the Debian disks.
func (g Guest) Debian() bool { return g.Service != "" }

// Kernel and Initrd are the default guest's images, which every guest boots.
func Kernel() string { return filepath.Join(host.GuestDir(), "Image") }
func Initrd() string { return filepath.Join(host.GuestDir(), "initramfs.cpio") }

// debianDir is where build-rootfs.sh publishes the Debian disks.
func debianDir() string { return filepath.Join(host.GuestDir(), "debian") }

// RootImage is the Debian guests' read-only root filesystem, and
// DataTemplate the image their data disks start from.
func RootImage() string    { return filepath.Join(debianDir(), "root.img") }
func DataTemplate() string { return filepath.Join(debianDir(), "data.img") }

// Cmdline adds what the guest needs to a kernel command line.
func (g Guest) Cmdline(base string) string {
	if g.Service == "" {
		return base
	}
	return base + " ftvm.service=" + g.Service
}

// Check says what is missing to boot the guest, and how to build it.
func (g Guest) Check() error {
	if _, err := os.Stat(Kernel()); err != nil {
		return fmt.Errorf("the guest is not built (%s missing): run scripts/build-guest.sh", Kernel())
	}
	if g.Debian() {
		for _, f := range []string{RootImage(), DataTemplate()} {
			if _, err := os.Stat(f); err != nil {
				return fmt.Errorf("the Debian guests are not built (%s missing): run scripts/build-rootfs.sh", f)
			}
		}
	}
	return nil
}

// OpenRoot opens the read-only root image and returns it with its identity,
// the SHA-256 the build script recorded beside it (computed here if that
// record is missing or older than the image).
func OpenRoot() (*host.Disk, [32]byte, error) {
	var id [32]byte
	path := RootImage()
	d, err := host.OpenDisk(path, true)
	if err != nil {
		return nil, id, err
	}
	if id, err = imageID(path); err != nil {
		d.Close()
		return nil, id, err
	}
	return d, id, nil
}

func imageID(path string) ([32]byte, error) {
	var id [32]byte
	st, err := os.Stat(path)
	if err != nil {
		return id, err
	}
	side := path + ".sha256"
	if sst, err := os.Stat(side); err == nil && !sst.ModTime().Before(st.ModTime()) {
		b, err := os.ReadFile(side)
		if err == nil {
			if n, err := hex.Decode(id[:], bytes.TrimSpace(b)); err == nil && n == len(id) {
				return id, nil
			}
		}
	}
	return hashFile(path)
}

func hashFile(path string) ([32]byte, error) {
	var id [32]byte
	f, err := os.Open(path)
	if err != nil {
		return id, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return id, err
	}
	h.Sum(id[:0])
	return id, nil
}

// DefaultDataDisk is where a guest's data disk lives when the user names
// none: in the cache, kept from one run to the next.
func (g Guest) DefaultDataDisk() string {
	return filepath.Join(filepath.Dir(host.GuestDir()), "disks", g.Name+".img")
}

// DataDisk returns the data disk to use: path, or the default one when
// path is empty, made from the template if it does not exist yet. The
// second result says whether it was made.
func (g Guest) DataDisk(path string) (string, bool, error) {
	if path == "" {
		path = g.DefaultDataDisk()
	}
	if _, err := os.Stat(path); err == nil {
		return path, false, nil
	}
	if err := NewDataDisk(path); err != nil {
		return "", false, err
	}
	return path, true, nil
}

// NewDataDisk writes a fresh data disk to path, a copy of the template
// (sparse: the copy skips the template's holes).
func NewDataDisk(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	src, err := os.Open(DataTemplate())
	if err != nil {
		return fmt.Errorf("the Debian guests are not built: %w (run scripts/build-rootfs.sh)", err)
	}
	defer src.Close()
	tmp := path + ".tmp"
	dst, err := os.Create(tmp)
	if err != nil {
		return err
	}
	err = sparseCopy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("data disk %s: %w", path, err)
	}
	return nil
}

// sparseCopy copies src to dst, seeking over the all-zero blocks so the
// copy stays as sparse as the template.
func sparseCopy(dst *os.File, src *os.File) error {
	st, err := src.Stat()
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for off := int64(0); off < st.Size(); {
		n, err := src.ReadAt(buf, off)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, err := dst.WriteAt(buf[:n], off); err != nil {
				return err
			}
		}
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return dst.Truncate(st.Size())
}

// held keeps the locked data disks open (and so locked) until the process
// exits.
var held []*os.File

// Lock takes an exclusive lock on a data disk for the life of the process,
// so that a second ftvm started on the same disk (the default one in the
// cache, say) stops at once instead of corrupting it.
func Lock(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("data disk %s is in use by another ftvm process (give this one its own with -disk FILE)", path)
	}
	held = append(held, f)
	return nil
}
