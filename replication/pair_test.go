package replication

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"ftvm/arbiter"
	"ftvm/internal/testsupport"
	"ftvm/machine"
	"ftvm/migrate"
	"ftvm/vm"
)

// These tests run a real pair inside one process: two machines booting the
// default Linux guest, a real TLS connection on loopback between them, and
// an in-memory arbiter. "Killing" a replica here cancels it, which closes
// its connection; the end-to-end tests in cmd/ftvm kill real processes.

// console is a goroutine-safe console sink.
type console struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func (c *console) waitFor(t *testing.T, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(c.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("console never showed %q; it has:\n%s", s, c.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type testReplica struct {
	r       *Replica
	con     *console
	in      chan []byte
	ln      net.Listener
	cancel  context.CancelFunc
	done    chan struct{}
	reason  vm.StopReason
	err     error
	started time.Time
}

func keys(t *testing.T, ids ...string) string {
	dir := t.TempDir()
	if err := GenerateKeys(dir, "test", ids...); err != nil {
		t.Fatal(err)
	}
	return dir
}

func newTestReplica(t *testing.T, keyDir, id string, arb Arbiter, tune func(*Config)) *testReplica {
	t.Helper()
	tc, err := LoadTLS(keyDir, id)
	if err != nil {
		t.Fatal(err)
	}
	tr := &testReplica{con: &console{}, in: make(chan []byte, 16), done: make(chan struct{})}
	cfg := Config{
		ID: id, Cluster: "test", TLS: tc, Arbiter: arb, Engine: "ftvm-riscv64",
		Host:        Host{Console: tr.con, ConsoleIn: tr.in},
		Heartbeat:   20 * time.Millisecond,
		Timeout:     2 * time.Second, // generous: the test machine is shared
		DigestEvery: 5_000_000,
		Factory: func(out vm.Outputs) migrate.Factory {
			return machine.MigrationFactory(machine.RestoreOptions{Outputs: out})
		},
		Log: slog.New(slog.NewTextHandler(testWriter{t, id}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if tune != nil {
		tune(&cfg)
	}
	if tr.r, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	if tr.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tr.stop()
		tr.ln.Close()
	})
	return tr
}

type testWriter struct {
	t  *testing.T
	id string
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (tr *testReplica) startPrimary(t *testing.T, kernel, initrd []byte) {
	m, err := machine.New(machine.Config{Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0", Outputs: tr.r.Outputs()})
	if err != nil {
		t.Fatal(err)
	}
	tr.startEngine(m)
}

// startEngine runs tr as the primary of e.
func (tr *testReplica) startEngine(e Engine) {
	ctx, cancel := context.WithCancel(context.Background())
	tr.cancel, tr.started = cancel, time.Now()
	go func() {
		defer close(tr.done)
		tr.reason, tr.err = tr.r.RunPrimary(ctx, e, tr.ln)
	}()
}

func (tr *testReplica) startBackup(addr string) {
	ctx, cancel := context.WithCancel(context.Background())
	tr.cancel, tr.started = cancel, time.Now()
	go func() {
		defer close(tr.done)
		tr.reason, tr.err = tr.r.RunBackup(ctx, addr, tr.ln)
	}()
}

func (tr *testReplica) stop() {
	if tr.cancel != nil {
		tr.cancel()
		<-tr.done
	}
}

func (tr *testReplica) waitRole(t *testing.T, role string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for tr.r.Status().Role != role {
		select {
		case <-tr.done:
			t.Fatalf("%s stopped (%v, %v) before becoming %s", tr.r.cfg.ID, tr.reason, tr.err, role)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %q, not %q, after %v", tr.r.cfg.ID, tr.r.Status().Role, role, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPairFailover boots a guest on a primary, lets a backup join, drives
// the guest's console through the primary, kills the primary and drives
// the console again through the backup, which must have gone live with the
// guest's state intact (the reply to a command typed before the failure
// and one typed after). The backup checks the log's digests all along.
func TestPairFailover(t *testing.T) {
	kernel, initrd := testsupport.DefaultGuest(t)
	dir := keys(t, "a", "b")
	arb := arbiter.NewMemory()
	a := newTestReplica(t, dir, "a", arb, nil)
	b := newTestReplica(t, dir, "b", arb, nil)
	a.startPrimary(t, kernel, initrd)
	a.con.waitFor(t, "console ready", 60*time.Second)

	b.startBackup(a.ln.Addr().String())
	b.waitRole(t, "backup", 30*time.Second)
	if v, _, _ := arb.Current(context.Background()); v.Backup != "b" || v.Primary != "a" {
		t.Fatalf("view after the join: %v", v)
	}

	a.in <- []byte("echo before-failover\n")
	a.con.waitFor(t, "= before-failover", 30*time.Second)
	// The backup replays the same console output, but nothing of it may
	// leave while it is a backup.
	if s := b.con.String(); s != "" {
		t.Fatalf("the backup emitted console output before going live: %q", s)
	}
	st := a.r.Status()
	if st.Peer != "b" || st.LogFrames == 0 {
		t.Fatalf("primary status: %+v", st)
	}

	a.stop() // the primary dies: its connection closes
	b.waitRole(t, "primary", 30*time.Second)
	if v, _, _ := arb.Current(context.Background()); v.Primary != "b" || v.Backup != "" {
		t.Fatalf("view after the failover: %v", v)
	}
	b.in <- []byte("echo after-failover\n")
	b.con.waitFor(t, "= after-failover", 30*time.Second)
	if st := b.r.Status(); st.Failovers != 1 {
		t.Fatalf("backup status after failover: %+v", st)
	}
	b.in <- []byte("poweroff\n")
	select {
	case <-b.done:
	case <-time.After(60 * time.Second):
		t.Fatal("the new primary did not power off")
	}
	if b.err != nil || b.reason != vm.StopPowerOff {
		t.Fatalf("new primary ended with %v, %v", b.reason, b.err)
	}
}

// TestPairPowerOff powers the guest off while a backup follows: the primary
// ends with the guest, the backup checks the End record's final digest and
// ends the same way, and the primary's last output still left.
func TestPairPowerOff(t *testing.T) {
	a, b, _, arb, _, _ := startPair(t, 5*time.Second)
	a.in <- []byte("poweroff\n")
	for _, r := range []*testReplica{a, b} {
		select {
		case <-r.done:
		case <-time.After(60 * time.Second):
			t.Fatalf("%s did not end after the guest powered off", r.r.cfg.ID)
		}
		if r.err != nil || r.reason != vm.StopPowerOff {
			t.Fatalf("%s ended with %v, %v", r.r.cfg.ID, r.reason, r.err)
		}
	}
	if !strings.Contains(a.con.String(), "= poweroff") {
		t.Fatalf("the primary's last output was held back:\n%s", a.con.String())
	}
	if v := view(t, arb); v.Primary != "a" || v.Backup != "b" {
		t.Fatalf("a clean power-off changed the view: %v", v)
	}
}
