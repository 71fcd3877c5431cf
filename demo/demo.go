// Package demo is ftvm demo: the fault tolerance shown on one machine
// without root. A witness, a virtual switch with a port forward, a
// primary and a backup running Debian's Redis (or the default guest's
// key-value server), a client writing to it over one TCP connection, the primary killed (or
// frozen), the backup taking over, a new backup joining it; then what the
// client saw, measured.
package demo

import (
	"context"
	"fmt"
	"io"
	"syscall"
	"time"

	"ftvm/cluster"
	"ftvm/guest/workload"
	"ftvm/host/guests"
	"ftvm/monitor"
	"ftvm/replication"
)

// Options configure a demo run.
type Options struct {
	Dir     string        // working directory for keys, disks and logs
	Ftvm    string        // the ftvm binary the replicas run (ftvm-witness next to it)
	Before  time.Duration // how long the client writes before the primary dies
	After   time.Duration // how long it writes after the failover
	Fault   string        // "kill" (SIGKILL) or "freeze" (SIGSTOP: a hung host)
	Timeout time.Duration // the replicas' heartbeat timeout
	Out     io.Writer     // the report
	// Guest is the guest the replicas run: one that serves the Redis
	// protocol on port 6379 (kv, or Debian's Redis); "" for the default.
	Guest string
}

// Run runs the demo and reports on o.Out; it fails if the client's
// connection broke or an acknowledged write was lost or applied twice.
func Run(o Options) error {
	if o.Fault != "kill" && o.Fault != "freeze" {
		return fmt.Errorf("fault %q: want kill or freeze", o.Fault)
	}
	start := time.Now()
	say := func(format string, args ...any) {
		fmt.Fprintf(o.Out, "[%6.2fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	g, err := guests.Lookup(o.Guest)
	if err != nil {
		return err
	}
	if g.Port != 6379 {
		return fmt.Errorf("guest %s: the demo's client speaks the Redis protocol (guests kv and redis)", g.Name)
	}
	server := "key-value server"
	if g.Debian() {
		server = "Redis (Debian's redis-server)"
	}
	c, err := cluster.StartGuest(o.Dir, o.Ftvm, o.Timeout, g, "a", "b", "c")
	if err != nil {
		return err
	}
	defer c.Stop()
	say("witness (embedded etcd) at %s; virtual switch at %s, forwarding %s to the guest's %s 10.0.2.15:6379",
		c.Arbiter, c.Switch, c.Forward, server)

	a, err := c.Replica("primary", "a")
	if err != nil {
		return err
	}
	say("primary a: booting the %s guest (console and log: %s)", g.Name, a.Log)
	// The client's connections, counted: one for the whole run, failover
	// included.
	dials := 0
	conn, err := cluster.DialRetry(c.Forward, 3*time.Minute)
	dials++
	if err != nil {
		return fmt.Errorf("the guest's %s never answered: %w\n%s", server, err, a.LogTail(20))
	}
	defer conn.Close()
	say("guest's %s up", server)

	b, err := c.Replica("backup", "b", "-join", a.Listen)
	if err != nil {
		return err
	}
	if _, err := b.WaitStatus("following the primary", 60*time.Second, func(s replication.Status) bool { return s.Role == "backup" }); err != nil {
		return err
	}
	st, _ := monitor.FetchStatus(a.HTTP)
	say("backup b joined (live state transfer); view %s", st.View)

	writes := workload.NewWrites("demo:")
	wctx, stopWrites := context.WithCancel(context.Background())
	defer stopWrites()
	done := make(chan struct{})
	conn.SetDeadline(time.Now().Add(o.Before + o.After + 60*time.Second))
	go func() {
		defer close(done)
		writes.Run(wctx, conn, 0)
	}()
	say("client: numbered writes (INCR) on one TCP connection through the switch")
	time.Sleep(o.Before)
	st, _ = monitor.FetchStatus(a.HTTP)
	say("client: %d writes acknowledged; log %s; backup %d instructions behind", writes.Progress.Load(), monitor.Rate(st.LogRate), st.LagInsns)

	killed := time.Now()
	if o.Fault == "kill" {
		a.Cmd.Process.Kill()
		say("primary a killed (SIGKILL)")
	} else {
		a.Cmd.Process.Signal(syscall.SIGSTOP)
		say("primary a frozen (SIGSTOP)")
	}
	bst, err := b.WaitStatus("live", 60*time.Second, func(s replication.Status) bool { return s.Role == "primary" })
	if err != nil {
		return err
	}
	say("backup b: primary lost, won the arbitration, live; view %s", bst.View)
	time.Sleep(o.After)
	stopWrites()
	<-done
	if writes.Err != nil {
		return fmt.Errorf("the client's connection did not survive: %w", writes.Err)
	}
	rb, rerr := writes.ReadBack(conn)
	say("client: %d writes acknowledged in all, on the same connection", writes.Acked)

	cp, err := c.Replica("backup", "c", "-join", b.Listen)
	if err != nil {
		return err
	}
	if _, err := cp.WaitStatus("following the new primary", 60*time.Second, func(s replication.Status) bool { return s.Role == "backup" }); err != nil {
		return err
	}
	bst2, _ := monitor.FetchStatus(b.HTTP)
	say("new backup c joined b: protected again; view %s", bst2.View)

	fmt.Fprintln(o.Out, "\nwhat happened")
	row := func(k string, v any) { fmt.Fprintf(o.Out, "  %-58s %v\n", k, v) }
	row(fmt.Sprintf("detection (%s to the backup declaring the primary lost)", o.Fault), bst.FailoverDetected.Sub(killed).Round(time.Millisecond))
	row("takeover (declared lost to live, arbitration included)", bst.FailoverLive.Sub(bst.FailoverDetected).Round(time.Millisecond))
	row("kill to the first request served by the new primary", writes.FirstServedAfter(killed).Round(time.Millisecond))
	row("longest pause the client saw (one write)", writes.MaxLatency.Round(time.Millisecond))
	row("write latency p50 / p99", fmt.Sprintf("%v / %v", writes.Percentile(50).Round(10*time.Microsecond), writes.Percentile(99).Round(10*time.Microsecond)))
	row("writes acknowledged", writes.Acked)
	if rerr != nil {
		row("CHECK FAILED", rerr)
		return rerr
	}
	row("acknowledged writes lost / applied twice", fmt.Sprintf("%d / %d (all read back)", len(rb.Lost), len(rb.Twice)))
	row("client reconnections", dials-1)
	row("re-protected by", bst2.View.Backup)
	if err := rb.Err(); err != nil {
		row("CHECK FAILED", err)
		return err
	}
	if dials != 1 {
		return fmt.Errorf("the client connected %d times", dials)
	}
	return nil
}
