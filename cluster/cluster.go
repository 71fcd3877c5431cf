// Package cluster runs, on this machine and without root, what a
// replicated guest needs around it: a witness (an embedded etcd, the
// arbiter), a virtual switch with a port forward to the guest's key-value
// server, and replica (or plain ftvm run) processes of the ftvm command,
// each with a disk, a log file and an HTTP status address of its own.
// ftvm demo, ftvm bench -ft and tests use it.
package cluster

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
	"strings"
	"syscall"
	"time"

	"ftvm/arbiter/witness"
	"ftvm/guest/workload"
	"ftvm/host/guests"
	"ftvm/host/vswitch"
	"ftvm/monitor"
	"ftvm/replication"
)

// Cluster is a witness and a switch, and the processes started around
// them.
type Cluster struct {
	Dir     string // keys, disks, logs and the witness's data are kept here
	Keys    string // the cluster's TLS keys (Dir/keys)
	Arbiter string // the witness's client address
	Switch  string // the switch's UDP address (-net switch:ADDR)
	Forward string // the switch's forward to the guest's server port (6379 for kv and redis)
	Guest   guests.Guest
	// VM are machine flags for primaries and plain runs (-smp N); a
	// backup gets the primary's machine with its state.
	VM []string
	// Ready waits until the guest's server at addr answers, for at most
	// limit (nil: a PING, for the key-value and Redis guests).
	Ready   func(addr string, limit time.Duration) error
	ftvm    string
	timeout time.Duration
	procs   []*exec.Cmd
	cancel  context.CancelFunc
	wit     *witness.Process
}

// Start creates keys for ids in dir, then starts the witness and the
// switch. Replicas are the ftvm binary at ftvm, with the heartbeat timeout
// timeout; the witness is ftvm-witness next to it (witness.Find). They
// boot the default guest.
func Start(dir, ftvm string, timeout time.Duration, ids ...string) (*Cluster, error) {
	g, _ := guests.Lookup(guests.Default)
	return StartGuest(dir, ftvm, timeout, g, ids...)
}

// StartGuest is Start for guest g: the switch forwards to its server's
// port, and each process boots it (-guest) on a data disk of its own (a
// Debian guest's made from its template).
func StartGuest(dir, ftvm string, timeout time.Duration, g guests.Guest, ids ...string) (*Cluster, error) {
	c := &Cluster{Dir: dir, ftvm: ftvm, timeout: timeout, Guest: g}
	var err error
	c.Keys = filepath.Join(dir, "keys")
	if err := replication.GenerateKeys(c.Keys, "ftvm", ids...); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if c.wit, err = witness.Start(wctx, witness.Config{Data: filepath.Join(dir, "witness")}); err != nil {
		c.Stop()
		return nil, fmt.Errorf("starting the witness: %w", err)
	}
	c.Arbiter = strings.TrimPrefix(c.wit.ClientURL, "http://")
	sw, err := vswitch.New(vswitch.Config{Listen: "127.0.0.1:0", Forwards: []vswitch.Forward{
		{Host: "127.0.0.1:0", Guest: netip.AddrPortFrom(netip.MustParseAddr("10.0.2.15"), uint16(g.Port))}}})
	if err != nil {
		c.Stop()
		return nil, err
	}
	go sw.Serve(ctx)
	c.Switch, c.Forward = sw.Addr().String(), sw.ForwardAddrs()[0].String()
	return c, nil
}

// Stop ends every process the cluster started, the witness and the
// switch.
func (c *Cluster) Stop() {
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

// Proc is a replica or plain run started by a cluster; its console and
// logs go to Log (Dir/ID.log), its console input comes from Stdin.
type Proc struct {
	ID     string
	Listen string // where backups join it
	HTTP   string // its /status and /metrics
	Log    string
	Cmd    *exec.Cmd
	Stdin  io.WriteCloser
}

// Replica starts 'ftvm primary' or 'ftvm backup' as id, with a fresh disk
// of its own and extra flags; role "run" starts a plain, unreplicated
// 'ftvm run'.
func (c *Cluster) Replica(role, id string, extra ...string) (*Proc, error) {
	r := &Proc{ID: id, Log: filepath.Join(c.Dir, id+".log")}
	var err error
	if r.Listen, err = freePort(); err != nil {
		return nil, err
	}
	if r.HTTP, err = freePort(); err != nil {
		return nil, err
	}
	disk := filepath.Join(c.Dir, id+".img")
	if c.Guest.Debian() {
		err = guests.NewDataDisk(disk)
	} else {
		err = os.WriteFile(disk, make([]byte, 16<<20), 0o644)
	}
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(r.Log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	argv := []string{role, "-net", "switch:" + c.Switch, "-disk", disk, "-guest", c.Guest.Name}
	if role != "backup" && role != "witness" { // a backup gets the primary's machine with its state
		argv = append(argv, c.VM...)
	}
	switch role {
	case "run":
	case "witness": // a PLOVER group's: no guest, no arbiter
		argv = []string{role, "-id", id, "-keys", c.Keys, "-cluster", "ftvm", "-listen", r.Listen, "-http", r.HTTP}
	default:
		argv = append(argv, "-id", id, "-keys", c.Keys, "-cluster", "ftvm", "-listen", r.Listen,
			"-arbiter", c.Arbiter, "-http", r.HTTP, "-timeout", c.timeout.String())
	}
	r.Cmd = exec.Command(c.ftvm, append(argv, extra...)...)
	r.Cmd.Stdout, r.Cmd.Stderr = logf, logf
	if r.Stdin, err = r.Cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := r.Cmd.Start(); err != nil {
		return nil, err
	}
	c.procs = append(c.procs, r.Cmd)
	return r, nil
}

// Kill ends a process at once.
func (p *Proc) Kill() {
	p.Cmd.Process.Kill()
	p.Cmd.Wait()
}

// WaitStatus polls a replica's status until ok accepts it, for at most
// limit; what says what is awaited, for the error.
func (p *Proc) WaitStatus(what string, limit time.Duration, ok func(replication.Status) bool) (replication.Status, error) {
	deadline := time.Now().Add(limit)
	for {
		st, err := monitor.FetchStatus(p.HTTP)
		if err == nil && ok(st) {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("replica %s: not %s after %v (%v); its log ends:\n%s", p.ID, what, limit, err, p.LogTail(30))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// LogTail is the last n lines of the process's log.
func (p *Proc) LogTail(n int) string {
	b, _ := os.ReadFile(p.Log)
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// WaitLog waits until the process's log, from byte from on, contains s,
// and returns where it ends.
func (p *Proc) WaitLog(s string, from int, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	for {
		b, _ := os.ReadFile(p.Log)
		if from < len(b) {
			if i := strings.Index(string(b[from:]), s); i >= 0 {
				return from + i + len(s), nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s: no %q in its log after %v; it ends:\n%s", p.ID, s, limit, p.LogTail(20))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// DialRetry connects to addr (the key-value server), retrying until it
// answers a PING, for at most limit.
func DialRetry(addr string, limit time.Duration) (net.Conn, error) {
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

// WaitReady waits until the guest's server answers through the switch's
// forward: 30 seconds for the default guest, 4 minutes for a Debian
// service (PostgreSQL starts slowly).
func (c *Cluster) WaitReady() error {
	limit := 30 * time.Second
	if c.Guest.Debian() {
		limit = 4 * time.Minute
	}
	if c.Ready != nil {
		return c.Ready(c.Forward, limit)
	}
	conn, err := DialRetry(c.Forward, limit)
	if err != nil {
		return err
	}
	return conn.Close()
}

// StartPair starts a primary pid, waits for its guest's key-value server,
// and joins a backup bid to it, as a pair of its own at the arbiter (named
// pid); extra flags go to both.
func (c *Cluster) StartPair(pid, bid string, extra ...string) (p, b *Proc, err error) {
	if err := replication.GenerateKeys(c.Keys, "ftvm", MissingKeys(c.Keys, pid, bid)...); err != nil {
		return nil, nil, err
	}
	// A pair of its own at the arbiter (a later -cluster wins).
	extra = append([]string{"-cluster", pid}, extra...)
	if p, err = c.Replica("primary", pid, extra...); err != nil {
		return nil, nil, err
	}
	if _, err := p.WaitLog("console ready", 0, time.Minute); err != nil {
		return nil, nil, err
	}
	if b, err = c.Replica("backup", bid, append([]string{"-join", p.Listen}, extra...)...); err != nil {
		return nil, nil, err
	}
	if _, err := b.WaitStatus("following the primary", time.Minute, func(s replication.Status) bool { return s.Role == "backup" }); err != nil {
		return nil, nil, err
	}
	if err := c.WaitReady(); err != nil {
		return nil, nil, err
	}
	return p, b, nil
}

// StartGroup starts a PLOVER group: a primary pid, its guest's key-value
// server answering, a witness wid and a backup bid, under a cluster name
// of their own (pid); extra flags go to the replicas.
func (c *Cluster) StartGroup(pid, bid, wid string, extra ...string) (p, b, w *Proc, err error) {
	if err := replication.GenerateKeys(c.Keys, "ftvm", MissingKeys(c.Keys, pid, bid, wid)...); err != nil {
		return nil, nil, nil, err
	}
	extra = append([]string{"-cluster", pid, "-mode", "plover"}, extra...)
	if p, err = c.Replica("primary", pid, extra...); err != nil {
		return nil, nil, nil, err
	}
	if _, err := p.WaitLog("console ready", 0, time.Minute); err != nil {
		return nil, nil, nil, err
	}
	if w, err = c.Replica("witness", wid, "-cluster", pid, "-join", p.Listen); err != nil {
		return nil, nil, nil, err
	}
	if _, err := w.WaitStatus("a witness", time.Minute, func(s replication.Status) bool { return s.Role == "witness" }); err != nil {
		return nil, nil, nil, err
	}
	if b, err = c.Replica("backup", bid, append([]string{"-join", p.Listen}, extra...)...); err != nil {
		return nil, nil, nil, err
	}
	if _, err := b.WaitStatus("following the primary", time.Minute, func(s replication.Status) bool { return s.Role == "backup" }); err != nil {
		return nil, nil, nil, err
	}
	if err := c.WaitReady(); err != nil {
		return nil, nil, nil, err
	}
	return p, b, w, nil
}

// MissingKeys are the ids that have no certificate in dir yet.
func MissingKeys(dir string, ids ...string) []string {
	var out []string
	for _, id := range ids {
		if _, err := os.Stat(dir + "/" + id + ".pem"); err != nil {
			out = append(out, id)
		}
	}
	return out
}
