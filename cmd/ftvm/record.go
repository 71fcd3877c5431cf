package main

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"ftvm/host"
	"ftvm/machine"
	"ftvm/replay"
	"ftvm/replay/eventlog"
)

const engineName = "ftvm-riscv64"

// logHeader describes cfg for the log, so a replay can check it starts from
// the same machine and images.
func logHeader(cfg machine.Config, diskPath string) (eventlog.Header, error) {
	h := eventlog.Header{
		Engine:              engineName,
		MemoryBytes:         uint64(cfg.MemoryMiB) << 20,
		Cmdline:             cfg.Cmdline,
		InstructionsPerTick: cfg.InstructionsPerTick,
		RNGSeed:             cfg.RNGSeed,
	}
	if cfg.Net {
		h.MAC = cfg.MAC
	}
	if cfg.Harts > 1 {
		// A machine with one hart has the header it had before there
		// could be more.
		h.Params = append(h.Params, eventlog.Param{Key: "harts", Value: strconv.Itoa(cfg.Harts)},
			eventlog.Param{Key: "quantum", Value: strconv.FormatUint(cfg.Quantum, 10)})
	}
	for _, im := range []struct {
		role string
		b    []byte
	}{{"kernel", cfg.Kernel}, {"initrd", cfg.Initrd}, {"elf", cfg.ELF}, {"dtb", cfg.DTB}} {
		if im.b != nil {
			h.Images = append(h.Images, eventlog.Image{Role: im.role, SHA256: sha256.Sum256(im.b), Size: uint64(len(im.b))})
		}
	}
	if diskPath != "" {
		b, err := os.ReadFile(diskPath)
		if err != nil {
			return h, fmt.Errorf("disk: %w", err)
		}
		h.Images = append(h.Images, eventlog.Image{Role: "disk", SHA256: sha256.Sum256(b), Size: uint64(len(b))})
	}
	return h, nil
}

func cmdRecord(args []string) error {
	fs := flag.NewFlagSet("record", flag.ContinueOnError)
	var vf vmFlags
	vf.register(fs)
	out := fs.String("o", "ftvm.log", "write the event log to `file`")
	every := fs.Uint64("digest-every", 50_000_000, "log a state digest every `n` instructions (0: only at the end)")
	maxInsns := fs.Uint64("max-instructions", 0, "stop after this many instructions (0: no limit)")
	restore := fs.String("restore", "", "start from a snapshot `file` instead of booting")
	snapEvery := fs.Uint64("snapshot-every", 0, "write a snapshot every `n` instructions (with -snapshot-dir); the log names each, and a replay can start from any")
	snapDir := fs.String("snapshot-dir", "", "`directory` for -snapshot-every's snapshots")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ftvm record [flags] [PROGRAM.elf]\n\nRuns a guest like 'ftvm run' and logs every input with the instruction count\nat which it was delivered, so 'ftvm replay' can reproduce the run exactly.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*snapEvery == 0) != (*snapDir == "") {
		return errors.New("-snapshot-every and -snapshot-dir go together")
	}
	if err := vf.deterministic("record"); err != nil {
		return err
	}
	var cfg machine.Config
	var hdr eventlog.Header
	var err error
	if *restore == "" {
		if cfg, err = vf.config(fs.Arg(0)); err != nil {
			return err
		}
		cfg.InstructionsPerTick = 10
		if hdr, err = logHeader(cfg, vf.disk); err != nil {
			return err
		}
	}
	lo, release, err := vf.attachHost(&cfg, *maxInsns)
	if err != nil {
		return err
	}
	defer release()
	outs := replay.NewOutputs()
	hashOutputs(&cfg.Outputs, outs, nil)
	var m *machine.Machine
	if *restore != "" {
		if m, err = restoreMachine(*restore, vf, cfg.Outputs); err != nil {
			return err
		}
		if hdr, err = snapshotHeader(*restore, m); err != nil {
			return err
		}
	} else if m, err = machine.New(cfg); err != nil {
		return err
	}
	if cfg.Net {
		hdr.MAC = cfg.MAC
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<16)
	lw, err := eventlog.NewWriter(w, hdr)
	if err != nil {
		return err
	}
	rec := replay.NewRecorder(m, lw, *every)
	rec.SetOutputs(outs)
	if *snapEvery != 0 {
		if err := os.MkdirAll(*snapDir, 0o755); err != nil {
			return err
		}
		rec.SetSnapshots(*snapEvery, func(n uint64) (eventlog.SnapshotInfo, error) {
			return writeSnapshot(m, *snapDir, n)
		})
	}
	start := time.Now()
	reason := runLoop(rec, lo)
	lo.flush()
	if err := rec.Close(reason); err != nil {
		return fmt.Errorf("writing the log: %w", err)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Fprintf(os.Stderr, "\r\nftvm: %s after %d instructions in %.2fs\r\nftvm: state digest %x\r\nftvm: log %s: %d records, %d bytes (%.1f kbit/s)\r\n",
		reason, m.Instret(), el.Seconds(), m.Digest().Sum, *out, lw.Frames(), lw.Offset(), float64(lw.Offset())*8/el.Seconds()/1000)
	printOutputs(outs)
	return nil
}

// hashOutputs makes out feed o as well: console bytes, transmitted frames
// and disk writes. When shown is not nil, console output is passed on only
// while it returns true (a replay that goes back in time re-executes what
// was shown already).
func hashOutputs(out *machine.Outputs, o *replay.Outputs, shown func() bool) {
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

// printOutputs prints the output hashes, which a recording and its replay
// must agree on.
func printOutputs(o *replay.Outputs) {
	for _, s := range o.Sums() {
		fmt.Fprintf(os.Stderr, "ftvm: output %s %d %x\r\n", s.Name, s.Count, s.Sum[:12])
	}
}

// writeSnapshot saves m in dir, named by its instruction count, and
// returns what the log records of it.
func writeSnapshot(m *machine.Machine, dir string, n uint64) (eventlog.SnapshotInfo, error) {
	name := fmt.Sprintf("ftvm-%012d.snap", n)
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return eventlog.SnapshotInfo{}, err
	}
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	err = m.Save(w)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	info := eventlog.SnapshotInfo{Name: name}
	h.Sum(info.SHA256[:0])
	return info, err
}

// snapshotHeader describes a run that starts from a snapshot: the snapshot
// file's hash stands for every image (it holds RAM, devices and disk).
func snapshotHeader(path string, m *machine.Machine) (eventlog.Header, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return eventlog.Header{}, err
	}
	return eventlog.Header{
		Engine:       engineName,
		Images:       []eventlog.Image{{Role: "snapshot", SHA256: sha256.Sum256(b), Size: uint64(len(b))}},
		StartInstret: m.Instret(),
	}, nil
}

func cmdReplay(args []string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	kernel := fs.String("kernel", "", "kernel Image the run started from (default: the default guest)")
	initrd := fs.String("initrd", "", "initramfs the run started from (default: the default guest's)")
	disk := fs.String("disk", "", "a copy of the disk image as it was when the recording started (it is not modified)")
	elf := fs.String("elf", "", "bare-metal program the run started from")
	restore := fs.String("restore", "", "the snapshot `file` the recording started from")
	quiet := fs.Bool("q", false, "do not print the guest's console output")
	diskOut := fs.String("disk-out", "", "write the disk as the replay leaves it to `file`")
	ckEvery := fs.Uint64("checkpoint-every", gdbCheckpointEvery, "with -gdb: instructions between the in-memory checkpoints kept for reverse execution (the interval doubles as the run grows)")
	gdbAddr := gdbFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ftvm replay [flags] LOG\n\nRe-executes a recorded run from its log alone (no network, console or host\ntime involved) and checks every logged state digest.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("replay takes one log file")
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	rd, err := eventlog.NewReader(bufio.NewReaderSize(f, 1<<16))
	if err != nil {
		return err
	}
	hdr := rd.Header()
	if hdr.Engine != engineName {
		return fmt.Errorf("%s: recorded on engine %q, not %q", fs.Arg(0), hdr.Engine, engineName)
	}
	con := bufio.NewWriter(os.Stdout)
	var out machine.Outputs
	if !*quiet {
		out.Console = func(_ uint64, b []byte) { con.Write(b) }
	}
	outs := replay.NewOutputs()
	var tl *replay.Timeline
	hashOutputs(&out, outs, func() bool { return tl == nil || !tl.Replaying() })
	var m *machine.Machine
	var mid *eventlog.Hash // a snapshot taken during the recording
	if hasImage(hdr, "snapshot") || *restore != "" {
		m, mid, err = replayFromSnapshot(*restore, hdr, out)
	} else {
		m, err = replayFromImages(hdr, *kernel, *initrd, *disk, *elf, out)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	opts := replay.TimelineOptions{Outputs: outs, FromSnapshot: mid}
	if *gdbAddr != "" {
		opts.CheckpointEvery = *ckEvery
	}
	start, from := time.Now(), m.Instret()
	if tl, err = replay.NewTimeline(m, rd, opts); err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	err = replayGDB(*gdbAddr, m, tl, con.Flush)
	con.Flush()
	el := time.Since(start)
	if err != nil {
		return err
	}
	res := tl.Result()
	fmt.Fprintf(os.Stderr, "\nftvm: replayed %d events and %d digests to instruction %d (%s) in %.2fs (%.1f M instructions/s)\nftvm: state digest %x: matches the recording\n",
		res.Events, res.Digests, res.Instret, res.Reason, el.Seconds(), float64(res.Instret-from)/el.Seconds()/1e6, m.Digest().Sum)
	printOutputs(outs)
	if *diskOut != "" {
		if err := saveDisk(m, *diskOut); err != nil {
			return err
		}
	}
	return nil
}

// saveDisk writes the machine's disk contents to path.
func saveDisk(m *machine.Machine, path string) error {
	d := m.DiskBackend()
	if d == nil {
		return errors.New("-disk-out: the machine has no disk")
	}
	b := make([]byte, d.Size())
	if _, err := d.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// replayFromSnapshot restores the snapshot a replay starts from: the one
// the recording started from (named in the header), or one written during
// the recording (named by a Snapshot record; mid is then its hash, for
// the timeline to find it in the log).
func replayFromSnapshot(path string, hdr eventlog.Header, out machine.Outputs) (m *machine.Machine, mid *eventlog.Hash, err error) {
	if path == "" {
		return nil, nil, errors.New("the recording started from a snapshot: give it with -restore")
	}
	var vf vmFlags // no disk: the snapshot's own, in memory
	if m, err = restoreMachine(path, vf, out); err != nil {
		return nil, nil, err
	}
	want, err := snapshotHeader(path, m)
	if err != nil {
		return nil, nil, err
	}
	if !hasImage(hdr, "snapshot") {
		// Started from images: the snapshot must be one of the log's.
		h := eventlog.Hash(want.Images[0].SHA256)
		if (hdr.MAC != eventlog.MAC{}) != m.HasNet() {
			return nil, nil, errors.New("the snapshot's network device does not match the recording's")
		}
		return m, &h, nil
	}
	want.MAC = hdr.MAC
	if diff := hdr.Diff(want); len(diff) > 0 {
		return nil, nil, fmt.Errorf("does not start from this snapshot:\n  %s", joinLines(diff))
	}
	return m, nil, nil
}

func replayFromImages(hdr eventlog.Header, kernel, initrd, disk, elf string, out machine.Outputs) (*machine.Machine, error) {
	cfg := machine.Config{
		MemoryMiB:           int(hdr.MemoryBytes >> 20),
		Cmdline:             hdr.Cmdline,
		InstructionsPerTick: hdr.InstructionsPerTick,
		RNGSeed:             hdr.RNGSeed,
		Outputs:             out,
	}
	var err error
	if cfg.Harts, cfg.Quantum, err = hartParams(hdr); err != nil {
		return nil, err
	}
	if elf != "" {
		if cfg.ELF, err = os.ReadFile(elf); err != nil {
			return nil, err
		}
	} else {
		if kernel == "" {
			kernel = filepath.Join(host.GuestDir(), "Image")
			if initrd == "" && hasImage(hdr, "initrd") {
				initrd = filepath.Join(host.GuestDir(), "initramfs.cpio")
			}
		}
		if cfg.Kernel, err = os.ReadFile(kernel); err != nil {
			return nil, fmt.Errorf("kernel: %w", err)
		}
		if initrd != "" {
			if cfg.Initrd, err = os.ReadFile(initrd); err != nil {
				return nil, fmt.Errorf("initrd: %w", err)
			}
		}
	}
	if hdr.MAC != (eventlog.MAC{}) {
		cfg.Net, cfg.MAC = true, hdr.MAC
	}
	if disk != "" {
		d, err := host.LoadDisk(disk)
		if err != nil {
			return nil, err
		}
		cfg.Disk = d
	} else if hasImage(hdr, "disk") {
		return nil, errors.New("the recording had a disk: give a copy of it as it was at the start with -disk")
	}
	want, err := logHeader(cfg, disk)
	if err != nil {
		return nil, err
	}
	want.MAC = hdr.MAC
	if diff := hdr.Diff(want); len(diff) > 0 {
		return nil, fmt.Errorf("does not start from this machine:\n  %s", joinLines(diff))
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

func hasImage(h eventlog.Header, role string) bool {
	for _, im := range h.Images {
		if im.Role == role {
			return true
		}
	}
	return false
}

func joinLines(s []string) string {
	out := ""
	for i, l := range s {
		if i > 0 {
			out += "\n  "
		}
		out += l
	}
	return out
}
