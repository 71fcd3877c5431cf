package main

import (
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
	compare := fs.Bool("compare", false, "compare the replication modes instead: unreplicated, the replay-based pair, Remus, COLO and PLOVER on the same guest, clients and machine, interleaved (-runs rounds): throughput and latency against unreplicated, bandwidth, sync or checkpoint rate and size, identical pages, failover time")
	cmpModes := fs.String("modes", strings.Join(bench.CompareModes, ","), "with -compare: the modes, of "+strings.Join(bench.CompareModes, ","))
	cmpSMP := fs.String("smp", "1,2", "with -compare: the guest's harts (more than one runs -parallel), comma-separated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench takes no arguments (got %q)", fs.Args())
	}
	out := bench.Output{Table: os.Stdout, Progress: os.Stderr}
	set := given(fs)
	if *compare {
		if err := notWith(set, "the comparison runs the default guest in replica processes", "rr", "ft", "qemu", "kernel", "initrd", "ft-rounds", "ft-epochs"); err != nil {
			return err
		}
		var sizes []int
		for _, f := range strings.Split(*cmpSMP, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return fmt.Errorf("-smp %q: want hart counts", *cmpSMP)
			}
			sizes = append(sizes, n)
		}
		modes := strings.Split(*cmpModes, ",")
		for _, m := range modes {
			if !slices.Contains(bench.CompareModes, m) {
				return fmt.Errorf("-modes: unknown mode %q (want some of %s)", m, strings.Join(bench.CompareModes, ","))
			}
		}
		ftvm, err := os.Executable()
		if err != nil {
			return err
		}
		return bench.Compare(bench.CompareOptions{Ftvm: ftvm, Duration: *ftDur, Conns: *ftConns, Runs: *runs, SMP: sizes, Modes: modes}, out)
	} else if err := notWith(set, "they are the comparison's (-compare)", "modes", "smp"); err != nil {
		return err
	}
	if *ft {
		if err := notWith(set, "the fault-tolerance benchmark runs the default guest in replica processes, once", "rr", "runs", "qemu", "kernel", "initrd"); err != nil {
			return err
		}
	} else if err := notWith(set, "they are the fault-tolerance benchmark's (-ft)", "ft-duration", "ft-conns", "ft-rounds", "ft-epochs"); err != nil {
		return err
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
		return bench.FaultTolerance(bench.FTOptions{Ftvm: ftvm, Duration: *ftDur, Conns: *ftConns, Rounds: *ftRounds, Epochs: epochs}, out)
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
	g := bench.Guest{Kernel: *kernel, Initrd: *initrd}
	if *rr {
		return bench.RecordReplay(g, *qemu, *runs, out)
	}
	return bench.VsQEMU(g, *qemu, *runs, out)
}
