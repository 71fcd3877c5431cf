package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"ftvm/cluster"
	"ftvm/guest/workload"
	"ftvm/monitor"
	"ftvm/replication"
)

// The comparison of the replication modes: the same guest, the same
// clients and the same machine for each, one after another and round
// after round (interleaved, so that a load from elsewhere on the machine
// falls on every mode alike), the median and range reported.
//
// A mode plugs in as a compareMode: how to start it (a plain run, a
// replicated pair or group) and what its status says of the traffic
// between replicas and of its syncs or checkpoints. Modes this build does
// not have (their flag values are refused by 'ftvm primary') are reported
// as such, as are SMP sizes without -smp.

// CompareOptions configure the comparison.
type CompareOptions struct {
	Ftvm     string        // the ftvm binary (with ftvm-witness next to it)
	Duration time.Duration // each load
	Conns    int           // connections of the throughput load
	Runs     int           // interleaved rounds (median and range)
	SMP      []int         // harts of the guest (more than one run -parallel, but in the replay-based pair)
	Modes    []string      // from CompareModes (default all)
}

// CompareModes are the modes the comparison knows, in the order shown.
var CompareModes = []string{"unreplicated", "replay", "remus", "colo", "plover"}

// setup is a running mode: its guest serves the key-value port.
type setup struct {
	primary *cluster.Proc
	backup  *cluster.Proc
	procs   []*cluster.Proc
	// traffic is the bytes the primary sent to the other replicas so far
	// (log, checkpoints, syncs, consensus), and the syncs or checkpoints
	// with their pages: what the mode's status says.
	traffic func(replication.Status) trafficSample
}

type trafficSample struct {
	bytes             int64
	syncs             int64
	dirty, same, sent int64 // pages
	pause             time.Duration
}

func (s *setup) kill() {
	for _, p := range s.procs {
		p.Kill()
	}
}

type compareMode struct {
	name  string
	paper string // what the papers measured, for the table's notes
	flag  string // the -mode value ('' for a plain run)
	// parallel: the mode runs several harts in parallel (the replay-based
	// pair interleaves them: it must be deterministic).
	parallel bool
	start    func(c *cluster.Cluster, id string, extra []string) (*setup, error)
	failed   bool
}

func pairTraffic(st replication.Status) trafficSample {
	return trafficSample{bytes: st.LogBytes}
}

func ploverTraffic(st replication.Status) trafficSample {
	t := trafficSample{syncs: int64(st.Syncs)}
	if st.Totals != nil {
		t.bytes, t.dirty, t.same, t.sent, t.pause = st.Totals.MemberBytes, st.Totals.DirtyPages, st.Totals.SamePages, st.Totals.SentPages, st.Totals.Pause
	}
	return t
}

func compareModes() []*compareMode {
	pair := func(mode string) func(c *cluster.Cluster, id string, extra []string) (*setup, error) {
		return func(c *cluster.Cluster, id string, extra []string) (*setup, error) {
			if mode != "replay" {
				extra = append([]string{"-mode", mode}, extra...)
			}
			p, b, err := c.StartPair(id+"p", id+"b", extra...)
			if err != nil {
				return nil, err
			}
			return &setup{primary: p, backup: b, procs: []*cluster.Proc{p, b}, traffic: pairTraffic}, nil
		}
	}
	return []*compareMode{
		{name: "unreplicated", parallel: true, start: func(c *cluster.Cluster, id string, extra []string) (*setup, error) {
			u, err := c.Replica("run", id, extra...)
			if err != nil {
				return nil, err
			}
			if _, err := u.WaitLog("console ready", 0, time.Minute); err != nil {
				return nil, err
			}
			conn, err := cluster.DialRetry(c.Forward, 30*time.Second)
			if err != nil {
				return nil, err
			}
			conn.Close()
			return &setup{primary: u, procs: []*cluster.Proc{u}, traffic: func(replication.Status) trafficSample { return trafficSample{} }}, nil
		}},
		{name: "replay", flag: "replay", start: pair("replay")},
		{name: "remus", flag: "checkpoint", parallel: true, start: pair("checkpoint"),
			paper: "Remus (NSDI'08, as measured by PLOVER at 4 vCPUs): PLOVER's throughput 1.9x Remus's (0.9x higher)"},
		{name: "colo", flag: "colo", parallel: true, start: pair("colo"),
			paper: "COLO (SoCC'13, as measured by PLOVER): PLOVER's throughput 2.0x COLO's (1.0x higher); COLO faster on pgSQL"},
		{name: "plover", flag: "plover", parallel: true, start: func(c *cluster.Cluster, id string, extra []string) (*setup, error) {
			p, b, w, err := c.StartGroup(id+"p", id+"b", id+"w", extra...)
			if err != nil {
				return nil, err
			}
			return &setup{primary: p, backup: b, procs: []*cluster.Proc{p, b, w}, traffic: ploverTraffic}, nil
		}, paper: "PLOVER (ATC'18, 4 vCPUs): throughput 21% below unreplicated; 72-97% of dirty pages identical"},
	}
}

// buildHas reports whether the ftvm binary knows a -mode value and -smp.
func buildHas(ftvm string) (modes map[string]bool, smp bool) {
	out, _ := exec.Command(ftvm, "primary", "-h").CombinedOutput()
	help := string(out)
	modes = map[string]bool{"unreplicated": true}
	for _, m := range []string{"replay", "checkpoint", "colo", "plover"} {
		modes[m] = strings.Contains(help, m)
	}
	return modes, strings.Contains(help, "-smp")
}

// measurement is one mode's figures in one round.
type measurement struct {
	ops, ops1 float64 // throughput, Conns connections and one
	p50, p99  time.Duration
	bandwidth float64 // bytes/s between replicas under the load
	syncRate  float64 // syncs or checkpoints per second
	syncBytes float64 // bytes per sync
	sameFrac  float64 // identical fraction of the dirty pages compared
	pause     time.Duration
	failover  time.Duration // kill to the first request served
	err       error
}

// Compare runs the comparison and prints its table.
func Compare(o CompareOptions, out Output) error {
	if o.Runs <= 0 {
		o.Runs = 3
	}
	if len(o.SMP) == 0 {
		o.SMP = []int{1}
	}
	if len(o.Modes) == 0 {
		o.Modes = CompareModes
	}
	dir, err := os.MkdirTemp("", "ftvm-compare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c, err := cluster.Start(dir, o.Ftvm, 300*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Stop()
	progress := func(format string, args ...any) { fmt.Fprintf(out.Progress, "bench: "+format+"\n", args...) }
	has, smp := buildHas(o.Ftvm)
	var modes []*compareMode
	var missing []string
	for _, m := range compareModes() {
		if !slices.Contains(o.Modes, m.name) {
			continue
		}
		if m.flag != "" && !has[m.flag] {
			missing = append(missing, m.name)
			continue
		}
		modes = append(modes, m)
	}
	var sizes []int
	for _, n := range o.SMP {
		if n > 1 && !smp {
			missing = append(missing, fmt.Sprintf("-smp %d", n))
			continue
		}
		sizes = append(sizes, n)
	}
	res := map[string][]measurement{} // by mode and size
	key := func(m string, n int) string { return fmt.Sprintf("%s/%d", m, n) }
	id := 0
	for run := range o.Runs {
		for _, n := range sizes {
			for _, m := range modes {
				id++
				progress("round %d/%d: %s, %d hart(s)", run+1, o.Runs, m.name, n)
				// The machine's flags go to the primary (a backup gets the
				// primary's machine with its state); -parallel to both.
				var extra []string
				c.VM = nil
				if n > 1 {
					c.VM = []string{"-smp", fmt.Sprint(n)}
					if m.parallel {
						c.VM = append(c.VM, "-parallel")
						if m.flag == "plover" {
							extra = []string{"-parallel"}
						}
					}
				}
				r := measure(c, m, fmt.Sprintf("c%d", id), extra, o)
				if r.err != nil {
					progress("%s: %v", m.name, r.err)
				}
				res[key(m.name, n)] = append(res[key(m.name, n)], r)
			}
		}
	}
	fmt.Fprintf(out.Table, "key-value server (SET through the switch, disk-backed): %d rounds of %v loads, interleaved; median [min-max]\n", o.Runs, o.Duration)
	for _, n := range sizes {
		fmt.Fprintf(out.Table, "\n%d hart(s)\n", n)
		fmt.Fprintf(out.Table, "%-13s %-22s %-9s %-20s %-18s %-18s %-16s %-14s %-10s %-10s %-14s\n", "mode",
			fmt.Sprintf("ops/s (%d conns)", o.Conns), "vs unrep", "ops/s (1 conn)", "p50 ms", "p99 ms", "bandwidth", "syncs/s", "KB/sync", "same pages", "failover ms")
		base := 0.0
		if u := res[key("unreplicated", n)]; len(u) > 0 {
			base = median(pick(u, func(x measurement) float64 { return x.ops }))
		}
		for _, m := range modes {
			ms := res[key(m.name, n)]
			ok := ms[:0:0]
			for _, x := range ms {
				if x.err == nil {
					ok = append(ok, x)
				}
			}
			if len(ok) == 0 {
				fmt.Fprintf(out.Table, "%-13s failed: %v\n", m.name, ms[0].err)
				continue
			}
			ops := pick(ok, func(x measurement) float64 { return x.ops })
			vs := "-"
			if base > 0 {
				vs = fmt.Sprintf("%.2f", median(ops)/base)
			}
			fmt.Fprintf(out.Table, "%-13s %-22s %-9s %-20s %-18s %-18s %-16s %-14s %-10s %-10s %-14s\n", m.name,
				spreadf(ops, "%.0f"), vs,
				spreadf(pick(ok, func(x measurement) float64 { return x.ops1 }), "%.0f"),
				spreadf(pick(ok, func(x measurement) float64 { return ms2(x.p50) }), "%.2f"),
				spreadf(pick(ok, func(x measurement) float64 { return ms2(x.p99) }), "%.1f"),
				rateSpread(pick(ok, func(x measurement) float64 { return x.bandwidth })),
				orDash(pick(ok, func(x measurement) float64 { return x.syncRate }), "%.0f"),
				orDash(pick(ok, func(x measurement) float64 { return x.syncBytes / 1024 }), "%.0f"),
				orDash(pick(ok, func(x measurement) float64 { return x.sameFrac * 100 }), "%.0f%%"),
				orDash(pick(ok, func(x measurement) float64 { return ms2(x.failover) }), "%.0f"))
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(out.Table, "\nnot in this build: %s\n", strings.Join(missing, ", "))
	}
	fmt.Fprintln(out.Table, "\nthe papers (their machines, guests and loads; for orientation, not comparison):")
	for _, m := range compareModes() {
		if m.paper != "" {
			fmt.Fprintf(out.Table, "  %s\n", m.paper)
		}
	}
	return nil
}

// measure starts mode m, loads it and kills its primary.
func measure(c *cluster.Cluster, m *compareMode, id string, extra []string, o CompareOptions) (r measurement) {
	s, err := m.start(c, id, extra)
	if err != nil {
		r.err = err
		return r
	}
	defer s.kill()
	status := func() replication.Status {
		if s.backup == nil {
			return replication.Status{}
		}
		st, _ := monitor.FetchStatus(s.primary.HTTP)
		return st
	}
	t0, s0 := time.Now(), s.traffic(status())
	kv, err := kvLoad(c.Forward, o.Duration, o.Conns)
	if err != nil {
		r.err = fmt.Errorf("load: %w\n%s", err, s.primary.LogTail(10))
		return r
	}
	dt, s1 := time.Since(t0).Seconds(), s.traffic(status())
	r.ops, r.p50, r.p99 = kv.opsPerSec, kv.p50, kv.p99
	r.bandwidth = float64(s1.bytes-s0.bytes) / dt
	if n := s1.syncs - s0.syncs; n > 0 {
		r.syncRate = float64(n) / dt
		r.syncBytes = float64(s1.bytes-s0.bytes) / float64(n)
		r.pause = (s1.pause - s0.pause) / time.Duration(n)
	}
	if d := s1.dirty - s0.dirty; d > 0 {
		r.sameFrac = float64(s1.same-s0.same) / float64(d)
	}
	kv1, err := kvLoad(c.Forward, o.Duration, 1)
	if err != nil {
		r.err = fmt.Errorf("one-connection load: %w", err)
		return r
	}
	r.ops1 = kv1.opsPerSec
	if s.backup == nil {
		return r
	}
	// Failover under one-connection writes.
	conn, err := cluster.DialRetry(c.Forward, 30*time.Second)
	if err != nil {
		r.err = err
		return r
	}
	defer conn.Close()
	writes := workload.NewWrites(id + ":")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	go func() { defer close(done); writes.Run(ctx, conn, 0) }()
	time.Sleep(time.Second)
	killed := time.Now()
	s.primary.Kill()
	if _, err := s.backup.WaitStatus("live", time.Minute, func(st replication.Status) bool { return st.Role == "primary" }); err != nil {
		r.err = err
		return r
	}
	for time.Since(killed) < 5*time.Second && writes.FirstServedAfter(killed) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-done
	if writes.Err != nil {
		r.err = fmt.Errorf("failover: the client's connection broke: %w", writes.Err)
		return r
	}
	r.failover = writes.FirstServedAfter(killed)
	return r
}

func ms2(d time.Duration) float64 { return float64(d) / 1e6 }

func pick(ms []measurement, f func(measurement) float64) []float64 {
	out := make([]float64, len(ms))
	for i, m := range ms {
		out[i] = f(m)
	}
	return out
}

// spreadf is "median [min-max]".
func spreadf(xs []float64, f string) string {
	if len(xs) == 1 {
		return fmt.Sprintf(f, xs[0])
	}
	return fmt.Sprintf(f+" ["+f+"-"+f+"]", median(xs), slices.Min(xs), slices.Max(xs))
}

func orDash(xs []float64, f string) string {
	if slices.Max(xs) == 0 {
		return "-"
	}
	return spreadf(xs, f)
}

func rateSpread(xs []float64) string {
	if slices.Max(xs) == 0 {
		return "-"
	}
	return monitor.Rate(median(xs))
}
