// Package bench holds ftvm's benchmarks: ftvm against QEMU (boot time, the
// speed of a CPU-bound guest), record and replay (overhead, replay speed,
// log rate, against QEMU's rr=record), and fault tolerance (key-value
// throughput and latency unreplicated and replicated, log bandwidth,
// failover time, slowdown against epoch length). ftvm bench prints them;
// docs/benchmarks.md has the results and the method.
package bench

import (
	"fmt"
	"io"

	"ftvm/host"
)

// Output is where a benchmark prints: its table, and progress lines while
// it runs.
type Output struct {
	Table, Progress io.Writer
}

// Guest is the kernel and initramfs a benchmark boots (files, which QEMU
// is given too), and the harts of the machines it builds (0: one; with
// Parallel they run in parallel, which the record and replay benchmark
// refuses).
type Guest struct {
	Kernel, Initrd string
	Harts          int
	Parallel       bool
}

func (g Guest) load() (kernel, initrd []byte, err error) {
	if kernel, err = host.ReadImage(g.Kernel); err != nil {
		return nil, nil, fmt.Errorf("kernel: %w", err)
	}
	if g.Initrd != "" {
		if initrd, err = host.ReadImage(g.Initrd); err != nil {
			return nil, nil, fmt.Errorf("initrd: %w", err)
		}
	}
	return kernel, initrd, nil
}
