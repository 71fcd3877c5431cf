package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"
	"time"

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

type mark struct {
	instret uint64
	wall    time.Duration
	cpu     time.Duration // the process's CPU time (all threads) so far
}

// config is the machine a benchmark boots on g with engine exec and this
// command line.
func (g Guest) config(kernel, initrd []byte, exec, cmdline string) machine.Config {
	return machine.Config{Kernel: kernel, Initrd: initrd, Cmdline: cmdline, Exec: exec, Harts: g.Harts, Parallel: g.Parallel}
}

// ftvmMarks boots the machine cfg and returns, for each marker in order,
// the instruction count and wall time (from before the machine is built)
// at which it appeared on the console.
func ftvmMarks(cfg machine.Config, markers ...string) ([]mark, error) {
	got, _, err := ftvmMarksMachine(cfg, markers...)
	return got, err
}

// ftvmMarksMachine is ftvmMarks, also returning the machine.
func ftvmMarksMachine(cfg machine.Config, markers ...string) ([]mark, *machine.Machine, error) {
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
	if n := len(s); n%2 == 0 && n > 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}
