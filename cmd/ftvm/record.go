package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"ftvm/gdbtarget"
	"ftvm/host/guests"
	"ftvm/machine"
	"ftvm/machinelog"
	"ftvm/replay"
	"ftvm/replay/eventlog"
	"ftvm/runloop"
	"ftvm/snapfile"
	"ftvm/vm"
)

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
		fmt.Fprintln(fs.Output(), "usage: ftvm record [flags] [PROGRAM.elf]\n\nRuns a guest like 'ftvm run' and logs every input with the instruction count\nat which it was delivered, so 'ftvm replay' can reproduce the run exactly.\nThe log is written as the run goes: SIGINT or SIGTERM end the recording\ncleanly, and the log of a recorder that was killed replays up to its end.")
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
	if fs.NArg() > 1 {
		return errors.New("record takes at most one program")
	}
	if err := vf.check(given(fs), fs.Arg(0), *restore); err != nil {
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
		if hdr, err = machinelog.Header(cfg, vf.disk); err != nil {
			return err
		}
	}
	h, release, err := vf.attachHost(&cfg)
	if err != nil {
		return err
	}
	defer release()
	outs := replay.NewOutputs()
	machinelog.HashOutputs(&cfg.Outputs, outs, nil)
	var m *machine.Machine
	if *restore != "" {
		if m, err = restoreMachine(*restore, vf, cfg.Outputs); err != nil {
			return err
		}
		if err := vf.checkRestored(m, *restore, map[string]uint64{"max-instructions": *maxInsns}); err != nil {
			return err
		}
		if hdr, err = machinelog.SnapshotHeader(*restore, m); err != nil {
			return err
		}
	} else if m, err = machine.New(cfg); err != nil {
		return err
	}
	if m.HasNet() {
		hdr.MAC = m.MAC()
	}
	lf, err := machinelog.Create(*out, hdr, m, *every)
	if err != nil {
		return err
	}
	rec := lf.Recorder()
	rec.SetOutputs(outs)
	if *snapEvery != 0 {
		if err := os.MkdirAll(*snapDir, 0o755); err != nil {
			return err
		}
		rec.SetSnapshots(*snapEvery, func(uint64) (eventlog.SnapshotInfo, error) {
			return snapfile.SaveIn(m, *snapDir)
		})
	}
	ctx, stop := stopSignals()
	defer stop()
	start := time.Now()
	lc := h.loop(ctx, lf.Engine(), *maxInsns)
	lc.After = func(r vm.StopReason) error {
		// The log first: what the guest printed is shown only once the
		// file holds the run that far.
		show, err := lf.After(r, h.out.Buffered() > 0)
		if show {
			h.flush()
		}
		return err
	}
	reason, lerr := runloop.Run(lc)
	h.flush()
	if err := lf.Close(reason); err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Fprintf(os.Stderr, "\r\nftvm: %s after %d instructions in %.2fs\r\nftvm: state digest %x\r\nftvm: log %s: %d records, %d bytes (%.1f kbit/s)\r\n",
		reason, m.Instret(), el.Seconds(), m.Digest().Sum, *out, lf.Frames(), lf.Bytes(), float64(lf.Bytes())*8/el.Seconds()/1000)
	printOutputs(outs)
	if interrupted(lerr) {
		fmt.Fprintf(os.Stderr, "ftvm: stopped by a signal; the log is complete\r\n")
		return nil
	}
	return lerr
}

// printOutputs prints the output hashes, which a recording and its replay
// must agree on.
func printOutputs(o *replay.Outputs) {
	for _, s := range o.Sums() {
		fmt.Fprintf(os.Stderr, "ftvm: output %s %d %x\r\n", s.Name, s.Count, s.Sum[:12])
	}
}

func cmdReplay(args []string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	var im machinelog.Images
	fs.StringVar(&im.Kernel, "kernel", "", "kernel Image the run started from (default: the default guest)")
	fs.StringVar(&im.Initrd, "initrd", "", "initramfs the run started from (default: the default guest's)")
	fs.StringVar(&im.Disk, "disk", "", "a copy of the disk image as it was when the recording started (it is not modified)")
	fs.StringVar(&im.ELF, "elf", "", "bare-metal program the run started from")
	fs.StringVar(&im.Snapshot, "restore", "", "the snapshot `file` the recording started from")
	var gf guestFlags
	fs.StringVar(&gf.guest, "guest", guests.Default, "the guest the run started from ("+strings.Join(guests.Names(), ", ")+"): a Debian guest's shared root disk")
	quiet := fs.Bool("q", false, "do not print the guest's console output")
	diskOut := fs.String("disk-out", "", "write the disk as the replay leaves it to `file`")
	ckEvery := fs.Uint64("checkpoint-every", gdbtarget.CheckpointEvery, "with -gdb: instructions between the in-memory checkpoints kept for reverse execution (the interval doubles as the run grows)")
	gdbAddr := gdbFlag(fs)
	execFlag(fs, &im.Exec)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ftvm replay [flags] LOG\n\nRe-executes a recorded run from its log alone (no network, console or host\ntime involved) and checks every logged state digest. A log cut short (its\nrecorder killed) is replayed up to its last complete record.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("replay takes one log file")
	}
	if *gdbAddr == "" {
		if err := notWith(given(fs), "checkpoints serve reverse execution under -gdb", "checkpoint-every"); err != nil {
			return err
		}
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
	con := bufio.NewWriter(os.Stdout)
	var out machine.Outputs
	if !*quiet {
		out.Console = func(_ uint64, b []byte) { con.Write(b) }
	}
	outs := replay.NewOutputs()
	var tl *replay.Timeline
	machinelog.HashOutputs(&out, outs, func() bool { return tl == nil || !tl.Replaying() })
	var shared machine.RestoreOptions
	if err := gf.restoreShared(&shared); err != nil {
		return err
	}
	im.SharedDisk, im.SharedDiskID = shared.SharedDisk, shared.SharedDiskID
	m, mid, err := machinelog.Machine(rd.Header(), im, out)
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
	err = gdbtarget.Replay(*gdbAddr, m, tl, con.Flush, os.Stderr)
	con.Flush()
	el := time.Since(start)
	if err != nil {
		return err
	}
	res := tl.Result()
	if cut := tl.Cut(); cut != nil {
		fmt.Fprintf(os.Stderr, "\nftvm: the log ends early (%v): the recording was cut short, its recorder killed or its copy incomplete\nftvm: replayed %d events and %d digests to instruction %d, its last complete record, in %.2fs (%.1f M instructions/s)\nftvm: state digest %x (every digest up to there matches; how the run went on is not in the log)\n",
			cut, res.Events, res.Digests, m.Instret(), el.Seconds(), float64(m.Instret()-from)/el.Seconds()/1e6, m.Digest().Sum)
	} else {
		fmt.Fprintf(os.Stderr, "\nftvm: replayed %d events and %d digests to instruction %d (%s) in %.2fs (%.1f M instructions/s)\nftvm: state digest %x: matches the recording\n",
			res.Events, res.Digests, res.Instret, res.Reason, el.Seconds(), float64(res.Instret-from)/el.Seconds()/1e6, m.Digest().Sum)
	}
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
