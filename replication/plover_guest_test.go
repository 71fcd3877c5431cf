package replication

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"ftvm/internal/testsupport"
	"ftvm/machine"
	"ftvm/migrate"
	"ftvm/vm"
)

// guestMember is a PLOVER member running the default guest (or a
// witness), with its console.
type guestMember struct {
	*ploverMember
	con *console
	in  chan []byte
	m   *machine.Machine
}

func newGuestMember(t *testing.T, dir, id string) *guestMember {
	t.Helper()
	tc, err := LoadTLS(dir, id)
	if err != nil {
		t.Fatal(err)
	}
	gm := &guestMember{ploverMember: &ploverMember{t: t, done: make(chan struct{})}, con: &console{}, in: make(chan []byte, 16)}
	cfg := PloverConfig{Config: Config{
		ID: id, Cluster: "test", TLS: tc, Engine: "ftvm-riscv64",
		Host:    Host{Console: gm.con, ConsoleIn: gm.in},
		Timeout: time.Second, // generous: the test machine is shared
		Factory: func(out vm.Outputs) migrate.Factory {
			build := machine.MigrationFactory(machine.RestoreOptions{Outputs: out, Parallel: testHarts > 1})
			return func(st io.Reader, ram []byte) (vm.Migratable, error) {
				e, err := build(st, ram)
				if err == nil {
					gm.m = e.(*machine.Machine)
				}
				return e, err
			}
		},
		Log: slog.New(slog.NewTextHandler(testWriter{t, id}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}}
	if gm.p, err = NewPlover(cfg); err != nil {
		t.Fatal(err)
	}
	if gm.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		gm.kill()
		gm.ln.Close()
	})
	return gm
}

func (gm *guestMember) boot(t *testing.T, kernel, initrd []byte) {
	m, err := machine.New(machine.Config{Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0", Outputs: gm.p.Outputs(),
		Harts: testHarts, Parallel: testHarts > 1})
	if err != nil {
		t.Fatal(err)
	}
	gm.m = m
	gm.run(func(ctx context.Context) (vm.StopReason, error) { return gm.p.RunPrimary(ctx, m, gm.ln) })
}

// guestGroup boots the default guest on a primary a and lets a witness w
// and a backup b join.
func guestGroup(t *testing.T) (dir string, a, b, w *guestMember) {
	kernel, initrd := testsupport.DefaultGuest(t)
	dir = keys(t, "a", "b", "w", "c")
	a = newGuestMember(t, dir, "a")
	a.boot(t, kernel, initrd)
	a.con.waitFor(t, "console ready", 60*time.Second)
	w = newGuestMember(t, dir, "w")
	w.startWitness(a.addr())
	waitFor(t, 10*time.Second, "the witness to join", func() bool { return a.members() == 2 })
	b = newGuestMember(t, dir, "b")
	b.startBackup(a.addr())
	waitFor(t, 30*time.Second, "the backup to join", func() bool { return a.members() == 3 && b.role() == "backup" })
	return dir, a, b, w
}

// TestPloverGuest runs the default guest in a PLOVER group: console
// commands go through the group to both replicas, their answers leave the
// primary only after a sync, the backup never emits anything, and when
// the primary dies the backup continues with the guest's state (a command
// typed before the failure answered once, one typed after answered).
func TestPloverGuest(t *testing.T) {
	_, a, b, w := guestGroup(t)
	a.in <- []byte("echo before-failover\n")
	a.con.waitFor(t, "= before-failover", 30*time.Second)
	if s := b.con.String(); s != "" {
		t.Fatalf("the backup emitted console output: %q", s)
	}
	st := a.p.Status()
	if st.Syncs == 0 || st.LastSync == nil {
		t.Fatalf("no sync: %+v", st)
	}
	t.Logf("after %d syncs, the last: %+v", st.Syncs, *st.LastSync)
	a.kill()
	waitFor(t, 30*time.Second, "b to go live", func() bool { return b.role() == "primary" })
	if w.role() != "witness" {
		t.Fatalf("the witness is %q", w.role())
	}
	b.in <- []byte("echo after-failover\n")
	b.con.waitFor(t, "= after-failover", 30*time.Second)
	if st := b.p.Status(); st.Failovers != 1 {
		t.Fatalf("failovers: %d", st.Failovers)
	}
}

// TestPloverRepair flips a bit in the backup's memory, then in the
// primary's, in a page no one writes (the last page of RAM): the next sync
// finds each, the witness's hashes of the last sync name the faulty
// replica, and the page is repaired from the other; the console goes on
// answering throughout, and the digests agree after the repair (the mend
// checks them).
func TestPloverRepair(t *testing.T) {
	_, a, b, _ := guestGroup(t)
	a.in <- []byte("echo warm\n")
	a.con.waitFor(t, "= warm", 30*time.Second)
	waitFor(t, 10*time.Second, "a sync after the join", func() bool { return a.p.Status().Syncs >= 2 })
	last := a.m.Pages() - 1
	for i, faulty := range []*guestMember{b, a} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		f, err := faulty.p.InjectBitFlip(ctx, BitFlip{Page: last, Offset: 100 + i, Bit: 3})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("flipped %+v in %s", f, faulty.p.cfg.ID)
		word := fmt.Sprintf("after-flip-%d", i)
		a.in <- []byte("echo " + word + "\n")
		a.con.waitFor(t, "= "+word, 30*time.Second)
		waitFor(t, 10*time.Second, "the repair", func() bool { return len(a.p.Status().Repairs) == i+1 })
		r := a.p.Status().Repairs[i]
		t.Logf("repair: %+v", r)
		want := []string{"backup", "primary"}[i]
		if r.Faulty != want || !r.Majority || len(r.Pages) != 1 || r.Pages[0] != last {
			t.Fatalf("repair %+v, want page %d of the %s, decided by the witness", r, last, want)
		}
		if !strings.Contains(r.Detail, "the witness agrees with the") {
			t.Fatalf("the report does not say how it decided: %s", r.Detail)
		}
		waitFor(t, 10*time.Second, "the backup's report", func() bool { return len(b.p.Status().Repairs) == i+1 })
		if br := b.p.Status().Repairs; br[i].Faulty != want {
			t.Fatalf("the backup's report: %+v", br)
		}
	}
}

// testHarts is the harts of the guests the PLOVER tests boot (more than
// one run in parallel).
var testHarts = 1

// TestPloverParallel runs the PLOVER guest tests with two harts running
// in parallel on both replicas: their executions are not deterministic,
// the syncs bring the backup to the primary's state all the same, and
// failover and repair work as with one.
func TestPloverParallel(t *testing.T) {
	testHarts = 2
	defer func() { testHarts = 1 }()
	t.Run("guest", TestPloverGuest)
	t.Run("repair", TestPloverRepair)
}
