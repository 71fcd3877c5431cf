package replication

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"ftvm/host/netdev"
	"ftvm/internal/fakevm"
	"ftvm/migrate"
	"ftvm/vm"
)

// These tests run PLOVER groups inside one process, over mutual TLS on
// loopback: members as the commands run them, on package fakevm's engine
// (which answers every frame it receives with the same frame), and a
// client on each replica's NIC that sends numbered frames to the live one
// and checks every answer it gets.

type ploverMember struct {
	t      *testing.T
	p      *Plover
	ln     net.Listener
	nic    *netdev.PipeEnd // the client's end of this replica's NIC
	cancel context.CancelFunc
	done   chan struct{}
	reason vm.StopReason
	err    error
	eng    *fakevm.Engine
}

func newPloverMember(t *testing.T, dir, id string, tune func(*PloverConfig)) *ploverMember {
	t.Helper()
	tc, err := LoadTLS(dir, id)
	if err != nil {
		t.Fatal(err)
	}
	guestEnd, clientEnd := netdev.NewPipe()
	pm := &ploverMember{t: t, nic: clientEnd, done: make(chan struct{})}
	cfg := PloverConfig{
		Config: Config{
			ID: id, Cluster: "test", TLS: tc, Engine: "fakevm",
			Host:    Host{Net: guestEnd},
			Epoch:   20_000,
			Timeout: 400 * time.Millisecond,
			Factory: func(out vm.Outputs) migrate.Factory {
				return func(st io.Reader, ram []byte) (vm.Migratable, error) {
					e, err := fakevm.Factory(nil, out)(st, ram)
					if err == nil {
						pm.eng = e.(*fakevm.Engine)
					}
					return e, err
				}
			},
			Log: slog.New(slog.NewTextHandler(testWriter{t, id}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		},
	}
	if tune != nil {
		tune(&cfg)
	}
	if pm.p, err = NewPlover(cfg); err != nil {
		t.Fatal(err)
	}
	if pm.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pm.kill()
		pm.ln.Close()
	})
	return pm
}

func (pm *ploverMember) run(f func(ctx context.Context) (vm.StopReason, error)) {
	ctx, cancel := context.WithCancel(context.Background())
	pm.cancel = cancel
	go func() {
		defer close(pm.done)
		pm.reason, pm.err = f(ctx)
	}()
}

func (pm *ploverMember) startPrimary() {
	pm.eng = fakevm.New(64, nil, pm.p.Outputs())
	pm.eng.Idle = true
	e := pm.eng
	pm.run(func(ctx context.Context) (vm.StopReason, error) { return pm.p.RunPrimary(ctx, e, pm.ln) })
}

func (pm *ploverMember) startBackup(addr string) {
	pm.run(func(ctx context.Context) (vm.StopReason, error) { return pm.p.RunBackup(ctx, addr, pm.ln) })
}

func (pm *ploverMember) startWitness(addr string) {
	pm.run(func(ctx context.Context) (vm.StopReason, error) {
		return vm.StopLimit, pm.p.RunWitness(ctx, addr, pm.ln)
	})
}

// kill ends the member as a crash would: its connections close.
func (pm *ploverMember) kill() {
	if pm.cancel == nil {
		return
	}
	pm.cancel()
	<-pm.done
	pm.cancel = nil
}

func (pm *ploverMember) addr() string { return pm.ln.Addr().String() }

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (pm *ploverMember) role() string { return pm.p.Status().Role }

func (pm *ploverMember) members() int { return len(pm.p.Status().Members) }

// ploverGroup starts a primary a, a witness w and a backup b.
func ploverGroup(t *testing.T, tune func(*PloverConfig)) (dir string, a, b, w *ploverMember) {
	dir = keys(t, "a", "b", "w", "c")
	a = newPloverMember(t, dir, "a", tune)
	a.startPrimary()
	waitFor(t, 5*time.Second, "a primary", func() bool { return a.role() == "primary" })
	w = newPloverMember(t, dir, "w", tune)
	w.startWitness(a.addr())
	waitFor(t, 5*time.Second, "the witness to join", func() bool { return a.members() == 2 && w.role() == "witness" })
	b = newPloverMember(t, dir, "b", tune)
	b.startBackup(a.addr())
	waitFor(t, 10*time.Second, "the backup to join", func() bool { return a.members() == 3 && b.role() == "backup" })
	return dir, a, b, w
}

// client sends numbered frames to a NIC and collects the answers.
type client struct {
	mu   sync.Mutex
	got  []int
	seen map[int]int
}

func frame(i int) []byte {
	return []byte(fmt.Sprintf("frame-%06d----------------------------------------------", i))
}

func (c *client) collect(nic *netdev.PipeEnd) {
	for {
		f, ok := nic.TryReceive()
		if !ok {
			return
		}
		var i int
		if _, err := fmt.Sscanf(string(bytes.TrimRight(f, "-")), "frame-%06d", &i); err != nil {
			continue
		}
		c.mu.Lock()
		if c.seen == nil {
			c.seen = map[int]int{}
		}
		c.seen[i]++
		c.got = append(c.got, i)
		c.mu.Unlock()
	}
}

func (c *client) answered(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[i] > 0
}

// The inputs go through the group to both replicas; the answers leave the
// primary only after a sync; the syncs find the replicas mostly identical.
func TestPloverGroup(t *testing.T) {
	_, a, b, w := ploverGroup(t, nil)
	var c client
	for i := range 50 {
		a.nic.Transmit(frame(i))
		waitFor(t, 5*time.Second, fmt.Sprintf("the answer to frame %d", i), func() bool {
			c.collect(a.nic)
			return c.answered(i)
		})
	}
	st := a.p.Status()
	if st.Syncs == 0 || st.LastSync == nil {
		t.Fatalf("no sync reported: %+v", st)
	}
	t.Logf("primary: %d syncs, the last %+v", st.Syncs, *st.LastSync)
	if b.p.Status().Syncs == 0 {
		t.Fatal("the backup took part in no sync")
	}
	if w.p.Status().Syncs != 0 || w.eng != nil {
		t.Fatal("the witness ran a guest")
	}
	for k, n := range c.seen {
		if n != 1 {
			t.Fatalf("frame %d answered %d times", k, n)
		}
	}
	// The backup's NIC never answered: its outputs are not the guest's.
	var bc client
	bc.collect(b.nic)
	if len(bc.got) != 0 {
		t.Fatalf("the backup emitted %d frames", len(bc.got))
	}
}

// The primary dies: the backup is elected and answers from then on, the
// witness stays a witness; a new backup joins the new primary.
func TestPloverFailover(t *testing.T) {
	dir, a, b, w := ploverGroup(t, nil)
	var c client
	for i := range 10 {
		a.nic.Transmit(frame(i))
	}
	waitFor(t, 5*time.Second, "the answers", func() bool { c.collect(a.nic); return c.answered(9) })
	a.kill()
	waitFor(t, 5*time.Second, "b to take over", func() bool { return b.role() == "primary" })
	if w.role() != "witness" {
		t.Fatalf("witness role %q", w.role())
	}
	waitFor(t, 5*time.Second, "b alone", func() bool { return b.members() == 2 })
	for i := 10; i < 20; i++ {
		b.nic.Transmit(frame(i))
		waitFor(t, 5*time.Second, fmt.Sprintf("b's answer to %d", i), func() bool { c.collect(b.nic); return c.answered(i) })
	}
	if st := b.p.Status(); st.Failovers != 1 {
		t.Fatalf("failovers %d", st.Failovers)
	}
	cm := newPloverMember(t, dir, "c", nil)
	cm.startBackup(b.addr())
	waitFor(t, 10*time.Second, "c to join b", func() bool { return b.members() == 3 && cm.role() == "backup" })
	for i := 20; i < 30; i++ {
		b.nic.Transmit(frame(i))
	}
	waitFor(t, 5*time.Second, "the answers with c", func() bool { c.collect(b.nic); return c.answered(29) })
	if cm.p.Status().Syncs == 0 {
		t.Fatal("the new backup synced nothing")
	}
	if !slices.Contains(b.p.Status().Members, "c (replica)") {
		t.Fatalf("members %v", b.p.Status().Members)
	}
}
