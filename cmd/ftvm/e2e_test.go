package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ftvm/internal/testsupport"
)

func TestMain(m *testing.M) { testsupport.Main(m) }

// buildBinaries returns ftvm and the workload tool (for the host side),
// built once per test binary, with ftvm-witness next to ftvm, where ftvm
// demo and bench look for it.
func buildBinaries(t *testing.T) (ftvm, workload string) {
	t.Helper()
	testsupport.Witness(t)
	return testsupport.Build(t, "ftvm/cmd/ftvm"), testsupport.Build(t, "ftvm/guest/cmd/workload")
}

// netns creates a private network namespace with a TAP device for the guest
// (the host side is 10.0.2.2/24) and removes it when the test ends. No
// traffic leaves it.
func netns(t *testing.T) string {
	t.Helper()
	testsupport.Root(t, "network namespaces")
	testsupport.Tool(t, "ip", "iproute2")
	ns := fmt.Sprintf("ftvm-e2e-%d", os.Getpid())
	run := func(args ...string) {
		if b, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, b)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run("-n", ns, "tuntap", "add", "dev", "tap0", "mode", "tap")
	run("-n", ns, "addr", "add", "10.0.2.2/24", "dev", "tap0")
	run("-n", ns, "link", "set", "tap0", "up")
	run("-n", ns, "link", "set", "lo", "up")
	return ns
}

// console is a running `ftvm run` with its console on pipes.
type console struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	out   strings.Builder
	lines chan string
	done  chan struct{}
}

func startVM(t *testing.T, argv ...string) *console {
	t.Helper()
	c := &console{cmd: exec.Command(argv[0], argv[1:]...), lines: make(chan string, 1024), done: make(chan struct{})}
	c.stdin, _ = c.cmd.StdinPipe()
	pr, pw := io.Pipe()
	c.cmd.Stdout, c.cmd.Stderr = pw, pw
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			c.mu.Lock()
			c.out.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
			select {
			case c.lines <- sc.Text():
			default:
			}
		}
	}()
	// done closes once the output is all read, so a test that sees the
	// process gone also sees everything it printed.
	go func() { c.cmd.Wait(); pw.Close(); <-read; close(c.done) }()
	t.Cleanup(func() { c.cmd.Process.Kill(); <-c.done })
	return c
}

func (c *console) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// waitFor waits for a console line containing s.
func (c *console) waitFor(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l := <-c.lines:
			if strings.Contains(l, s) {
				return
			}
		case <-deadline:
			t.Fatalf("no %q on the console within %v; output:\n%s", s, timeout, c.output())
		case <-c.done:
			t.Fatalf("ftvm exited (%v) before printing %q; output:\n%s", c.cmd.ProcessState, s, c.output())
		}
	}
}

func (c *console) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		t.Fatalf("ftvm did not exit within %v; output:\n%s", timeout, c.output())
	}
}

// TestServeOverTAP boots the default guest with a disk and a TAP NIC, drives
// its key-value server from the host side of the TAP, powers it off from the
// console, boots it again on the same disk and checks the data survived.
func TestServeOverTAP(t *testing.T) {
	testsupport.GuestFiles(t)
	ns := netns(t)
	ftvm, workload := buildBinaries(t)
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	inNS := func(args ...string) []string { return append([]string{"ip", "netns", "exec", ns}, args...) }
	kv := func(args ...string) string {
		t.Helper()
		argv := inNS(append([]string{workload}, args...)...)
		b, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("workload %v: %v\n%s", args, err, b)
		}
		return string(b)
	}

	vm := startVM(t, inNS(ftvm, "run", "-net", "tap:tap0", "-disk", disk)...)
	vm.waitFor(t, "listening on", 60*time.Second)
	t.Log(strings.TrimSpace(kv("kv", "-addr", "10.0.2.15:6379", "-n", "50")))
	fmt.Fprintln(vm.stdin, "echo hello-from-the-host")
	vm.waitFor(t, "= hello-from-the-host", 30*time.Second)
	fmt.Fprintln(vm.stdin, "poweroff")
	vm.wait(t, 60*time.Second)
	if out := vm.output(); !strings.Contains(out, "ftvm: poweroff after") || !strings.Contains(out, "state digest") {
		t.Fatalf("no exit summary; output:\n%s", out)
	}

	// Second boot on the same disk: the server replays its log.
	vm = startVM(t, inNS(ftvm, "run", "-net", "tap:tap0", "-disk", disk)...)
	vm.waitFor(t, "listening on", 60*time.Second)
	if !strings.Contains(vm.output(), "50 records replayed") {
		t.Errorf("the second boot did not replay the 50 writes; output:\n%s", vm.output())
	}
	fmt.Fprintln(vm.stdin, "poweroff")
	vm.wait(t, 60*time.Second)
}

// TestRunELF runs a bare-metal program through the command line: the exit
// status follows the program's HTIF report.
func TestRunELF(t *testing.T) {
	ftvm, _ := buildBinaries(t)
	for _, code := range []int{0, 3} {
		elf := crossCompile(t, "htif.S", fmt.Sprintf("EXIT_CODE=%d", code))
		out, err := exec.Command(ftvm, "run", elf).CombinedOutput()
		got := 0
		if e, ok := err.(*exec.ExitError); ok {
			got = e.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		want := 0
		if code != 0 {
			want = 1
		}
		if got != want || !strings.Contains(string(out), "hello from htif") {
			t.Errorf("program exiting %d: ftvm exit status %d (want %d), output:\n%s", code, got, want, out)
		}
	}
}

// TestRecordReplayCommands records a console session with a disk through
// the command line, replays it from a copy of the starting disk, and checks
// the replay reproduces the console and the state digest; a replay from
// the wrong disk is refused, naming the disk.
func TestRecordReplayCommands(t *testing.T) {
	testsupport.GuestFiles(t)
	ftvm, _ := buildBinaries(t)
	dir := t.TempDir()
	orig, disk, log := filepath.Join(dir, "orig.img"), filepath.Join(dir, "disk.img"), filepath.Join(dir, "run.log")
	os.WriteFile(orig, make([]byte, 4<<20), 0o644)
	os.WriteFile(disk, make([]byte, 4<<20), 0o644)

	vm := startVM(t, ftvm, "record", "-o", log, "-disk", disk, "-digest-every", "10000000")
	vm.waitFor(t, "console ready", 60*time.Second)
	fmt.Fprintln(vm.stdin, "echo recorded-line")
	vm.waitFor(t, "= recorded-line", 30*time.Second)
	fmt.Fprintln(vm.stdin, "poweroff")
	vm.wait(t, 60*time.Second)
	recOut := vm.output()
	digest := grab(recOut, "state digest ")
	if digest == "" {
		t.Fatalf("no digest in the recording's output:\n%s", recOut)
	}

	out, err := exec.Command(ftvm, "replay", "-disk", orig, log).CombinedOutput()
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "= recorded-line") || grab(string(out), "state digest ") != digest ||
		!strings.Contains(string(out), "matches the recording") {
		t.Fatalf("replay did not reproduce the run (want digest %s):\n%s", digest, out)
	}

	// A disk other than the one the recording started from is refused.
	os.WriteFile(disk, append([]byte("changed"), make([]byte, 4<<20-7)...), 0o644)
	out, err = exec.Command(ftvm, "replay", "-disk", disk, log).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "disk") {
		t.Fatalf("replay from the modified disk: err %v, output:\n%s", err, out)
	}
}

// grab returns the word after prefix in s.
func grab(s, prefix string) string {
	i := strings.Index(s, prefix)
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+len(prefix):])
	if len(f) == 0 {
		return ""
	}
	return strings.TrimSuffix(f[0], ":")
}

// TestSnapshotAcrossProcesses saves a snapshot from one ftvm process and
// continues it in another: both must end with the same instruction count
// and state digest as the uninterrupted run.
func TestSnapshotAcrossProcesses(t *testing.T) {
	testsupport.GuestFiles(t)
	ftvm, _ := buildBinaries(t)
	snap := filepath.Join(t.TempDir(), "s.snap")
	args := []string{"run", "-append", "console=ttyS0 ftvm.mode=poweroff"}
	run := func(extra ...string) string {
		out, err := exec.Command(ftvm, append(append([]string{}, args...), extra...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ftvm %v: %v\n%s", extra, err, out)
		}
		return string(out)
	}
	whole := run()
	first := run("-snapshot-at", "20000000", "-snapshot", snap)
	out, err := exec.Command(ftvm, "run", "-restore", snap).CombinedOutput()
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	second := string(out)
	for _, s := range []string{first, second} {
		if grab(s, "state digest ") != grab(whole, "state digest ") || grab(s, "poweroff after ") != grab(whole, "poweroff after ") {
			t.Fatalf("runs differ:\n--- whole\n%s\n--- with snapshot\n%s\n--- restored\n%s", whole, first, second)
		}
	}
	if !strings.Contains(second, "ftvm-init: started") {
		t.Errorf("the restored run did not reach init:\n%s", second)
	}
}

// TestRecordFromSnapshot records a console session that starts from a
// snapshot and replays it from the same snapshot.
func TestRecordFromSnapshot(t *testing.T) {
	testsupport.GuestFiles(t)
	ftvm, _ := buildBinaries(t)
	dir := t.TempDir()
	snap, log := filepath.Join(dir, "s.snap"), filepath.Join(dir, "run.log")
	if out, err := exec.Command(ftvm, "run", "-snapshot-at", "30000000", "-snapshot", snap, "-max-instructions", "30000000").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	vm := startVM(t, ftvm, "record", "-restore", snap, "-o", log)
	vm.waitFor(t, "console ready", 60*time.Second)
	fmt.Fprintln(vm.stdin, "echo after-restore")
	vm.waitFor(t, "= after-restore", 30*time.Second)
	fmt.Fprintln(vm.stdin, "poweroff")
	vm.wait(t, 60*time.Second)
	digest := grab(vm.output(), "state digest ")
	out, err := exec.Command(ftvm, "replay", "-restore", snap, log).CombinedOutput()
	if err != nil || grab(string(out), "state digest ") != digest || !strings.Contains(string(out), "= after-restore") {
		t.Fatalf("replay from the snapshot: %v (want digest %s)\n%s", err, digest, out)
	}
}
