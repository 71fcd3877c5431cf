package bench

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"ftvm/machine"
	"ftvm/riscv/jit"
)

// fresh returns the memory of earlier measurements' machines to the
// system, so that each measurement starts as a new process would: its
// guest RAM fresh from the kernel, not reused memory the Go runtime must
// clear first (hundreds of megabytes, in the measurement's time).
func fresh() { debug.FreeOSMemory() }

// benchCell is one measurement in each unit.
type benchCell struct{ wall, cpu float64 }

// VsQEMU prints ftvm's two execution engines (the interpreter and the
// translator) and QEMU's TCG (its virt board with OpenSBI; qemu "" skips
// it) side by side on the guest g: boot to the init banner, the CPU-bound
// guest program (instructions per second) and the key-value server's
// throughput, each measured runs times, interleaved, and reported as the
// median with the range. Rates are given per second of wall time and per
// second of the emulator's own CPU time: on a loaded host the second says
// more. The translator's costs follow (time per block, code size).
func VsQEMU(g Guest, qemu string, runs int, out Output) error {
	k, rd, err := g.load()
	if err != nil {
		return err
	}
	kernel, initrd := g.Kernel, g.Initrd
	const bootArgs = "console=ttyS0 earlycon=sbi ftvm.mode=poweroff"
	const cpuArgs = "console=ttyS0 earlycon=sbi ftvm.mode=cpubench ftvm.n=50"
	engines := []string{machine.ExecInterp}
	if jit.Available() {
		engines = append(engines, machine.ExecJIT)
	}
	jit.Clock = func() int64 { return time.Now().UnixNano() }
	defer func() { jit.Clock = nil }()

	cols := append(slices.Clone(engines), "qemu-tcg")
	type row struct {
		name  string
		unit  float64
		cells map[string][]benchCell
	}
	boot := &row{name: "boot to init banner (s)", unit: 1, cells: map[string][]benchCell{}}
	cpu := &row{name: "cpu-bound guest (M instructions/s)", unit: 1e6, cells: map[string][]benchCell{}}
	kv := &row{name: "key-value SET+GET (k operations/s)", unit: 1e3, cells: map[string][]benchCell{}}
	var stats jit.Stats
	var statsInsns uint64
	load0 := loadAverage()
	for i := 0; i < runs; i++ {
		for _, e := range engines {
			fmt.Fprintf(out.Progress, "bench: run %d/%d: %s\n", i+1, runs, e)
			fresh()
			t0, c0 := time.Now(), cpuTime()
			if _, err := ftvmMarks(g.config(k, rd, e, bootArgs), markInit); err != nil {
				return fmt.Errorf("%s boot: %w", e, err)
			}
			boot.cells[e] = append(boot.cells[e], benchCell{time.Since(t0).Seconds(), (cpuTime() - c0).Seconds()})
			fresh()
			m, err := ftvmRR(k, rd, rrWindow{cmdline: cpuArgs, from: markBenchFrom, to: markBenchTo, exec: e, harts: g.Harts, parallel: g.Parallel}, false)
			if err != nil {
				return fmt.Errorf("%s cpu-bound guest: %w", e, err)
			}
			n := float64(m.to - m.from)
			cpu.cells[e] = append(cpu.cells[e], benchCell{n / m.wall.Seconds(), n / m.cpu.Seconds()})
			if e == machine.ExecJIT {
				stats, statsInsns = m.jit, m.total
			}
			fresh()
			m, err = ftvmRR(k, rd, rrWindow{cmdline: "console=ttyS0 earlycon=sbi", from: "listening on", kv: 1000, exec: e, harts: g.Harts, parallel: g.Parallel}, false)
			if err != nil {
				return fmt.Errorf("%s key-value: %w", e, err)
			}
			kv.cells[e] = append(kv.cells[e], benchCell{float64(m.ops) / m.wall.Seconds(), float64(m.ops) / m.cpu.Seconds()})
			// The instruction count of the CPU-bound window is the same on
			// every engine; QEMU's rate is that count over its own time.
			if qemu == "" || e != engines[0] {
				continue
			}
			fmt.Fprintf(out.Progress, "bench: run %d/%d: qemu-tcg\n", i+1, runs)
			qb, err := qemuMarks(qemu, kernel, initrd, bootArgs, markInit)
			if err != nil {
				return fmt.Errorf("qemu boot: %w", err)
			}
			boot.cells["qemu-tcg"] = append(boot.cells["qemu-tcg"], benchCell{qb[0].Seconds(), 0})
			q, err := qemuRR(qemu, kernel, initrd, rrWindow{cmdline: cpuArgs, from: markBenchFrom, to: markBenchTo, noIcount: true}, "")
			if err != nil {
				return fmt.Errorf("qemu cpu-bound guest: %w", err)
			}
			cpu.cells["qemu-tcg"] = append(cpu.cells["qemu-tcg"], benchCell{n / q.wall.Seconds(), n / q.cpu.Seconds()})
			q, err = qemuRR(qemu, kernel, initrd, rrWindow{cmdline: "console=ttyS0 earlycon=sbi", from: "listening on", kv: 1000, noIcount: true}, "")
			if err != nil {
				return fmt.Errorf("qemu key-value: %w", err)
			}
			kv.cells["qemu-tcg"] = append(kv.cells["qemu-tcg"], benchCell{float64(q.ops) / q.wall.Seconds(), float64(q.ops) / q.cpu.Seconds()})
		}
	}
	load1 := loadAverage()

	fmt.Fprintf(out.Table, "median [min-max] of %d interleaved runs; host load average %s at the start, %s at the end, %d CPUs\n\n",
		runs, load0, load1, runtime.NumCPU())
	fmt.Fprintf(out.Table, "%-38s", "")
	for _, c := range cols {
		fmt.Fprintf(out.Table, " %24s", c)
	}
	fmt.Fprintln(out.Table)
	for _, r := range []*row{boot, cpu, kv} {
		for _, perCPU := range []bool{false, true} {
			name := r.name
			if perCPU {
				if r == boot {
					name = "  CPU time (s)"
				} else {
					name = "  per second of CPU time"
				}
			}
			fmt.Fprintf(out.Table, "%-38s", name)
			for _, c := range cols {
				var v []float64
				for _, m := range r.cells[c] {
					if perCPU {
						v = append(v, m.cpu/r.unit)
					} else {
						v = append(v, m.wall/r.unit)
					}
				}
				fmt.Fprintf(out.Table, " %24s", spread(v))
			}
			fmt.Fprintln(out.Table)
		}
	}
	if stats.Blocks > 0 {
		fmt.Fprintf(out.Table, "\ntranslator, one CPU-bound run (boot included): %d blocks of %.1f instructions on average, %.1f µs per block translated,\n",
			stats.Blocks, float64(stats.GuestInsns)/float64(stats.Blocks), float64(stats.TranslateNanos)/float64(stats.Blocks)/1e3)
		fmt.Fprintf(out.Table, "%.0f bytes of host code per guest instruction, code cache at most %.1f MiB, %d full flushes, %d pages invalidated,\n",
			float64(stats.CodeBytes)/float64(stats.GuestInsns), float64(stats.CodePeak)/(1<<20), stats.Flushes, stats.Invalidated)
		fmt.Fprintf(out.Table, "%.1f%% of the instructions executed in generated code (the rest interpreted: CSRs, LR/SC, system instructions, the ends of Run slices).\n",
			100*float64(stats.Native)/float64(statsInsns))
	}
	return nil
}

// spread formats the median and range of v.
func spread(v []float64) string {
	if len(v) == 0 || v[0] == 0 {
		return "-"
	}
	s := slices.Clone(v)
	slices.Sort(s)
	f := func(x float64) string {
		switch {
		case x >= 100:
			return fmt.Sprintf("%.0f", x)
		case x >= 10:
			return fmt.Sprintf("%.1f", x)
		}
		return fmt.Sprintf("%.2f", x)
	}
	return fmt.Sprintf("%s [%s-%s]", f(s[len(s)/2]), f(s[0]), f(s[len(s)-1]))
}

// loadAverage is the host's one-minute load average, as /proc shows it.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}
