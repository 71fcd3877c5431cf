package replication

import (
	"os"
	"strconv"
	"testing"
	"time"

	"ftvm/arbiter"
	"ftvm/internal/testsupport"
	"ftvm/machine"
	"ftvm/migrate"
	"ftvm/vm"
)

// notifyStorm builds testdata/notifystorm.S.
func notifyStorm(t *testing.T, rounds int) []byte {
	t.Helper()
	elf, err := os.ReadFile(testsupport.BareMetal(t, "testdata/notifystorm.S", "-DROUNDS="+strconv.Itoa(rounds)))
	if err != nil {
		t.Fatal(err)
	}
	return elf
}

const stormDisk = 16 << 20

// TestHostileGuestKeepsPairProtected runs a guest that asks for about 2 GiB
// of host copying per virtio notification under a replicated pair whose
// peer timeout is 300 ms. The pair must stay protected (no failover, the
// view unchanged) and end as the guest does, the backup following it to
// the end. Two defences meet here: the device's pace (virtio.Pace) bounds
// the work one notification causes, and the primary's heartbeats come
// from its driver, not from the end of an epoch, so even an epoch that
// lasts (without the pace, each notification took the host about 0.2 s
// and the backup took over: the pair ended unprotected because of what
// the guest did) silences nothing; TestLongEpochKeepsPairProtected checks
// that part alone.
func TestHostileGuestKeepsPairProtected(t *testing.T) {
	const rounds = 4
	elf := notifyStorm(t, rounds)
	dir := keys(t, "a", "b")
	arb := arbiter.NewMemory()
	diskA := migrate.TrackWrites(vm.NewMemDisk(make([]byte, stormDisk)))
	diskB := migrate.TrackWrites(vm.NewMemDisk(make([]byte, stormDisk)))
	tune := func(disk *migrate.TrackedDisk) func(*Config) {
		return func(c *Config) {
			c.Timeout, c.Disk = 300*time.Millisecond, disk
			c.Factory = func(out vm.Outputs) migrate.Factory {
				return machine.MigrationFactory(machine.RestoreOptions{Outputs: out, Disk: disk})
			}
		}
	}
	a := newTestReplica(t, dir, "a", arb, tune(diskA))
	b := newTestReplica(t, dir, "b", arb, tune(diskB))
	m, err := machine.New(machine.Config{ELF: elf, MemoryMiB: 32, Disk: diskA, Outputs: a.r.Outputs()})
	if err != nil {
		t.Fatal(err)
	}
	a.startEngine(m)
	b.startBackup(a.ln.Addr().String())
	b.waitRole(t, "backup", 60*time.Second)
	before := view(t, arb)

	start := time.Now()
	a.in <- []byte("g")
	a.wait(t, 5*time.Minute)
	stormed := time.Since(start)
	b.wait(t, 5*time.Minute)
	t.Logf("%d notifications of about 2 GiB each: the primary ran them in %v, the backup ended %v after the go-ahead",
		rounds, stormed, time.Since(start))
	for _, r := range []*testReplica{a, b} {
		if r.err != nil || r.reason != vm.StopPowerOff {
			t.Fatalf("%s ended with %v, %v; want the guest's exit", r.r.cfg.ID, r.reason, r.err)
		}
	}
	if st := b.r.Status(); st.Failovers != 0 {
		t.Fatalf("the backup took over from a healthy primary: %+v", st)
	}
	if v := view(t, arb); v != before {
		t.Fatalf("the view changed from %v to %v", before, v)
	}
}
