package bench

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"ftvm/machine"
	"ftvm/runloop"
	"ftvm/vm"
)

// Multi-hart guests (ftvm bench -smp). Every configuration runs once per
// round, in turn, so that the load of the host weighs on all of them alike;
// each figure is the median over the rounds with its range.

const (
	markSMPFrom  = "smpbench: start"
	markSMPTo    = "smpbench: done"
	markLockFrom = "lockbench: start"
	markLockTo   = "lockbench: done"
)

// smpConfig is one machine configuration of the benchmark.
type smpConfig struct {
	harts    int
	parallel bool
}

func (c smpConfig) String() string {
	if c.harts == 1 {
		return "1 hart"
	}
	mode := "interleaved"
	if c.parallel {
		mode = "parallel"
	}
	return fmt.Sprintf("%d harts, %s", c.harts, mode)
}

// smpSample is one measured run.
type smpSample struct {
	insns     uint64
	wall, cpu time.Duration // cpu: all host threads together (ftvm only)
	stats     machine.SchedStats
}

type smpRow struct {
	name    string
	cfg     smpConfig
	qemu    []string // QEMU's arguments; nil: an ftvm row
	samples []smpSample
	failed  string // why a QEMU row has no result
}

// qemuLimit bounds a QEMU run of the lock-heavy workload: QEMU's
// deterministic SMP (-icount) may not get there at all.
const qemuLimit = 3 * time.Minute

// SMPOptions size the multi-hart benchmark's workloads.
type SMPOptions struct {
	Chains, Rounds int // the CPU-bound workload: chains of rounds
	Lock           int // iterations of the lock-heavy workload
}

// SMP prints, for the guest g (its Harts and Parallel are not used), the
// Linux boot with 1, 2 and 4 harts interleaved and in parallel, a CPU-bound
// workload with one worker per CPU at 1 and 2 harts, and a lock-heavy
// workload at 2 harts interleaved against QEMU TCG -smp 2 with and without
// -icount (qemu "" skips QEMU), runs rounds of each.
func SMP(g Guest, qemu string, runs int, o SMPOptions, out Output) error {
	k, rd, err := g.load()
	if err != nil {
		return err
	}
	kernel, initrd, chains, rounds, lockN := g.Kernel, g.Initrd, o.Chains, o.Rounds, o.Lock
	bootArgs := "console=ttyS0 ftvm.mode=poweroff"
	cpuArgs := fmt.Sprintf("console=ttyS0 ftvm.mode=smpbench ftvm.chains=%d ftvm.n=%d", chains, rounds)
	lockArgs := fmt.Sprintf("console=ttyS0 ftvm.mode=lockbench ftvm.n=%d", lockN)
	boot := []*smpRow{{cfg: smpConfig{1, false}}, {cfg: smpConfig{2, false}}, {cfg: smpConfig{4, false}},
		{cfg: smpConfig{2, true}}, {cfg: smpConfig{4, true}}}
	cpu := []*smpRow{{cfg: smpConfig{1, false}}, {cfg: smpConfig{2, false}}, {cfg: smpConfig{2, true}}}
	lock := []*smpRow{{name: "ftvm, 2 harts interleaved", cfg: smpConfig{2, false}}}
	if qemu != "" {
		lock = append(lock,
			&smpRow{name: "QEMU TCG -smp 2 (one thread per hart)", qemu: []string{"-smp", "2"}},
			&smpRow{name: "QEMU TCG -smp 2, one thread, round-robin", qemu: []string{"-smp", "2", "-accel", "tcg,thread=single"}},
			&smpRow{name: "QEMU TCG -smp 2 -icount shift=auto", qemu: []string{"-smp", "2", "-icount", "shift=auto"}})
	}
	measure := func(r *smpRow, cmdline string, markers ...string) error {
		if r.qemu != nil {
			if r.failed != "" {
				return nil // it did not finish once: not again
			}
			q, err := qemuMarksArgs(qemu, kernel, initrd, cmdline, r.qemu, qemuLimit, markers...)
			if err != nil {
				r.failed = fmt.Sprintf("no result: the guest did not print %q within %v", markers[len(markers)-1], qemuLimit)
				if !strings.Contains(err.Error(), "never printed") {
					r.failed = "no result: " + err.Error()
				}
				return nil
			}
			r.samples = append(r.samples, smpSample{wall: q[len(q)-1] - q[0]})
			return nil
		}
		cfg := machine.Config{Kernel: k, Initrd: rd, Cmdline: cmdline, Harts: r.cfg.harts, Parallel: r.cfg.parallel}
		if len(markers) == 0 {
			// To the end: the count at power-off.
			start, cpu0 := time.Now(), cpuTime()
			m, err := machine.New(cfg)
			if err != nil {
				return err
			}
			if reason, err := runloop.Run(runloop.Config{Engine: m, Limit: 50e9}); err != nil || reason != vm.StopPowerOff {
				return fmt.Errorf("stopped with %v after %d instructions (%v)", reason, m.Instret(), err)
			}
			r.samples = append(r.samples, smpSample{insns: m.Instret(), wall: time.Since(start), cpu: cpuTime() - cpu0, stats: m.SchedStats()})
			return nil
		}
		got, m, err := ftvmMarksMachine(cfg, markers...)
		if err != nil {
			return err
		}
		s := smpSample{wall: got[len(got)-1].wall, insns: got[len(got)-1].instret, cpu: got[len(got)-1].cpu, stats: m.SchedStats()}
		if len(got) > 1 {
			s.wall -= got[0].wall
			s.insns -= got[0].instret
			s.cpu -= got[0].cpu
		}
		r.samples = append(r.samples, s)
		return nil
	}
	for i := range runs {
		for _, r := range boot {
			fmt.Fprintf(out.Progress, "bench -smp: round %d/%d: boot, %v\n", i+1, runs, r.cfg)
			if err := measure(r, bootArgs); err != nil {
				return fmt.Errorf("boot, %v: %w", r.cfg, err)
			}
		}
		for _, r := range cpu {
			fmt.Fprintf(out.Progress, "bench -smp: round %d/%d: cpu-bound, %v\n", i+1, runs, r.cfg)
			if err := measure(r, cpuArgs, markSMPFrom, markSMPTo); err != nil {
				return fmt.Errorf("cpu-bound, %v: %w", r.cfg, err)
			}
		}
		for _, r := range lock {
			fmt.Fprintf(out.Progress, "bench -smp: round %d/%d: lock-heavy, %s\n", i+1, runs, r.name)
			if err := measure(r, lockArgs, markLockFrom, markLockTo); err != nil {
				return fmt.Errorf("lock-heavy, %s: %w", r.name, err)
			}
		}
	}

	fmt.Fprintf(out.Table, "Multi-hart guests: median of %d rounds [min-max]; every configuration ran once per round, in turn.\n", runs)
	fmt.Fprintf(out.Table, "Instruction counts are all harts together; an interleaved run's count is exact and the same every time.\n\n")
	fmt.Fprintf(out.Table, "Linux boot to power-off\n")
	fmt.Fprintf(out.Table, "  %-24s %20s %9s %20s %20s  %s\n", "", "instructions (M)", "vs 1 hart", "wall (s)", "host CPU (s)", "turns: quantum/idle/pause/IPI")
	base := medianU(boot[0].samples, func(s smpSample) float64 { return float64(s.insns) })
	for _, r := range boot {
		ins := medianU(r.samples, func(s smpSample) float64 { return float64(s.insns) })
		fmt.Fprintf(out.Table, "  %-24s %20s %9.2f %20s %20s  %s\n", r.cfg, spreadOf(r.samples, func(s smpSample) float64 { return float64(s.insns) / 1e6 }, "%.1f"),
			ins/base, spreadOf(r.samples, func(s smpSample) float64 { return s.wall.Seconds() }, "%.2f"),
			spreadOf(r.samples, func(s smpSample) float64 { return s.cpu.Seconds() }, "%.2f"), turns(r))
	}
	fmt.Fprintf(out.Table, "\nCPU-bound, one worker per CPU (%d chains of %d rounds, from smpbench: start to done)\n", chains, rounds)
	fmt.Fprintf(out.Table, "  %-24s %20s %20s %9s %20s\n", "", "instructions (M)", "wall (s)", "speed-up", "host CPU (s)")
	cbase := medianU(cpu[0].samples, func(s smpSample) float64 { return s.wall.Seconds() })
	for _, r := range cpu {
		w := medianU(r.samples, func(s smpSample) float64 { return s.wall.Seconds() })
		fmt.Fprintf(out.Table, "  %-24s %20s %20s %9.2f %20s\n", r.cfg, spreadOf(r.samples, func(s smpSample) float64 { return float64(s.insns) / 1e6 }, "%.1f"),
			spreadOf(r.samples, func(s smpSample) float64 { return s.wall.Seconds() }, "%.2f"), cbase/w,
			spreadOf(r.samples, func(s smpSample) float64 { return s.cpu.Seconds() }, "%.2f"))
	}
	fmt.Fprintf(out.Table, "\nLock-heavy, 2 CPUs (lockbench: %d iterations of 4 threads on one mutex, then %d pipe exchanges between 2 threads)\n", lockN, lockN)
	fmt.Fprintf(out.Table, "  %-40s %20s %20s %20s\n", "", "instructions (M)", "wall (s)", "host CPU (s)")
	for _, r := range lock {
		if len(r.samples) == 0 {
			fmt.Fprintf(out.Table, "  %-40s %s\n", r.name, r.failed)
			continue
		}
		ins, cpu := "-", "-"
		if r.qemu == nil {
			ins = spreadOf(r.samples, func(s smpSample) float64 { return float64(s.insns) / 1e6 }, "%.1f")
			cpu = spreadOf(r.samples, func(s smpSample) float64 { return s.cpu.Seconds() }, "%.2f")
		}
		fmt.Fprintf(out.Table, "  %-40s %20s %20s %20s\n", r.name, ins, spreadOf(r.samples, func(s smpSample) float64 { return s.wall.Seconds() }, "%.2f"), cpu)
		if r.failed != "" {
			fmt.Fprintf(out.Table, "  %-40s (%d of %d rounds; then %s, and it was not run again)\n", "", len(r.samples), runs, r.failed)
		}
	}
	return nil
}

func turns(r *smpRow) string {
	if r.cfg.harts == 1 || r.cfg.parallel || len(r.samples) == 0 {
		return ""
	}
	s := r.samples[0].stats // the same every round: the run is deterministic
	return fmt.Sprintf("%d/%d/%d/%d", s.Quantum, s.Idle, s.Pause, s.IPI)
}

func medianU(s []smpSample, f func(smpSample) float64) float64 {
	v := make([]float64, len(s))
	for i := range s {
		v[i] = f(s[i])
	}
	return median(v)
}

// spreadOf formats the median and range of f over s.
func spreadOf(s []smpSample, f func(smpSample) float64, format string) string {
	v := make([]float64, len(s))
	for i := range s {
		v[i] = f(s[i])
	}
	sort.Float64s(v)
	m := median(v)
	if v[0] == v[len(v)-1] {
		return fmt.Sprintf(format, m)
	}
	return strings.Join([]string{fmt.Sprintf(format, m), " [", fmt.Sprintf(format, v[0]), "-", fmt.Sprintf(format, v[len(v)-1]), "]"}, "")
}
