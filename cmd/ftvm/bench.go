package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"ftvm/bench"
	"ftvm/host"
	"ftvm/machine"
)

func cmdBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	runs := fs.Int("runs", 3, "runs of each measurement (the median is reported)")
	qemu := fs.String("qemu", "qemu-system-riscv64", "QEMU binary for the baseline (empty: skip QEMU)")
	kernel := fs.String("kernel", "", "kernel Image (default: the default guest)")
	initrd := fs.String("initrd", "", "initramfs (default: the default guest's)")
	rr := fs.Bool("rr", false, "benchmark record and replay instead: record overhead, replay speed and log rate for an idle, a CPU-bound and a key-value guest, against QEMU's rr=record")
	ft := fs.Bool("ft", false, "benchmark fault tolerance instead: key-value throughput and latency unreplicated and replicated, log bandwidth, failover time, and slowdown against epoch length")
	ftDur := fs.Duration("ft-duration", 5*time.Second, "with -ft: length of each key-value load")
	ftConns := fs.Int("ft-conns", 8, "with -ft: client connections of the throughput load")
	ftRounds := fs.Int("ft-rounds", 10, "with -ft: cpubench rounds of the epoch experiment")
	ftEpochs := fs.String("ft-epochs", "4096,32768,100000,1000000", "with -ft: epoch lengths (instructions) of the epoch experiment")
	modes := fs.Bool("modes", false, "benchmark the replication modes side by side instead: unreplicated, replay, checkpoint (Remus) with 25 ms and\n100 ms periods, and colo, on the key-value server: throughput, latency, checkpoints, link bandwidth, failover time\n(-runs rounds over all of them, interleaved; the median and range; -harts and -parallel for the guest)")
	modesGuest := fs.String("modes-guest", "kv", "with -modes: the guest: kv (our key-value server) or redis (Debian's Redis)")
	smp := fs.Bool("smp", false, "benchmark multi-hart guests instead: Linux boot with 1, 2 and 4 harts, a CPU-bound workload with one worker per CPU at 1 and 2 harts (interleaved and parallel), and a lock-heavy workload against QEMU TCG -smp 2 with and without -icount")
	smpChains := fs.Int("smp-chains", 8, "with -smp: chains of the CPU-bound workload")
	smpRounds := fs.Int("smp-rounds", 2, "with -smp: rounds per chain")
	smpLock := fs.Int("smp-lock", 10000, "with -smp: iterations of the lock-heavy workload (per thread, and pipe exchanges)")
	harts := fs.Int("harts", 1, "harts of the guests the other benchmarks boot (with -ft, of the primaries and plain runs)")
	parallel := fs.Bool("parallel", false, "run the harts in parallel in the default benchmark and, with -modes, unreplicated and in the checkpointing modes\n(not deterministic: not with -rr or -ft)")
	services := fs.Bool("services", false, "benchmark the Debian guests' services instead, with their real clients: redis-benchmark, pgbench and wrk, on ftvm, ftvm replicated and QEMU TCG (same kernel and root), interleaved runs")
	svcOnly := fs.String("services-only", "redis,postgres,nginx", "with -services: the guests to measure")
	svcDur := fs.Duration("services-duration", 20*time.Second, "with -services: length of each pgbench and wrk run")
	svcReqs := fs.Int("services-requests", 5000, "with -services: redis-benchmark requests per test")
	compare := fs.Bool("compare", false, "compare the replication modes instead: unreplicated, the replay-based pair, Remus (25 ms and 100 ms periods), COLO and PLOVER on the same guest, clients and machine, interleaved (-runs rounds): throughput and latency against unreplicated, bandwidth, sync or checkpoint rate and size, identical pages, failover time")
	cmpModes := fs.String("compare-modes", strings.Join(bench.CompareModes, ","), "with -compare: the modes, of "+strings.Join(bench.CompareModes, ","))
	cmpHarts := fs.String("compare-harts", "1,2", "with -compare: the guest's harts (more than one runs -parallel), comma-separated")
	cmpExec := fs.String("compare-exec", "", "with -compare: the replicas' execution engine, "+machine.ExecJIT+" or "+machine.ExecInterp+" (default: ftvm's own default)")
	cmpGuests := fs.String("compare-guests", "kv", "with -compare: the guests, of "+strings.Join(bench.CompareGuests, ",")+" (the key-value server's SETs, Redis's SETs and GETs\nhalf and half, PostgreSQL's pgbench), comma-separated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench takes no arguments (got %q)", fs.Args())
	}
	out := bench.Output{Table: os.Stdout, Progress: os.Stderr}
	set := given(fs)
	if *compare {
		if err := notWith(set, "the comparison runs its guests (-compare-guests) in replica processes", "rr", "ft", "qemu", "kernel", "initrd", "ft-rounds", "ft-epochs", "smp", "harts", "parallel", "services", "modes", "modes-guest"); err != nil {
			return err
		}
		var sizes []int
		for _, f := range strings.Split(*cmpHarts, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return fmt.Errorf("-compare-harts %q: want hart counts", *cmpHarts)
			}
			sizes = append(sizes, n)
		}
		modes := strings.Split(*cmpModes, ",")
		for _, m := range modes {
			if !slices.Contains(bench.CompareModes, m) {
				return fmt.Errorf("-compare-modes: unknown mode %q (want some of %s)", m, strings.Join(bench.CompareModes, ","))
			}
		}
		var gs []string
		for _, g := range strings.Split(*cmpGuests, ",") {
			gs = append(gs, strings.TrimSpace(g))
		}
		if err := bench.CheckCompareGuests(gs); err != nil {
			return err
		}
		if *runs < 1 {
			return fmt.Errorf("-runs %d: want at least 1", *runs)
		}
		if e := *cmpExec; e != "" && e != machine.ExecJIT && e != machine.ExecInterp {
			return fmt.Errorf("-compare-exec %q: want %s or %s", e, machine.ExecJIT, machine.ExecInterp)
		}
		ftvm, err := os.Executable()
		if err != nil {
			return err
		}
		return bench.Compare(bench.CompareOptions{Ftvm: ftvm, Duration: *ftDur, Conns: *ftConns, Runs: *runs, SMP: sizes, Modes: modes, Guests: gs, Exec: *cmpExec}, out)
	} else if err := notWith(set, "they are the comparison's (-compare)", "compare-modes", "compare-harts", "compare-guests", "compare-exec"); err != nil {
		return err
	}
	if *modes {
		if err := notWith(set, "the benchmark of the replication modes runs the guest in replica processes", "rr", "ft", "services", "smp", "qemu", "kernel", "initrd", "ft-rounds", "ft-epochs"); err != nil {
			return err
		}
		if *runs < 1 {
			return fmt.Errorf("-runs %d: want at least 1", *runs)
		}
		ftvm, err := os.Executable()
		if err != nil {
			return err
		}
		return bench.Modes(bench.ModesOptions{Ftvm: ftvm, Duration: *ftDur, Conns: *ftConns, Runs: *runs,
			Harts: *harts, Parallel: *parallel, Guest: *modesGuest}, out)
	}
	if err := notWith(set, "it is the benchmark of the replication modes' (-modes)", "modes-guest"); err != nil {
		return err
	}
	if *harts < 1 || *harts > machine.MaxHarts {
		return fmt.Errorf("-harts %d: must be between 1 and %d", *harts, machine.MaxHarts)
	}
	if *parallel && (*rr || *ft) {
		return errors.New("-parallel goes with the default benchmark only: -rr and -ft need deterministic machines")
	}
	if *smp {
		if err := notWith(set, "the multi-hart benchmark chooses the harts and modes itself", "harts", "parallel", "rr", "ft", "services"); err != nil {
			return err
		}
	} else if err := notWith(set, "they are the multi-hart benchmark's (-smp)", "smp-chains", "smp-rounds", "smp-lock"); err != nil {
		return err
	}
	if *ft {
		if err := notWith(set, "the fault-tolerance benchmark runs the default guest in replica processes, once", "rr", "runs", "qemu", "kernel", "initrd"); err != nil {
			return err
		}
	} else if err := notWith(set, "they are the fault-tolerance benchmark's (-ft)", "ft-duration", "ft-conns", "ft-rounds", "ft-epochs"); err != nil {
		return err
	}
	if !*services {
		if err := notWith(set, "they are the services benchmark's (-services)", "services-only", "services-duration", "services-requests"); err != nil {
			return err
		}
	}
	if *services {
		if err := notWith(set, "the services benchmark boots the Debian guests", "rr", "ft", "kernel", "initrd", "harts", "parallel"); err != nil {
			return err
		}
		ftvm, err := os.Executable()
		if err != nil {
			return err
		}
		return bench.Services(bench.ServicesOptions{Ftvm: ftvm, Qemu: *qemu, Runs: *runs, Duration: *svcDur, Only: *svcOnly, Requests: *svcReqs}, out)
	}
	if *ft {
		var epochs []uint64
		for _, f := range strings.Split(*ftEpochs, ",") {
			e, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			if err != nil || e == 0 {
				return fmt.Errorf("-ft-epochs %q: want positive instruction counts", *ftEpochs)
			}
			epochs = append(epochs, e)
		}
		ftvm, err := os.Executable()
		if err != nil {
			return err
		}
		return bench.FaultTolerance(bench.FTOptions{Ftvm: ftvm, Duration: *ftDur, Conns: *ftConns, Rounds: *ftRounds, Epochs: epochs, Harts: *harts}, out)
	}
	if *kernel == "" {
		*kernel = filepath.Join(host.GuestDir(), "Image")
		if *initrd == "" {
			*initrd = filepath.Join(host.GuestDir(), "initramfs.cpio")
		}
	}
	if _, err := os.Stat(*kernel); err != nil {
		return fmt.Errorf("kernel: %w (build the default guest with scripts/build-guest.sh)", err)
	}
	if *qemu != "" {
		if _, err := exec.LookPath(*qemu); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s not found, skipping the QEMU baseline\n", *qemu)
			*qemu = ""
		}
	}
	g := bench.Guest{Kernel: *kernel, Initrd: *initrd, Harts: *harts, Parallel: *parallel}
	if *rr {
		return bench.RecordReplay(g, *qemu, *runs, out)
	}
	if *smp {
		return bench.SMP(g, *qemu, *runs, bench.SMPOptions{Chains: *smpChains, Rounds: *smpRounds, Lock: *smpLock}, out)
	}
	return bench.VsQEMU(g, *qemu, *runs, out)
}
