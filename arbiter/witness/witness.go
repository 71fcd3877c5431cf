// Package witness starts and stops ftvm-witness processes (cmd/ftvm-witness,
// the etcd server the replicas arbitrate on). It knows the command's flags
// and its ready line, and nothing of etcd: linking it costs nothing, so
// ftvm's demo and the tests of any package can run a real witness.
package witness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ReadyPrefix starts the line ftvm-witness prints on stdout once it serves;
// fields name=, client= and peer= follow.
const ReadyPrefix = "ftvm-witness: ready"

// Config describes one witness process. Listen and Peer default to
// 127.0.0.1:0 (free ports, which only a single-member cluster can use).
type Config struct {
	Binary         string // path of ftvm-witness ("" = Find())
	Data           string // data directory (required)
	Name           string // member name ("" = the command's default)
	Listen         string // client address, host:port
	Peer           string // peer address, host:port
	InitialCluster string // name=peer-url,... for a multi-member cluster
	LogFile        string // etcd's own log ("" = into Stderr)
	LogLevel       string // etcd's log level ("" = the command's default, warn)
	// CertFile, KeyFile and CAFile, all or none, make the witness serve
	// https to clients and peers holding a certificate signed by CAFile.
	CertFile, KeyFile, CAFile string
	// Prefix, if set, is a command the witness runs under, such as
	// {"ip", "netns", "exec", "NS"} to run it in a network namespace; it
	// must exec the witness (so that Kill reaches it).
	Prefix []string
	// Stderr receives the process's stderr as well; the last few kilobytes
	// are also kept for the errors Start and Wait report.
	Stderr io.Writer
}

// Process is a running witness.
type Process struct {
	cfg    Config
	cmd    *exec.Cmd
	stderr *tail

	// Name, ClientURL and PeerURL are what the ready line announced.
	Name      string
	ClientURL string
	PeerURL   string

	done    chan struct{} // closed when the process has exited
	waitErr error
}

// Find returns the ftvm-witness binary: the one next to the running
// executable (bin/ftvm beside bin/ftvm-witness), else the one on $PATH.
func Find() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "ftvm-witness")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("ftvm-witness")
	if err != nil {
		return "", errors.New("ftvm-witness not found next to this executable nor on $PATH (make build puts it in bin/)")
	}
	return p, nil
}

// Start runs a witness and waits until it serves or ctx ends. A member of a
// multi-member cluster serves only once a quorum of its cluster runs, so
// start the members of a new cluster concurrently. ctx bounds the wait
// only: the process keeps running until Stop or Kill.
func Start(ctx context.Context, cfg Config) (*Process, error) {
	if cfg.Data == "" {
		return nil, errors.New("witness: Config.Data is required")
	}
	bin := cfg.Binary
	if bin == "" {
		var err error
		if bin, err = Find(); err != nil {
			return nil, err
		}
	}
	args := []string{"-data", cfg.Data, "-listen", or(cfg.Listen, "127.0.0.1:0"), "-peer", or(cfg.Peer, "127.0.0.1:0")}
	if cfg.Name != "" {
		args = append(args, "-name", cfg.Name)
	}
	if cfg.InitialCluster != "" {
		args = append(args, "-initial-cluster", cfg.InitialCluster)
	}
	if cfg.LogFile != "" {
		args = append(args, "-log", cfg.LogFile)
	}
	if cfg.LogLevel != "" {
		args = append(args, "-log-level", cfg.LogLevel)
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" || cfg.CAFile != "" {
		args = append(args, "-cert", cfg.CertFile, "-key", cfg.KeyFile, "-ca", cfg.CAFile)
	}
	p := &Process{cfg: cfg, stderr: &tail{max: 8 << 10}, done: make(chan struct{})}
	argv := append(append(append([]string(nil), cfg.Prefix...), bin), args...)
	p.cmd = exec.Command(argv[0], argv[1:]...)
	if cfg.Stderr != nil {
		p.cmd.Stderr = io.MultiWriter(p.stderr, cfg.Stderr)
	} else {
		p.cmd.Stderr = p.stderr
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("witness: starting %s: %w", bin, err)
	}

	ready := make(chan string, 1)
	go func() {
		// Keep reading after the ready line so the witness never blocks
		// writing to a full pipe.
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, ReadyPrefix) {
				select {
				case ready <- line:
				default:
				}
			}
		}
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()

	select {
	case line := <-ready:
		for _, f := range strings.Fields(strings.TrimPrefix(line, ReadyPrefix)) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "name":
				p.Name = v
			case "client":
				p.ClientURL = v
			case "peer":
				p.PeerURL = v
			}
		}
		if p.ClientURL == "" {
			p.Kill()
			return nil, fmt.Errorf("witness: ready line %q names no client URL", line)
		}
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("witness: exited before serving (%v): %s", p.waitErr, p.stderr.String())
	case <-ctx.Done():
		p.Kill()
		return nil, fmt.Errorf("witness: not serving after waiting (%w): %s", ctx.Err(), p.stderr.String())
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Config returns the configuration p was started with, with the addresses
// it announced (ports picked for port 0 included): starting it again
// restarts the witness on the same data directory and addresses.
func (p *Process) Config() Config {
	cfg := p.cfg
	cfg.Listen = hostPort(p.ClientURL)
	if p.PeerURL != "" {
		cfg.Peer = hostPort(p.PeerURL)
	}
	return cfg
}

func hostPort(u string) string {
	if _, rest, ok := strings.Cut(u, "://"); ok {
		return rest
	}
	return u
}

// Stop asks the witness to shut down (SIGTERM) and waits for it; after 10 s
// it is killed.
func (p *Process) Stop() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
		return p.waitErr
	case <-time.After(10 * time.Second):
		p.Kill()
		return fmt.Errorf("witness: did not stop within 10 s of SIGTERM; killed: %s", p.stderr.String())
	}
}

// Kill kills the witness with SIGKILL, as a crash would, and waits for it.
func (p *Process) Kill() error {
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-p.done
	return nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Stderr returns the last few kilobytes the witness wrote to stderr.
func (p *Process) Stderr() string { return p.stderr.String() }

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.buf))
}
