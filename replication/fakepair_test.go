package replication

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"ftvm/arbiter"
	"ftvm/host/netdev"
	"ftvm/internal/fakevm"
	"ftvm/migrate"
	"ftvm/runloop"
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

// stallingEngine is an engine whose Run can be made to last: a guest
// whose device work keeps one epoch busy for a long time (each virtio
// notification may make the host copy megabytes).
type stallingEngine struct {
	*fakevm.Engine
	stall atomic.Int64 // nanoseconds the next Run takes
}

func (s *stallingEngine) Run(until uint64) vm.StopReason {
	if d := s.stall.Swap(0); d > 0 {
		time.Sleep(time.Duration(d))
	}
	return s.Engine.Run(until)
}

// TestLongEpochKeepsPairProtected: a guest keeps one epoch of the primary
// busy for three times the peer timeout. Heartbeats come from the
// primary's driver, not from the end of an epoch, so the backup must not
// take the primary for dead: no failover, the view unchanged, and the
// pair still applies the output rule afterwards.
func TestLongEpochKeepsPairProtected(t *testing.T) {
	dir := keys(t, "a", "b")
	arb := arbiter.NewMemory()
	const timeout = 300 * time.Millisecond
	tune := func(c *Config) { withFakeEngine(c); c.Timeout = timeout }
	a := newTestReplica(t, dir, "a", arb, tune)
	b := newTestReplica(t, dir, "b", arb, tune)
	e := &stallingEngine{Engine: fakevm.New(16, nil, a.r.Outputs())}
	e.Idle = true
	a.startEngine(e)
	b.startBackup(a.ln.Addr().String())
	b.waitRole(t, "backup", 30*time.Second)
	before := view(t, arb)

	e.stall.Store(int64(3 * timeout))
	a.in <- []byte("during the long epoch\n")
	a.con.waitFor(t, "during the long epoch", 30*time.Second)
	if st := b.r.Status(); st.Role != "backup" || st.Failovers != 0 {
		t.Fatalf("the backup took over from a healthy primary: %+v", st)
	}
	if st := a.r.Status(); st.Role != "primary" || st.Peer != "b" {
		t.Fatalf("the primary lost its backup: %+v", st)
	}
	if v := view(t, arb); v != before {
		t.Fatalf("the view changed from %v to %v", before, v)
	}
	// Still protected: an output waits for the backup's acknowledgement.
	a.in <- []byte("after\n")
	a.con.waitFor(t, "after", 30*time.Second)
	if b.con.String() != "" {
		t.Fatalf("the backup emitted output: %q", b.con.String())
	}
}

// lockingEngine is an engine whose guest locks up (a trap loop) once it
// is given the console input "lock": Run returns StopLockup from then on.
// The lockup follows from the input, so a backup replaying the log locks
// up at the same instruction.
type lockingEngine struct {
	*fakevm.Engine
	locked bool
}

func (l *lockingEngine) Deliver(ev vm.Event) (int, error) {
	if c, ok := ev.(vm.ConsoleInput); ok && string(c.Data) == "lock" {
		l.locked = true
	}
	return l.Engine.Deliver(ev)
}

func (l *lockingEngine) Run(until uint64) vm.StopReason {
	if l.locked {
		return vm.StopLockup
	}
	return l.Engine.Run(until)
}

// withLockingEngine makes a replica build its backup engine as a
// lockingEngine.
func withLockingEngine(c *Config) {
	c.Engine = "fakevm"
	c.Factory = func(out vm.Outputs) migrate.Factory {
		f := fakevm.Factory(nil, out)
		return func(st io.Reader, ram []byte) (vm.Migratable, error) {
			e, err := f(st, ram)
			if err != nil {
				return nil, err
			}
			return &lockingEngine{Engine: e.(*fakevm.Engine)}, nil
		}
	}
}

// TestGuestCannotGoOn: the primary's guest can go no further: it locks up,
// or it waits for an interrupt that nothing can raise any more (no timer,
// no NIC, its console closed). The run ends as it does when the guest
// powers off: the backup gets the End record and ends too, without taking
// over (a guest that cannot run is no reason for a failover), and both
// say why with the run loop's error (ftvm exits non-zero). A primary
// whose guest nothing could wake used to end without an End record, so
// its backup took it for dead and went live with the same guest.
func TestGuestCannotGoOn(t *testing.T) {
	for _, c := range []struct {
		name string
		want error
	}{{"lockup", runloop.ErrLockup}, {"nothing can wake it", runloop.ErrNoWake}} {
		t.Run(c.name, func(t *testing.T) {
			dir := keys(t, "a", "b")
			arb := arbiter.NewMemory()
			a := newTestReplica(t, dir, "a", arb, withLockingEngine)
			b := newTestReplica(t, dir, "b", arb, withLockingEngine)
			e := &lockingEngine{Engine: fakevm.New(16, nil, a.r.Outputs())}
			e.Idle = true
			a.startEngine(e)
			b.startBackup(a.ln.Addr().String())
			b.waitRole(t, "backup", 30*time.Second)
			before := view(t, arb)

			if c.want == runloop.ErrLockup {
				a.in <- []byte("lock") // the guest locks up
			} else {
				close(a.in) // the console ends: nothing can reach the idle guest
			}
			a.wait(t, 30*time.Second)
			b.wait(t, 30*time.Second)
			for _, r := range []*testReplica{a, b} {
				if !errors.Is(r.err, c.want) {
					t.Errorf("%s ended with %v, %v; want %v", r.r.cfg.ID, r.reason, r.err, c.want)
				}
			}
			if st := b.r.Status(); st.Failovers != 0 {
				t.Errorf("the backup took over: %+v", st)
			}
			if v := view(t, arb); v != before {
				t.Errorf("the view changed from %v to %v", before, v)
			}
		})
	}
}
