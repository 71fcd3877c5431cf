package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"ftvm/host"
)

// gdbProgram counts a0 up and a1 down ten times, then exits (HTIF) with
// status a0-10: 0 unless a debugger changed a0.
const gdbProgram = `
	.section .text.init
	.globl _start
_start:
	li   a0, 0
	li   a1, 10
loop:
	addi a0, a0, 1
	.globl here
here:
	addi a1, a1, -1
	bnez a1, loop
	addi a0, a0, -10
	slli t1, a0, 1
	ori  t1, t1, 1
	la   t2, tohost
	sd   t1, 0(t2)
1:	j 1b

	.data
	.globl value
value:	.dword 0x1122334455667788

	.section .tohost, "aw", @progbits
	.align 6
	.globl tohost
tohost:	.dword 0
	.align 6
	.globl fromhost
fromhost: .dword 0
`

func requireGDB(t *testing.T) string {
	t.Helper()
	gdb, err := exec.LookPath("gdb-multiarch")
	if err != nil {
		require(t, "gdb-multiarch (apt-get install gdb-multiarch)")
	}
	return gdb
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// syncBuffer is an output buffer ftvm writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runGDB starts ftvm (argv, which waits for GDB on addr), runs
// gdb-multiarch in batch mode with script against it, waits for ftvm to
// end, and returns both outputs and ftvm's exit status.
func runGDB(t *testing.T, gdb, symbols, addr, script string, argv ...string) (gdbOut, ftvmOut string, status int) {
	t.Helper()
	var out syncBuffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
	}()
	for i := 0; !strings.Contains(out.String(), "waiting for GDB"); i++ {
		if i > 200 {
			t.Fatalf("ftvm never waited for GDB:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	sf := filepath.Join(t.TempDir(), "cmds.gdb")
	full := "set pagination off\nset confirm off\ntarget remote " + addr + "\n" + script
	if err := os.WriteFile(sf, []byte(full), 0o644); err != nil {
		t.Fatal(err)
	}
	g := exec.Command(gdb, "--batch", "-nx", "-x", sf, symbols)
	g.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user gdbinit
	gout, err := runWithTimeout(g, 5*time.Minute)
	if err != nil {
		t.Fatalf("gdb: %v\n%s\nftvm:\n%s", err, gout, out.String())
	}
	select {
	case err := <-done:
		done <- err
		if e, ok := err.(*exec.ExitError); ok {
			status = e.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("ftvm did not end after GDB left:\n%s", out.String())
	}
	return gout, out.String(), status
}

func runWithTimeout(c *exec.Cmd, d time.Duration) (string, error) {
	var b syncBuffer
	c.Stdout, c.Stderr = &b, &b
	if err := c.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		return b.String(), err
	case <-time.After(d):
		c.Process.Kill()
		<-done
		return b.String(), fmt.Errorf("timed out after %v", d)
	}
}

// want checks that out matches every regular expression.
func want(t *testing.T, out string, res ...string) {
	t.Helper()
	for _, re := range res {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("GDB output does not match %q", re)
		}
	}
	if t.Failed() {
		t.Logf("GDB output:\n%s", out)
	}
}

// TestGDBRunELF debugs a bare-metal program under ftvm run with the real
// gdb-multiarch: breakpoint on a symbol, continue twice, registers,
// memory, stepi, a register write that changes the program's result, a
// monitor command, and the exit reported to GDB.
func TestGDBRunELF(t *testing.T) {
	gdb := requireGDB(t)
	gcc, err := exec.LookPath("riscv64-linux-gnu-gcc")
	if err != nil {
		require(t, "riscv64-linux-gnu-gcc")
	}
	ftvm, _ := buildBinaries(t)
	dir := t.TempDir()
	src, elf := filepath.Join(dir, "p.S"), filepath.Join(dir, "p.elf")
	os.WriteFile(src, []byte(gdbProgram), 0o644)
	if b, err := exec.Command(gcc, "-g", "-march=rv64gc", "-mabi=lp64d", "-nostdlib", "-static",
		"-T", "../../machine/testdata/link.ld", "-o", elf, src).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	addr := freeAddr(t)
	gout, fout, status := runGDB(t, gdb, elf, addr, `
monitor instret
break here
continue
p $a0
continue
p $a0
x/2xw &value
p/x $pc
stepi
p/x $pc
p $priv
info registers a1
delete
set var $a0 = 100
continue
`, ftvm, "run", "-gdb", addr, elf)
	want(t, gout,
		`(?m)^0$`, // monitor instret before anything ran
		`Breakpoint 1, here \(\)`,
		`\$1 = 1\b`, `\$2 = 2\b`,
		`0x55667788\s+0x11223344`,
		`\$5 = 3\b`, // M-mode
		`a1\s+0x8\s+8`,
		`exited with code 0142`, // (100+8)-10 = 98, in octal
	)
	// stepi moved the pc by one (compressed) instruction.
	var pc0, pc1 uint64
	if m := regexp.MustCompile(`\$3 = 0x([0-9a-f]+)\s+.*\n(?:.*\n)?\$4 = 0x([0-9a-f]+)`).FindStringSubmatch(gout); m == nil {
		t.Errorf("no pc before and after stepi in:\n%s", gout)
	} else if fmt.Sscanf(m[1]+" "+m[2], "%x %x", &pc0, &pc1); pc1 != pc0+2 {
		t.Errorf("stepi moved pc from %#x to %#x, want +2 (c.addi)", pc0, pc1)
	}
	if status != 1 || !strings.Contains(fout, "program failed with exit code 98") {
		t.Errorf("ftvm exit status %d, output:\n%s", status, fout)
	}
}

// guestVmlinux finds the vmlinux (symbols) of the default guest's kernel in
// the build cache.
func guestVmlinux(t *testing.T) string {
	t.Helper()
	img, err := os.ReadFile(filepath.Join(host.GuestDir(), "Image"))
	if err != nil {
		require(t, "the default guest")
	}
	sum := sha256.Sum256(img)
	dirs, _ := filepath.Glob(filepath.Join(filepath.Dir(host.GuestDir()), "kernel-*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "Image"))
		if err == nil && sha256.Sum256(b) == sum {
			if _, err := os.Stat(filepath.Join(d, "vmlinux")); err == nil {
				return filepath.Join(d, "vmlinux")
			}
		}
	}
	require(t, "the default guest kernel's vmlinux in the build cache")
	return ""
}

// TestGDBReplayDeterminism records a Linux boot, then replays it under GDB
// with a breakpoint on a kernel function (a virtual address, after the
// MMU is on), memory reads through the guest's page tables, single steps
// and continues: the replay must still end with the recording's digest.
func TestGDBReplayDeterminism(t *testing.T) {
	gdb := requireGDB(t)
	requireGuest(t)
	vmlinux := guestVmlinux(t)
	ftvm, _ := buildBinaries(t)
	log := filepath.Join(t.TempDir(), "boot.log")
	rec := exec.Command(ftvm, "record", "-o", log, "-append", "console=ttyS0 ftvm.mode=poweroff")
	rout, err := runWithTimeout(rec, 5*time.Minute)
	if err != nil {
		t.Fatalf("record: %v\n%s", err, rout)
	}
	digest := grab(rout, "state digest ")
	if digest == "" {
		t.Fatalf("no digest in the recording's output:\n%s", rout)
	}
	addr := freeAddr(t)
	gout, fout, status := runGDB(t, gdb, vmlinux, addr, `
stepi
stepi
monitor instret
break start_kernel
continue
p/x $pc == start_kernel
p $priv
x/2xw start_kernel
stepi 5
monitor instret
delete
continue
`, ftvm, "replay", "-q", "-gdb", addr, log)
	want(t, gout,
		`(?m)^2$`,
		`Breakpoint 1, .*start_kernel`,
		`\$1 = 0x1\b`, // at start_kernel
		`\$2 = 1\b`, // S-mode
		`<start_kernel>:\s+0x[0-9a-f]+\s+0x[0-9a-f]+`,
	)
	if status != 0 || grab(fout, "state digest ") != digest || !strings.Contains(fout, "matches the recording") {
		t.Errorf("replay under GDB (status %d) did not reproduce digest %s:\n%s", status, digest, fout)
	}
}
