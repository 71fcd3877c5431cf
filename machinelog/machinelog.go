// Package machinelog ties the event log (package eventlog) to ftvm's
// RISC-V machine: the header that describes a machine and the images it
// starts from, the machine a log's replay starts from (checked against
// that header), output hashes fed from the machine's outputs, and ftvm
// record's log file, written as the run goes so that it survives the
// recorder's death.
package machinelog

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"ftvm/host"
	"ftvm/machine"
	"ftvm/replay"
	"ftvm/replay/eventlog"
	"ftvm/snapfile"
	"ftvm/vm"
)

// Engine names this machine in a log's header: a log recorded on another
// engine is refused.
const Engine = "ftvm-riscv64"

// Header describes cfg for a log, so a replay can check it starts from the
// same machine and images: memory, command line, speed, boot seed, MAC and
// the SHA-256 of every image, the disk's (the file at disk, "" for none)
// included.
func Header(cfg machine.Config, disk string) (eventlog.Header, error) {
	h := eventlog.Header{
		Engine:              Engine,
		MemoryBytes:         uint64(cfg.MemoryMiB) << 20,
		Cmdline:             cfg.Cmdline,
		InstructionsPerTick: cfg.InstructionsPerTick,
		RNGSeed:             cfg.RNGSeed,
	}
	if cfg.Net {
		h.MAC = cfg.MAC
	}
	if cfg.Harts > 1 {
		// A machine with one hart has the header it had before machines
		// could have more.
		q := cfg.Quantum
		if q == 0 {
			q = machine.DefaultQuantum
		}
		h.Params = append(h.Params, eventlog.Param{Key: "harts", Value: strconv.Itoa(cfg.Harts)},
			eventlog.Param{Key: "quantum", Value: strconv.FormatUint(q, 10)})
	}
	for _, im := range []struct {
		role string
		b    []byte
	}{{"kernel", cfg.Kernel}, {"initrd", cfg.Initrd}, {"elf", cfg.ELF}, {"dtb", cfg.DTB}} {
		if im.b != nil {
			h.Images = append(h.Images, eventlog.Image{Role: im.role, SHA256: sha256.Sum256(im.b), Size: uint64(len(im.b))})
		}
	}
	if disk != "" {
		sum, n, err := hashFile(disk)
		if err != nil {
			return h, fmt.Errorf("disk: %w", err)
		}
		h.Images = append(h.Images, eventlog.Image{Role: "disk", SHA256: sum, Size: n})
	}
	if cfg.SharedDisk != nil {
		h.Images = append(h.Images, eventlog.Image{Role: "shared-disk", SHA256: cfg.SharedDiskID, Size: uint64(cfg.SharedDisk.Size())})
	}
	if cfg.WallClock != 0 {
		h.Params = append(h.Params, eventlog.Param{Key: WallClockParam, Value: strconv.FormatUint(cfg.WallClock, 10)})
	}
	return h, nil
}

// hashFile returns the SHA-256 and size of the file at path, read as a
// stream: a disk image can be larger than the host's memory.
func hashFile(path string) (sum [32]byte, n uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return sum, 0, err
	}
	defer f.Close()
	d := sha256.New()
	c, err := io.Copy(d, f)
	if err != nil {
		return sum, 0, err
	}
	d.Sum(sum[:0])
	return sum, uint64(c), nil
}

// WallClockParam is the header parameter that records the real-time
// clock's origin (machine.Config.WallClock), when it is not 0.
const WallClockParam = "wall_clock"

// SnapshotHeader describes a run that starts from the snapshot in path,
// restored as m: the snapshot file's hash stands for every image (it holds
// RAM, devices and disk).
func SnapshotHeader(path string, m *machine.Machine) (eventlog.Header, error) {
	sum, n, err := hashFile(path)
	if err != nil {
		return eventlog.Header{}, err
	}
	return eventlog.Header{
		Engine:       Engine,
		Images:       []eventlog.Image{{Role: "snapshot", SHA256: sum, Size: n}},
		StartInstret: m.Instret(),
	}, nil
}

// HashOutputs makes out feed o as well: console bytes, transmitted frames
// and disk writes. When shown is not nil, console output and frames are
// passed on only while it returns true (a replay that goes back in time
// re-executes what was shown already).
func HashOutputs(out *machine.Outputs, o *replay.Outputs, shown func() bool) {
	con, net := out.Console, out.Net
	out.Console = func(n uint64, b []byte) {
		o.Console(b)
		if con != nil && (shown == nil || shown()) {
			con(n, b)
		}
	}
	out.Net = func(n uint64, f []byte) {
		o.Net(f)
		if net != nil && (shown == nil || shown()) {
			net(n, f)
		}
	}
	out.Disk = func(_ uint64, off int64, p []byte) { o.Disk(off, p) }
}

// Images are the files a replay starts from. An empty Kernel (and no ELF)
// means the default guest's kernel, and its initramfs when the log names
// one and Initrd is empty.
type Images struct {
	Kernel, Initrd, ELF string
	// Disk is a copy of the disk as it was when the recording started;
	// it is read into memory and never written.
	Disk string
	// Snapshot is the snapshot the recording started from, or one it
	// wrote while it ran.
	Snapshot string
	// Exec is the execution engine to replay on (machine.Config.Exec): any
	// gives the same run.
	Exec string
	// SharedDisk is the read-only shared disk (a Debian guest's root) and
	// SharedDiskID its SHA-256, needed when the recording had one.
	SharedDisk   vm.Disk
	SharedDiskID [32]byte
}

// Machine builds the machine a log with header hdr starts from, checked
// against the header, with outputs out. When it starts from a snapshot
// the recording wrote while it ran, mid is that snapshot's hash (the
// replay skips the log up to it). Images that do not apply to the log
// (a kernel for a log that starts from a snapshot) are refused.
func Machine(hdr eventlog.Header, im Images, out machine.Outputs) (m *machine.Machine, mid *eventlog.Hash, err error) {
	if hdr.Engine != Engine {
		return nil, nil, fmt.Errorf("recorded on engine %q, not %q", hdr.Engine, Engine)
	}
	if HasImage(hdr, "snapshot") || im.Snapshot != "" {
		var given []string
		for _, f := range []struct{ what, v string }{{"kernel", im.Kernel}, {"initrd", im.Initrd}, {"program", im.ELF}, {"disk", im.Disk}} {
			if f.v != "" {
				given = append(given, f.what)
			}
		}
		if len(given) > 0 {
			return nil, nil, fmt.Errorf("the replay starts from a snapshot, which holds the machine's images and disk: a %s does not apply", strings.Join(given, ", "))
		}
		return fromSnapshot(im, hdr, out)
	}
	m, err = fromImages(hdr, im, out)
	return m, nil, err
}

func fromSnapshot(im Images, hdr eventlog.Header, out machine.Outputs) (m *machine.Machine, mid *eventlog.Hash, err error) {
	path := im.Snapshot
	if path == "" {
		return nil, nil, errors.New("the recording started from a snapshot: give it with -restore")
	}
	// No disk: the snapshot's own, in memory.
	opts := machine.RestoreOptions{Outputs: out, Exec: im.Exec, SharedDisk: im.SharedDisk, SharedDiskID: im.SharedDiskID}
	if m, err = snapfile.Restore(path, opts); err != nil {
		return nil, nil, err
	}
	want, err := SnapshotHeader(path, m)
	if err != nil {
		return nil, nil, err
	}
	if !HasImage(hdr, "snapshot") {
		// Started from images: the snapshot must be one of the log's.
		h := eventlog.Hash(want.Images[0].SHA256)
		if (hdr.MAC != eventlog.MAC{}) != m.HasNet() {
			return nil, nil, errors.New("the snapshot's network device does not match the recording's")
		}
		return m, &h, nil
	}
	want.MAC = hdr.MAC
	if diff := hdr.Diff(want); len(diff) > 0 {
		return nil, nil, fmt.Errorf("does not start from this snapshot:\n  %s", strings.Join(diff, "\n  "))
	}
	return m, nil, nil
}

func fromImages(hdr eventlog.Header, im Images, out machine.Outputs) (*machine.Machine, error) {
	cfg := machine.Config{
		MemoryMiB:           int(hdr.MemoryBytes >> 20),
		Cmdline:             hdr.Cmdline,
		InstructionsPerTick: hdr.InstructionsPerTick,
		RNGSeed:             hdr.RNGSeed,
		Outputs:             out,
		Exec:                im.Exec,
	}
	for _, p := range hdr.Params {
		if p.Key == WallClockParam {
			v, err := strconv.ParseUint(p.Value, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("header parameter %s=%q: %w", p.Key, p.Value, err)
			}
			cfg.WallClock = v
		}
	}
	if HasImage(hdr, "shared-disk") {
		if im.SharedDisk == nil {
			return nil, errors.New("the recording had a shared root disk: name its guest with -guest")
		}
		cfg.SharedDisk, cfg.SharedDiskID = im.SharedDisk, im.SharedDiskID
	}
	var err error
	if cfg.Harts, cfg.Quantum, err = hartParams(hdr); err != nil {
		return nil, err
	}
	if im.ELF != "" {
		if im.Kernel != "" || im.Initrd != "" {
			return nil, errors.New("a bare-metal program and a kernel or initrd do not go together")
		}
		if cfg.ELF, err = host.ReadImage(im.ELF); err != nil {
			return nil, err
		}
	} else {
		kernel, initrd := im.Kernel, im.Initrd
		if kernel == "" {
			kernel = filepath.Join(host.GuestDir(), "Image")
			if initrd == "" && HasImage(hdr, "initrd") {
				initrd = filepath.Join(host.GuestDir(), "initramfs.cpio")
			}
		}
		if cfg.Kernel, err = host.ReadImage(kernel); err != nil {
			return nil, fmt.Errorf("kernel: %w", err)
		}
		if initrd != "" {
			if cfg.Initrd, err = host.ReadImage(initrd); err != nil {
				return nil, fmt.Errorf("initrd: %w", err)
			}
		}
	}
	if hdr.MAC != (eventlog.MAC{}) {
		cfg.Net, cfg.MAC = true, hdr.MAC
	}
	if im.Disk != "" {
		d, err := host.LoadDisk(im.Disk)
		if err != nil {
			return nil, err
		}
		cfg.Disk = d
	} else if HasImage(hdr, "disk") {
		return nil, errors.New("the recording had a disk: give a copy of it as it was at the start with -disk")
	}
	want, err := Header(cfg, im.Disk)
	if err != nil {
		return nil, err
	}
	want.MAC = hdr.MAC
	if diff := hdr.Diff(want); len(diff) > 0 {
		return nil, fmt.Errorf("does not start from this machine:\n  %s", strings.Join(diff, "\n  "))
	}
	return machine.New(cfg)
}

// hartParams reads the hart count and quantum a recording ran with (none:
// one hart).
func hartParams(h eventlog.Header) (harts int, quantum uint64, err error) {
	harts = 1
	for _, p := range h.Params {
		switch p.Key {
		case "harts":
			if harts, err = strconv.Atoi(p.Value); err != nil || harts < 1 || harts > machine.MaxHarts {
				return 0, 0, fmt.Errorf("header: bad hart count %q", p.Value)
			}
		case "quantum":
			if quantum, err = strconv.ParseUint(p.Value, 10, 64); err != nil || quantum == 0 {
				return 0, 0, fmt.Errorf("header: bad quantum %q", p.Value)
			}
		}
	}
	return harts, quantum, nil
}

// HasImage reports whether h names an image with this role.
func HasImage(h eventlog.Header, role string) bool {
	for _, im := range h.Images {
		if im.Role == role {
			return true
		}
	}
	return false
}
