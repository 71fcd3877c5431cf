package replication

import (
	"strings"
	"testing"
	"time"

	"ftvm/arbiter"
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
	for b.r.Status().Checkpoints < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("the backup applied %d checkpoints", b.r.Status().Checkpoints)
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
