package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ftvm/internal/testsupport"
	"ftvm/replication"
)

// PLOVER mode's failure trials: real ftvm processes on hosts that are
// network namespaces (the primary on host 1, the backup on host 2, the
// witness on host 3, members talking over the ftlog bridge), a client on
// the guest LAN writing numbered INCRs on one TCP connection, and real
// failures: SIGKILL of any member at a random moment, the primary cut off.

type ploverLab struct {
	*lab
	ftvm, keys, dir string
}

func newPloverLab(t *testing.T, hosts int) *ploverLab {
	t.Helper()
	testsupport.GuestFiles(t)
	ftvm, _ := buildBinaries(t)
	l := &ploverLab{lab: newLab(t, hosts), ftvm: ftvm, dir: t.TempDir()}
	l.keys = filepath.Join(l.dir, "keys")
	if err := replication.GenerateKeys(l.keys, "ftvm", "a", "b", "c", "w", "v"); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *ploverLab) addr(h int) string { return fmt.Sprintf("172.16.0.%d:7400", h) }

// member starts `ftvm primary|backup -mode plover` or `ftvm witness` as
// member id on host h.
func (l *ploverLab) member(t *testing.T, h int, role, id, cluster string, extra ...string) *console {
	t.Helper()
	argv := []string{"ip", "netns", "exec", l.host(h), l.ftvm, role, "-id", id, "-keys", l.keys, "-cluster", cluster,
		"-listen", l.addr(h), "-http", "127.0.0.1:7401"}
	if role != "witness" {
		disk := filepath.Join(l.dir, cluster+"-"+id+".img")
		if _, err := os.Stat(disk); err != nil {
			if err := os.WriteFile(disk, make([]byte, 16<<20), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		argv = append(argv, "-mode", "plover", "-net", "tap:tap0", "-disk", disk)
	}
	argv = append(argv, extra...)
	if os.Getenv("FTVM_DEBUG_REPLICA") != "" {
		argv = append([]string{"sh", "-c", `exec "$@" 2>>/tmp/plover-` + id + `.log`, "sh"}, argv...)
	}
	return startVM(t, argv...)
}

// group starts the primary a on host 1, the witness w on host 3 and the
// backup b on host 2, and waits until the backup follows.
func (l *ploverLab) group(t *testing.T, cluster string) (a, b, w *console) {
	return l.groupHarts(t, cluster, 1)
}

// groupHarts is group with a guest of harts harts (more than one run in
// parallel on both replicas).
func (l *ploverLab) groupHarts(t *testing.T, cluster string, harts int) (a, b, w *console) {
	t.Helper()
	var pflags, bflags []string
	if harts > 1 {
		pflags, bflags = []string{"-smp", strconv.Itoa(harts), "-parallel"}, []string{"-parallel"}
	}
	a = l.member(t, 1, "primary", "a", cluster, pflags...)
	a.waitFor(t, "listening on", 60*time.Second)
	w = l.member(t, 3, "witness", "w", cluster, "-join", l.addr(1))
	w.waitFor(t, "plover witness: following", 30*time.Second)
	b = l.member(t, 2, "backup", "b", cluster, append([]string{"-join", l.addr(1)}, bflags...)...)
	b.waitFor(t, "plover backup: following", 60*time.Second)
	return a, b, w
}

// client is ftLab's client on the guest LAN.
func (l *ploverLab) ft() *ftLab { return &ftLab{lab: l.lab, ftvm: l.ftvm, keys: l.keys, dir: l.dir} }

func (l *ploverLab) status(h int) (replication.Status, error) { return l.ft().status(h) }

// TestPloverFailureTrials kills a member of a PLOVER group with SIGKILL at
// a random moment while the client writes, FTVM_TRIALS times (default 3:
// the primary, the backup, the witness; the full trial with
// FTVM_TRIALS=30, about 5 minutes as root). Trials alternate between a
// guest of two harts running in parallel and one of one
// (FTVM_TRIAL_SMP=N gives every trial N harts). Whatever dies, the
// client's connection survives and every write it saw acknowledged is
// there exactly once; when the primary dies the backup goes live, and the
// witness never does.
func TestPloverFailureTrials(t *testing.T) {
	trials := 3
	if s := os.Getenv("FTVM_TRIALS"); s != "" {
		trials, _ = strconv.Atoi(s)
	}
	fixed, _ := strconv.Atoi(os.Getenv("FTVM_TRIAL_SMP"))
	l := newPloverLab(t, 3)
	ft := l.ft()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	var pauses []time.Duration
	for i := range trials {
		victim := []string{"primary", "backup", "witness"}[i%3]
		harts := 2 - i%2
		if fixed > 0 {
			harts = fixed
		}
		cluster := fmt.Sprintf("pl%d", i)
		a, b, w := l.groupHarts(t, cluster, harts)
		wr, conn, stop := ft.client(t, cluster+":")
		waitWrites(t, wr, 20, 60*time.Second, "before the kill")
		time.Sleep(time.Duration(rng.Int64N(int64(1500 * time.Millisecond))))
		before, killed := wr.Progress.Load(), time.Now()
		switch victim {
		case "primary":
			a.cmd.Process.Kill()
			b.waitFor(t, "live: this replica is the primary", 30*time.Second)
		case "backup":
			b.cmd.Process.Kill()
			a.waitFor(t, "alone in the group", 30*time.Second)
		case "witness":
			w.cmd.Process.Kill()
			a.waitFor(t, "member removed", 30*time.Second)
		}
		if !writesReach(wr, before+20, 60*time.Second) {
			t.Fatalf("trial %d (%d harts): after the kill of the %s: only %d of %d writes acknowledged after 1m0s\nprimary:\n%s\nbackup:\n%s",
				i, harts, victim, wr.Progress.Load(), before+20, tail(a.output(), 40), tail(b.output(), 40))
		}
		res := stop()
		if res.Err != nil {
			t.Fatalf("trial %d (%s killed): the client's run failed: %v", i, victim, res.Err)
		}
		if err := res.Verify(conn); err != nil {
			t.Fatalf("trial %d (%s killed): %v", i, victim, err)
		}
		if strings.Contains(w.output(), "live: this replica is the primary") {
			t.Fatalf("trial %d: the witness went live", i)
		}
		first := res.FirstServedAfter(killed)
		if victim == "primary" {
			pauses = append(pauses, first)
		}
		t.Logf("trial %d (%d harts): %s killed after %d writes; %d acknowledged in all; first request served %v after the kill; longest write %v",
			i, harts, victim, before, res.Acked, first.Round(time.Millisecond), res.MaxLatency.Round(time.Millisecond))
		for _, c := range []*console{a, b, w} {
			c.cmd.Process.Kill()
			<-c.done
		}
	}
	t.Logf("%d trials: kill of the primary to the first request served by the new primary: %v", trials, pauses)
}

// TestPloverPartitionPrimaryIsolated cuts the primary off from the backup
// and the witness: it cannot commit inputs, so it releases nothing more,
// and steps down (stops); the other side elects the backup, which goes
// live; the client's writes go on without loss.
func TestPloverPartitionPrimaryIsolated(t *testing.T) {
	l := newPloverLab(t, 3)
	a, b, w := l.group(t, "iso")
	wr, conn, stop := l.ft().client(t, "iso:")
	waitWrites(t, wr, 20, 60*time.Second, "before the cut")
	l.setLink(t, 1, "ftlog", false)
	b.waitFor(t, "live: this replica is the primary", 30*time.Second)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the isolated primary did not step down")
	}
	if !strings.Contains(a.output(), "deposed") {
		t.Fatalf("the isolated primary:\n%s", a.output())
	}
	if n := wr.Progress.Load() + 50; !writesReach(wr, n, 60*time.Second) {
		t.Fatalf("after the cut: only %d of %d writes acknowledged after 1m0s\nthe new primary:\n%s\nthe isolated one:\n%s\nthe witness:\n%s",
			wr.Progress.Load(), n, tail(b.output(), 60), tail(a.output(), 30), tail(w.output(), 30))
	}
	res := stop()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if err := res.Verify(conn); err != nil {
		t.Fatal(err)
	}
	st, err := l.status(2)
	if err != nil || st.Role != "primary" || st.Failovers != 1 {
		t.Fatalf("the new primary: %+v, %v", st, err)
	}
}

// TestPloverForgedMembers: a witness with the certificate of another
// cluster's authority is refused at the TLS handshake; one with a valid
// certificate that asks to join another cluster is refused by the core
// (a certificate naming another member, and consensus messages from a
// non-member, are refused in the core's tests); neither disturbs the
// group.
func TestPloverForgedMembers(t *testing.T) {
	l := newPloverLab(t, 3)
	a, b, _ := l.group(t, "forged")
	other := filepath.Join(l.dir, "other")
	if err := replication.GenerateKeys(other, "ftvm", "v"); err != nil {
		t.Fatal(err)
	}
	// Another authority's certificate.
	f1 := startVM(t, "ip", "netns", "exec", l.host(3), l.ftvm, "witness", "-id", "v", "-keys", other, "-cluster", "forged",
		"-listen", "172.16.0.3:7401", "-join", l.addr(1))
	f1.wait(t, 30*time.Second)
	if !strings.Contains(f1.output(), "certificate") {
		t.Fatalf("a member with another authority's certificate was not refused at the handshake:\n%s", f1.output())
	}
	t.Logf("another authority's certificate: %s", strings.TrimSpace(f1.output()))
	// A certificate of the cluster's, under a name that is not its own.
	f2 := startVM(t, "ip", "netns", "exec", l.host(3), l.ftvm, "witness", "-id", "v", "-keys", l.keys, "-cluster", "other",
		"-listen", "172.16.0.3:7401", "-join", l.addr(1))
	f2.wait(t, 30*time.Second)
	if !strings.Contains(f2.output(), "refused") {
		t.Fatalf("a member of another cluster was not refused:\n%s", f2.output())
	}
	t.Logf("another cluster's name: %s", strings.TrimSpace(f2.output()))
	st, err := l.status(1)
	if err != nil || st.Role != "primary" || len(st.Members) != 3 {
		t.Fatalf("the primary after the forged joins: %+v, %v", st, err)
	}
	if strings.Contains(b.output(), "live") || strings.Contains(a.output(), "deposed") {
		t.Fatal("a forged member moved the group")
	}
}

// inject flips a bit of the guest memory of the replica on host h through
// its status port.
func inject(t *testing.T, ft *ftLab, h int, page int) {
	t.Helper()
	resp, err := ft.httpIn(h).Post(fmt.Sprintf("http://127.0.0.1:7401/inject-bitflip?page=%d", page), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("inject-bitflip on host %d: %s: %s", h, resp.Status, b)
	}
	t.Logf("host %d: flipped %s", h, strings.TrimSpace(string(b)))
}

// waitRepairs waits until the replica on host h reports n repairs.
func waitRepairs(t *testing.T, ft *ftLab, h, n int) replication.RepairReport {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := ft.status(h)
		if err == nil && len(st.Repairs) >= n {
			return st.Repairs[n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("host %d: %d repairs after 60s (%+v, %v)", h, len(st.Repairs), st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRepairTrials flips a bit in the guest memory of each replica in
// turn (the last page of RAM, which the guest does not use), in both
// modes, while the client writes: each is found and repaired, in PLOVER
// mode by the witness's majority, in the replay-based pair with the
// primary assumed right; the client sees no error and nothing lost or
// duplicated, and the replicas go on (PLOVER's syncs and the pair's later
// digests compare them).
func TestRepairTrials(t *testing.T) {
	const last = 256<<20/4096 - 1
	t.Run("plover", func(t *testing.T) {
		l := newPloverLab(t, 3)
		ft := l.ft()
		a, b, _ := l.group(t, "rp")
		wr, conn, stop := ft.client(t, "rp:")
		waitWrites(t, wr, 20, 60*time.Second, "before the flips")
		for i, h := range []int{2, 1} {
			inject(t, ft, h, last)
			r := waitRepairs(t, ft, 1, i+1)
			t.Logf("primary's report: %+v", r)
			want := []string{"backup", "primary"}[i]
			if r.Faulty != want || !r.Majority || len(r.Pages) != 1 || r.Pages[0] != last {
				t.Fatalf("repair %+v, want page %d of the %s by majority", r, last, want)
			}
			waitWrites(t, wr, wr.Progress.Load()+20, 60*time.Second, "after the repair")
		}
		res := stop()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if err := res.Verify(conn); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(a.output()+b.output(), "sync failed") {
			t.Fatal("a sync failed")
		}
	})
	t.Run("replay", func(t *testing.T) {
		ft := newFTLab(t, 2)
		a, b := ft.pair(t, "rr")
		defer func() {
			if t.Failed() {
				t.Logf("primary:\n%s\nbackup:\n%s", tail(a.output(), 20), tail(b.output(), 20))
			}
		}()
		wr, conn, stop := ft.client(t, "rr:")
		waitWrites(t, wr, 20, 60*time.Second, "before the flips")
		for i, h := range []int{2, 1} {
			inject(t, ft, h, last)
			r := waitRepairs(t, ft, 2, i+1)
			t.Logf("backup's report: %+v", r)
			if len(r.Pages) != 1 || r.Pages[0] != last || !strings.Contains(r.Detail, "the primary is assumed right") {
				t.Fatalf("repair %+v", r)
			}
			waitWrites(t, wr, wr.Progress.Load()+20, 60*time.Second, "after the repair")
		}
		// Later digests agree: the backup still follows.
		waitWrites(t, wr, wr.Progress.Load()+200, 60*time.Second, "after the repairs")
		if st, err := ft.status(2); err != nil || st.Role != "backup" {
			t.Fatalf("the backup after the repairs: %+v, %v\n%s", st, err, b.output())
		}
		res := stop()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if err := res.Verify(conn); err != nil {
			t.Fatal(err)
		}
	})
}
