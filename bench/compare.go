package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"ftvm/cluster"
	"ftvm/guest/workload"
	"ftvm/host/guests"
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
	Conns    int           // connections of the throughput load (kv and redis)
	Runs     int           // interleaved rounds (median and range)
	SMP      []int         // harts of the guest (more than one run -parallel, but in the replay-based pair)
	Modes    []string      // from CompareModes (default all)
	Guests   []string      // from CompareGuests (default kv)
	Exec     string        // the replicas' execution engine (-exec; "" for the build's default)
}

// CompareModes are the modes the comparison knows, in the order shown.
var CompareModes = []string{"unreplicated", "replay", "remus", "remus100", "colo", "plover"}

// CompareGuests are the guests the comparison can load: the default
// guest's key-value server (SETs), Debian's Redis (half SETs, half GETs)
// and Debian's PostgreSQL (pgbench).
var CompareGuests = []string{"kv", "redis", "postgres"}

// pgClients are pgbench's clients in the throughput load (as in the
// services benchmark; scale 1 has a single branch row they contend on).
const pgClients = 4

// setup is a running mode: its guest serves its port.
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
	bytes             int64 // on the link(s), the whole
	syncs             int64 // syncs or checkpoints
	syncBytes         int64 // of those, their bytes
	dirty, same, sent int64 // pages
	pause             time.Duration
}

func (s *setup) kill() {
	for _, p := range s.procs {
		p.Kill()
	}
}

type compareMode struct {
	name  string // in -compare-modes
	label string // in the table
	paper string // what the papers measured, for the table's notes
	flag  string // the -mode value ('' for a plain run)
	// parallel: the mode runs several harts in parallel (the replay-based
	// pair interleaves them: it must be deterministic).
	parallel bool
	start    func(c *cluster.Cluster, id string, extra []string) (*setup, error)
}

func pairTraffic(st replication.Status) trafficSample {
	return trafficSample{bytes: st.LogBytes}
}

func ckptTraffic(st replication.Status) trafficSample {
	return trafficSample{bytes: st.LogBytes, syncs: int64(st.Checkpoints), syncBytes: int64(st.CheckpointBytes),
		sent: int64(st.CheckpointPages), pause: st.CheckpointPause}
}

func ploverTraffic(st replication.Status) trafficSample {
	t := trafficSample{syncs: int64(st.Syncs)}
	if st.Totals != nil {
		t.bytes, t.syncBytes, t.dirty, t.same, t.sent, t.pause = st.Totals.MemberBytes, st.Totals.SyncBytes,
			st.Totals.DirtyPages, st.Totals.SamePages, st.Totals.SentPages, st.Totals.Pause
	}
	return t
}

func compareModes() []*compareMode {
	pair := func(traffic func(replication.Status) trafficSample, args ...string) func(c *cluster.Cluster, id string, extra []string) (*setup, error) {
		return func(c *cluster.Cluster, id string, extra []string) (*setup, error) {
			p, b, err := c.StartPair(id+"p", id+"b", append(slices.Clone(args), extra...)...)
			if err != nil {
				return nil, err
			}
			return &setup{primary: p, backup: b, procs: []*cluster.Proc{p, b}, traffic: traffic}, nil
		}
	}
	return []*compareMode{
		{name: "unreplicated", label: "unreplicated", parallel: true, start: func(c *cluster.Cluster, id string, extra []string) (*setup, error) {
			u, err := c.Replica("run", id, extra...)
			if err != nil {
				return nil, err
			}
			if err := c.WaitReady(); err != nil {
				u.Kill()
				return nil, fmt.Errorf("%w\n%s", err, u.LogTail(10))
			}
			return &setup{primary: u, procs: []*cluster.Proc{u}, traffic: func(replication.Status) trafficSample { return trafficSample{} }}, nil
		}},
		{name: "replay", label: "replay pair", flag: "replay", start: pair(pairTraffic)},
		{name: "remus", label: "Remus 25 ms", flag: "checkpoint", parallel: true, start: pair(ckptTraffic, "-mode", "checkpoint", "-period", "25ms"),
			paper: "Remus (NSDI'08): up to 40 checkpoints a second, an output's latency bounded below by the period; PLOVER's slides: about 33 K dirty pages per 25 ms (Remus-Xen) or 100 ms (Remus-KVM) interval on lighttpd+PHP; as measured by PLOVER at 4 vCPUs, PLOVER's throughput 1.9x Remus's"},
		{name: "remus100", label: "Remus 100 ms", flag: "checkpoint", parallel: true, start: pair(ckptTraffic, "-mode", "checkpoint", "-period", "100ms")},
		{name: "colo", label: "COLO", flag: "colo", parallel: true, start: pair(ckptTraffic, "-mode", "colo"),
			paper: "COLO (SoCC'13, as measured by PLOVER): PLOVER's throughput 2.0x COLO's; COLO faster on PostgreSQL"},
		{name: "plover", label: "PLOVER", flag: "plover", parallel: true, start: func(c *cluster.Cluster, id string, extra []string) (*setup, error) {
			p, b, w, err := c.StartGroup(id+"p", id+"b", id+"w", extra...)
			if err != nil {
				return nil, err
			}
			return &setup{primary: p, backup: b, procs: []*cluster.Proc{p, b, w}, traffic: ploverTraffic}, nil
		}, paper: "PLOVER (ATC'18, 4 vCPUs): throughput 21% below unreplicated, 2.2-3.8x the throughput of Remus, COLO and STR with 9.2x less network bandwidth; 72-97% of dirty pages identical"},
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
	ops, ops1 float64       // throughput, Conns connections (pgbench: pgClients) and one
	p50, p99  time.Duration // Conns connections (pgbench: its average, p99 unset)
	lat1      time.Duration // one connection: the median (pgbench: its average)
	bandwidth float64       // bytes/s between replicas under the load
	syncRate  float64       // syncs or checkpoints per second
	syncBytes float64       // bytes per sync
	syncPages float64       // pages sent per sync
	sameFrac  float64       // identical fraction of the dirty pages compared
	pause     time.Duration
	failover  time.Duration // kill to the first request served
	err       error
}

// CheckCompareGuests refuses guests the comparison cannot load and those
// whose disks or clients are missing.
func CheckCompareGuests(names []string) error {
	for _, n := range names {
		if !slices.Contains(CompareGuests, n) {
			return fmt.Errorf("-compare-guests: unknown guest %q (want some of %s)", n, strings.Join(CompareGuests, ","))
		}
		g, err := guests.Lookup(n)
		if err != nil {
			return err
		}
		if err := g.Check(); err != nil {
			return err
		}
		if n == "postgres" {
			for _, t := range []string{"pgbench", "psql"} {
				if _, err := exec.LookPath(t); err != nil {
					return fmt.Errorf("%s not found (scripts/setup.sh installs it)", t)
				}
			}
		}
	}
	return nil
}

// Compare runs the comparison and prints its tables, one per guest and
// hart count.
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
	if len(o.Guests) == 0 {
		o.Guests = []string{guests.Default}
	}
	if err := CheckCompareGuests(o.Guests); err != nil {
		return err
	}
	progress := func(format string, args ...any) {
		fmt.Fprintf(out.Progress, "bench: %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
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
	for _, name := range o.Guests {
		g, _ := guests.Lookup(name)
		if err := compareGuest(o, g, modes, sizes, progress, out); err != nil {
			return err
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(out.Table, "\nnot in this build: %s\n", strings.Join(missing, ", "))
	}
	fmt.Fprintln(out.Table, "\nthe papers (their machines, guests and loads; for orientation, not comparison):")
	for _, m := range compareModes() {
		if m.paper != "" {
			fmt.Fprintf(out.Table, "- %s\n", m.paper)
		}
	}
	return nil
}

// compareGuest runs the comparison's rounds on guest g and prints its
// tables.
func compareGuest(o CompareOptions, g guests.Guest, modes []*compareMode, sizes []int, progress func(string, ...any), out Output) error {
	dir, err := os.MkdirTemp("", "ftvm-compare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c, err := cluster.StartGuest(dir, o.Ftvm, 300*time.Millisecond, g)
	if err != nil {
		return err
	}
	defer c.Stop()
	if g.Name == "postgres" {
		c.Ready = func(addr string, limit time.Duration) error { return serviceReady(g, addr, limit) }
	}
	res := map[string][]measurement{} // by mode and size
	key := func(m string, n int) string { return fmt.Sprintf("%s/%d", m, n) }
	id := 0
	for run := range o.Runs {
		for _, n := range sizes {
			for _, m := range modes {
				id++
				t0 := time.Now()
				// The machine's flags go to the primary (a backup gets the
				// primary's machine with its state); -parallel to both.
				var extra []string
				if o.Exec != "" {
					extra = []string{"-exec", o.Exec}
				}
				c.VM = nil
				if n > 1 {
					c.VM = []string{"-smp", fmt.Sprint(n)}
					if m.parallel {
						c.VM = append(c.VM, "-parallel")
						if m.flag == "plover" {
							extra = append(extra, "-parallel")
						}
					}
				}
				r := measure(c, m, fmt.Sprintf("c%d", id), extra, o)
				if r.err != nil {
					progress("%s, round %d/%d, %s, %d hart(s): %v", g.Name, run+1, o.Runs, m.label, n, r.err)
				} else {
					progress("%s, round %d/%d, %s, %d hart(s): %.0f ops/s, %.0f on one connection (%.0f s)", g.Name, run+1, o.Runs, m.label, n, r.ops, r.ops1, time.Since(t0).Seconds())
				}
				res[key(m.name, n)] = append(res[key(m.name, n)], r)
			}
		}
	}
	pg := g.Name == "postgres"
	for _, n := range sizes {
		switch g.Name {
		case "kv":
			fmt.Fprintf(out.Table, "\nkey-value server (SETs through the switch, disk-backed), %d hart(s)", n)
		case "redis":
			fmt.Fprintf(out.Table, "\nRedis (half SETs, half GETs; appendfsync always), %d hart(s)", n)
		case "postgres":
			fmt.Fprintf(out.Table, "\nPostgreSQL (pgbench TPC-B, scale 1), %d hart(s)", n)
		}
		engine := ""
		if o.Exec != "" {
			engine = ", -exec " + o.Exec
		}
		fmt.Fprintf(out.Table, "%s: %d rounds of %v loads, interleaved; median [min-max]\n\n", engine, o.Runs, o.Duration)
		cols := []string{"mode", fmt.Sprintf("ops/s, %d conns", o.Conns), "vs unrep.", "ops/s, 1 conn", "p50 ms", "p99 ms", "p50 ms, 1 conn"}
		if pg {
			cols = []string{"mode", fmt.Sprintf("tps, %d clients", pgClients), "vs unrep.", "tps, 1 client", fmt.Sprintf("latency avg ms, %d clients", pgClients), "latency avg ms, 1 client"}
		}
		cols = append(cols, "bandwidth", "syncs/s", "pages/sync", "KB/sync", "identical pages", "failover ms")
		fmt.Fprintf(out.Table, "| %s |\n|%s\n", strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
		base := 0.0
		if u := okOnly(res[key("unreplicated", n)]); len(u) > 0 {
			base = median(pick(u, func(x measurement) float64 { return x.ops }))
		}
		for _, m := range modes {
			ms := res[key(m.name, n)]
			ok := okOnly(ms)
			if len(ok) == 0 {
				fmt.Fprintf(out.Table, "| %s | failed in all %d rounds (below) |\n", m.label, len(ms))
				continue
			}
			label := m.label
			if len(ok) < len(ms) {
				label += fmt.Sprintf(" (%d of %d rounds)", len(ok), len(ms))
			}
			ops := pick(ok, func(x measurement) float64 { return x.ops })
			vs := "-"
			if base > 0 {
				vs = fmt.Sprintf("%.2f", median(ops)/base)
			}
			row := []string{label, spreadf(ops, "%.0f"), vs, spreadf(pick(ok, func(x measurement) float64 { return x.ops1 }), "%.0f"),
				spreadf(pick(ok, func(x measurement) float64 { return ms2(x.p50) }), "%.1f")}
			if !pg {
				row = append(row, spreadf(pick(ok, func(x measurement) float64 { return ms2(x.p99) }), "%.0f"))
			}
			row = append(row, spreadf(pick(ok, func(x measurement) float64 { return ms2(x.lat1) }), "%.1f"),
				rateSpread(pick(ok, func(x measurement) float64 { return x.bandwidth })),
				orDash(pick(ok, func(x measurement) float64 { return x.syncRate }), "%.1f"),
				orDash(pick(ok, func(x measurement) float64 { return x.syncPages }), "%.0f"),
				orDash(pick(ok, func(x measurement) float64 { return x.syncBytes / 1024 }), "%.0f"),
				orDash(pick(ok, func(x measurement) float64 { return x.sameFrac * 100 }), "%.0f%%"),
				orDash(pick(ok, func(x measurement) float64 { return ms2(x.failover) }), "%.0f"))
			fmt.Fprintf(out.Table, "| %s |\n", strings.Join(row, " | "))
		}
		for _, m := range modes {
			for i, x := range res[key(m.name, n)] {
				if x.err != nil {
					fmt.Fprintf(out.Table, "\n%s, round %d, failed: %v\n", m.label, i+1, x.err)
				}
			}
		}
	}
	return nil
}

// guestTrouble is what a process's log says of the guest's crashes and
// of replicas that diverged, for an error message: the first lines that
// tell, after the load broke.
func guestTrouble(p *cluster.Proc) string {
	var out []string
	for _, l := range strings.Split(p.LogTail(100000), "\n") {
		for _, w := range []string{"SIGSEGV", "SIGILL", "SIGBUS", "panic:", "fatal error", "Oops", "Unable to handle", "exited:", "differs", "backup lost"} {
			if strings.Contains(l, w) && len(out) < 8 {
				out = append(out, "  "+l)
				break
			}
		}
	}
	if len(out) == 0 {
		return ""
	}
	return " (the log of " + p.ID + " says:\n" + strings.Join(out, "\n") + ")"
}

func okOnly(ms []measurement) []measurement {
	var ok []measurement
	for _, x := range ms {
		if x.err == nil {
			ok = append(ok, x)
		}
	}
	return ok
}

// load runs guest g's load on conns connections for d: the key-value
// server's SETs, Redis's SETs and GETs, or pgbench (conns clients; its
// average latency stands in p50).
func load(g guests.Guest, addr string, d time.Duration, conns int) (kvResult, error) {
	switch g.Name {
	case "postgres":
		r, err := pgbench(addr, d, conns)
		return kvResult{opsPerSec: r.tps, p50: r.latency}, err
	case "redis":
		return kvLoadMix(addr, d, conns, true)
	}
	return kvLoad(addr, d, conns)
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
	conns := o.Conns
	if c.Guest.Name == "postgres" {
		conns = pgClients
	}
	t0, s0 := time.Now(), s.traffic(status())
	res, err := load(c.Guest, c.Forward, o.Duration, conns)
	if err != nil {
		r.err = fmt.Errorf("load: %w%s\n%s", err, guestTrouble(s.primary), s.primary.LogTail(10))
		return r
	}
	dt, s1 := time.Since(t0).Seconds(), s.traffic(status())
	r.ops, r.p50, r.p99 = res.opsPerSec, res.p50, res.p99
	r.bandwidth = float64(s1.bytes-s0.bytes) / dt
	if n := s1.syncs - s0.syncs; n > 0 {
		r.syncRate = float64(n) / dt
		r.syncBytes = float64(s1.syncBytes-s0.syncBytes) / float64(n)
		r.syncPages = float64(s1.sent-s0.sent) / float64(n)
		r.pause = (s1.pause - s0.pause) / time.Duration(n)
	}
	if d := s1.dirty - s0.dirty; d > 0 {
		r.sameFrac = float64(s1.same-s0.same) / float64(d)
	}
	res1, err := load(c.Guest, c.Forward, o.Duration, 1)
	if err != nil {
		r.err = fmt.Errorf("one-connection load: %w%s", err, guestTrouble(s.primary))
		return r
	}
	r.ops1, r.lat1 = res1.opsPerSec, res1.p50
	if s.backup == nil {
		return r
	}
	if c.Guest.Name == "postgres" {
		r.failover, r.err = pgFailover(c.Forward, s)
	} else {
		r.failover, r.err = kvFailover(c.Forward, id, s)
	}
	return r
}

// promote kills the primary of s and waits for the backup to take over.
func (s *setup) promote() (killed time.Time, err error) {
	killed = time.Now()
	s.primary.Kill()
	_, err = s.backup.WaitStatus("live", time.Minute, func(st replication.Status) bool { return st.Role == "primary" })
	return killed, err
}

// kvFailover is the time from a kill of the primary to the first write,
// of one connection's numbered writes, issued after it and served.
func kvFailover(addr, id string, s *setup) (time.Duration, error) {
	conn, err := cluster.DialRetry(addr, 30*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	writes := workload.NewWrites(id + ":")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	go func() { defer close(done); writes.Run(ctx, conn, 0) }()
	time.Sleep(time.Second)
	killed, err := s.promote()
	if err != nil {
		return 0, err
	}
	for time.Since(killed) < 30*time.Second && writes.FirstServedAfter(killed) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-done
	if writes.Err != nil {
		return 0, fmt.Errorf("failover: the client's connection broke: %w", writes.Err)
	}
	if d := writes.FirstServedAfter(killed); d > 0 {
		return d, nil
	}
	return 0, errors.New("failover: no write served after the kill")
}

// pgFailover is kvFailover for PostgreSQL: one psql session's queries,
// one at a time, through the kill of the primary; the time to the answer
// to the first one sent after the kill.
func pgFailover(addr string, s *setup) (time.Duration, error) {
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command("psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1")
	cmd.Env = append(os.Environ(), "PGHOST="+host, "PGPORT="+port, "PGUSER=postgres", "PGDATABASE=pgbench")
	in, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	type answer struct{ sent, got time.Time }
	answers := make(chan answer, 1024)
	broke := make(chan error, 1)
	go func() {
		rd := bufio.NewReader(outp)
		for {
			sent := time.Now()
			if _, err := io.WriteString(in, "select 1;\n"); err != nil {
				broke <- err
				return
			}
			line, err := rd.ReadString('\n')
			if err != nil {
				broke <- err
				return
			}
			if strings.TrimSpace(line) != "1" {
				broke <- fmt.Errorf("psql answered %q", line)
				return
			}
			answers <- answer{sent, time.Now()}
		}
	}()
	wait := func(after time.Time, limit time.Duration) (time.Duration, error) {
		deadline := time.After(limit)
		for {
			select {
			case a := <-answers:
				if !a.sent.Before(after) {
					return a.got.Sub(after), nil
				}
			case err := <-broke:
				return 0, fmt.Errorf("failover: the psql session broke: %w\n%s", err, stderr.String())
			case <-deadline:
				return 0, fmt.Errorf("failover: no query answered within %v", limit)
			}
		}
	}
	if _, err := wait(time.Now(), 30*time.Second); err != nil { // connected
		return 0, err
	}
	time.Sleep(time.Second)
	killed, err := s.promote()
	if err != nil {
		return 0, err
	}
	return wait(killed, 30*time.Second)
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
