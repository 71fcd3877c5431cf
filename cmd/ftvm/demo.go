package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"ftvm/arbiter/witness"
	"ftvm/guest/workload"
	"ftvm/host"
	"ftvm/host/vswitch"
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
	fault := fs.String("fault", "kill", "how the primary dies: kill (SIGKILL: the process dies, its host's kernel closes its connections) or freeze (SIGSTOP: a hung host; detection by heartbeat timeout)")
	timeout := fs.Duration("timeout", 300*time.Millisecond, "the replicas' heartbeat timeout")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ftvm demo [flags]\n\nRuns a replicated default guest on this machine, kills its primary while a\nclient writes, and reports what the client saw.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *fault != "kill" && *fault != "freeze" {
		return fmt.Errorf("-fault %q: want kill or freeze", *fault)
	}
	if _, err := os.Stat(filepath.Join(host.GuestDir(), "Image")); err != nil {
		return fmt.Errorf("the default guest is not built (%s): run scripts/setup.sh or make demo", host.GuestDir())
	}
	d := &demo{start: time.Now(), timeout: *timeout}
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
	d.dir = *dir
	defer d.stopAll()
	return d.run(*before, *after, *fault)
}

type demo struct {
	dir     string
	start   time.Time
	timeout time.Duration
	ftvm    string
	keys    string
	arbiter string
	swAddr  string
	fwd     string
	procs   []*exec.Cmd
	cancel  context.CancelFunc
}

func (d *demo) say(format string, args ...any) {
	fmt.Printf("[%6.2fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

func (d *demo) stopAll() {
	for _, p := range d.procs {
		if p.Process != nil {
			p.Process.Signal(syscall.SIGCONT)
			p.Process.Kill()
			p.Wait()
		}
	}
	if d.cancel != nil {
		d.cancel()
	}
}

// freePort returns a loopback TCP address nobody listens on now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

type demoReplica struct {
	id, listen, http string
	cmd              *exec.Cmd
}

// replica starts ftvm primary or ftvm backup, its console and logs in
// DIR/ID.log.
func (d *demo) replica(role, id string, extra ...string) (*demoReplica, error) {
	r := &demoReplica{id: id}
	var err error
	if r.listen, err = freePort(); err != nil {
		return nil, err
	}
	if r.http, err = freePort(); err != nil {
		return nil, err
	}
	disk := filepath.Join(d.dir, id+".img")
	if err := os.WriteFile(disk, make([]byte, 16<<20), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(d.dir, id+".log"))
	if err != nil {
		return nil, err
	}
	argv := append([]string{role, "-id", id, "-keys", d.keys, "-cluster", "demo", "-listen", r.listen,
		"-arbiter", d.arbiter, "-net", "switch:" + d.swAddr, "-disk", disk, "-http", r.http,
		"-timeout", d.timeout.String()}, extra...)
	r.cmd = exec.Command(d.ftvm, argv...)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	r.cmd.Stdin = nil
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	d.procs = append(d.procs, r.cmd)
	return r, nil
}

// waitStatus polls a replica's status until ok accepts it.
func (d *demo) waitStatus(r *demoReplica, what string, limit time.Duration, ok func(replication.Status) bool) (replication.Status, error) {
	deadline := time.Now().Add(limit)
	for {
		st, err := fetchStatus(r.http)
		if err == nil && ok(st) {
			return st, nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(d.dir, r.id+".log"))
			return st, fmt.Errorf("replica %s: not %s after %v (last status %+v, %v); its log:\n%s", r.id, what, limit, st, err, tailLines(string(log), 30))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func (d *demo) run(before, after time.Duration, fault string) error {
	var err error
	if d.ftvm, err = os.Executable(); err != nil {
		return err
	}
	d.keys = filepath.Join(d.dir, "keys")
	if err := replication.GenerateKeys(d.keys, "demo", "a", "b", "c"); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel

	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	w, err := witness.Start(wctx, witness.Config{Data: filepath.Join(d.dir, "witness")})
	if err != nil {
		return fmt.Errorf("starting the witness: %w", err)
	}
	defer w.Kill()
	d.arbiter = strings.TrimPrefix(w.ClientURL, "http://")
	d.say("witness (embedded etcd) serving at %s", d.arbiter)

	sw, err := vswitch.New(vswitch.Config{Listen: "127.0.0.1:0", Forwards: []vswitch.Forward{
		{Host: "127.0.0.1:0", Guest: netip.MustParseAddrPort("10.0.2.15:6379")}}})
	if err != nil {
		return err
	}
	go sw.Serve(ctx)
	d.swAddr, d.fwd = sw.Addr().String(), sw.ForwardAddrs()[0].String()
	d.say("virtual switch at %s, forwarding %s to the guest's key-value server 10.0.2.15:6379", d.swAddr, d.fwd)

	a, err := d.replica("primary", "a")
	if err != nil {
		return err
	}
	if _, err := d.waitStatus(a, "the primary", 30*time.Second, func(s replication.Status) bool { return s.Role == "primary" }); err != nil {
		return err
	}
	d.say("primary a: booting the default guest (log: %s)", filepath.Join(d.dir, "a.log"))
	conn, err := dialRetry(d.fwd, 60*time.Second)
	if err != nil {
		return fmt.Errorf("the guest's key-value server never answered: %w", err)
	}
	defer conn.Close()
	d.say("guest's key-value server up")

	b, err := d.replica("backup", "b", "-join", a.listen)
	if err != nil {
		return err
	}
	if _, err := d.waitStatus(b, "following the primary", 60*time.Second, func(s replication.Status) bool { return s.Role == "backup" }); err != nil {
		return err
	}
	st, _ := fetchStatus(a.http)
	d.say("backup b joined (live state transfer), view %s", st.View)

	writes := workload.NewWrites("demo:")
	wctx2, stopWrites := context.WithCancel(ctx)
	defer stopWrites()
	done := make(chan struct{})
	conn.SetDeadline(time.Now().Add(before + after + 60*time.Second))
	go func() {
		defer close(done)
		writes.Run(wctx2, conn, 0)
	}()
	d.say("client: numbered writes (INCR) on one TCP connection through the switch")
	time.Sleep(before)
	st, _ = fetchStatus(a.http)
	atKill := writes.Progress.Load()
	d.say("client: %d writes acknowledged; log %s, backup %d instructions behind", atKill, rate(st.LogRate), st.LagInsns)

	killed := time.Now()
	if fault == "kill" {
		a.cmd.Process.Kill()
		d.say("primary a killed (SIGKILL)")
	} else {
		a.cmd.Process.Signal(syscall.SIGSTOP)
		d.say("primary a frozen (SIGSTOP)")
	}
	bst, err := d.waitStatus(b, "live", 60*time.Second, func(s replication.Status) bool { return s.Role == "primary" })
	if err != nil {
		return err
	}
	d.say("backup b: primary lost, won the arbitration, live (view %s)", bst.View)
	time.Sleep(after)
	stopWrites()
	<-done
	if writes.Err != nil {
		return fmt.Errorf("the client's connection did not survive: %w", writes.Err)
	}
	verr := writes.Verify(conn)
	d.say("client: %d writes acknowledged in all, on the same connection", writes.Acked)

	c, err := d.replica("backup", "c", "-join", b.listen)
	if err != nil {
		return err
	}
	if _, err := d.waitStatus(c, "following the new primary", 60*time.Second, func(s replication.Status) bool { return s.Role == "backup" }); err != nil {
		return err
	}
	bst2, _ := fetchStatus(b.http)
	d.say("new backup c joined b: protected again, view %s", bst2.View)

	var firstReply time.Time
	for _, at := range writes.Acks {
		if at.After(killed) {
			firstReply = at
			break
		}
	}
	fmt.Println()
	fmt.Println("what happened")
	fmt.Printf("  detection (%s to the backup declaring the primary lost): %v\n", fault, bst.FailoverDetected.Sub(killed).Round(time.Millisecond))
	fmt.Printf("  takeover (declared lost to live, arbitration included):  %v\n", bst.FailoverLive.Sub(bst.FailoverDetected).Round(time.Millisecond))
	fmt.Printf("  kill to the first reply from the new primary:           %v\n", firstReply.Sub(killed).Round(time.Millisecond))
	fmt.Printf("  longest pause the client saw (one write):               %v\n", writes.MaxLatency.Round(time.Millisecond))
	fmt.Printf("  write latency p50 / p99:                                %v / %v\n", writes.Percentile(50).Round(10*time.Microsecond), writes.Percentile(99).Round(10*time.Microsecond))
	fmt.Printf("  writes acknowledged:                                    %d\n", writes.Acked)
	if verr != nil {
		fmt.Printf("  CHECK FAILED: %v\n", verr)
		return verr
	}
	fmt.Printf("  acknowledged writes lost / applied twice:               0 / 0 (all read back)\n")
	fmt.Printf("  client reconnections:                                   0\n")
	fmt.Printf("  re-protected by:                                        c\n")
	return nil
}

// dialRetry connects to addr, retrying until it answers a PING.
func dialRetry(addr string, limit time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if got, perr := workload.NewClient(c).Do("PING"); perr == nil && got == "PONG" {
				c.SetDeadline(time.Time{})
				return c, nil
			} else if perr != nil {
				err = perr
			}
			c.Close()
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("no PONG")
			}
			return nil, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
