package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"syscall"
	"time"

	"ftvm/guest/workload"
	"ftvm/host/guests"
	"ftvm/monitor"
	"ftvm/replication"
)

// cmdDemo shows the mission on one machine without root: a witness, a
// virtual switch with a port forward, a primary and a backup running the
// default guest, a client writing to its key-value server, the primary
// killed, the backup taking over, and a new backup joining it.
func cmdDemo(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dir := fs.String("dir", "", "working `dir`ectory for keys, disks and logs (default: a new temporary one, removed at the end)")
	before := fs.Duration("before", 3*time.Second, "how long the client writes before the primary is killed")
	after := fs.Duration("after", 3*time.Second, "how long the client writes after the failover")
	fault := fs.String("fault", "kill", "how the primary dies: kill (SIGKILL: the process dies and its kernel closes its connections) or freeze (SIGSTOP: a hung host, detected by the heartbeat timeout)")
	timeout := fs.Duration("timeout", 300*time.Millisecond, "the replicas' heartbeat timeout")
	guest := fs.String("guest", "redis", "the guest: redis (Debian's Redis, with appendonly and appendfsync always) or kv (our key-value server, faster to boot)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ftvm demo [flags]\n\nRuns a replicated guest (Debian's Redis by default) on this machine, kills its\nprimary while a client writes, and reports what the client saw.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("demo takes no arguments (got %q)", fs.Args())
	}
	if *fault != "kill" && *fault != "freeze" {
		return fmt.Errorf("-fault %q: want kill or freeze", *fault)
	}
	g, err := guests.Lookup(*guest)
	if err != nil {
		return err
	}
	if g.Port != 6379 {
		return fmt.Errorf("-guest %s: the demo's client speaks the Redis protocol (guests kv and redis)", g.Name)
	}
	if err := g.Check(); err != nil {
		return fmt.Errorf("%w (or make demo)", err)
	}
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "ftvm-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		*dir = tmp
	} else if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	start := time.Now()
	say := func(format string, args ...any) {
		fmt.Printf("[%6.2fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	c, err := startGuestCluster(*dir, *timeout, g, "a", "b", "c")
	if err != nil {
		return err
	}
	defer c.stop()
	server := "key-value server"
	if g.Debian() {
		server = "Redis (Debian's redis-server)"
	}
	say("witness (embedded etcd) at %s; virtual switch at %s, forwarding %s to the guest's %s 10.0.2.15:6379",
		c.arbiter, c.swAddr, c.fwd, server)

	a, err := c.replica("primary", "a")
	if err != nil {
		return err
	}
	say("primary a: booting the %s guest (console and log: %s)", g.Name, a.log)
	conn, err := dialRetry(c.fwd, 3*time.Minute)
	if err != nil {
		return fmt.Errorf("the guest's %s never answered: %w\n%s", server, err, a.logTail(20))
	}
	defer conn.Close()
	say("guest's %s up", server)

	b, err := c.replica("backup", "b", "-join", a.listen)
	if err != nil {
		return err
	}
	if _, err := b.waitStatus("following the primary", 60*time.Second, func(s replication.Status) bool { return s.Role == "backup" }); err != nil {
		return err
	}
	st, _ := monitor.FetchStatus(a.http)
	say("backup b joined (live state transfer); view %s", st.View)

	writes := workload.NewWrites("demo:")
	wctx, stopWrites := context.WithCancel(context.Background())
	defer stopWrites()
	done := make(chan struct{})
	conn.SetDeadline(time.Now().Add(*before + *after + 60*time.Second))
	go func() {
		defer close(done)
		writes.Run(wctx, conn, 0)
	}()
	say("client: numbered writes (INCR) on one TCP connection through the switch")
	time.Sleep(*before)
	st, _ = monitor.FetchStatus(a.http)
	say("client: %d writes acknowledged; log %s; backup %d instructions behind", writes.Progress.Load(), monitor.Rate(st.LogRate), st.LagInsns)

	killed := time.Now()
	if *fault == "kill" {
		a.cmd.Process.Kill()
		say("primary a killed (SIGKILL)")
	} else {
		a.cmd.Process.Signal(syscall.SIGSTOP)
		say("primary a frozen (SIGSTOP)")
	}
	bst, err := b.waitStatus("live", 60*time.Second, func(s replication.Status) bool { return s.Role == "primary" })
	if err != nil {
		return err
	}
	say("backup b: primary lost, won the arbitration, live; view %s", bst.View)
	time.Sleep(*after)
	stopWrites()
	<-done
	if writes.Err != nil {
		return fmt.Errorf("the client's connection did not survive: %w", writes.Err)
	}
	verr := writes.Verify(conn)
	say("client: %d writes acknowledged in all, on the same connection", writes.Acked)

	cp, err := c.replica("backup", "c", "-join", b.listen)
	if err != nil {
		return err
	}
	if _, err := cp.waitStatus("following the new primary", 60*time.Second, func(s replication.Status) bool { return s.Role == "backup" }); err != nil {
		return err
	}
	bst2, _ := monitor.FetchStatus(b.http)
	say("new backup c joined b: protected again; view %s", bst2.View)

	fmt.Println("\nwhat happened")
	row := func(k string, v any) { fmt.Printf("  %-58s %v\n", k, v) }
	row(fmt.Sprintf("detection (%s to the backup declaring the primary lost)", *fault), bst.FailoverDetected.Sub(killed).Round(time.Millisecond))
	row("takeover (declared lost to live, arbitration included)", bst.FailoverLive.Sub(bst.FailoverDetected).Round(time.Millisecond))
	row("kill to the first request served by the new primary", firstServed(writes, killed).Round(time.Millisecond))
	row("longest pause the client saw (one write)", writes.MaxLatency.Round(time.Millisecond))
	row("write latency p50 / p99", fmt.Sprintf("%v / %v", writes.Percentile(50).Round(10*time.Microsecond), writes.Percentile(99).Round(10*time.Microsecond)))
	row("writes acknowledged", writes.Acked)
	if verr != nil {
		row("CHECK FAILED", verr)
		return verr
	}
	row("acknowledged writes lost / applied twice", "0 / 0 (all read back)")
	row("client reconnections", 0)
	row("re-protected by", "c")
	return nil
}

// firstServed is the time from t to the acknowledgement of the first
// write issued after t (0 if there was none).
func firstServed(w *workload.Writes, t time.Time) time.Duration {
	at, ok := w.FirstIssuedAfter(t)
	if !ok {
		return 0
	}
	return at.Sub(t)
}
