package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"ftvm/arbiter/witness"
	"ftvm/guest/workload"
	"ftvm/host/guests"
	"ftvm/internal/testsupport"
	"ftvm/replication"
)

// The failure tests of issue 4: real ftvm processes on hosts that are
// network namespaces (see lab), a real witness, a client on the guest LAN
// driving the key-value server with numbered writes (workload.Writes), and
// real failures: SIGKILL, links taken down.

type ftLab struct {
	*lab
	ftvm, keys, dir string
	wit             *witness.Process
	// guest is the guest the replicas boot (-guest; "" for the default),
	// each with its own data disk made from the guest's template.
	guest string
	mode  string // the replicas' -mode ("": replay)
}

// ftModes are the replication modes the failure tests run in.
var ftModes = []string{"replay", "checkpoint", "colo"}

// eachFTMode runs test as a subtest for every replication mode, each on
// a lab of its own with hosts replica hosts.
func eachFTMode(t *testing.T, hosts int, test func(t *testing.T, l *ftLab)) {
	for _, m := range ftModes {
		t.Run(m, func(t *testing.T) {
			l := newFTLab(t, hosts)
			l.mode = m
			test(t, l)
		})
	}
}

// parallel reports a checkpointing mode: its guests have two harts that
// run in parallel (what those modes are for; a replay-based pair's run
// interleaved).
func (l *ftLab) parallel() bool { return l.mode == "checkpoint" || l.mode == "colo" }

func newFTLab(t *testing.T, hosts int) *ftLab {
	t.Helper()
	testsupport.GuestFiles(t)
	ftvm, _ := buildBinaries(t)
	l := &ftLab{lab: newLab(t, hosts), ftvm: ftvm, dir: t.TempDir()}
	wbin := testsupport.Witness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	l.wit, err = witness.Start(ctx, witness.Config{Binary: wbin, Data: filepath.Join(l.dir, "witness"),
		Listen: witnessIP + ":2379", Peer: witnessIP + ":2380", Prefix: []string{"ip", "netns", "exec", l.ns("lan")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.wit.Kill() })
	l.keys = filepath.Join(l.dir, "keys")
	if err := replication.GenerateKeys(l.keys, "ftvm", "a", "b", "c"); err != nil {
		t.Fatal(err)
	}
	return l
}

// replica starts `ftvm primary` or `ftvm backup` as replica id on host h.
func (l *ftLab) replica(t *testing.T, h int, role, id, cluster string, extra ...string) *console {
	t.Helper()
	disk := filepath.Join(l.dir, cluster+"-"+id+".img")
	if _, err := os.Stat(disk); err != nil {
		if l.guest != "" {
			err = guests.NewDataDisk(disk)
		} else {
			err = os.WriteFile(disk, make([]byte, 16<<20), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	argv := []string{"ip", "netns", "exec", l.host(h), l.ftvm, role, "-id", id, "-keys", l.keys, "-cluster", cluster,
		"-listen", fmt.Sprintf("172.16.0.%d:7400", h), "-arbiter", witnessIP + ":2379",
		"-net", "tap:tap0", "-disk", disk, "-http", "127.0.0.1:7401", "-timeout", "500ms"}
	if l.guest != "" {
		argv = append(argv, "-guest", l.guest)
	}
	if l.mode != "" {
		argv = append(argv, "-mode", l.mode)
	}
	if l.parallel() {
		if role == "primary" && !slices.Contains(extra, "-smp") {
			argv = append(argv, "-smp", "2")
		}
		argv = append(argv, "-parallel")
	}
	argv = append(argv, extra...)
	if os.Getenv("FTVM_DEBUG_REPLICA") != "" {
		argv = append([]string{"sh", "-c", `exec "$@" 2>>/tmp/replica-` + id + `.log`, "sh"}, argv...)
	}
	return startVM(t, argv...)
}

// httpIn is an HTTP client whose connections are made inside host h.
func (l *ftLab) httpIn(h int) *http.Client {
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(l.host(h), addr, time.Second) },
	}}
}

// status reads a replica's /status from inside its host.
func (l *ftLab) status(h int) (replication.Status, error) {
	var st replication.Status
	resp, err := l.httpIn(h).Get("http://127.0.0.1:7401/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// get fetches path from the replica on host h's -http endpoint.
func (l *ftLab) get(t *testing.T, h int, path string) string {
	t.Helper()
	resp, err := l.httpIn(h).Get("http://127.0.0.1:7401" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// client connects to the guest's key-value server from the client host
// and starts numbered writes; stop ends them and returns the result.
func (l *ftLab) client(t *testing.T, prefix string) (w *workload.Writes, conn net.Conn, stop func() *workload.Writes) {
	t.Helper()
	conn, err := dial(l.ns("client"), "10.0.2.15:6379", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// A failover that never completes must fail the test, not hang it.
	conn.SetDeadline(time.Now().Add(90 * time.Second))
	w = workload.NewWrites(prefix)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, conn, 0)
	}()
	t.Cleanup(func() { cancel(); conn.Close(); <-done })
	return w, conn, func() *workload.Writes {
		cancel()
		<-done
		return w
	}
}

// waitWrites waits until at least n writes are acknowledged.
func waitWrites(t *testing.T, w *workload.Writes, n int64, d time.Duration, what string) {
	t.Helper()
	if !writesReach(w, n, d) {
		t.Fatalf("%s: only %d of %d writes acknowledged after %v", what, w.Progress.Load(), n, d)
	}
}

// writesReach reports whether the client's acknowledged writes reach n
// within d.
func writesReach(w *workload.Writes, n int64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for w.Progress.Load() < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// pair starts a primary on host 1 and a backup on host 2 and waits until
// the backup follows; extra goes to the primary.
func (l *ftLab) pair(t *testing.T, cluster string, extra ...string) (p, b *console) {
	t.Helper()
	p = l.replica(t, 1, "primary", "a", cluster, extra...)
	if l.guest != "" {
		p.waitFor(t, readyLine[l.guest], 4*time.Minute)
	} else {
		p.waitFor(t, "listening on", 60*time.Second)
	}
	b = l.replica(t, 2, "backup", "b", cluster, "-join", "172.16.0.1:7400")
	b.waitFor(t, "following the primary", 60*time.Second)
	return p, b
}

// TestFailoverTrials kills the primary with SIGKILL at a random moment
// while the client writes, FTVM_TRIALS times (default 3; 50 for the full
// trial): the backup must take over, the client's connection must
// survive, and every write it saw acknowledged must be there exactly once.
// Trials alternate between a guest with one hart and one with two, in the
// checkpointing modes two harts in parallel (FTVM_TRIAL_SMP=N gives every
// trial N harts).
func TestFailoverTrials(t *testing.T) {
	eachFTMode(t, 2, func(t *testing.T, l *ftLab) {
		trials := 3
		if s := os.Getenv("FTVM_TRIALS"); s != "" {
			trials, _ = strconv.Atoi(s)
		}
		fixedSMP, _ := strconv.Atoi(os.Getenv("FTVM_TRIAL_SMP"))
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
		var pauses []time.Duration
		for i := range trials {
			cluster := fmt.Sprintf("trial%d", i)
			smp := 1 + i%2
			if l.parallel() {
				smp = 2
			}
			if fixedSMP > 0 {
				smp = fixedSMP
			}
			p, b := l.pair(t, cluster, "-smp", strconv.Itoa(smp))
			w, conn, stop := l.client(t, cluster+":")
			waitWrites(t, w, 20, 30*time.Second, "before the kill")
			time.Sleep(time.Duration(rng.Int64N(int64(1500 * time.Millisecond))))
			before, killed := w.Progress.Load(), time.Now()
			p.cmd.Process.Kill()
			b.waitFor(t, "msg=live", 30*time.Second)
			waitWrites(t, w, before+20, 60*time.Second, "after the failover")
			res := stop()
			if res.Err != nil {
				t.Fatalf("trial %d: the client's run failed: %v", i, res.Err)
			}
			if err := res.Verify(conn); err != nil {
				t.Fatalf("trial %d: %v", i, err)
			}
			first := res.FirstServedAfter(killed)
			pauses = append(pauses, first)
			t.Logf("trial %d (%d harts): killed after %d writes; %d acknowledged in all; first request served by the new primary %v after the kill; longest write %v",
				i, smp, before, res.Acked, first.Round(time.Millisecond), res.MaxLatency.Round(time.Millisecond))
			b.cmd.Process.Kill()
			<-b.done
			<-p.done
		}
		t.Logf("%d trials: kill to the first request served by the new primary: %v", trials, pauses)
	})
}

// TestBackupKilled: SIGKILL the backup; the primary must continue on its
// own after the timeout, with the client's writes unaffected.
func TestBackupKilled(t *testing.T) {
	eachFTMode(t, 2, func(t *testing.T, l *ftLab) {
		p, b := l.pair(t, "bk")
		w, conn, stop := l.client(t, "bk:")
		waitWrites(t, w, 20, 30*time.Second, "before the kill")
		// The operator's view of the pair: ftvm status and the metrics.
		out, err := l.command(l.host(1), l.ftvm, "status", "127.0.0.1:7401").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "a") || !strings.Contains(string(out), "primary") || !strings.Contains(string(out), " b ") {
			t.Fatalf("ftvm status: %v\n%s", err, out)
		}
		out, err = l.command(l.host(2), l.ftvm, "status", "127.0.0.1:7401").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "backup") {
			t.Fatalf("ftvm status of the backup: %v\n%s", err, out)
		}
		metrics := l.get(t, 1, "/metrics")
		want := []string{"ftvm_replication_lag_instructions", "ftvm_replication_log_bytes", `ftvm_replication_role{role="primary"} 1`, "ftvm_replication_view_generation 2"}
		switch l.mode {
		case "checkpoint":
			want = append(want, `ftvm_replication_mode{mode="checkpoint"} 1`, "ftvm_replication_checkpoints ", "ftvm_replication_last_checkpoint_pause_seconds ")
		case "colo":
			// Matching output needs no checkpoint.
			want = append(want, `ftvm_replication_mode{mode="colo"} 1`, "ftvm_replication_checkpoints ", "ftvm_replication_compared_bytes ")
		}
		for _, m := range want {
			if !strings.Contains(metrics, m) {
				t.Fatalf("no %s in /metrics:\n%s", m, metrics)
			}
		}
		b.cmd.Process.Kill()
		p.waitFor(t, "continuing unprotected", 30*time.Second)
		waitWrites(t, w, w.Progress.Load()+50, 30*time.Second, "after the backup died")
		res := stop()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if err := res.Verify(conn); err != nil {
			t.Fatal(err)
		}
		st, err := l.status(1)
		if err != nil || st.Role != "primary" || st.Peer != "" || st.View.Backup != "" {
			t.Fatalf("primary status %+v, %v", st, err)
		}
	})
}

// neverTwoLive samples the replicas on hosts 1 and 2 for d, failing the
// test if both are ever live at once. Live means a primary with no backup:
// a primary with a backup releases only what that backup acknowledged, so
// it cannot be live beside a backup that went live.
func (l *ftLab) neverTwoLive(t *testing.T, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		live := 0
		for h := 1; h <= 2; h++ {
			if st, err := l.status(h); err == nil && st.Role == "primary" && st.Peer == "" {
				live++
			}
		}
		if live > 1 {
			t.Fatal("two replicas are live primaries at once")
		}
	}
}

// TestPartitionBothReachArbiter cuts the log link between the replicas
// while both still reach the witness: exactly one must stay live, the
// other must stop, and the client's writes must go on without loss.
func TestPartitionBothReachArbiter(t *testing.T) {
	eachFTMode(t, 2, func(t *testing.T, l *ftLab) {
		p, b := l.pair(t, "part")
		w, conn, stop := l.client(t, "part:")
		waitWrites(t, w, 20, 30*time.Second, "before the cut")
		l.setLink(t, 1, "ftlog", false)
		l.neverTwoLive(t, 2*time.Second)
		var loser *console
		select {
		case <-p.done:
			loser = p
		case <-b.done:
			loser = b
		case <-time.After(30 * time.Second):
			t.Fatal("neither replica stopped after the cut")
		}
		if !strings.Contains(loser.output(), "lost the arbitration") {
			t.Fatalf("the stopped replica did not lose the arbitration:\n%s", loser.output())
		}
		waitWrites(t, w, w.Progress.Load()+50, 60*time.Second, "after the cut")
		res := stop()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if err := res.Verify(conn); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPartitionPrimaryIsolated cuts the primary off from both the backup
// and the witness: the backup must take over; the isolated primary must
// never act alone, and must stop once it can reach the witness again.
func TestPartitionPrimaryIsolated(t *testing.T) {
	eachFTMode(t, 2, func(t *testing.T, l *ftLab) {
		p, b := l.pair(t, "iso")
		w, conn, stop := l.client(t, "iso:")
		waitWrites(t, w, 20, 30*time.Second, "before the cut")
		l.setLink(t, 1, "mgmt", false)
		l.setLink(t, 1, "ftlog", false)
		b.waitFor(t, "msg=live", 30*time.Second)
		l.neverTwoLive(t, 2*time.Second)
		if n := w.Progress.Load() + 50; !writesReach(w, n, 60*time.Second) {
			t.Fatalf("after the cut: only %d of %d writes acknowledged after 1m0s\nthe new primary:\n%s\nthe old primary:\n%s",
				w.Progress.Load(), n, tail(b.output(), 60), tail(p.output(), 5))
		}
		if st, err := l.status(1); err != nil || st.Role == "primary" {
			t.Fatalf("the isolated primary: %+v, %v", st, err)
		}
		l.setLink(t, 1, "mgmt", true)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			t.Fatal("the old primary did not stop once it could reach the witness")
		}
		if !strings.Contains(p.output(), "lost the arbitration") {
			t.Fatalf("old primary:\n%s", p.output())
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

// TestReprotect: after a failover a new backup joins the new primary while
// the client writes, and takes over in turn when that one is killed: the
// same client connection survives both failovers.
func TestReprotect(t *testing.T) {
	eachFTMode(t, 3, func(t *testing.T, l *ftLab) {
		p, b := l.pair(t, "re")
		w, conn, stop := l.client(t, "re:")
		waitWrites(t, w, 20, 30*time.Second, "before the first kill")
		p.cmd.Process.Kill()
		b.waitFor(t, "msg=live", 30*time.Second)
		c := l.replica(t, 3, "backup", "c", "re", "-join", "172.16.0.2:7400")
		c.waitFor(t, "following the primary", 60*time.Second)
		waitWrites(t, w, w.Progress.Load()+50, 60*time.Second, "with the new backup")
		b.cmd.Process.Kill()
		c.waitFor(t, "msg=live", 30*time.Second)
		waitWrites(t, w, w.Progress.Load()+50, 60*time.Second, "after the second failover")
		res := stop()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if err := res.Verify(conn); err != nil {
			t.Fatal(err)
		}
		t.Logf("%d writes through two failovers; longest %v", res.Acked, res.MaxLatency)
	})
}

// TestDemo runs ftvm demo (rootless: witness, switch, three replicas) in
// every replication mode and checks its report: the client's writes
// survived the kill on one connection, none lost, none applied twice, and
// the new backup joined.
func TestDemo(t *testing.T) {
	testsupport.GuestFiles(t)
	testDemo(t, "kv", ftModes...)
}

// TestDemoRedis is TestDemo with Debian's Redis as the guest (in the
// replay mode).
func TestDemoRedis(t *testing.T) {
	requireDebian(t)
	testDemo(t, "redis", "replay")
}

func testDemo(t *testing.T, guest string, modes ...string) {
	ftvm, _ := buildBinaries(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			out, err := exec.Command(ftvm, "demo", "-guest", guest, "-mode", mode, "-before", "1s", "-after", "1s").CombinedOutput()
			if err != nil {
				t.Fatalf("ftvm demo: %v\n%s", err, out)
			}
			for _, want := range []string{"primary a killed", "backup b: primary lost, won the arbitration, live",
				"new backup c joined b", "acknowledged writes lost / applied twice", "0 / 0 (all read back)", "replicating by " + mode} {
				if !strings.Contains(string(out), want) {
					t.Fatalf("no %q in the demo's report:\n%s", want, out)
				}
			}
		})
	}
}

// TestDemoFreeze runs the demo with the primary frozen (SIGSTOP) instead
// of killed: its kernel keeps the connections open, so only the silence
// of its heartbeats (sent by its driver, which freezes with the process)
// can reveal it. The backup must take over after about the heartbeat
// timeout, with no acknowledged write lost.
func TestDemoFreeze(t *testing.T) {
	testsupport.GuestFiles(t)
	ftvm, _ := buildBinaries(t)
	const timeout = 500 * time.Millisecond
	out, err := exec.Command(ftvm, "demo", "-guest", "kv", "-fault", "freeze", "-timeout", timeout.String(), "-before", "1s", "-after", "1s").CombinedOutput()
	if err != nil {
		t.Fatalf("ftvm demo -fault freeze: %v\n%s", err, out)
	}
	for _, want := range []string{"primary a frozen (SIGSTOP)", "backup b: primary lost, won the arbitration, live",
		"new backup c joined b", "0 / 0 (all read back)"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("no %q in the demo's report:\n%s", want, out)
		}
	}
	m := regexp.MustCompile(`detection \(freeze to the backup declaring the primary lost\)\s+(\S+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no detection time in the demo's report:\n%s", out)
	}
	d, err := time.ParseDuration(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	// Detected by the timeout (counted from the last message heard, up to
	// a heartbeat before the freeze), not by a closed connection, and not
	// much later than it.
	if d < timeout*8/10 || d > 10*timeout {
		t.Fatalf("a frozen primary was detected after %v; the timeout is %v:\n%s", d, timeout, out)
	}
	t.Logf("frozen primary detected after %v", d)
}

// TestPairDisksIdentical: the backup's guest writes the same blocks as the
// primary's. After client writes (each logged to the disk by the key-value
// server) and a power-off from the primary's console, the two replicas'
// disk images are identical byte for byte.
func TestPairDisksIdentical(t *testing.T) {
	eachFTMode(t, 2, func(t *testing.T, l *ftLab) {
		p, b := l.pair(t, "disks")
		w, conn, stop := l.client(t, "disks:")
		waitWrites(t, w, 200, 60*time.Second, "client writes")
		if res := stop(); res.Err != nil {
			t.Fatal(res.Err)
		}
		conn.Close()
		fmt.Fprintln(p.stdin, "poweroff")
		p.wait(t, 60*time.Second)
		b.wait(t, 60*time.Second)
		da, err1 := os.ReadFile(filepath.Join(l.dir, "disks-a.img"))
		db, err2 := os.ReadFile(filepath.Join(l.dir, "disks-b.img"))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if !bytes.Equal(da, db) {
			n := 0
			for i := range da {
				if da[i] != db[i] {
					n++
				}
			}
			t.Fatalf("the replicas' disks differ in %d bytes", n)
		}
		if bytes.Count(da, []byte("disks:")) < 200 {
			t.Fatalf("the disk holds %d of the 200 writes' keys", bytes.Count(da, []byte("disks:")))
		}
	})
}
