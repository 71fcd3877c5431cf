package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"ftvm/gdbtarget"
	"ftvm/host"
	"ftvm/host/guests"
	"ftvm/host/netdev"
	"ftvm/machine"
	"ftvm/runloop"
	"ftvm/snapfile"
	"ftvm/vm"
)

// defaultCmdline is the kernel command line of the default guest.
const defaultCmdline = "console=ttyS0 earlycon=sbi"

type vmFlags struct {
	guestFlags
	kernel, initrd, appendArgs, disk, net, mac, dtb string
	exec                                            string
	memMiB                                          int
	diskRO                                          bool
	smp                                             int
	quantum                                         uint64
	parallel                                        bool
}

// execFlag registers -exec, the execution engine.
func execFlag(fs *flag.FlagSet, p *string) {
	fs.StringVar(p, "exec", "", "execution `engine`: "+machine.ExecJIT+" (guest code translated to host code) or "+machine.ExecInterp+
		" (the interpreter); both give the same results (default "+machine.DefaultExec()+" here)")
}

func (f *vmFlags) register(fs *flag.FlagSet) {
	f.guestFlags.register(fs)
	fs.StringVar(&f.kernel, "kernel", "", "RISC-V Linux `Image` to boot (default: the built-in default guest)")
	fs.StringVar(&f.initrd, "initrd", "", "initramfs `file` (default guest: its initramfs)")
	fs.StringVar(&f.appendArgs, "append", "", "kernel command line (default \""+defaultCmdline+"\")")
	fs.IntVar(&f.memMiB, "m", 0, "guest memory in `MiB` (default: the guest's, 256; 512 for postgres)")
	fs.StringVar(&f.dtb, "dtb", "", "use this device tree `blob` instead of the generated one (checked against the machine)")
	fs.StringVar(&f.disk, "disk", "", "raw disk image `file` for virtio-blk")
	fs.BoolVar(&f.diskRO, "disk-ro", false, "attach the disk read-only")
	fs.StringVar(&f.net, "net", "", "network backend: tap:NAME, or switch:HOST:PORT for an `ftvm switch` (empty: no network device)")
	fs.StringVar(&f.mac, "mac", "52:54:00:12:34:56", "guest MAC address")
	execFlag(fs, &f.exec)
	f.registerSMP(fs)
}

// registerSMP registers the flags that choose the harts.
func (f *vmFlags) registerSMP(fs *flag.FlagSet) {
	fs.IntVar(&f.smp, "smp", 1, fmt.Sprintf("number of harts (virtual CPUs), 1 to %d", machine.MaxHarts))
	fs.Uint64Var(&f.quantum, "quantum", machine.DefaultQuantum, "with several harts, instructions a hart runs before the next takes its turn (part of the machine: a replay uses the recording's)")
	fs.BoolVar(&f.parallel, "parallel", false, "run the harts in parallel, one host thread each: faster, but the run is NOT deterministic and cannot be recorded,\nreplayed or replicated by replay (the checkpoint, colo and plover modes replicate it)")
}

// deterministic refuses -parallel for a command that records or replicates.
func (f *vmFlags) deterministic(cmd string) error {
	if f.parallel {
		return fmt.Errorf("%s: -parallel runs are not deterministic, so they cannot be recorded, replayed or replicated; leave it out (the harts are then interleaved, deterministically)", cmd)
	}
	return nil
}

// given is the set of flags given on the command line.
func given(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// notWith refuses the flags among names that were given, saying why they
// do not apply.
func notWith(set map[string]bool, why string, names ...string) error {
	var bad []string
	for _, n := range names {
		if set[n] {
			bad = append(bad, "-"+n)
		}
	}
	switch len(bad) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("%s does not apply: %s", bad[0], why)
	}
	return fmt.Errorf("%s do not apply: %s", strings.Join(bad, ", "), why)
}

// check refuses the machine flags that do not apply to how the machine
// starts: from a bare-metal program, from a snapshot (restore), or by
// booting a kernel (neither). It reads no file.
func (f *vmFlags) check(set map[string]bool, program, restore string) error {
	if set["m"] && (f.memMiB < 16 || f.memMiB > 16384) {
		return fmt.Errorf("-m %d: the guest's memory in MiB, from 16 to 16384", f.memMiB)
	}
	if f.net == "" {
		if err := notWith(set, "it is the address of the guest's network device, and there is none without -net", "mac"); err != nil {
			return err
		}
	}
	if f.disk == "" {
		if err := notWith(set, "there is no disk without -disk", "disk-ro"); err != nil {
			return err
		}
	}
	switch {
	case restore != "" && program != "":
		return errors.New("give either a program or -restore, not both")
	case restore != "":
		if err := notWith(set, "a snapshot holds the machine: its memory, images, command line, device tree, MAC, clock and harts",
			"kernel", "initrd", "append", "m", "dtb", "mac", "rtc", "smp", "quantum"); err != nil {
			return err
		}
		return notWith(set, "restoring writes the snapshot's disk contents to the -disk file (without -disk the guest runs on a copy in memory)", "disk-ro")
	case program != "":
		return notWith(set, "a bare-metal program is loaded alone, with no kernel, initramfs, command line, device tree or disk",
			"kernel", "initrd", "append", "dtb", "disk", "disk-ro", "guest")
	}
	return nil
}

// config turns flags (and an optional ELF program) into a machine config.
func (f *vmFlags) config(program string) (machine.Config, error) {
	cfg := machine.Config{MemoryMiB: f.memMiB, Exec: f.exec, Harts: f.smp, Quantum: f.quantum, Parallel: f.parallel}
	if f.smp < 1 || f.smp > machine.MaxHarts {
		return cfg, fmt.Errorf("-smp %d: must be between 1 and %d", f.smp, machine.MaxHarts)
	}
	if f.quantum == 0 {
		return cfg, errors.New("-quantum must be at least 1")
	}
	var err error
	if program != "" {
		if cfg.ELF, err = host.ReadImage(program); err != nil {
			return cfg, fmt.Errorf("program: %w", err)
		}
		return cfg, nil
	}
	g, err := f.lookup()
	if err != nil {
		return cfg, err
	}
	kernel, initrd := f.kernel, f.initrd
	if kernel == "" {
		if err := g.Check(); err != nil {
			return cfg, fmt.Errorf("%w, or give -kernel", err)
		}
		kernel = guests.Kernel()
		if initrd == "" {
			initrd = guests.Initrd()
		}
		if cfg.MemoryMiB == 0 {
			cfg.MemoryMiB = g.MemoryMiB
		}
	}
	if cfg.WallClock, err = f.wallClock(g); err != nil {
		return cfg, err
	}
	if cfg.Kernel, err = host.ReadImage(kernel); err != nil {
		return cfg, fmt.Errorf("kernel: %w", err)
	}
	if initrd != "" {
		if cfg.Initrd, err = host.ReadImage(initrd); err != nil {
			return cfg, fmt.Errorf("initrd: %w", err)
		}
	}
	cfg.Cmdline = f.appendArgs
	if cfg.Cmdline == "" && f.dtb == "" {
		cfg.Cmdline = defaultCmdline
	}
	if g.Debian() {
		if !strings.Contains(cfg.Cmdline, "ftvm.service=") {
			cfg.Cmdline = g.Cmdline(cfg.Cmdline)
		}
		if err := sharedDisk(g, &cfg); err != nil {
			return cfg, err
		}
		if f.disk, err = f.dataDisk(g, f.disk); err != nil {
			return cfg, err
		}
	}
	if f.dtb != "" {
		if cfg.DTB, err = host.ReadImage(f.dtb); err != nil {
			return cfg, fmt.Errorf("dtb: %w", err)
		}
	}
	if f.disk != "" {
		d, err := host.OpenDisk(f.disk, f.diskRO)
		if err != nil {
			return cfg, err
		}
		cfg.Disk, cfg.DiskReadOnly = d, f.diskRO
	}
	return cfg, nil
}

// checkRestored refuses -net for a machine restored (from the snapshot
// restore, "" for none) without a network device, and instruction counts
// (-max-instructions, -snapshot-at: named in counts) it has passed
// already: they count from the boot, not from the snapshot.
func (f *vmFlags) checkRestored(m *machine.Machine, restore string, counts map[string]uint64) error {
	if restore == "" {
		return nil
	}
	if f.net != "" && !m.HasNet() {
		return fmt.Errorf("-net: the machine in %s has no network device", restore)
	}
	for _, name := range slices.Sorted(maps.Keys(counts)) {
		if n := counts[name]; n != 0 && n <= m.Instret() {
			return fmt.Errorf("-%s %d: the machine in %s is at instruction %d already (counts start at the boot, not at the snapshot)", name, n, restore, m.Instret())
		}
	}
	return nil
}

// restoreMachine starts a machine from a snapshot file. With -disk, the
// snapshot's disk contents are written to that file and the guest runs on
// it; without, on a copy in memory.
func restoreMachine(path string, vf vmFlags, out machine.Outputs) (*machine.Machine, error) {
	opts := machine.RestoreOptions{Outputs: out, Exec: vf.exec, Parallel: vf.parallel}
	if err := vf.restoreShared(&opts); err != nil {
		return nil, err
	}
	if vf.disk != "" {
		d, err := host.OpenDisk(vf.disk, false)
		if err != nil {
			return nil, err
		}
		opts.Disk = d
	}
	return snapfile.Restore(path, opts)
}

// runAndSnapshot runs m to instruction at, then saves a snapshot to path.
func runAndSnapshot(m *machine.Machine, h *hostIO, at uint64, path string) error {
	lc := h.loop(context.Background(), m, at)
	if r, err := runloop.Run(lc); m.Instret() != at {
		if err == nil {
			err = fmt.Errorf("it stopped (%v)", r)
		}
		return fmt.Errorf("the guest stopped at %d, before -snapshot-at %d: %w", m.Instret(), at, err)
	}
	if err := snapfile.Save(m, path); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "\r\nftvm: snapshot at instruction %d written to %s\r\n", at, path)
	return nil
}

// hostIO is a machine's connection to this host: console output to
// stdout, console input from stdin (raw mode on a terminal; none for a
// bare-metal program), and the -net backend.
type hostIO struct {
	inputs *host.Inputs
	net    netdev.Backend // nil: none
	out    *bufio.Writer  // console output, flushed after every slice
}

func (h *hostIO) flush() { h.out.Flush() }

// attachHost connects a machine config to the host. It returns the host
// side and a function that releases it.
func (f *vmFlags) attachHost(cfg *machine.Config) (*hostIO, func(), error) {
	nb, err := f.openNet(cfg)
	if err != nil {
		return nil, nil, err
	}
	out := bufio.NewWriterSize(os.Stdout, 1<<20) // record may hold output for a few slices
	h := &hostIO{net: nb, out: out}
	cfg.Outputs.Console = func(_ uint64, b []byte) { out.Write(b) }
	restore := func() {}
	if nb != nil {
		cfg.Outputs.Net = func(_ uint64, frame []byte) { nb.Transmit(frame) }
	}
	var input <-chan []byte
	if cfg.ELF == nil {
		if host.IsTerminal(os.Stdin) {
			restore = host.RawTerminal(int(os.Stdin.Fd()))
		}
		input = host.ReadInput(os.Stdin)
	}
	h.inputs = host.NewInputs(input, nb)
	return h, func() {
		out.Flush()
		restore()
		if nb != nil {
			nb.Close()
		}
	}, nil
}

// loop is the run loop's configuration for e on this host: the host's
// inputs, console output flushed after every slice, a limit (0: none).
func (h *hostIO) loop(ctx context.Context, e vm.Engine, limit uint64) runloop.Config {
	return runloop.Config{Engine: e, Inputs: h.inputs, Limit: limit, Context: ctx,
		Hooks: runloop.Hooks{After: func(vm.StopReason) error { h.flush(); return nil }}}
}

// stopSignals is a context that ends on SIGINT or SIGTERM: a run so
// stopped ends cleanly (terminal restored, logs complete).
func stopSignals() (context.Context, func()) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// interrupted reports whether err is the end of a run stopped by a
// signal.
func interrupted(err error) bool { return errors.Is(err, context.Canceled) }

// openNet opens the -net backend and attaches it to cfg.
func (f *vmFlags) openNet(cfg *machine.Config) (netdev.Backend, error) {
	if f.net == "" {
		return nil, nil
	}
	mac, err := net.ParseMAC(f.mac)
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("-mac %q: not a 48-bit MAC address", f.mac)
	}
	kind, name, _ := strings.Cut(f.net, ":")
	var be netdev.Backend
	switch {
	case kind == "tap" && name != "":
		be, err = netdev.OpenTAP(name)
	case kind == "switch" && name != "":
		be, err = netdev.DialSwitch(name)
	default:
		return nil, fmt.Errorf("-net %q: want tap:NAME or switch:HOST:PORT", f.net)
	}
	if err != nil {
		return nil, fmt.Errorf("-net: %w", err)
	}
	cfg.Net = true
	copy(cfg.MAC[:], mac)
	return be, nil
}

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var vf vmFlags
	vf.register(fs)
	maxInsns := fs.Uint64("max-instructions", 0, "stop after this many instructions (0: no limit)")
	dumpDTB := fs.String("dump-dtb", "", "write the machine's device tree to `file` and exit (a starting point for -dtb)")
	noReboot := fs.Bool("no-reboot", false, "exit when the guest reboots instead of restarting it")
	snapAt := fs.Uint64("snapshot-at", 0, "save a snapshot when the instruction count reaches `n` (with -snapshot)")
	snapOut := fs.String("snapshot", "", "snapshot `file` written at -snapshot-at, or (without it) each time ftvm receives SIGUSR1")
	restore := fs.String("restore", "", "start from a snapshot `file` instead of booting (with -disk, that file is overwritten with the snapshot's disk)")
	gdbAddr := gdbFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ftvm run [flags] [PROGRAM.elf]\n\nWith no kernel and no program, boots the default guest.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return errors.New("run takes at most one program")
	}
	if vf.parallel && *gdbAddr != "" {
		return errors.New("-gdb needs the harts interleaved (a debugger's step is one instruction of one hart): leave out -parallel")
	}
	if *snapAt != 0 && *snapOut == "" {
		return errors.New("-snapshot-at needs -snapshot FILE")
	}
	set := given(fs)
	if err := vf.check(set, fs.Arg(0), *restore); err != nil {
		return err
	}
	switch {
	case fs.Arg(0) != "":
		if err := notWith(set, "a bare-metal program is never restarted and has no device tree", "no-reboot", "dump-dtb"); err != nil {
			return err
		}
	case *restore != "":
		if err := notWith(set, "a restored machine keeps the device tree it was booted with", "dump-dtb"); err != nil {
			return err
		}
	}
	var cfg machine.Config
	var err error
	if *restore == "" {
		if cfg, err = vf.config(fs.Arg(0)); err != nil {
			return err
		}
	}
	h, release, err := vf.attachHost(&cfg)
	if err != nil {
		return err
	}
	defer release()
	gs, err := gdbtarget.Listen(*gdbAddr, h.flush, os.Stderr)
	if err != nil {
		return err
	}
	var m *machine.Machine
	if *restore != "" {
		m, err = restoreMachine(*restore, vf, cfg.Outputs)
	} else {
		m, err = machine.New(cfg)
	}
	if err != nil {
		return err
	}
	if err := vf.checkRestored(m, *restore, map[string]uint64{"max-instructions": *maxInsns, "snapshot-at": *snapAt}); err != nil {
		return err
	}
	if *dumpDTB != "" {
		return os.WriteFile(*dumpDTB, m.DeviceTree(), 0o644)
	}
	if *snapAt != 0 {
		if err := runAndSnapshot(m, h, *snapAt, *snapOut); err != nil {
			return err
		}
	}
	ctx, stop := stopSignals()
	defer stop()
	var wake <-chan struct{}
	var onWake func() error
	if *snapAt == 0 && *snapOut != "" {
		var stopSnaps func()
		wake, onWake, stopSnaps = snapfile.OnSignal(func() *machine.Machine { return m }, *snapOut, syscall.SIGUSR1, func(n uint64, err error) {
			if err != nil {
				fmt.Fprintf(os.Stderr, "\r\nftvm: snapshot: %v\r\n", err)
				return
			}
			fmt.Fprintf(os.Stderr, "\r\nftvm: snapshot at instruction %d written to %s\r\n", n, *snapOut)
		})
		defer stopSnaps()
	}
	if *restore != "" && h.net != nil {
		// The restored guest may be continuing somewhere else than where
		// it was saved (another process, another switch port): tell the
		// network before it runs.
		if m.HasNet() {
			announce(h.net, m.MAC())
		}
	}
	start := time.Now()
	run := func() (vm.StopReason, error) {
		e, err := gs.Engine(m)
		if err != nil {
			return vm.StopLimit, err
		}
		lc := h.loop(ctx, e, *maxInsns)
		lc.Wake, lc.Tick = wake, onWake
		return runloop.Run(lc)
	}
	reason, err := run()
	for err == nil && reason == vm.StopReboot && !*noReboot && cfg.ELF == nil {
		h.flush()
		if *restore != "" {
			fmt.Fprintf(os.Stderr, "\r\nftvm: guest rebooted after %d instructions; a machine restored from a snapshot is not restarted (its images are not known)\r\n", m.Instret())
			break
		}
		fmt.Fprintf(os.Stderr, "\r\nftvm: guest rebooted after %d instructions; restarting\r\n", m.Instret())
		if m, err = m.Restart(cfg); err != nil {
			return err
		}
		reason, err = run()
	}
	h.flush()
	if gerr := gs.Finish(); gerr != nil {
		return gerr
	}
	elapsed := time.Since(start)
	n := m.Instret()
	note := ""
	if m.Parallel() {
		note = " (harts in parallel: not reproducible)"
	}
	fmt.Fprintf(os.Stderr, "\r\nftvm: %s after %d instructions in %.2fs (%.1f M instructions/s)\r\nftvm: state digest %x%s\r\n",
		reason, n, elapsed.Seconds(), float64(n)/elapsed.Seconds()/1e6, m.Digest().Sum, note)
	if interrupted(err) {
		fmt.Fprintf(os.Stderr, "ftvm: stopped by a signal\r\n")
		err = nil
	}
	if err != nil {
		return err
	}
	if cfg.ELF != nil && (reason != vm.StopPowerOff || m.ExitCode() != 0) {
		if reason == vm.StopPowerOff {
			fmt.Fprintf(os.Stderr, "ftvm: program failed with exit code %d\n", m.ExitCode())
		}
		return exitError(1)
	}
	return nil
}
