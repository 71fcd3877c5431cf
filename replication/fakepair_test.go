package replication

import (
	"context"
	"errors"
	"testing"
	"time"

	"ftvm/arbiter"
	"ftvm/host/netdev"
	"ftvm/internal/fakevm"
	"ftvm/migrate"
	"ftvm/vm"
)

// These tests run a pair on package fakevm's engine: no guest is needed,
// so they run wherever the module builds (the protocol itself is tested
// without any I/O in package core).

// withFakeEngine makes a replica build its backup engine with fakevm.
func withFakeEngine(c *Config) {
	c.Engine = "fakevm"
	c.Factory = func(out vm.Outputs) migrate.Factory { return fakevm.Factory(nil, out) }
}

// startFakePrimary runs tr as the primary of an idle fake guest.
func (tr *testReplica) startFakePrimary() *fakevm.Engine {
	e := fakevm.New(16, nil, tr.r.Outputs())
	e.Idle = true
	tr.startEngine(e)
	return e
}

func (tr *testReplica) startEngine(e Engine) {
	ctx, cancel := context.WithCancel(context.Background())
	tr.cancel, tr.started = cancel, time.Now()
	go func() {
		defer close(tr.done)
		tr.reason, tr.err = tr.r.RunPrimary(ctx, e, tr.ln)
	}()
}

func (tr *testReplica) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-tr.done:
	case <-time.After(d):
		t.Fatalf("%s still runs after %v (role %q)", tr.r.cfg.ID, d, tr.r.Status().Role)
	}
}

// TestDeposedWhileDeliveringInputs: the log fails while the primary hands
// the guest its inputs (a received frame too large for the log), so the
// primary drops its backup and must win the arbitration to go on; the
// backup has won it meanwhile. The primary must stop with ErrDeposed,
// not run on with its outputs discarded.
func TestDeposedWhileDeliveringInputs(t *testing.T) {
	dir := keys(t, "a", "b")
	arb := arbiter.NewMemory()
	hostEnd, peer := netdev.NewPipe()
	a := newTestReplica(t, dir, "a", arb, func(c *Config) { withFakeEngine(c); c.Host.Net = hostEnd })
	b := newTestReplica(t, dir, "b", arb, withFakeEngine)
	a.startFakePrimary()
	b.startBackup(a.ln.Addr().String())
	b.waitRole(t, "backup", 30*time.Second)
	v := view(t, arb)
	if won, _, err := arb.Swap(context.Background(), v, v.Next("b", "")); !won || err != nil {
		t.Fatalf("swap: %v %v", won, err)
	}
	peer.Transmit(make([]byte, 2<<20))
	a.wait(t, 20*time.Second)
	if !errors.Is(a.err, ErrDeposed) {
		t.Fatalf("primary ended with %v, want ErrDeposed", a.err)
	}
}
