package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"ftvm/cluster"
	"ftvm/guest/workload"
	"ftvm/monitor"
	"ftvm/replication"
)

// FTOptions configure the fault-tolerance benchmark.
type FTOptions struct {
	Ftvm     string        // the ftvm binary the replicas run (with ftvm-witness next to it)
	Duration time.Duration // length of each key-value load
	Conns    int           // client connections of the throughput load
	Rounds   int           // cpubench rounds of the epoch experiment
	Epochs   []uint64      // epoch lengths (instructions) of the epoch experiment
	Harts    int           // harts of the guests (0: one)
}

// FaultTolerance measures the fault-tolerance figures side by side in one
// run, rootless (witness, switch and replicas as in ftvm demo): the
// key-value server's throughput and latency unreplicated and replicated,
// the log's bandwidth, failover time, and Bressoud & Schneider's
// experiment (slowdown of a CPU-bound guest against epoch length, for
// ftvm's protocol and for their lockstep one).
func FaultTolerance(o FTOptions, out Output) error {
	dur, conns, rounds, epochs := o.Duration, o.Conns, o.Rounds, o.Epochs
	dir, err := os.MkdirTemp("", "ftvm-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c, err := cluster.Start(dir, o.Ftvm, 300*time.Millisecond, "a", "b")
	if err != nil {
		return err
	}
	defer c.Stop()
	if o.Harts > 1 {
		c.VM = []string{"-smp", strconv.Itoa(o.Harts)}
	}
	progress := func(format string, args ...any) { fmt.Fprintf(out.Progress, "bench: "+format+"\n", args...) }

	// Unreplicated.
	progress("unreplicated key-value load (%v, %d connections)", dur, conns)
	u, err := c.Replica("run", "u")
	if err != nil {
		return err
	}
	plain, err := kvLoad(c.Forward, dur, conns)
	if err != nil {
		return fmt.Errorf("unreplicated: %w\n%s", err, u.LogTail(20))
	}
	plain1, err := kvLoad(c.Forward, dur, 1)
	if err != nil {
		return fmt.Errorf("unreplicated: %w", err)
	}
	u.Kill()

	// A primary with no backup: the replication loop without the output
	// rule, which tells the rule's cost apart from the loop's.
	progress("unprotected primary key-value load")
	if err := replication.GenerateKeys(c.Keys, "ftvm", "s"); err != nil {
		return err
	}
	sp, err := c.Replica("primary", "s", "-cluster", "solo")
	if err != nil {
		return err
	}
	solo, err := kvLoad(c.Forward, dur, conns)
	if err != nil {
		return fmt.Errorf("unprotected primary: %w\n%s", err, sp.LogTail(20))
	}
	solo1, err := kvLoad(c.Forward, dur, 1)
	if err != nil {
		return fmt.Errorf("unprotected primary: %w", err)
	}
	sp.Kill()

	// Replicated.
	progress("replicated key-value load")
	a, b, err := c.StartPair("a", "b")
	if err != nil {
		return err
	}
	logBytes := func() (int64, time.Time) {
		st, _ := monitor.FetchStatus(a.HTTP)
		return st.LogBytes, time.Now()
	}
	n0, t0 := logBytes()
	time.Sleep(3 * time.Second)
	n1, t1 := logBytes()
	idleRate := float64(n1-n0) / t1.Sub(t0).Seconds()
	rep, err := kvLoad(c.Forward, dur, conns)
	if err != nil {
		return fmt.Errorf("replicated: %w\n%s", err, a.LogTail(20))
	}
	n2, t2 := logBytes()
	kvRate := float64(n2-n1) / t2.Sub(t1).Seconds()
	rep1, err := kvLoad(c.Forward, dur, 1)
	if err != nil {
		return fmt.Errorf("replicated: %w", err)
	}
	ast, _ := monitor.FetchStatus(a.HTTP)

	// Failover under a one-connection write load.
	progress("failover")
	conn, err := cluster.DialRetry(c.Forward, 30*time.Second)
	if err != nil {
		return err
	}
	writes := workload.NewWrites("bench:")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	go func() { defer close(done); writes.Run(ctx, conn, 0) }()
	time.Sleep(time.Second)
	killed := time.Now()
	a.Kill()
	bst, err := b.WaitStatus("live", time.Minute, func(s replication.Status) bool { return s.Role == "primary" })
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	stop()
	<-done
	conn.Close()
	if writes.Err != nil {
		return fmt.Errorf("failover: the client's connection broke: %w", writes.Err)
	}
	firstReply := writes.FirstServedAfter(killed)
	b.Kill()

	// Bressoud & Schneider's experiment.
	type epochRow struct {
		epoch          uint64
		ours, lockstep time.Duration
	}
	progress("CPU-bound guest (cpubench %d) unreplicated", rounds)
	u2, err := c.Replica("run", "u2")
	if err != nil {
		return err
	}
	if _, err := u2.WaitLog("console ready", 0, time.Minute); err != nil {
		return err
	}
	base, err := cpubench(u2, rounds)
	if err != nil {
		return err
	}
	u2.Kill()
	var rows []epochRow
	for _, e := range epochs {
		row := epochRow{epoch: e}
		for _, lock := range []bool{false, true} {
			progress("CPU-bound guest replicated, epoch %d, lockstep %v", e, lock)
			extra := []string{"-epoch", strconv.FormatUint(e, 10)}
			if lock {
				extra = append(extra, "-lockstep")
			}
			id := fmt.Sprintf("e%d-%v", e, lock)
			p, q, err := c.StartPair(id+"-p", id+"-b", extra...)
			if err != nil {
				return err
			}
			d, err := cpubench(p, rounds)
			p.Kill()
			q.Kill()
			if err != nil {
				return err
			}
			if lock {
				row.lockstep = d
			} else {
				row.ours = d
			}
		}
		rows = append(rows, row)
	}

	fmt.Fprintf(out.Table, "key-value server (SET through the switch, disk-backed, %v per run)\n", dur)
	fmt.Fprintf(out.Table, "%-30s %12s %12s %12s %12s\n", "", "ftvm run", "unprotected", "replicated", "repl./run")
	kvRow := func(name string, p, s, r float64, unit string) {
		fmt.Fprintf(out.Table, "%-30s %12.2f %12.2f %12.2f %12.2f  %s\n", name, p, s, r, r/p, unit)
	}
	kvRow(fmt.Sprintf("throughput, %d connections", conns), plain.opsPerSec, solo.opsPerSec, rep.opsPerSec, "ops/s")
	kvRow(fmt.Sprintf("p50 latency, %d connections", conns), ms(plain.p50), ms(solo.p50), ms(rep.p50), "ms")
	kvRow(fmt.Sprintf("p99 latency, %d connections", conns), ms(plain.p99), ms(solo.p99), ms(rep.p99), "ms")
	kvRow("throughput, 1 connection", plain1.opsPerSec, solo1.opsPerSec, rep1.opsPerSec, "ops/s")
	kvRow("p50 latency, 1 connection", ms(plain1.p50), ms(solo1.p50), ms(rep1.p50), "ms")
	kvRow("p99 latency, 1 connection", ms(plain1.p99), ms(solo1.p99), ms(rep1.p99), "ms")
	fmt.Fprintf(out.Table, "\noutput rule: a Sync record is acknowledged %v after it is appended (moving average, one-connection load)\n", ast.AckLatency.Round(time.Microsecond))
	fmt.Fprintf(out.Table, "log bandwidth: idle guest %s, key-value load (%d connections) %s\n", monitor.Rate(idleRate), conns, monitor.Rate(kvRate))
	fmt.Fprintf(out.Table, "failover (SIGKILL of the primary under one-connection writes): detected %v, live %v, first request served by the new primary %v after the kill; longest write %v\n",
		bst.FailoverDetected.Sub(killed).Round(time.Millisecond), bst.FailoverLive.Sub(killed).Round(time.Millisecond),
		firstReply.Round(time.Millisecond), writes.MaxLatency.Round(time.Millisecond))
	fmt.Fprintf(out.Table, "\nCPU-bound guest (cpubench %d): wall time, slowdown against unreplicated (%.2fs)\n", rounds, base.Seconds())
	fmt.Fprintf(out.Table, "%-14s %14s %10s %16s %10s\n", "epoch (insns)", "ftvm (s)", "slowdown", "lockstep (s)", "slowdown")
	for _, r := range rows {
		fmt.Fprintf(out.Table, "%-14d %14.2f %10.2f %16.2f %10.2f\n", r.epoch, r.ours.Seconds(), r.ours.Seconds()/base.Seconds(), r.lockstep.Seconds(), r.lockstep.Seconds()/base.Seconds())
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// cpubench runs the guest's CPU workload from its console and returns the
// wall time until its reply.
func cpubench(p *cluster.Proc, rounds int) (time.Duration, error) {
	b, _ := os.ReadFile(p.Log)
	t0 := time.Now()
	fmt.Fprintf(p.Stdin, "cpubench %d\n", rounds)
	if _, err := p.WaitLog("= rounds=", len(b), 10*time.Minute); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

type kvResult struct {
	opsPerSec float64
	p50, p99  time.Duration
}

// kvLoad runs SETs on conns connections for d.
func kvLoad(addr string, d time.Duration, conns int) (kvResult, error) {
	return kvLoadMix(addr, d, conns, false)
}

// kvLoadMix is kvLoad; with mixed, every other request is a GET of the key
// the one before set (half SETs and half GETs, PLOVER's Redis load).
func kvLoadMix(addr string, d time.Duration, conns int, mixed bool) (kvResult, error) {
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for i := range conns {
		c, err := cluster.DialRetry(addr, 30*time.Second)
		if err != nil {
			return kvResult{}, err
		}
		wg.Add(1)
		go func(c net.Conn) {
			defer wg.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(d + time.Minute))
			cl := workload.NewClient(c)
			var mine []time.Duration
			val := strings.Repeat("v", 64)
			for n := 0; time.Since(start) < d; n++ {
				t0 := time.Now()
				var err error
				k := n
				if mixed {
					k = n / 2
				}
				if key := fmt.Sprintf("k%d:%d", i, k%1000); mixed && n%2 == 1 {
					_, err = cl.Do("GET", key)
				} else {
					_, err = cl.Do("SET", key, val)
				}
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	if firstErr != nil {
		return kvResult{}, firstErr
	}
	el := time.Since(start)
	return kvResult{float64(len(lat)) / el.Seconds(), workload.Percentile(lat, 50), workload.Percentile(lat, 99)}, nil
}
