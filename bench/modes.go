package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"ftvm/cluster"
	"ftvm/guest/workload"
	"ftvm/host/guests"
	"ftvm/monitor"
	"ftvm/replication"
)

// ModesOptions configure the benchmark of the replication modes.
type ModesOptions struct {
	Ftvm     string        // the ftvm binary the replicas run (with ftvm-witness next to it)
	Duration time.Duration // length of each key-value load
	Conns    int           // client connections of the throughput load
	Runs     int           // rounds over every configuration (interleaved)
	// Harts is the guests' harts (0: one); with Parallel they run in
	// parallel unreplicated and in the checkpointing modes (the replay
	// mode runs them interleaved: it needs a deterministic machine).
	Harts    int
	Parallel bool
	// Guest is the guest's name: kv (the default) or redis, both serving
	// the Redis protocol on port 6379.
	Guest string
}

// modeConfig is one configuration of the benchmark.
type modeConfig struct {
	name string
	args []string // nil: unreplicated (ftvm run)
	ckpt bool
}

var modeConfigs = []modeConfig{
	{name: "unreplicated"},
	{name: "replay", args: []string{"-mode", "replay"}},
	{name: "Remus 25 ms", args: []string{"-mode", "checkpoint", "-period", "25ms"}, ckpt: true},
	{name: "Remus 100 ms", args: []string{"-mode", "checkpoint", "-period", "100ms"}, ckpt: true},
	{name: "COLO", args: []string{"-mode", "colo"}, ckpt: true},
}

// modeRun is what one run of one configuration measured.
type modeRun struct {
	load, load1 kvResult
	// During the many-connection load, on the primary: checkpoints, their
	// pages and bytes, and the link's bytes, per second of load.
	ckpts, pages, bytes, link float64
	failover                  time.Duration // kill to the first request the new primary served
}

// Modes measures the replication modes side by side, rootless (witness,
// switch and replica processes as in ftvm demo), on the default guest's
// key-value server: unreplicated, the replay-based pair, Remus with 25 ms
// and 100 ms periods, and COLO. Each run goes over every configuration in
// turn (so a machine whose load changes spreads over all of them alike);
// the table gives the median of the runs and their range: throughput and
// latency (against unreplicated), checkpoints per second, pages and bytes
// per checkpoint, the replication link's bandwidth, and the time from a
// SIGKILL of the primary to the first request the new primary served.
func Modes(o ModesOptions, out Output) error {
	dir, err := os.MkdirTemp("", "ftvm-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// A heartbeat timeout of a second: the replicas share the machine
	// with the client and each other, and a kill is detected at once
	// anyway (the dead process's connections close).
	name := o.Guest
	if name == "" {
		name = guests.Default
	}
	g, err := guests.Lookup(name)
	if err != nil {
		return err
	}
	if g.Port != 6379 {
		return fmt.Errorf("guest %s: the benchmark's client speaks the Redis protocol (guests kv and redis)", name)
	}
	c, err := cluster.StartGuest(dir, o.Ftvm, time.Second, g)
	if err != nil {
		return err
	}
	if o.Harts > 1 {
		c.VM = []string{"-smp", strconv.Itoa(o.Harts)}
	}
	defer c.Stop()
	progress := func(format string, args ...any) { fmt.Fprintf(out.Progress, "bench: "+format+"\n", args...) }
	res := make([][]modeRun, len(modeConfigs))
	for run := range o.Runs {
		for i, mc := range modeConfigs {
			progress("run %d of %d: %s", run+1, o.Runs, mc.name)
			r, err := modeOnce(c, o, mc, fmt.Sprintf("r%d-%d", run, i))
			if err != nil {
				return fmt.Errorf("%s: %w", mc.name, err)
			}
			res[i] = append(res[i], r)
		}
	}
	printModes(out, o, res)
	return nil
}

// modeOnce measures one configuration once.
func modeOnce(c *cluster.Cluster, o ModesOptions, mc modeConfig, id string) (modeRun, error) {
	var r modeRun
	var extra []string
	if o.Parallel && (mc.ckpt || mc.args == nil) {
		extra = []string{"-parallel"}
	}
	if mc.args == nil {
		u, err := c.Replica("run", id, extra...)
		if err != nil {
			return r, err
		}
		defer u.Kill()
		// The guest boots before the load starts (StartPair waits too).
		conn, err := cluster.DialRetry(c.Forward, 3*time.Minute)
		if err != nil {
			return r, fmt.Errorf("%w\n%s", err, u.LogTail(20))
		}
		conn.Close()
		if r.load, err = kvLoad(c.Forward, o.Duration, o.Conns); err != nil {
			return r, fmt.Errorf("%w\n%s", err, u.LogTail(20))
		}
		r.load1, err = kvLoad(c.Forward, o.Duration, 1)
		return r, err
	}
	p, b, err := c.StartPair(id+"a", id+"b", append(extra, mc.args...)...)
	if err != nil {
		return r, err
	}
	defer p.Kill()
	defer b.Kill()
	before, _ := monitor.FetchStatus(p.HTTP)
	t0 := time.Now()
	if r.load, err = kvLoad(c.Forward, o.Duration, o.Conns); err != nil {
		return r, fmt.Errorf("%w\n%s", err, p.LogTail(20))
	}
	after, _ := monitor.FetchStatus(p.HTTP)
	el := time.Since(t0).Seconds()
	r.ckpts = float64(after.Checkpoints-before.Checkpoints) / el
	r.pages = float64(after.CheckpointPages-before.CheckpointPages) / el
	r.bytes = float64(after.CheckpointBytes-before.CheckpointBytes) / el
	r.link = float64(after.LogBytes-before.LogBytes) / el
	if r.load1, err = kvLoad(c.Forward, o.Duration, 1); err != nil {
		return r, err
	}

	// Failover under one connection's numbered writes.
	conn, err := cluster.DialRetry(c.Forward, 30*time.Second)
	if err != nil {
		return r, err
	}
	defer conn.Close()
	writes := workload.NewWrites("bench-" + id + ":")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	go func() { defer close(done); writes.Run(ctx, conn, 0) }()
	time.Sleep(time.Second)
	n, killed := writes.Progress.Load(), time.Now()
	p.Kill()
	if _, err := b.WaitStatus("live", time.Minute, func(s replication.Status) bool { return s.Role == "primary" }); err != nil {
		return r, fmt.Errorf("%w\nthe primary's log ends:\n%s", err, p.LogTail(20))
	}
	// A few writes served by the new primary.
	for deadline := time.Now().Add(30 * time.Second); writes.Progress.Load() < n+5 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-done
	if writes.Err != nil {
		return r, fmt.Errorf("failover: the client's connection broke: %w", writes.Err)
	}
	if r.failover = writes.FirstServedAfter(killed); r.failover == 0 {
		return r, fmt.Errorf("failover: no request served after the kill")
	}
	rb, err := writes.ReadBack(conn)
	if err == nil {
		err = rb.Err()
	}
	if err != nil {
		return r, fmt.Errorf("failover: %w", err)
	}
	return r, nil
}

// stat is the median of a measurement over the runs, and its range.
type stat struct{ med, lo, hi float64 }

func statOf(xs []float64) stat {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return stat{med, s[0], s[n-1]}
}

func (s stat) format(prec int) string {
	if s.lo == s.hi {
		return fmt.Sprintf("%.*f", prec, s.med)
	}
	return fmt.Sprintf("%.*f (%.*f-%.*f)", prec, s.med, prec, s.lo, prec, s.hi)
}

func printModes(out Output, o ModesOptions, res [][]modeRun) {
	w := out.Table
	harts := "1 hart"
	if o.Harts > 1 {
		harts = fmt.Sprintf("%d harts", o.Harts)
		if o.Parallel {
			harts += " (in parallel but for the replay mode)"
		}
	}
	fmt.Fprintf(w, "replication modes, guest %s with %s (SET through the switch, disk-backed, %v per load), median (range) of %d runs\n\n",
		o.Guest, harts, o.Duration, o.Runs)
	header, sep := "| |", "|---|"
	for _, mc := range modeConfigs {
		header += " " + mc.name + " |"
		sep += "---:|"
	}
	fmt.Fprintln(w, header)
	fmt.Fprintln(w, sep)
	row := func(name string, prec int, f func(r modeRun) (float64, bool)) {
		line := "| " + name + " |"
		for _, runs := range res {
			var xs []float64
			for _, r := range runs {
				if x, ok := f(r); ok {
					xs = append(xs, x)
				}
			}
			if len(xs) == 0 {
				line += " - |"
				continue
			}
			line += " " + statOf(xs).format(prec) + " |"
		}
		fmt.Fprintln(w, line)
	}
	base := func(f func(modeRun) float64) float64 {
		var xs []float64
		for _, r := range res[0] {
			xs = append(xs, f(r))
		}
		return statOf(xs).med
	}
	pair := func(r modeRun) bool { return r.failover > 0 }
	tput := func(r modeRun) float64 { return r.load.opsPerSec }
	tput1 := func(r modeRun) float64 { return r.load1.opsPerSec }
	row(fmt.Sprintf("throughput, %d connections (ops/s)", o.Conns), 0, func(r modeRun) (float64, bool) { return tput(r), true })
	row("  against unreplicated", 2, func(r modeRun) (float64, bool) { return tput(r) / base(tput), true })
	row(fmt.Sprintf("p50 latency, %d connections (ms)", o.Conns), 2, func(r modeRun) (float64, bool) { return ms(r.load.p50), true })
	row(fmt.Sprintf("p99 latency, %d connections (ms)", o.Conns), 2, func(r modeRun) (float64, bool) { return ms(r.load.p99), true })
	row("throughput, 1 connection (ops/s)", 0, func(r modeRun) (float64, bool) { return tput1(r), true })
	row("  against unreplicated", 2, func(r modeRun) (float64, bool) { return tput1(r) / base(tput1), true })
	row("p50 latency, 1 connection (ms)", 2, func(r modeRun) (float64, bool) { return ms(r.load1.p50), true })
	row("p99 latency, 1 connection (ms)", 2, func(r modeRun) (float64, bool) { return ms(r.load1.p99), true })
	row("checkpoints per second", 1, func(r modeRun) (float64, bool) { return r.ckpts, pair(r) && r.ckpts > 0 })
	row("pages per checkpoint", 0, func(r modeRun) (float64, bool) { return r.pages / r.ckpts, pair(r) && r.ckpts > 0 })
	row("KiB per checkpoint", 0, func(r modeRun) (float64, bool) { return r.bytes / r.ckpts / 1024, pair(r) && r.ckpts > 0 })
	row("replication link (Mbit/s)", 2, func(r modeRun) (float64, bool) { return r.link * 8 / 1e6, pair(r) })
	row("failover: kill to first request served (ms)", 0, func(r modeRun) (float64, bool) { return ms(r.failover), pair(r) })
}
