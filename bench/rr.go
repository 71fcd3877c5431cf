package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"ftvm/guest/workload"
	"ftvm/host"
	"ftvm/host/netdev"
	"ftvm/host/netstack"
	"ftvm/machine"
	"ftvm/machinelog"
	"ftvm/replay"
	"ftvm/replay/eventlog"
	"ftvm/riscv/jit"
	"ftvm/runloop"
	"ftvm/vm"
)

// The record/replay benchmark (ftvm bench -rr): for an idle
// guest, a CPU-bound guest and a network-heavy key-value workload, the
// cost of recording against a plain run, the speed of replay, and the
// log's rate in bytes per wall-clock second; and the same for QEMU's own
// record/replay (-icount shift=auto,rr=record) on the same kernel where it
// applies.

// rrWindow says what part of a run is measured: from the console line
// containing from to the one containing to, or for dur after it, or while
// the key-value client runs (kv > 0 SET/GET pairs).
type rrWindow struct {
	cmdline  string
	from, to string
	dur      time.Duration
	kv       int
	exec     string // ftvm's execution engine (empty: the default)
	harts    int    // ftvm's harts (0: one); QEMU's are always one
	parallel bool   // ftvm's harts in parallel (not when recording)
	noIcount bool   // QEMU without -icount: plain TCG
}

// rrMeasure is one measured window.
type rrMeasure struct {
	wall     time.Duration
	cpu      time.Duration // CPU time of the process (ftvm) or of QEMU in the window
	from, to uint64        // instruction counts at the window's ends
	logBytes int64         // log written in the window
	ops      int           // key-value operations done in it
	log      []byte        // the whole log, when recording
	jit      jit.Stats     // what the translator did in the whole run
	total    uint64        // instructions in the whole run
}

const (
	kvValueSize = 1024 // bytes per value: the client sends about 1 KiB per SET
	benchIP     = "10.0.2.15"
)

var benchHostIP = netip.MustParsePrefix("10.0.2.2/24")

// ftvmRR runs the default guest through the window, recording its inputs
// when record is set, exactly as ftvm run / ftvm record would (host-paced
// time, console, network on an in-process link to a host-side TCP stack).
func ftvmRR(k, rd []byte, w rrWindow, record bool) (rrMeasure, error) {
	var res rrMeasure
	cfg := machine.Config{Kernel: k, Initrd: rd, Cmdline: w.cmdline, InstructionsPerTick: 10, Exec: w.exec, Harts: w.harts, Parallel: w.parallel && !record}
	var guestEnd, hostEnd *netdev.PipeEnd
	if w.kv > 0 {
		guestEnd, hostEnd = netdev.NewPipe()
		cfg.Net, cfg.MAC = true, [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}
		cfg.Outputs.Net = func(_ uint64, f []byte) { guestEnd.Transmit(f) }
		disk, err := benchDisk()
		if err != nil {
			return res, err
		}
		cfg.Disk = disk
	}
	var m *machine.Machine
	var lw *eventlog.Writer
	var logBuf bytes.Buffer
	logOff := func() int64 {
		if lw == nil {
			return 0
		}
		return lw.Offset()
	}
	var fromT time.Time
	var finished, clientDone atomic.Bool
	var clientErr error
	var line bytes.Buffer
	seen := false
	endWindow := func() {
		if finished.Load() {
			return
		}
		res.wall, res.to, res.cpu = time.Since(fromT), m.Instret(), cpuTime()-res.cpu
		res.logBytes = logOff() - res.logBytes
		finished.Store(true)
	}
	cfg.Outputs.Console = func(n uint64, b []byte) {
		for _, c := range b {
			if c != '\n' {
				line.WriteByte(c)
				continue
			}
			s := line.String()
			line.Reset()
			switch {
			case !seen && strings.Contains(s, w.from):
				seen, fromT, res.from, res.logBytes, res.cpu = true, time.Now(), n, logOff(), cpuTime()
				if w.kv > 0 {
					go func() {
						defer clientDone.Store(true)
						res.ops, clientErr = kvClient(hostEnd, w.kv)
					}()
				}
			case seen && w.to != "" && strings.Contains(s, w.to):
				endWindow()
				m.Pause()
			}
		}
	}
	outs := replay.NewOutputs()
	if record {
		machinelog.HashOutputs(&cfg.Outputs, outs, nil)
	}
	m, err := machine.New(cfg)
	if err != nil {
		return res, err
	}
	var e vm.Engine = m
	var rec *replay.Recorder
	if record {
		h, err := machinelog.Header(cfg, "")
		if err != nil {
			return res, err
		}
		if lw, err = eventlog.NewWriter(&logBuf, h); err != nil {
			return res, err
		}
		rec = replay.NewRecorder(m, lw, benchDigestEvery)
		rec.SetOutputs(outs)
		e = rec
	}
	lc := runloop.Config{Engine: e, Limit: 50e9, Hooks: runloop.Hooks{
		Stop: func(vm.StopReason) bool {
			if seen && !finished.Load() && (w.dur > 0 && time.Since(fromT) >= w.dur || w.kv > 0 && clientDone.Load()) {
				endWindow()
			}
			return finished.Load()
		},
		// An idle window ends on time even while the guest sleeps.
		Timer: func() (time.Duration, bool) {
			return time.Until(fromT.Add(w.dur)), seen && w.dur > 0
		},
	}}
	if guestEnd != nil {
		lc.Inputs = host.NewInputs(nil, guestEnd)
	}
	reason, lerr := runloop.Run(lc)
	res.jit, res.total = m.TranslatorStats(), m.Instret()
	if !finished.Load() {
		if lerr == nil {
			lerr = fmt.Errorf("%v after %d instructions", reason, m.Instret())
		}
		return res, fmt.Errorf("the guest stopped before the window ended: %w", lerr)
	}
	if clientErr != nil {
		return res, fmt.Errorf("key-value client: %w", clientErr)
	}
	if rec != nil {
		if err := rec.Close(reason); err != nil {
			return res, err
		}
		res.log = logBuf.Bytes()
	}
	return res, nil
}

// benchDisk is an empty in-memory disk for the key-value server's log.
func benchDisk() (*host.MemDisk, error) {
	f, err := os.CreateTemp("", "ftvm-bench-*.img")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if err := f.Truncate(32 << 20); err != nil {
		return nil, err
	}
	f.Close()
	return host.LoadDisk(f.Name())
}

// kvClient drives the guest's key-value server from a host-side TCP stack
// on link and returns the operations done.
func kvClient(link *netdev.PipeEnd, pairs int) (int, error) {
	hs, err := netstack.New([6]byte{0x02, 0, 0, 0, 0, 2}, benchHostIP, 1024, time.Minute)
	if err != nil {
		return 0, err
	}
	defer hs.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hs.Attach(ctx, link)
	var c net.Conn
	for try := 0; ; try++ {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		c, err = hs.Dial(dctx, netip.MustParseAddrPort("10.0.2.15:6379"))
		dcancel()
		if err == nil {
			break
		}
		if try == 5 {
			return 0, err
		}
	}
	defer c.Close()
	return kvPairs(c, pairs, kvValueSize)
}

// kvPairs does n SET/GET pairs on c with values of size bytes, checking
// every reply, and returns the operations done.
func kvPairs(c io.ReadWriter, n, size int) (int, error) {
	cl := workload.NewClient(c)
	pad := strings.Repeat("x", size)
	for i := range n {
		key := "bench:" + strconv.Itoa(i%1000)
		val := strconv.Itoa(i) + pad
		val = val[:max(size, len(val)-len(pad))]
		if got, err := cl.Do("SET", key, val); err != nil || got != "OK" {
			return 2 * i, fmt.Errorf("SET %s: reply %q, err %v", key, got, err)
		}
		if got, err := cl.Do("GET", key); err != nil || got != val {
			return 2*i + 1, fmt.Errorf("GET %s: reply %q, err %v", key, got, err)
		}
	}
	return 2 * n, nil
}

// replayWindow replays a recorded log and returns the wall time it took
// to replay the window [from, to].
func replayWindow(k, rd []byte, harts int, log []byte, from, to uint64) (rrMeasure, error) {
	var res rrMeasure
	rdr, err := eventlog.NewReader(bytes.NewReader(log))
	if err != nil {
		return res, err
	}
	hdr := rdr.Header()
	cfg := machine.Config{Kernel: k, Initrd: rd, Cmdline: hdr.Cmdline, InstructionsPerTick: hdr.InstructionsPerTick, Harts: harts}
	if hdr.MAC != (eventlog.MAC{}) {
		cfg.Net, cfg.MAC = true, hdr.MAC
		if cfg.Disk, err = benchDisk(); err != nil {
			return res, err
		}
	}
	outs := replay.NewOutputs()
	machinelog.HashOutputs(&cfg.Outputs, outs, nil)
	m, err := machine.New(cfg)
	if err != nil {
		return res, err
	}
	tl, err := replay.NewTimeline(m, rdr, replay.TimelineOptions{Outputs: outs})
	if err != nil {
		return res, err
	}
	if err := tl.Seek(from); err != nil {
		return res, err
	}
	t0, c0 := time.Now(), cpuTime()
	if err := tl.Seek(to); err != nil {
		return res, err
	}
	res.wall, res.cpu = time.Since(t0), cpuTime()-c0
	tl.Run(^uint64(0)) // the rest, so the whole log is checked
	return res, tl.Err()
}

// qemuRR runs QEMU's virt board on the same kernel through the window,
// with -icount shift=auto, and with rr=record when rrfile is not empty.
// It returns the window's wall time and how much the record file grew in
// it (QEMU writes it through a stdio buffer, so this is exact to a few
// KiB).
func qemuRR(qemu, kernel, initrd string, w rrWindow, rrfile string) (rrMeasure, error) {
	var res rrMeasure
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	icount := "shift=auto"
	if rrfile != "" {
		icount += ",rr=record,rrfile=" + rrfile
	}
	args := []string{"-M", "virt", "-smp", "1", "-m", "256M", "-nographic", "-bios", "default",
		"-kernel", kernel, "-append", w.cmdline}
	if !w.noIcount {
		args = append(args, "-icount", icount)
	}
	if initrd != "" {
		args = append(args, "-initrd", initrd)
	}
	port := 0
	if w.kv > 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return res, err
		}
		port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		args = append(args, "-netdev", fmt.Sprintf("user,id=n1,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:%d-%s:6379", port, benchIP),
			"-device", "virtio-net-device,netdev=n1")
		if rrfile != "" {
			args = append(args, "-object", "filter-replay,id=replay,netdev=n1")
		}
	}
	cmd := exec.CommandContext(ctx, qemu, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return res, err
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	size := func() int64 {
		if st, err := os.Stat(rrfile); err == nil {
			return st.Size()
		}
		return 0
	}
	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	wait := func(marker string) error {
		for l := range lines {
			if strings.Contains(l, marker) {
				return nil
			}
		}
		return fmt.Errorf("QEMU's guest never printed %q (%s)", marker, strings.TrimSpace(stderr.String()))
	}
	if err := wait(w.from); err != nil {
		return res, err
	}
	t0, s0, c0 := time.Now(), size(), procCPU(cmd.Process.Pid)
	switch {
	case w.to != "":
		err = wait(w.to)
	case w.kv > 0:
		var c net.Conn
		if c, err = net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 30*time.Second); err == nil {
			res.ops, err = kvPairs(c, w.kv, kvValueSize)
			c.Close()
		}
	default:
		time.Sleep(w.dur)
	}
	res.wall, res.logBytes, res.cpu = time.Since(t0), size()-s0, procCPU(cmd.Process.Pid)-c0
	return res, err
}

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time process pid has used (from /proc, in clock
// ticks of 10 ms).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// RecordReplay prints the record/replay table for the guest g, the median
// of runs runs, with QEMU's -icount record/replay beside (qemu "" skips
// it).
func RecordReplay(g Guest, qemu string, runs int, out Output) error {
	k, rd, err := g.load()
	if err != nil {
		return err
	}
	kernel, initrd := g.Kernel, g.Initrd
	idle := rrWindow{cmdline: "console=ttyS0 earlycon=sbi", from: "console ready", dur: 5 * time.Second, harts: g.Harts}
	cpu := rrWindow{cmdline: "console=ttyS0 earlycon=sbi ftvm.mode=cpubench ftvm.n=30", from: markBenchFrom, to: markBenchTo, harts: g.Harts}
	kv := rrWindow{cmdline: "console=ttyS0 earlycon=sbi", from: "listening on", kv: 1000, harts: g.Harts}
	type row struct {
		name                             string
		w                                rrWindow
		plain, rec, qplain, qrec, replay []rrMeasure
	}
	rows := []*row{{name: "idle", w: idle}, {name: "cpu-bound", w: cpu}, {name: "key-value", w: kv}}
	dir, err := os.MkdirTemp("", "ftvm-bench-rr-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for i := 0; i < runs; i++ {
		for _, r := range rows {
			fmt.Fprintf(out.Progress, "bench -rr: run %d/%d: %s\n", i+1, runs, r.name)
			if r.name != "idle" {
				p, err := ftvmRR(k, rd, r.w, false)
				if err != nil {
					return fmt.Errorf("%s, plain run: %w", r.name, err)
				}
				r.plain = append(r.plain, p)
			}
			m, err := ftvmRR(k, rd, r.w, true)
			if err != nil {
				return fmt.Errorf("%s, recording: %w", r.name, err)
			}
			r.rec = append(r.rec, m)
			rp, err := replayWindow(k, rd, r.w.harts, m.log, m.from, m.to)
			if err != nil {
				return fmt.Errorf("%s, replay: %w", r.name, err)
			}
			rp.from, rp.to = m.from, m.to
			r.replay = append(r.replay, rp)
			if qemu != "" {
				if r.name != "idle" {
					q, err := qemuRR(qemu, kernel, initrd, r.w, "")
					if err != nil {
						fmt.Fprintf(out.Progress, "bench -rr: qemu %s: %v\n", r.name, err)
					} else {
						r.qplain = append(r.qplain, q)
					}
				}
				q, err := qemuRR(qemu, kernel, initrd, r.w, filepath.Join(dir, "rr.bin"))
				if err != nil {
					fmt.Fprintf(out.Progress, "bench -rr: qemu rr %s: %v\n", r.name, err)
				} else {
					r.qrec = append(r.qrec, q)
				}
			}
		}
	}
	get := func(ms []rrMeasure, f func(rrMeasure) float64) []float64 {
		var v []float64
		for _, m := range ms {
			v = append(v, f(m))
		}
		return v
	}
	wallOf := func(m rrMeasure) float64 { return m.wall.Seconds() }
	cpuOf := func(m rrMeasure) float64 { return m.cpu.Seconds() }
	med := func(v []float64, format string) string {
		if len(v) == 0 {
			return "-"
		}
		return fmt.Sprintf(format, median(v))
	}
	// Overheads compare CPU time, per operation for the key-value
	// workload: on a shared machine wall time mostly measures the
	// neighbours.
	cost := func(r *row, ms []rrMeasure) []float64 {
		return get(ms, func(m rrMeasure) float64 {
			if r.w.kv > 0 {
				return m.cpu.Seconds() / float64(max(m.ops, 1))
			}
			return m.cpu.Seconds()
		})
	}
	overhead := func(r *row, plain, rec []rrMeasure) string {
		if len(plain) == 0 || len(rec) == 0 || r.w.dur > 0 {
			return "-"
		}
		return fmt.Sprintf("%+.1f%%", (median(cost(r, rec))/median(cost(r, plain))-1)*100)
	}
	kbit := func(per func(rrMeasure) float64) func(rrMeasure) float64 {
		return func(m rrMeasure) float64 { return float64(m.logBytes) * 8 / 1e3 / per(m) }
	}
	fmt.Fprintf(out.Table, "record/replay, median of %d runs; windows: idle %v after the prompt, cpu-bound the cpubench rounds, key-value %d SET/GET pairs of %d-byte values from a host-side client\n\n",
		runs, idle.dur, kv.kv, kvValueSize)
	fmt.Fprintf(out.Table, "| %-40s | %12s | %12s | %12s |\n|---|---:|---:|---:|\n", "metric", "idle", "cpu-bound", "key-value")
	line := func(name string, f func(r *row) string) {
		fmt.Fprintf(out.Table, "| %-40s |", name)
		for _, r := range rows {
			fmt.Fprintf(out.Table, " %12s |", f(r))
		}
		fmt.Fprintln(out.Table)
	}
	line("guest instructions in the window (M)", func(r *row) string {
		return med(get(r.rec, func(m rrMeasure) float64 { return float64(m.to-m.from) / 1e6 }), "%.0f")
	})
	line("ftvm plain: wall / CPU (s)", func(r *row) string {
		return med(get(r.plain, wallOf), "%.2f") + " / " + med(get(r.plain, cpuOf), "%.2f")
	})
	line("ftvm record: wall / CPU (s)", func(r *row) string {
		return med(get(r.rec, wallOf), "%.2f") + " / " + med(get(r.rec, cpuOf), "%.2f")
	})
	line("ftvm record overhead (CPU time)", func(r *row) string { return overhead(r, r.plain, r.rec) })
	line("ftvm key-value ops/s plain / record", func(r *row) string {
		if r.w.kv == 0 {
			return ""
		}
		ops := func(m rrMeasure) float64 { return float64(m.ops) / m.wall.Seconds() }
		return med(get(r.plain, ops), "%.0f") + " / " + med(get(r.rec, ops), "%.0f")
	})
	line("ftvm replay: wall / CPU (s)", func(r *row) string {
		return med(get(r.replay, wallOf), "%.2f") + " / " + med(get(r.replay, cpuOf), "%.2f")
	})
	line("ftvm replay speed (M instr per CPU-s)", func(r *row) string {
		return med(get(r.replay, func(m rrMeasure) float64 { return float64(m.to-m.from) / m.cpu.Seconds() / 1e6 }), "%.0f")
	})
	line("ftvm replay speed / real time", func(r *row) string {
		var v []float64
		for i := range r.replay {
			v = append(v, r.rec[i].wall.Seconds()/r.replay[i].wall.Seconds())
		}
		return med(v, "%.1fx")
	})
	line("ftvm log, kbit per wall-s", func(r *row) string { return med(get(r.rec, kbit(wallOf)), "%.2f") })
	// Per CPU-second: what the log rate would be with the machine to
	// itself, for the CPU-bound guest only (the others wait on the
	// client or on timers, not on the CPU).
	line("ftvm log, kbit per CPU-s (unshared)", func(r *row) string {
		if r.w.to == "" {
			return "-"
		}
		return med(get(r.rec, kbit(cpuOf)), "%.2f")
	})
	line("qemu -icount: wall / CPU (s)", func(r *row) string {
		return med(get(r.qplain, wallOf), "%.2f") + " / " + med(get(r.qplain, cpuOf), "%.2f")
	})
	line("qemu rr=record: wall / CPU (s)", func(r *row) string {
		return med(get(r.qrec, wallOf), "%.2f") + " / " + med(get(r.qrec, cpuOf), "%.2f")
	})
	line("qemu rr=record overhead (CPU time)", func(r *row) string { return overhead(r, r.qplain, r.qrec) })
	line("qemu key-value ops/s plain / record", func(r *row) string {
		if r.w.kv == 0 {
			return ""
		}
		ops := func(m rrMeasure) float64 { return float64(m.ops) / m.wall.Seconds() }
		return med(get(r.qplain, ops), "%.0f") + " / " + med(get(r.qrec, ops), "%.0f")
	})
	line("qemu rr log, kbit per wall-s", func(r *row) string { return med(get(r.qrec, kbit(wallOf)), "%.2f") })
	line("qemu rr log, kbit per CPU-s", func(r *row) string {
		if r.w.to == "" {
			return "-"
		}
		return med(get(r.qrec, kbit(cpuOf)), "%.2f")
	})
	fmt.Fprintln(out.Table, "\nVMware FT (published): 0.5-1.5 Mbit/s idle, 1.5-18 Mbit/s under its benchmarks.")
	return nil
}

var benchDigestEvery uint64 = 50_000_000
