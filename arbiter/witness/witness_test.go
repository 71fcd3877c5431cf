package witness_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftvm/arbiter/witness"
	"ftvm/internal/testsupport"
)

func TestMain(m *testing.M) { testsupport.Main(m) }

func start(t *testing.T, cfg witness.Config) (*witness.Process, error) {
	t.Helper()
	cfg.Binary = testsupport.Witness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := witness.Start(ctx, cfg)
	if err == nil {
		t.Cleanup(func() { p.Kill() })
	}
	return p, err
}

// run runs the binary to completion and returns its exit code and output.
func run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(testsupport.Witness(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("ftvm-witness %q did not exit: %s", args, out.String())
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

func TestServesAndStops(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			data := t.TempDir()
			p, err := start(t, witness.Config{Data: data, Name: "w1"})
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != "w1" || !strings.HasPrefix(p.ClientURL, "http://127.0.0.1:") || !strings.HasPrefix(p.PeerURL, "http://127.0.0.1:") {
				t.Fatalf("ready line gave name %q client %q peer %q", p.Name, p.ClientURL, p.PeerURL)
			}
			// etcd's health endpoint answers on the client URL.
			c, err := net.Dial("tcp", strings.TrimPrefix(p.ClientURL, "http://"))
			if err != nil {
				t.Fatalf("client URL does not accept connections: %v", err)
			}
			fmt.Fprintf(c, "GET /health HTTP/1.0\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			var resp bytes.Buffer
			resp.ReadFrom(c)
			c.Close()
			if !strings.Contains(resp.String(), `"health":"true"`) {
				t.Errorf("GET /health: %q", resp.String())
			}
			if err := syscall.Kill(p.Pid(), sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.Done():
			case <-time.After(15 * time.Second):
				t.Fatalf("still running 15 s after %v", sig)
			}
			if err := p.Stop(); err != nil { // already exited: reports how
				t.Errorf("exit after %v: %v; stderr: %s", sig, err, p.Stderr())
			}
			if s := p.Stderr(); s != "" {
				t.Errorf("stderr is not quiet: %s", s)
			}
			if _, err := os.Stat(filepath.Join(data, "witness.log")); err != nil {
				t.Errorf("etcd's log is not in the data directory: %v", err)
			}
		})
	}
}

func TestBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().String()
	for _, flag := range []string{"-listen", "-peer"} {
		code, out := run(t, "-data", t.TempDir(), flag, busy)
		want := fmt.Sprintf("%s %s: address already in use", flag, busy)
		if code == 0 || !strings.Contains(out, want) {
			t.Errorf("%s on a busy port: exit %d, output %q; want an error with %q", flag, code, out, want)
		}
	}
}

func TestBadDataDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o600)
	foreign := t.TempDir()
	os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("mine"), 0o600)
	memberFile := t.TempDir()
	os.WriteFile(filepath.Join(memberFile, "member"), nil, 0o600)
	for _, c := range []struct{ dir, want string }{
		{file, "not a directory"},
		{foreign, `not a witness data directory (it holds "notes.txt"`},
		{memberFile, "member is not a directory"},
		{"", "-data DIR is required"},
	} {
		code, out := run(t, "-data", c.dir, "-listen", "127.0.0.1:0", "-peer", "127.0.0.1:0")
		if code == 0 || !strings.Contains(out, c.want) {
			t.Errorf("-data %q: exit %d, output %q; want an error with %q", c.dir, code, out, c.want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(foreign, "notes.txt")); string(b) != "mine" {
		t.Errorf("the foreign directory was changed")
	}
	if ents, _ := os.ReadDir(foreign); len(ents) != 1 {
		t.Errorf("the witness wrote into a foreign directory: %v", ents)
	}
}

// A damaged data directory must stop the witness with a message on stderr
// (not only in its log file) and without a goroutine dump.
func TestDamagedDataDir(t *testing.T) {
	for _, c := range []struct {
		name, glob string
		damage     func([]byte)
		want       string
	}{
		{"WAL garbage", "member/wal/*.wal", func(b []byte) { fill(b[:4096], 0xa5) }, "damaged"},
		{"WAL flipped", "member/wal/*.wal", func(b []byte) { flip(b[100:400]) }, "crc mismatch"},
		{"database", "member/snap/db", func(b []byte) { flip(b[:8192]) }, "failed to open database"},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := t.TempDir()
			p, err := start(t, witness.Config{Data: data})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Stop(); err != nil {
				t.Fatal(err)
			}
			files, _ := filepath.Glob(filepath.Join(data, c.glob))
			if len(files) == 0 {
				t.Fatalf("no %s in the data directory", c.glob)
			}
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				c.damage(b)
				if err := os.WriteFile(f, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			code, out := run(t, "-data", data, "-listen", "127.0.0.1:0", "-peer", "127.0.0.1:0")
			if code == 0 || strings.Contains(out, witness.ReadyPrefix) || !strings.Contains(out, c.want) || strings.Contains(out, "goroutine") {
				t.Errorf("exit %d, output %q; want a failure with %q and no goroutine dump", code, out, c.want)
			}
		})
	}
}

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

func flip(b []byte) {
	for i := range b {
		b[i] ^= 0xff
	}
}

func TestBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-listen", "0.0.0.0:2379"}, "give one the replicas can reach"},
		{[]string{"-listen", "example.com:2379"}, "the host must be an IP address"},
		{[]string{"-listen", "https://127.0.0.1:2379"}, "https needs -cert, -key and -ca"},
		{[]string{"-peer", "127.0.0.1"}, "missing port"},
		{[]string{"-initial-cluster", "a=http://127.0.0.1:1,b=http://127.0.0.1:2", "-listen", "127.0.0.1:0"}, "port 0 is only for a single member"},
		{[]string{"-log-level", "loud"}, "-log-level"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		code, out := run(t, append([]string{"-data", t.TempDir()}, c.args...)...)
		if code == 0 || !strings.Contains(out, c.want) {
			t.Errorf("%q: exit %d, output %q; want an error with %q", c.args, code, out, c.want)
		}
	}
}
