package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"ftvm/bench"
	"ftvm/host/guests"
)

// Record/replay and failover with the Debian guests and their real
// clients: the lab of the fault-tolerance tests (replicas on network
// namespace hosts, a witness, the clients on the guest LAN), with each
// replica booting the Debian guest on its own data disk.

// servicePair starts a pair booting the Debian guest name and waits until
// the service serves and the backup follows.
func servicePair(t *testing.T, name string) (*ftLab, *console, *console) {
	t.Helper()
	l := newFTLab(t, 2)
	l.guest = name
	p, b := l.pair(t, name)
	return l, p, b
}

// clientCmd runs a client program on the guest LAN.
func (l *ftLab) clientCmd(argv ...string) *exec.Cmd {
	cmd := l.command(l.ns("client"), argv...)
	cmd.Env = append(os.Environ(), "PGHOST=10.0.2.15", "PGUSER=postgres", "PGDATABASE=postgres", "PGCONNECT_TIMEOUT=60")
	return cmd
}

// background runs a client on the guest LAN and returns a function that
// waits for it (failing the test after d) and returns its output.
func (l *ftLab) background(t *testing.T, d time.Duration, argv ...string) func() (string, error) {
	t.Helper()
	cmd := l.clientCmd(argv...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	return func() (string, error) {
		select {
		case err := <-done:
			return out.String(), err
		case <-time.After(d):
			cmd.Process.Kill()
			<-done
			t.Fatalf("%v did not finish within %v:\n%s", argv, d, out.String())
			return "", nil
		}
	}
}

// killPrimary kills the primary once the client has made progress, and
// waits for the backup to go live.
func killPrimary(t *testing.T, p, b *console) time.Time {
	t.Helper()
	killed := time.Now()
	p.cmd.Process.Kill()
	b.waitFor(t, "msg=live", 60*time.Second)
	t.Logf("backup live %v after the kill", time.Since(killed).Round(time.Millisecond))
	return killed
}

// TestRedisFailover: Debian's Redis through two SIGKILLs of the primary
// (the backup takes over, a new backup joins it by state transfer, and it is
// killed in turn), with our checking client (numbered INCRs on one
// connection: none lost, none applied twice, the connection survives both)
// and redis-benchmark running through the first kill (its 8 connections
// survive too: it completes without error).
func TestRedisFailover(t *testing.T) {
	requireDebian(t, "redis-benchmark")
	l := newFTLab(t, 3)
	l.guest = "redis"
	p, b := l.pair(t, "redis")
	w, conn, stop := l.client(t, "redis:")
	waitWrites(t, w, 20, 60*time.Second, "before the kill")
	rb := l.background(t, 4*time.Minute, "redis-benchmark", "-h", "10.0.2.15", "-q", "-n", "1500", "-c", "8", "-t", "set,get")
	waitWrites(t, w, 60, 60*time.Second, "with redis-benchmark")
	first := w.Progress.Load()
	killPrimary(t, p, b)
	waitWrites(t, w, first+30, 60*time.Second, "after the first failover")
	out, err := rb()
	if err != nil || !strings.Contains(out, "SET: ") || !strings.Contains(out, "GET: ") {
		t.Fatalf("redis-benchmark through the failover: %v\n%s", err, out)
	}
	c := l.replica(t, 3, "backup", "c", "redis", "-join", "172.16.0.2:7400")
	c.waitFor(t, "following the primary", 3*time.Minute)
	waitWrites(t, w, w.Progress.Load()+30, 60*time.Second, "with the new backup")
	second := w.Progress.Load()
	killPrimary(t, b, c)
	waitWrites(t, w, second+30, 60*time.Second, "after the second failover")
	res := stop()
	if res.Err != nil {
		t.Fatalf("the checking client's run failed: %v", res.Err)
	}
	if err := res.Verify(conn); err != nil {
		t.Fatal(err)
	}
	t.Logf("kills after %d and %d writes; %d acknowledged in all on one connection; longest write %v; redis-benchmark through the first:\n%s",
		first, second, res.Acked, res.MaxLatency.Round(time.Millisecond), bench.FinalLines(out))
}

// TestPostgresFailover: pgbench (TPC-B) through a SIGKILL of the primary:
// its connections survive (no failed transaction, no aborted client), and
// every transaction it reports committed is in pgbench_history afterwards,
// once (pgbench_history has one row per committed transaction).
func TestPostgresFailover(t *testing.T) {
	requireDebian(t, "pgbench", "psql")
	l, p, b := servicePair(t, "postgres")
	// TPC-B on the template's pgbench database (scale 1), over TLS.
	run := l.background(t, 4*time.Minute, "pgbench", "-n", "-c", "2", "-T", "25", "-P", "1", "pgbench")
	// Kill once transactions flow: pgbench's progress lines say so.
	time.Sleep(8 * time.Second)
	killPrimary(t, p, b)
	out, err := run()
	if err != nil {
		t.Fatalf("pgbench through the failover: %v\n%s", err, out)
	}
	txns := pgbenchTxns(out)
	if txns <= 0 || !strings.Contains(out, "number of failed transactions: 0") {
		t.Fatalf("pgbench through the failover:\n%s", out)
	}
	rows, err := l.clientCmd("psql", "-X", "-A", "-t", "-d", "pgbench", "-c", "select count(*) from pgbench_history").CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, rows)
	}
	if got := strings.TrimSpace(string(rows)); got != strconv.Itoa(txns) {
		t.Fatalf("pgbench reported %d transactions, pgbench_history has %s rows", txns, got)
	}
	t.Logf("pgbench through the failover: %d transactions, all in pgbench_history; %s", txns, grab(out, "tps = "))
}

// TestNginxFailover: HTTP requests on one keep-alive connection through a
// SIGKILL of the primary: every request is answered 200, and the
// connection is never dialled again.
func TestNginxFailover(t *testing.T) {
	requireDebian(t)
	l, p, b := servicePair(t, "nginx")
	var dials atomic.Int32
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		MaxConnsPerHost: 1,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			dials.Add(1)
			return dial(l.ns("client"), addr, 10*time.Second)
		},
	}}
	get := func() error {
		resp, err := client.Get("http://10.0.2.15/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || !strings.Contains(string(body), "Welcome to nginx") {
			return fmt.Errorf("status %d, body %.80q", resp.StatusCode, body)
		}
		return nil
	}
	// nginx prints nothing when it is ready: wait for its first answer.
	deadline := time.Now().Add(2 * time.Minute)
	for err := get(); err != nil; err = get() {
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not answer: %v\n%s", err, tail(p.output(), 30))
		}
		dials.Store(0)
		client.CloseIdleConnections()
		time.Sleep(500 * time.Millisecond)
	}
	var n atomic.Int32
	errs := make(chan error, 1)
	stopReq := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopReq:
				errs <- nil
				return
			default:
			}
			if err := get(); err != nil {
				errs <- err
				return
			}
			n.Add(1)
		}
	}()
	for n.Load() < 20 {
		time.Sleep(10 * time.Millisecond)
	}
	before := n.Load()
	killPrimary(t, p, b)
	for n.Load() < before+20 {
		select {
		case err := <-errs:
			t.Fatalf("request %d: %v", n.Load()+1, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	close(stopReq)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if d := dials.Load(); d != 1 {
		t.Fatalf("%d connections dialled, want 1", d)
	}
	t.Logf("%d requests on one connection, %d before the kill", n.Load(), before)
}

// TestServicesRecordReplay records each Debian service under its real
// client and replays it from the log: the replay reproduces the console,
// network and disk output hashes and the final state digest.
func TestServicesRecordReplay(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		requireDebian(t, "redis-cli", "redis-benchmark")
		recordReplay(t, "redis", func(s *service) string {
			s.client(t, "redis-benchmark", "-h", s.host, "-p", s.port, "-q", "-n", "200", "-c", "4", "-t", "set,get")
			expect(t, "SET", s.redis(t, "set", "recorded", "yes"), "OK")
			n := s.redis(t, "dbsize")
			return "redis-benchmark SET/GET -n 200, then " + n + " keys"
		})
	})
	t.Run("postgres", func(t *testing.T) {
		requireDebian(t, "pgbench", "psql")
		recordReplay(t, "postgres", func(s *service) string {
			txns := pgbenchRun(t, s, "10")
			expect(t, "pgbench_history", s.sqlIn(t, "pgbench", "select count(*) from pgbench_history"), strconv.Itoa(txns))
			return fmt.Sprintf("pgbench: %d transactions", txns)
		})
	})
	t.Run("nginx", func(t *testing.T) {
		requireDebian(t, "curl")
		recordReplay(t, "nginx", func(s *service) string {
			url := "http://" + s.host + ":" + s.port + "/"
			ok := 0
			deadline := time.Now().Add(2 * time.Minute)
			for ok < 20 {
				b, err := exec.Command("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", url).CombinedOutput()
				switch {
				case err == nil && string(b) == "200":
					ok++
				case ok > 0 || time.Now().After(deadline):
					t.Fatalf("request %d: %v %s", ok+1, err, b)
				default:
					time.Sleep(500 * time.Millisecond) // nginx prints nothing when it is ready
				}
			}
			return fmt.Sprintf("%d HTTP requests", ok)
		})
	})
}

// recordReplay boots the named service under ftvm record with a fresh data
// disk, runs load against it, powers it off and replays the log on a copy
// of the disk as it was at the start.
func recordReplay(t *testing.T, name string, load func(*service) string) {
	ftvm, _ := buildBinaries(t)
	dir := t.TempDir()
	disk, start, log := filepath.Join(dir, name+".img"), filepath.Join(dir, name+"-start.img"), filepath.Join(dir, "run.log")
	if err := guests.NewDataDisk(disk); err != nil {
		t.Fatal(err)
	}
	copyFile(t, disk, start)
	s := bootService(t, ftvm, name, disk, "record", "-o", log, "-digest-every", "200000000")
	what := load(s)
	rec := s.poweroff(t)
	digest := grab(rec, "state digest ")
	hashes := outputLinesOf(rec)
	if digest == "" || len(hashes) != 3 {
		t.Fatalf("no digest or output hashes in the recording's output:\n%s", tail(rec, 20))
	}
	rep, err := exec.Command(ftvm, "replay", "-q", "-guest", name, "-disk", start, log).CombinedOutput()
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, rep)
	}
	if grab(string(rep), "state digest ") != digest || !strings.Contains(string(rep), "matches the recording") {
		t.Fatalf("the replay does not reproduce the recording (digest %s):\n%s", digest, rep)
	}
	if got := outputLinesOf(string(rep)); strings.Join(got, "\n") != strings.Join(hashes, "\n") {
		t.Fatalf("output hashes differ:\nrecorded:\n%s\nreplayed:\n%s", strings.Join(hashes, "\n"), strings.Join(got, "\n"))
	}
	t.Logf("%s: %s recorded and replayed; %s", name, what, strings.Join(hashes, "; "))
}

// outputLinesOf returns the "ftvm: output" lines (console, net and disk
// hashes) of a recording or replay.
func outputLinesOf(s string) []string {
	var l []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "ftvm: output ") {
			l = append(l, line)
		}
	}
	return l
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
}
