package replication

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"ftvm/arbiter"
	"ftvm/internal/testsupport"
	"ftvm/migrate"
	"ftvm/vm"
)

// reach is one replica's path to the shared arbiter, which a test can cut.
type reach struct {
	*arbiter.Memory
	cut atomic.Bool
}

func (r *reach) Current(ctx context.Context) (View, bool, error) {
	if r.cut.Load() {
		return View{}, false, errors.New("arbiter unreachable from here")
	}
	return r.Memory.Current(ctx)
}

func (r *reach) Swap(ctx context.Context, old, new View) (bool, View, error) {
	if r.cut.Load() {
		return false, View{}, errors.New("arbiter unreachable from here")
	}
	return r.Memory.Swap(ctx, old, new)
}

// modes are the replication modes the pair tests run in. COLO holds the
// guest's network output in its comparator and lets its console output
// leave at once: the tests of the output rule on the console run in the
// others (heldModes), COLO's network output rule is tested end to end.
var (
	modes     = []Mode{Replay, Checkpoint, COLO}
	heldModes = []Mode{Replay, Checkpoint}
)

// eachMode runs test as a subtest for every mode (of those given, if
// any).
func eachMode(t *testing.T, test func(t *testing.T, m Mode), only ...Mode) {
	if only == nil {
		only = modes
	}
	for _, m := range only {
		t.Run(m.String(), func(t *testing.T) { test(t, m) })
	}
}

// startPair boots a primary and joins a backup to it through a proxy, the
// pair replicating by mode m.
func startPair(t *testing.T, m Mode, timeout time.Duration) (a, b *testReplica, px *testsupport.Proxy, arb *arbiter.Memory, ra, rb *reach) {
	kernel, initrd := testsupport.DefaultGuest(t)
	dir := keys(t, "a", "b")
	arb = arbiter.NewMemory()
	ra, rb = &reach{Memory: arb}, &reach{Memory: arb}
	tune := func(c *Config) { c.Timeout, c.Mode = timeout, m }
	a = newTestReplica(t, dir, "a", ra, tune)
	b = newTestReplica(t, dir, "b", rb, tune)
	a.startPrimary(t, kernel, initrd)
	a.con.waitFor(t, "console ready", 60*time.Second)
	px = testsupport.NewProxy(t, a.ln.Addr().String())
	b.startBackup(px.Addr())
	b.waitRole(t, "backup", 30*time.Second)
	return
}

func view(t *testing.T, arb *arbiter.Memory) View {
	v, _, err := arb.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestOutputRule holds the backup's acknowledgements: the guest's reply to
// a console command must not leave the primary until they flow again.
func TestOutputRule(t *testing.T) {
	eachMode(t, func(t *testing.T, m Mode) {
		a, _, px, _, _, _ := startPair(t, m, 10*time.Second)
		px.Hold(true, false) // backup -> primary: acks stop arriving
		a.in <- []byte("echo held-reply\n")
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			if strings.Contains(a.con.String(), "= held-reply") {
				t.Fatal("the reply left the primary before the backup acknowledged the log")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if n := a.r.Status().HeldOutputs; n == 0 {
			t.Fatal("the primary holds no outputs while the backup's acks are held")
		}
		px.Hold(false, false)
		a.con.waitFor(t, "= held-reply", 10*time.Second)
	}, heldModes...)
}

// TestBackupDeath kills the backup: the primary must win the arbitration,
// release what it held, and go on unprotected.
func TestBackupDeath(t *testing.T) {
	eachMode(t, func(t *testing.T, m Mode) {
		a, b, _, arb, _, _ := startPair(t, m, time.Second)
		b.stop()
		a.in <- []byte("echo alone\n")
		a.con.waitFor(t, "= alone", 30*time.Second)
		// In COLO mode the console is not held for the backup, so the
		// reply can come before the arbitration is done: wait for it.
		deadline := time.Now().Add(10 * time.Second)
		for v := view(t, arb); v.Primary != "a" || v.Backup != ""; v = view(t, arb) {
			if time.Now().After(deadline) {
				t.Fatalf("view after the backup died: %v", v)
			}
			time.Sleep(10 * time.Millisecond)
		}
		for st := a.r.Status(); st.Role != "primary" || st.Peer != ""; st = a.r.Status() {
			if time.Now().After(deadline) {
				t.Fatalf("primary status: %+v", st)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// TestPartition cuts the link between the replicas (no reset: packets just
// stop) while both reach the arbiter: both suspect the other, exactly one
// wins, the other stops, and the survivor serves.
func TestPartition(t *testing.T) {
	eachMode(t, func(t *testing.T, m Mode) {
		a, b, px, arb, _, _ := startPair(t, m, 500*time.Millisecond)
		px.Hold(true, true)
		var loser, winner *testReplica
		select {
		case <-a.done:
			loser, winner = a, b
		case <-b.done:
			loser, winner = b, a
		case <-time.After(30 * time.Second):
			t.Fatal("neither replica stopped after the partition")
		}
		if !errors.Is(loser.err, ErrDeposed) {
			t.Fatalf("%s stopped with %v, want ErrDeposed", loser.r.cfg.ID, loser.err)
		}
		winner.waitRole(t, "primary", 30*time.Second)
		if v := view(t, arb); v.Primary != winner.r.cfg.ID || v.Backup != "" {
			t.Fatalf("view %v, survivor %s", v, winner.r.cfg.ID)
		}
		winner.in <- []byte("echo survivor\n")
		winner.con.waitFor(t, "= survivor", 30*time.Second)
		if strings.Contains(loser.con.String(), "= survivor") {
			t.Fatal("the deposed replica emitted output")
		}
	})
}

// TestPartitionArbiterUnreachable cuts the link while the primary cannot
// reach the arbiter: the backup wins and goes live; the primary must hold
// its outputs all along, and stop as soon as it can ask the arbiter.
func TestPartitionArbiterUnreachable(t *testing.T) {
	eachMode(t, func(t *testing.T, m Mode) {
		a, b, px, arb, ra, _ := startPair(t, m, 500*time.Millisecond)
		ra.cut.Store(true)
		px.Hold(true, true)
		a.in <- []byte("echo from-the-isolated-primary\n")
		b.waitRole(t, "primary", 30*time.Second)
		if v := view(t, arb); v.Primary != "b" {
			t.Fatalf("view %v", v)
		}
		time.Sleep(time.Second) // the isolated primary keeps trying the arbiter
		select {
		case <-a.done:
			t.Fatalf("the isolated primary stopped before reaching the arbiter: %v", a.err)
		default:
		}
		if strings.Contains(a.con.String(), "= from-the-isolated-primary") {
			t.Fatal("the isolated primary released output without a backup or the arbiter")
		}
		ra.cut.Store(false)
		select {
		case <-a.done:
		case <-time.After(30 * time.Second):
			t.Fatal("the old primary did not stop once it could reach the arbiter")
		}
		if !errors.Is(a.err, ErrDeposed) {
			t.Fatalf("old primary: %v", a.err)
		}
		if strings.Contains(a.con.String(), "= from-the-isolated-primary") {
			t.Fatal("the deposed primary released its held output")
		}
	}, heldModes...)
}

// TestNoArbiterNoFailover: with the arbiter unreachable by both, a dead
// primary is not replaced; once it is back, the backup takes over.
func TestNoArbiterNoFailover(t *testing.T) {
	eachMode(t, func(t *testing.T, m Mode) {
		a, b, _, arb, _, _ := startPair(t, m, 500*time.Millisecond)
		arb.SetUnreachable(true)
		a.stop()
		time.Sleep(2 * time.Second)
		if r := b.r.Status().Role; r == "primary" {
			t.Fatal("the backup went live without the arbiter")
		}
		arb.SetUnreachable(false)
		b.waitRole(t, "primary", 30*time.Second)
		b.in <- []byte("echo took-over\n")
		b.con.waitFor(t, "= took-over", 30*time.Second)
	})
}

// slowEngine replays at about rate instructions per second: a backup on a
// slower or busier host.
type slowEngine struct {
	Engine
	rate float64
}

func (s slowEngine) Run(until uint64) vm.StopReason {
	if n := until - min(until, s.Instret()); n > 0 {
		time.Sleep(time.Duration(float64(n) / s.rate * 1e9))
	}
	return s.Engine.Run(until)
}

// TestSlowBackupBoundsLag: a backup that replays at 20 M instructions per
// second behind a CPU-bound guest must slow the primary down, keeping the
// lag (what a failover must replay) within MaxLag.
func TestSlowBackupBoundsLag(t *testing.T) {
	kernel, initrd := testsupport.DefaultGuest(t)
	dir := keys(t, "a", "b")
	arb := arbiter.NewMemory()
	const maxLag, epoch = 20_000_000, 100_000
	tune := func(c *Config) { c.MaxLag, c.Epoch, c.Timeout = maxLag, epoch, 5*time.Second }
	a := newTestReplica(t, dir, "a", arb, tune)
	b := newTestReplica(t, dir, "b", arb, func(c *Config) {
		tune(c)
		f := c.Factory
		c.Factory = func(out vm.Outputs) migrate.Factory {
			return func(state io.Reader, ram []byte) (vm.Migratable, error) {
				e, err := f(out)(state, ram)
				if err != nil {
					return nil, err
				}
				return slowEngine{e, 20e6}, nil
			}
		}
	})
	a.startPrimary(t, kernel, initrd)
	a.con.waitFor(t, "console ready", 60*time.Second)
	b.startBackup(a.ln.Addr().String())
	b.waitRole(t, "backup", 30*time.Second)
	a.in <- []byte("cpubench 10\n")
	var most uint64
	deadline := time.Now().Add(120 * time.Second)
	for !strings.Contains(a.con.String(), "= rounds=") {
		if time.Now().After(deadline) {
			t.Fatalf("cpubench did not finish; console:\n%s", a.con.String())
		}
		st := a.r.Status()
		if st.Peer != "b" {
			t.Fatalf("the primary lost its backup: %+v", st)
		}
		most = max(most, st.LagInsns)
		if st.LagInsns > maxLag+2*epoch {
			t.Fatalf("lag %d instructions exceeds MaxLag %d", st.LagInsns, maxLag)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if most < maxLag/2 {
		t.Fatalf("the backup never fell behind (most lag %d): the test shows nothing", most)
	}
	t.Logf("largest lag seen: %d instructions", most)
}
