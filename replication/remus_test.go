package replication

import (
	"bytes"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"ftvm/arbiter"
	"ftvm/host/netdev"
	"ftvm/internal/fakevm"
	"ftvm/migrate"
	"ftvm/vm"
)

// withRemus makes a replica a checkpointing one on package fakevm's
// engine, with a disk of its own, checking the digest of every
// checkpoint.
func withRemus(disk *migrate.TrackedDisk) func(c *Config) {
	return func(c *Config) {
		c.Mode = Checkpoint
		c.Engine = "fakevm"
		c.Disk = disk
		c.DigestEvery = 1
		c.Factory = func(out vm.Outputs) migrate.Factory { return fakevm.Factory(disk, out) }
	}
}

func fakeDisk() *migrate.TrackedDisk { return migrate.TrackWrites(vm.NewMemDisk(make([]byte, 1<<20))) }

// TestRemusFakePair: a busy fake guest (its RAM and disk written all the
// time) checkpointed every period to a backup that checks the digest of
// each checkpoint it applies; console output leaves only once its
// checkpoint is acknowledged; the primary is killed and the backup goes
// live from the last checkpoint it applied and answers.
func TestRemusFakePair(t *testing.T) {
	dir := keys(t, "a", "b")
	arb := arbiter.NewMemory()
	da, db := fakeDisk(), fakeDisk()
	a := newTestReplica(t, dir, "a", arb, withRemus(da))
	b := newTestReplica(t, dir, "b", arb, withRemus(db))
	e := fakevm.New(64, da, a.r.Outputs())
	e.WritesPer = 40
	a.startEngine(e)
	b.startBackup(a.ln.Addr().String())
	b.waitRole(t, "backup", 30*time.Second)
	a.in <- []byte("protected\n")
	a.con.waitFor(t, "protected", 30*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	// The primary counts a checkpoint once the backup's acknowledgement
	// is in, after the backup counted it.
	for b.r.Status().Checkpoints < 10 || a.r.Status().Checkpoints < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("the backup applied %d checkpoints, the primary counts %d", b.r.Status().Checkpoints, a.r.Status().Checkpoints)
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := a.r.Status()
	if st.Mode != "checkpoint" || st.Checkpoints < 10 || len(st.RecentCheckpoints) == 0 || st.CheckpointPages == 0 {
		t.Fatalf("primary status: %+v", st)
	}
	last := st.RecentCheckpoints[len(st.RecentCheckpoints)-1]
	t.Logf("primary: %d checkpoints, %.0f/s; the last: pause %v, %d pages, %d bytes, acknowledged after %v",
		st.Checkpoints, st.CheckpointRate, last.Pause, last.Pages, last.Bytes, last.Ack)
	if b.con.String() != "" {
		t.Fatalf("the backup emitted output: %q", b.con.String())
	}
	a.stop()
	b.waitRole(t, "primary", 30*time.Second)
	b.in <- []byte("live\n")
	b.con.waitFor(t, "live", 30*time.Second)
	if strings.Contains(b.con.String(), "protected") {
		t.Fatalf("the new primary re-emitted output of a checkpoint it applied: %q", b.con.String())
	}
}

// TestCOLOFakePair: a fake guest that answers every frame with the same
// frame runs on both replicas; a frame from the network reaches both (the
// primary forwards it), the answers match, and the primary's leaves. The
// period makes the pair sync now and then. The primary is killed and the
// secondary, live, answers on its own NIC.
func TestCOLOFakePair(t *testing.T) {
	dir := keys(t, "a", "b")
	arb := arbiter.NewMemory()
	da, db := fakeDisk(), fakeDisk()
	netA, peerA := netdev.NewPipe()
	netB, peerB := netdev.NewPipe()
	colo := func(disk *migrate.TrackedDisk, nb netdev.Backend) func(c *Config) {
		return func(c *Config) {
			withRemus(disk)(c)
			c.Mode, c.MaxPeriod, c.Host.Net = COLO, 200*time.Millisecond, nb
		}
	}
	a := newTestReplica(t, dir, "a", arb, colo(da, netA))
	b := newTestReplica(t, dir, "b", arb, colo(db, netB))
	e := fakevm.New(64, da, a.r.Outputs())
	e.Idle = true
	a.startEngine(e)
	b.startBackup(a.ln.Addr().String())
	b.waitRole(t, "backup", 30*time.Second)
	frame := func(s string) []byte {
		f := make([]byte, 60)
		copy(f, "\xff\xff\xff\xff\xff\xff\x02\x00\x00\x00\x00\x01\x88\xb5")
		copy(f[14:], s)
		return f
	}
	recv := func(p *netdev.PipeEnd, want []byte, d time.Duration) bool {
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			if f, ok := p.TryReceive(); ok {
				if bytes.Equal(f, want) {
					return true
				}
				continue
			}
			time.Sleep(2 * time.Millisecond)
		}
		return false
	}
	for i := range 20 {
		f := frame(fmt.Sprintf("request %d", i))
		peerA.Transmit(f)
		if !recv(peerA, f, 10*time.Second) {
			t.Fatalf("no answer to request %d from the primary", i)
		}
	}
	if _, ok := peerB.TryReceive(); ok {
		t.Fatal("the secondary's NIC sent a frame")
	}
	deadline := time.Now().Add(30 * time.Second)
	for b.r.Status().Checkpoints < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the pair synced %d times", b.r.Status().Checkpoints)
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := a.r.Status()
	t.Logf("primary: %d syncs, %d bytes compared, %d mismatches; the last sync: %+v", st.Checkpoints, st.ComparedBytes, st.Mismatches, st.RecentCheckpoints[len(st.RecentCheckpoints)-1])
	a.stop()
	b.waitRole(t, "primary", 30*time.Second)
	f := frame("after the failover")
	peerB.Transmit(f)
	if !recv(peerB, f, 10*time.Second) {
		t.Fatal("no answer from the new primary")
	}
}

// TestCOLOMismatch: the secondary's guest answers one request otherwise
// than the primary's. The comparator finds the mismatch and holds the
// primary's answer; the primary syncs the secondary and the answer leaves
// once the sync is complete; the next answers match again.
func TestCOLOMismatch(t *testing.T) {
	dir := keys(t, "a", "b")
	arb := arbiter.NewMemory()
	netA, peerA := netdev.NewPipe()
	colo := func(c *Config) { withRemus(nil)(c); c.Mode, c.Host.Net = COLO, netA }
	a := newTestReplica(t, dir, "a", arb, colo)
	var odd atomic.Bool
	b := newTestReplica(t, dir, "b", arb, func(c *Config) {
		withRemus(nil)(c)
		c.Mode = COLO
		c.Factory = func(out vm.Outputs) migrate.Factory {
			net := out.Net
			out.Net = func(instret uint64, f []byte) {
				if odd.Swap(false) {
					f = bytes.Clone(f)
					f[20] ^= 1 // a different answer
				}
				net(instret, f)
			}
			return fakevm.Factory(nil, out)
		}
	})
	e := fakevm.New(64, nil, a.r.Outputs())
	e.Idle = true
	a.startEngine(e)
	b.startBackup(a.ln.Addr().String())
	b.waitRole(t, "backup", 30*time.Second)
	ask := func(s string) {
		t.Helper()
		f := make([]byte, 60)
		copy(f, "\xff\xff\xff\xff\xff\xff\x02\x00\x00\x00\x00\x01\x88\xb5")
		copy(f[14:], s)
		peerA.Transmit(f)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if g, ok := peerA.TryReceive(); ok && bytes.Equal(g, f) {
				return
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatalf("no answer to %q", s)
	}
	ask("matching")
	if st := a.r.Status(); st.Checkpoints != 0 {
		t.Fatalf("a sync before any mismatch: %+v", st)
	}
	odd.Store(true)
	ask("the secondary answers otherwise")
	ask("matching again")
	deadline := time.Now().Add(5 * time.Second)
	for st := a.r.Status(); st.Mismatches != 1 || st.Checkpoints != 1; st = a.r.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("after one mismatch: %d mismatches, %d syncs", st.Mismatches, st.Checkpoints)
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := a.r.Status()
	if c := st.RecentCheckpoints[0]; !strings.HasPrefix(c.Reason, "mismatch") {
		t.Fatalf("the sync's reason: %q", c.Reason)
	}
	t.Logf("sync after the mismatch: %+v", st.RecentCheckpoints[0])
}
