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
	"ftvm/internal/testsupport"
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

#include "tohost.h"
`

// gdbELF assembles gdbProgram with debugging information.
func gdbELF(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "p.S")
	if err := os.WriteFile(src, []byte(gdbProgram), 0o644); err != nil {
		t.Fatal(err)
	}
	return testsupport.BareMetal(t, src, "-g")
}

func requireGDB(t *testing.T) string {
	t.Helper()
	gdb := testsupport.Tool(t, "gdb-multiarch", "gdb-multiarch")
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
	ftvm, _ := buildBinaries(t)
	elf := gdbELF(t)
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
		testsupport.Missing(t, "the default guest (scripts/build-guest.sh)")
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
	testsupport.Missing(t, "the default guest kernel's vmlinux in the build cache (scripts/build-guest.sh)")
	return ""
}

// TestGDBReplayDeterminism records a Linux boot, then replays it under GDB
// with a breakpoint on a kernel function (a virtual address, after the
// MMU is on), memory reads through the guest's page tables, single steps
// and continues: the replay must still end with the recording's digest.
func TestGDBReplayDeterminism(t *testing.T) {
	gdb := requireGDB(t)
	testsupport.GuestFiles(t)
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
		`\$2 = 1\b`,   // S-mode
		`<start_kernel>:\s+0x[0-9a-f]+\s+0x[0-9a-f]+`,
	)
	if status != 0 || grab(fout, "state digest ") != digest || !strings.Contains(fout, "matches the recording") {
		t.Errorf("replay under GDB (status %d) did not reproduce digest %s:\n%s", status, digest, fout)
	}
}

// stateLines extracts the "STATE ..." lines a GDB script printed.
func stateLines(out string) []string {
	return regexp.MustCompile(`(?m)^STATE .*$`).FindAllString(out, -1)
}

// TestGDBReverseELF records a bare-metal program, replays it under
// gdb-multiarch and goes backwards: reverse-stepi retraces the registers
// and instruction counts of the forward steps in reverse order,
// reverse-continue stops at the previous hits of a breakpoint and then at
// the start of the recording, and continuing to the end still matches
// the recording's final digest.
func TestGDBReverseELF(t *testing.T) {
	gdb := requireGDB(t)
	ftvm, _ := buildBinaries(t)
	elf, log := gdbELF(t), filepath.Join(t.TempDir(), "p.log")
	rout, err := exec.Command(ftvm, "record", "-o", log, elf).CombinedOutput()
	digest := grab(string(rout), "state digest ")
	if err != nil || digest == "" {
		t.Fatalf("record: %v\n%s", err, rout)
	}
	const show = "printf \"STATE pc=%#lx a0=%ld a1=%ld\\n\", $pc, $a0, $a1\nmonitor instret\n"
	steps := strings.Repeat("stepi\n"+show, 6)
	back := strings.Repeat("reverse-stepi\n"+show, 6)
	addr := freeAddr(t)
	gout, fout, status := runGDB(t, gdb, elf, addr, show+`
break here
continue
continue
continue
delete
`+show+steps+back+`
break here
reverse-continue
`+show+`
reverse-continue
`+show+`
reverse-continue
`+show+`
delete
continue
`, ftvm, "replay", "-gdb", addr, "-elf", elf, log)
	st := stateLines(gout)
	// monitor instret prints the count on the line after each STATE.
	lines := strings.Split(gout, "\n")
	var states []string
	for i, l := range lines {
		if strings.HasPrefix(l, "STATE ") && i+1 < len(lines) {
			states = append(states, l+" n="+strings.TrimSpace(lines[i+1]))
		}
	}
	if len(st) != 1+1+6+6+3 || len(states) != len(st) {
		t.Fatalf("got %d states, want 17:\n%s\nftvm:\n%s", len(st), gout, fout)
	}
	first := states[0]
	states = states[1:]
	fwd, rev := states[:7], states[7:13]
	for i := range rev {
		if rev[i] != fwd[5-i] {
			t.Errorf("reverse-stepi %d: %s, want %s (forward step %d)", i+1, rev[i], fwd[5-i], 5-i)
		}
	}
	if fwd[0] == fwd[1] {
		t.Errorf("stepi did not move: %s", fwd[0])
	}
	// At "here" after three hits a0 is 3; going back, the hits before have
	// a0 = 2 and 1, then the start of the recording.
	want(t, gout, `No more reverse-execution history`)
	for i, re := range []string{`^STATE pc=0x[0-9a-f]+ a0=2 a1=9 n=`, `^STATE pc=0x[0-9a-f]+ a0=1 a1=10 n=`, "^" + regexp.QuoteMeta(first) + "$"} {
		if !regexp.MustCompile(re).MatchString(states[13+i]) {
			t.Errorf("reverse-continue %d: %s, want %s", i+1, states[13+i], re)
		}
	}
	if !strings.Contains(fwd[0], "a0=3 a1=8") || !strings.HasSuffix(first, " n=0") {
		t.Errorf("states at the start %s and at the third hit %s", first, fwd[0])
	}
	if status != 0 || grab(fout, "state digest ") != digest || !strings.Contains(fout, "matches the recording") {
		t.Errorf("replay under GDB (status %d) did not end with the recording's digest %s:\n%s", status, digest, fout)
	}
}

// TestGDBReverseLinux replays a recorded Linux boot under gdb-multiarch:
// three hits of a breakpoint on a kernel function going forward, then
// reverse-continue must stop at the second and the first hit again (same
// instruction counts), reverse-stepi must retrace forward steps, and
// continuing to the end must still match the recording's digest.
func TestGDBReverseLinux(t *testing.T) {
	gdb := requireGDB(t)
	testsupport.GuestFiles(t)
	vmlinux := guestVmlinux(t)
	ftvm, _ := buildBinaries(t)
	log := filepath.Join(t.TempDir(), "boot.log")
	rout, err := runWithTimeout(exec.Command(ftvm, "record", "-o", log, "-append", "console=ttyS0 ftvm.mode=poweroff"), 5*time.Minute)
	digest := grab(rout, "state digest ")
	if err != nil || digest == "" {
		t.Fatalf("record: %v\n%s", err, rout)
	}
	const show = "printf \"STATE pc=%#lx ra=%#lx sp=%#lx a0=%#lx\\n\", $pc, $ra, $sp, $a0\nmonitor instret\n"
	addr := freeAddr(t)
	gout, fout, status := runGDB(t, gdb, vmlinux, addr, `
break start_kernel
continue
`+show+`
set $sk = $pc
delete
break do_one_initcall
continue
`+show+`
continue
`+show+`
continue
`+show+`
reverse-continue
`+show+`
reverse-continue
`+show+`
delete
`+strings.Repeat("stepi\n"+show, 3)+strings.Repeat("reverse-stepi\n"+show, 3)+`
break *$sk
reverse-continue
`+show+`
delete
continue
`, ftvm, "replay", "-q", "-gdb", addr, "-checkpoint-every", "1000000", log)
	lines := strings.Split(gout, "\n")
	var s []string
	for i, l := range lines {
		if strings.HasPrefix(l, "STATE ") && i+1 < len(lines) {
			s = append(s, l+" n="+strings.TrimSpace(lines[i+1]))
		}
	}
	if len(s) != 13 {
		t.Fatalf("got %d states, want 13:\n%s\nftvm:\n%s", len(s), gout, fout)
	}
	t.Logf("states:\n%s", strings.Join(s, "\n"))
	// s[0] is start_kernel; the last state is reverse-continue back to it
	// from the do_one_initcall hits, across many checkpoint intervals (the
	// breakpoint is set again at the same address: GDB's prologue analysis
	// can place "break start_kernel" elsewhere once the kernel's memory is
	// mapped).
	if s[12] != s[0] {
		t.Errorf("reverse-continue to start_kernel stopped at %s, want %s", s[12], s[0])
	}
	s = s[1:12]
	if s[0] == s[1] || s[1] == s[2] {
		t.Errorf("the breakpoint hits are not distinct: %q", s[:3])
	}
	if s[3] != s[1] || s[4] != s[0] {
		t.Errorf("reverse-continue stopped at\n %s\n %s\nwant the earlier hits\n %s\n %s", s[3], s[4], s[1], s[0])
	}
	// s[4] is the first hit; s[5..7] three steps from it, s[8..10] back.
	for i, j := range []int{6, 5, 4} {
		if s[8+i] != s[j] {
			t.Errorf("reverse-stepi %d: %s, want %s", i+1, s[8+i], s[j])
		}
	}
	if status != 0 || grab(fout, "state digest ") != digest || !strings.Contains(fout, "matches the recording") {
		t.Errorf("replay under GDB (status %d) did not end with the recording's digest %s:\n%s", status, digest, fout)
	}
}

// gdbSMPProgram runs on two harts: hart 0 counts a1 to 100000 while hart 1
// counts a1 to 5 through "hart1_here", sets done and sleeps; hart 0 then
// exits. a0 holds each hart's id.
const gdbSMPProgram = `
	.section .text.init
	.globl _start
_start:
	csrr a0, mhartid
	li   a1, 0
	bnez a0, hart1
	li   t0, 100000
1:	addi a1, a1, 1
	blt  a1, t0, 1b
	la   t2, done
2:	lw   t3, 0(t2)
	beqz t3, 2b
	li   t1, 1
	la   t2, tohost
	sd   t1, 0(t2)
3:	j 3b
hart1:
	li   t0, 5
4:	addi a1, a1, 1
	.globl hart1_here
hart1_here:
	blt  a1, t0, 4b
	la   t2, done
	li   t3, 1
	sw   t3, 0(t2)
5:	wfi
	j 5b

	.data
done:	.word 0

	.section .tohost, "aw", @progbits
	.align 6
	.globl tohost
tohost:	.dword 0
	.align 6
	.globl fromhost
fromhost: .dword 0
`

// TestGDBThreads replays a recorded two-hart program under gdb-multiarch:
// GDB sees a thread per hart, a breakpoint only hart 1 reaches stops with
// its thread selected, each thread shows its own registers, going back
// (reverse-continue) finds hart 1's earlier hit, and the replay still ends
// with the recording's digest.
func TestGDBThreads(t *testing.T) {
	gdb := requireGDB(t)
	gcc := testsupport.Tool(t, "riscv64-linux-gnu-gcc", "gcc-riscv64-linux-gnu")
	ftvm, _ := buildBinaries(t)
	dir := t.TempDir()
	src, elf, log := filepath.Join(dir, "p.S"), filepath.Join(dir, "p.elf"), filepath.Join(dir, "p.log")
	os.WriteFile(src, []byte(gdbSMPProgram), 0o644)
	if b, err := exec.Command(gcc, "-g", "-march=rv64gc", "-mabi=lp64d", "-nostdlib", "-static",
		"-T", "../../machine/testdata/link.ld", "-o", elf, src).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	rout, err := exec.Command(ftvm, "record", "-smp", "2", "-o", log, elf).CombinedOutput()
	digest := grab(string(rout), "state digest ")
	if err != nil || digest == "" {
		t.Fatalf("record: %v\n%s", err, rout)
	}
	addr := freeAddr(t)
	gout, fout, status := runGDB(t, gdb, elf, addr, `
info threads
break hart1_here
continue
continue
printf "HIT hart=%ld a1=%ld\n", $a0, $a1
info threads
thread 1
printf "OTHER hart=%ld\n", $a0
reverse-continue
printf "BACK hart=%ld a1=%ld\n", $a0, $a1
delete
continue
`, ftvm, "replay", "-gdb", addr, "-elf", elf, log)
	want(t, gout,
		`(?s)1\s+Thread 1 \(hart 0\).*2\s+Thread 2 \(hart 1\)`,
		`(?m)^HIT hart=1 a1=2$`,
		`\*\s*2\s+Thread 2 \(hart 1\)`, // stopped in hart 1's thread
		`(?m)^OTHER hart=0$`,
		`(?m)^BACK hart=1 a1=1$`,
	)
	if status != 0 || grab(fout, "state digest ") != digest || !strings.Contains(fout, "matches the recording") {
		t.Errorf("replay under GDB (status %d) did not end with the recording's digest %s:\n%s", status, digest, fout)
	}
}

// TestGDBLockup: a program whose trap vector faults, under GDB. The
// lockup stops it with SIGSEGV, where GDB can still read its registers
// (it used to be reported as a normal exit, leaving nothing to look at);
// continuing ends it, terminated by SIGSEGV, and ftvm exits non-zero with
// the lockup's message, as without GDB.
func TestGDBLockup(t *testing.T) {
	gdb := requireGDB(t)
	ftvm, _ := buildBinaries(t)
	elf := crossCompile(t, "lockup.S")
	addr := freeAddr(t)
	gout, fout, status := runGDB(t, gdb, elf, addr, `
continue
printf "STUCK pc=%#lx mcause=%ld\n", $pc, $mcause
continue
`, ftvm, "run", "-gdb", addr, elf)
	for _, want := range []string{"received signal SIGSEGV", "STUCK pc=", "terminated with signal SIGSEGV"} {
		if !strings.Contains(gout, want) {
			t.Errorf("GDB's output lacks %q:\n%s", want, gout)
		}
	}
	if status == 0 || !strings.Contains(fout, "the guest locked up") {
		t.Errorf("ftvm exited with %d; output:\n%s", status, fout)
	}
	t.Logf("%s", grab(gout, "STUCK "))
}
