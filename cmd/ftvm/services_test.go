package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ftvm/bench"
	"ftvm/host/guests"
	"ftvm/internal/testsupport"
)

// The Debian guests, driven by their real clients (redis-cli and
// redis-benchmark, psql and pgbench, curl) through `ftvm switch` port
// forwards, without privileges. Longer runs: FTVM_SERVICE_LONG=1.

// requireDebian skips (fails with FTVM_REQUIRE_ALL) without the Debian
// guests' disks or the clients a test runs.
func requireDebian(t *testing.T, tools ...string) {
	t.Helper()
	testsupport.GuestFiles(t)
	if _, err := os.Stat(guests.RootImage()); err != nil {
		testsupport.Missing(t, "the Debian guests (scripts/build-rootfs.sh)")
	}
	pkg := map[string]string{"redis-cli": "redis-tools", "redis-benchmark": "redis-tools", "psql": "postgresql-client",
		"pgbench": "postgresql-client", "curl": "curl", "wrk": "wrk"}
	for _, tool := range tools {
		testsupport.Tool(t, tool, pkg[tool])
	}
}

// readyLine is what each service prints on the console once it serves.
var readyLine = map[string]string{
	"redis":    "Ready to accept connections",
	"postgres": "database system is ready to accept connections",
	"nginx":    "nginx started",
}

// service is a Debian guest running under `ftvm run` (or record) on a
// switch, with a forward from the host to its port.
type service struct {
	vm        *console
	sw        *console
	host      string // the forward's host address (127.0.0.1)
	port      string // and port
	swListen  string
	disk      string
	guestName string
}

// bootService boots the named Debian guest with a fresh data disk (or
// disk, when given) and waits until its service serves.
func bootService(t *testing.T, ftvm, name, disk string, cmd ...string) *service {
	t.Helper()
	g, err := guests.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	sw, listen, fwd := startSwitchTo(t, ftvm, g.Port)
	if disk == "" {
		disk = filepath.Join(t.TempDir(), name+".img") // made from the template
	}
	s := &service{sw: sw, swListen: listen, disk: disk, guestName: name}
	s.host, s.port, _ = strings.Cut(fwd, ":")
	s.start(t, ftvm, cmd...)
	return s
}

// start boots the guest (again) on the service's switch and disk.
func (s *service) start(t *testing.T, ftvm string, cmd ...string) {
	t.Helper()
	if len(cmd) == 0 {
		cmd = []string{"run"}
	}
	argv := append([]string{ftvm}, cmd...)
	argv = append(argv, "-guest", s.guestName, "-net", "switch:"+s.swListen, "-disk", s.disk)
	start := time.Now()
	s.vm = startVM(t, argv...)
	s.vm.waitFor(t, readyLine[s.guestName], 4*time.Minute)
	t.Logf("%s: serving %.1fs after ftvm started", s.guestName, time.Since(start).Seconds())
}

// poweroff powers the guest off from its console and waits for ftvm to end.
func (s *service) poweroff(t *testing.T) string {
	t.Helper()
	fmt.Fprintln(s.vm.stdin, "poweroff")
	s.vm.wait(t, 2*time.Minute)
	return s.vm.output()
}

// client runs a client program against the service and returns its output.
func (s *service) client(t *testing.T, argv ...string) string {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	// TLS (Debian's default, with its snakeoil certificate) costs a
	// second per connection in the emulated guest: the tests check it
	// once (TestPostgresGuest) and connect without it otherwise.
	cmd.Env = append(os.Environ(), "PGHOST="+s.host, "PGPORT="+s.port, "PGUSER=postgres", "PGDATABASE=postgres",
		"PGCONNECT_TIMEOUT=60", "PGSSLMODE=disable")
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v did not finish within 3 minutes:\n%s\nguest console:\n%s", argv, out, s.vm.output())
	}
	if err != nil {
		t.Fatalf("%v: %v\n%s\nguest console:\n%s", argv, err, out, tail(s.vm.output(), 40))
	}
	return strings.TrimSpace(string(out))
}

func (s *service) redis(t *testing.T, args ...string) string {
	t.Helper()
	return s.client(t, append([]string{"redis-cli", "-h", s.host, "-p", s.port}, args...)...)
}

// sql runs one statement with psql in database postgres, unaligned and
// without headers.
func (s *service) sql(t *testing.T, stmt string) string {
	t.Helper()
	return s.sqlIn(t, "postgres", stmt)
}

func (s *service) sqlIn(t *testing.T, db, stmt string) string {
	t.Helper()
	return s.client(t, "psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", stmt)
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func expect(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

// TestRedisGuest: Debian's Redis answers redis-cli with the commands the
// toy server did not know, redis-benchmark's tests run, and with
// appendonly + appendfsync always every acknowledged write is on the data
// disk: after a power-off and a second boot on the same disk it is there.
func TestRedisGuest(t *testing.T) {
	requireDebian(t, "redis-cli", "redis-benchmark")
	ftvm, _ := buildBinaries(t)
	s := bootService(t, ftvm, "redis", "")
	expect(t, "PING", s.redis(t, "ping"), "PONG")
	expect(t, "LPUSH", s.redis(t, "lpush", "list", "a", "b", "c"), "3")
	expect(t, "LRANGE", s.redis(t, "lrange", "list", "0", "-1"), "c\nb\na")
	expect(t, "HSET", s.redis(t, "hset", "h", "f1", "v1", "f2", "v2"), "2")
	expect(t, "HGET", s.redis(t, "hget", "h", "f2"), "v2")
	expect(t, "EXPIRE", s.redis(t, "expire", "list", "1000"), "1")
	if ttl, _ := strconv.Atoi(s.redis(t, "ttl", "list")); ttl <= 0 || ttl > 1000 {
		t.Fatalf("TTL %d", ttl)
	}
	expect(t, "appendfsync", s.redis(t, "config", "get", "appendfsync"), "appendfsync\nalways")
	n := "300"
	if os.Getenv("FTVM_SERVICE_LONG") != "" {
		n = "20000"
	}
	out := s.client(t, "redis-benchmark", "-h", s.host, "-p", s.port, "-q", "-n", n, "-c", "8", "-t", "ping,set,get,incr,lpush,hset")
	for _, test := range []string{"PING_INLINE", "SET", "GET", "INCR", "LPUSH", "HSET"} {
		if !strings.Contains(out, test+": ") || !strings.Contains(out, "requests per second") {
			t.Fatalf("redis-benchmark did not run %s:\n%s", test, out)
		}
	}
	t.Logf("redis-benchmark -n %s -c 8:\n%s", n, bench.FinalLines(out))
	expect(t, "SET", s.redis(t, "set", "durable", "yes"), "OK")
	s.poweroff(t)

	s.start(t, ftvm, "run")
	expect(t, "GET after reboot", s.redis(t, "get", "durable"), "yes")
	expect(t, "HGET after reboot", s.redis(t, "hget", "h", "f1"), "v1")
	expect(t, "LLEN after reboot", s.redis(t, "llen", "list"), "3")
	s.poweroff(t)
}

// TestPostgresGuest: Debian's PostgreSQL, reached with psql as the
// postgres role with no password (trust for the guest LAN), runs SQL and a
// short pgbench, and a committed row survives a power-off.
func TestPostgresGuest(t *testing.T) {
	requireDebian(t, "psql", "pgbench")
	ftvm, _ := buildBinaries(t)
	s := bootService(t, ftvm, "postgres", "")
	expect(t, "current_user", s.sql(t, "select current_user"), "postgres")
	expect(t, "TLS", s.client(t, "env", "PGSSLMODE=require", "psql", "-X", "-A", "-t", "-c",
		"select ssl from pg_stat_ssl where pid = pg_backend_pid()"), "t")
	if v := s.sql(t, "show fsync"); v != "on" {
		t.Fatalf("fsync = %q", v)
	}
	if y := s.sql(t, "select extract(year from now())::int"); y < "2025" {
		t.Fatalf("the guest's date is in %s: no real-time clock?", y)
	}
	s.sql(t, "create table t (k int primary key, v text)")
	s.sql(t, "insert into t select g, 'row ' || g from generate_series(1, 1000) g")
	expect(t, "count", s.sql(t, "select count(*), sum(k) from t"), "1000|500500")
	txns := pgbenchRun(t, s, "20")
	t.Logf("pgbench: %d transactions", txns)
	s.poweroff(t)

	s.start(t, ftvm, "run")
	expect(t, "count after reboot", s.sql(t, "select count(*) from t"), "1000")
	expect(t, "pgbench_history after reboot", s.sqlIn(t, "pgbench", "select count(*) from pgbench_history"), strconv.Itoa(txns))
	s.poweroff(t)
}

// pgbenchRun runs pgbench's TPC-B, n transactions per client with 2
// clients, in the database "pgbench" the data disk's template holds
// (initialised at scale 1 by build-rootfs.sh); it returns the number of
// transactions pgbench reports processed.
func pgbenchRun(t *testing.T, s *service, n string) int {
	t.Helper()
	out := s.client(t, "pgbench", "-n", "-c", "2", "-t", n, "pgbench")
	txns := pgbenchTxns(out)
	if txns <= 0 {
		t.Fatalf("pgbench reported no transactions:\n%s", out)
	}
	return txns
}

// pgbenchTxns reads "number of transactions actually processed: N".
func pgbenchTxns(out string) int {
	s := grab(out, "number of transactions actually processed: ")
	n, err := strconv.Atoi(strings.Split(s, "/")[0])
	if err != nil {
		return -1
	}
	return n
}

// TestNginxGuest: Debian's nginx serves its default page to curl.
func TestNginxGuest(t *testing.T) {
	requireDebian(t, "curl")
	ftvm, _ := buildBinaries(t)
	s := bootService(t, ftvm, "nginx", "")
	url := "http://" + s.host + ":" + s.port + "/"
	var out string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		b, err := exec.Command("curl", "-sS", "-i", "--max-time", "20", url).CombinedOutput()
		out = string(b)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("curl %s: %v\n%s\nguest console:\n%s", url, err, out, tail(s.vm.output(), 30))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !strings.HasPrefix(out, "HTTP/1.1 200") || !strings.Contains(out, "Welcome to nginx") || !strings.Contains(out, "Server: nginx") {
		t.Fatalf("unexpected answer:\n%s", out)
	}
	for i := 0; i < 20; i++ {
		b, err := exec.Command("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", url).CombinedOutput()
		if err != nil || string(b) != "200" {
			t.Fatalf("request %d: %v %s", i, err, b)
		}
	}
	s.poweroff(t)
}
