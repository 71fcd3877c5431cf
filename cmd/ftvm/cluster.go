package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ftvm/arbiter/witness"
	"ftvm/guest/workload"
	"ftvm/host/vswitch"
	"ftvm/replication"
)

// cluster runs, on this machine and without root, what a replicated guest
// needs around it: a witness, a virtual switch with a port forward to the
// guest's key-value server, and replica (or plain ftvm run) processes of
// this same binary. ftvm demo and ftvm bench -ft use it.
type cluster struct {
	dir     string
	ftvm    string
	keys    string
	arbiter string // the witness's client address
	swAddr  string // the switch's UDP address
	fwd     string // the forward to the guest's port 6379
	timeout time.Duration
	procs   []*exec.Cmd
	cancel  context.CancelFunc
	wit     *witness.Process
}

// startCluster creates keys for ids, then starts the witness and the switch.
func startCluster(dir string, timeout time.Duration, ids ...string) (*cluster, error) {
	c := &cluster{dir: dir, timeout: timeout}
	var err error
	if c.ftvm, err = os.Executable(); err != nil {
		return nil, err
	}
	c.keys = filepath.Join(dir, "keys")
	if err := replication.GenerateKeys(c.keys, "ftvm", ids...); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if c.wit, err = witness.Start(wctx, witness.Config{Data: filepath.Join(dir, "witness")}); err != nil {
		c.stop()
		return nil, fmt.Errorf("starting the witness: %w", err)
	}
	c.arbiter = strings.TrimPrefix(c.wit.ClientURL, "http://")
	sw, err := vswitch.New(vswitch.Config{Listen: "127.0.0.1:0", Forwards: []vswitch.Forward{
		{Host: "127.0.0.1:0", Guest: netip.MustParseAddrPort("10.0.2.15:6379")}}})
	if err != nil {
		c.stop()
		return nil, err
	}
	go sw.Serve(ctx)
	c.swAddr, c.fwd = sw.Addr().String(), sw.ForwardAddrs()[0].String()
	return c, nil
}

// stop ends every process the cluster started.
func (c *cluster) stop() {
	for _, p := range c.procs {
		if p.Process != nil && p.ProcessState == nil {
			p.Process.Signal(syscall.SIGCONT)
			p.Process.Kill()
			p.Wait()
		}
	}
	c.procs = nil
	if c.wit != nil {
		c.wit.Kill()
	}
	if c.cancel != nil {
		c.cancel()
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

// proc is a replica or plain run started by a cluster; its console and
// logs go to DIR/ID.log, its console input comes from stdin.
type proc struct {
	id, listen, http, log string
	cmd                   *exec.Cmd
	stdin                 io.WriteCloser
}

// replica starts 'ftvm primary' or 'ftvm backup' as id, with a fresh disk
// of its own; role "run" starts a plain, unreplicated 'ftvm run'.
func (c *cluster) replica(role, id string, extra ...string) (*proc, error) {
	r := &proc{id: id, log: filepath.Join(c.dir, id+".log")}
	var err error
	if r.listen, err = freePort(); err != nil {
		return nil, err
	}
	if r.http, err = freePort(); err != nil {
		return nil, err
	}
	disk := filepath.Join(c.dir, id+".img")
	if err := os.WriteFile(disk, make([]byte, 16<<20), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(r.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	argv := []string{role, "-net", "switch:" + c.swAddr, "-disk", disk}
	if role != "backup" && benchHarts > 1 { // a backup's harts come with the primary's state
		argv = append(argv, "-smp", strconv.Itoa(benchHarts))
	}
	if role != "run" {
		argv = append(argv, "-id", id, "-keys", c.keys, "-cluster", "ftvm", "-listen", r.listen,
			"-arbiter", c.arbiter, "-http", r.http, "-timeout", c.timeout.String())
	}
	r.cmd = exec.Command(c.ftvm, append(argv, extra...)...)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if r.stdin, err = r.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	c.procs = append(c.procs, r.cmd)
	return r, nil
}

// kill ends a process at once.
func (p *proc) kill() {
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

// waitStatus polls a replica's status until ok accepts it.
func (p *proc) waitStatus(what string, limit time.Duration, ok func(replication.Status) bool) (replication.Status, error) {
	deadline := time.Now().Add(limit)
	for {
		st, err := fetchStatus(p.http)
		if err == nil && ok(st) {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("replica %s: not %s after %v (%v); its log ends:\n%s", p.id, what, limit, err, p.logTail(30))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *proc) logTail(n int) string {
	b, _ := os.ReadFile(p.log)
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// waitLog waits until the process's log, from byte from on, contains s,
// and returns where it ends.
func (p *proc) waitLog(s string, from int, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	for {
		b, _ := os.ReadFile(p.log)
		if from < len(b) {
			if i := strings.Index(string(b[from:]), s); i >= 0 {
				return from + i + len(s), nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s: no %q in its log after %v; it ends:\n%s", p.id, s, limit, p.logTail(20))
		}
		time.Sleep(5 * time.Millisecond)
	}
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
		time.Sleep(100 * time.Millisecond)
	}
}
