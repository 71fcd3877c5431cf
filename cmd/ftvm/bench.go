package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ftvm/host"
	"ftvm/machine"
	"ftvm/runloop"
	"ftvm/vm"
)

// Console markers printed by the default guest (guest/cmd/init and
// guest/cmd/workload).
const (
	markInit      = "ftvm-init: started"
	markBenchFrom = "cpubench: start"
	markBenchTo   = "cpubench: done"
)

// benchHarts and benchParallel choose the machines the default, -rr and
// -ft benchmarks build (-harts, -parallel).
var (
	benchHarts    = 1
	benchParallel bool
)

func cmdBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	runs := fs.Int("runs", 3, "runs of each measurement (the median is reported)")
	qemu := fs.String("qemu", "qemu-system-riscv64", "QEMU binary for the baseline (empty: skip QEMU)")
	kernel := fs.String("kernel", "", "kernel Image (default: the default guest)")
	initrd := fs.String("initrd", "", "initramfs (default: the default guest's)")
	rr := fs.Bool("rr", false, "benchmark record and replay instead (issue 3): record overhead, replay speed and log rate for an idle, a CPU-bound and a key-value guest, against QEMU's rr=record")
	ft := fs.Bool("ft", false, "benchmark fault tolerance instead (issue 4): key-value throughput and latency unreplicated and replicated, log bandwidth, failover time, and slowdown against epoch length")
	ftDur := fs.Duration("ft-duration", 5*time.Second, "with -ft: length of each key-value load")
	ftConns := fs.Int("ft-conns", 8, "with -ft: client connections of the throughput load")
	ftRounds := fs.Int("ft-rounds", 10, "with -ft: cpubench rounds of the epoch experiment")
	ftEpochs := fs.String("ft-epochs", "4096,32768,100000,1000000", "with -ft: epoch lengths (instructions) of the epoch experiment")
	fs.IntVar(&benchHarts, "harts", 1, "harts of the guests the benchmarks boot (with -ft, of the primaries and plain runs)")
	fs.BoolVar(&benchParallel, "parallel", false, "run the harts in parallel in the default benchmark (not deterministic: not with -rr or -ft)")
	smp := fs.Bool("smp", false, "benchmark multi-hart guests instead: Linux boot with 1, 2 and 4 harts, a CPU-bound workload with one worker per CPU at 1 and 2 harts (interleaved and parallel), and a lock-heavy workload against QEMU TCG -smp 2 with and without -icount")
	smpChains := fs.Int("smp-chains", 8, "with -smp: chains of the CPU-bound workload")
	smpRounds := fs.Int("smp-rounds", 2, "with -smp: rounds per chain")
	smpLock := fs.Int("smp-lock", 2000, "with -smp: iterations of the lock-heavy workload (per thread, and pipe exchanges)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if benchHarts < 1 || benchHarts > machine.MaxHarts {
		return fmt.Errorf("-harts %d: must be between 1 and %d", benchHarts, machine.MaxHarts)
	}
	if benchParallel && (*rr || *ft || *smp) {
		return errors.New("-parallel goes with the default benchmark only (-rr and -ft are deterministic; -smp measures both modes)")
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
		return benchFT(*ftDur, *ftConns, *ftRounds, epochs)
	}
	if *kernel == "" {
		*kernel = filepath.Join(host.GuestDir(), "Image")
		if *initrd == "" {
			*initrd = filepath.Join(host.GuestDir(), "initramfs.cpio")
		}
	}
	k, err := os.ReadFile(*kernel)
	if err != nil {
		return fmt.Errorf("kernel: %w (build the default guest with scripts/build-guest.sh)", err)
	}
	var rd []byte
	if *initrd != "" {
		if rd, err = os.ReadFile(*initrd); err != nil {
			return fmt.Errorf("initrd: %w", err)
		}
	}
	if *qemu != "" {
		if _, err := exec.LookPath(*qemu); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s not found, skipping the QEMU baseline\n", *qemu)
			*qemu = ""
		}
	}

	if *rr {
		return benchRR(k, rd, *kernel, *initrd, *qemu, *runs)
	}
	if *smp {
		return benchSMP(k, rd, *kernel, *initrd, *qemu, *runs, *smpChains, *smpRounds, *smpLock)
	}

	const bootArgs = "console=ttyS0 earlycon=sbi ftvm.mode=poweroff"
	const cpuArgs = "console=ttyS0 earlycon=sbi ftvm.mode=cpubench ftvm.n=50"
	var fBoot, qBoot, fIPS, qIPS []float64
	for i := 0; i < *runs; i++ {
		fmt.Fprintf(os.Stderr, "bench: run %d/%d\n", i+1, *runs)
		r, err := ftvmMarks(k, rd, bootArgs, markInit)
		if err != nil {
			return fmt.Errorf("ftvm boot: %w", err)
		}
		fBoot = append(fBoot, r[0].wall.Seconds())
		r, err = ftvmMarks(k, rd, cpuArgs, markBenchFrom, markBenchTo)
		if err != nil {
			return fmt.Errorf("ftvm cpubench: %w", err)
		}
		insns := float64(r[1].instret - r[0].instret)
		fIPS = append(fIPS, insns/(r[1].wall-r[0].wall).Seconds())
		if *qemu != "" {
			q, err := qemuMarks(*qemu, *kernel, *initrd, bootArgs, markInit)
			if err != nil {
				return fmt.Errorf("qemu boot: %w", err)
			}
			qBoot = append(qBoot, q[0].Seconds())
			q, err = qemuMarks(*qemu, *kernel, *initrd, cpuArgs, markBenchFrom, markBenchTo)
			if err != nil {
				return fmt.Errorf("qemu cpubench: %w", err)
			}
			// QEMU does not count instructions; the guest program is the
			// same, so use ftvm's exact count for the same interval.
			qIPS = append(qIPS, insns/(q[1]-q[0]).Seconds())
		}
	}

	fmt.Printf("%-36s %12s %12s %10s\n", "metric (median of "+fmt.Sprint(*runs)+")", "ftvm", "qemu-tcg", "ftvm/qemu")
	row := func(name string, f, q []float64, unit float64) {
		fm := median(f) / unit
		if len(q) == 0 {
			fmt.Printf("%-36s %12.3f %12s %10s\n", name, fm, "-", "-")
			return
		}
		qm := median(q) / unit
		fmt.Printf("%-36s %12.3f %12.3f %10.2f\n", name, fm, qm, fm/qm)
	}
	row("boot to init banner (s)", fBoot, qBoot, 1)
	row("cpu-bound guest (M instructions/s)", fIPS, qIPS, 1e6)
	return nil
}

type mark struct {
	instret uint64
	wall    time.Duration
	cpu     time.Duration // the process's CPU time (user and system) so far
}

// cpuTime is the CPU time this process has used, all threads together.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ftvmMarks boots a machine and returns, for each marker in order, the
// instruction count and wall time (from before the machine is built) at
// which it appeared on the console.
func ftvmMarks(kernel, initrd []byte, cmdline string, markers ...string) ([]mark, error) {
	got, _, err := ftvmMarksCfg(machine.Config{Kernel: kernel, Initrd: initrd, Cmdline: cmdline, Harts: benchHarts, Parallel: benchParallel}, markers...)
	return got, err
}

// ftvmMarksCfg is ftvmMarks for a machine built from cfg (its console
// output is taken over); it also returns the machine.
func ftvmMarksCfg(cfg machine.Config, markers ...string) ([]mark, *machine.Machine, error) {
	start := time.Now()
	var line bytes.Buffer
	var got []mark
	var m *machine.Machine
	cfg.Outputs.Console = func(instret uint64, b []byte) {
		for _, c := range b {
			if c != '\n' {
				line.WriteByte(c)
				continue
			}
			if len(got) < len(markers) && strings.Contains(line.String(), markers[len(got)]) {
				got = append(got, mark{instret, time.Since(start), cpuTime()})
				if len(got) == len(markers) {
					m.Pause()
				}
			}
			line.Reset()
		}
	}
	m, err := machine.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	r, err := runloop.Run(runloop.Config{Engine: m, Limit: 50e9, Hooks: runloop.Hooks{
		Stop: func(vm.StopReason) bool { return len(got) == len(markers) }}})
	if len(got) < len(markers) {
		if err == nil {
			err = fmt.Errorf("%v after %d instructions", r, m.Instret())
		}
		return nil, nil, fmt.Errorf("guest stopped before printing %q: %w", markers[len(got)], err)
	}
	return got, m, nil
}

// qemuMarks boots QEMU's virt board (OpenSBI firmware, one hart) and returns
// the wall time at which each marker appeared on its console.
func qemuMarks(qemu, kernel, initrd, cmdline string, markers ...string) ([]time.Duration, error) {
	return qemuMarksArgs(qemu, kernel, initrd, cmdline, []string{"-smp", "1"}, 5*time.Minute, markers...)
}

// qemuMarksArgs is qemuMarks with extra QEMU arguments (which must say
// -smp) and a time limit.
func qemuMarksArgs(qemu, kernel, initrd, cmdline string, extra []string, limit time.Duration, markers ...string) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	args := append([]string{"-M", "virt", "-m", "256M", "-nographic", "-bios", "default",
		"-kernel", kernel, "-append", cmdline}, extra...)
	if initrd != "" {
		args = append(args, "-initrd", initrd)
	}
	cmd := exec.CommandContext(ctx, qemu, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdin = nil
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	var got []time.Duration
	var tailBuf []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && len(got) < len(markers) {
		if strings.Contains(sc.Text(), markers[len(got)]) {
			got = append(got, time.Since(start))
		}
		tailBuf = append(tailBuf, sc.Text())
	}
	if len(got) < len(markers) {
		io.Copy(io.Discard, stdout)
		n := max(0, len(tailBuf)-10)
		return nil, errors.New("QEMU's guest never printed " + markers[len(got)] + "; last lines:\n" + strings.Join(tailBuf[n:], "\n"))
	}
	return got, nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
