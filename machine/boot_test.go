package machine

import (
	"bytes"
	"strings"
	"testing"

	"ftvm/internal/testsupport"
	"ftvm/vm"
)

type bootResult struct {
	reason  vm.StopReason
	instret uint64
	digest  [32]byte
	console string
}

// boot runs the default guest with cmdline until it stops or maxInsns,
// calling Run in steps of step instructions.
func boot(t *testing.T, cmdline string, step, maxInsns uint64) bootResult {
	t.Helper()
	k, i := testsupport.DefaultGuest(t)
	var console bytes.Buffer
	m, err := New(Config{Kernel: k, Initrd: i, Cmdline: cmdline,
		Outputs: Outputs{Console: func(_ uint64, b []byte) { console.Write(b) }}})
	if err != nil {
		t.Fatal(err)
	}
	r := StopLimit
	for m.Instret() < maxInsns {
		r = m.Run(min(m.Instret()+step, maxInsns))
		if r != StopLimit {
			break
		}
	}
	return bootResult{r, m.Instret(), m.Digest().Sum, console.String()}
}

const poweroffCmdline = "console=ttyS0 earlycon=sbi ftvm.mode=poweroff"

func TestBootToInit(t *testing.T) {
	res := boot(t, poweroffCmdline, 1<<22, 2e9)
	if !strings.Contains(res.console, "ftvm-init: started") {
		t.Fatalf("no init banner on the console; last output:\n%s", tail(res.console, 2000))
	}
	if res.reason != StopPowerOff {
		t.Fatalf("stopped with %v after %d instructions, want poweroff", res.reason, res.instret)
	}
	t.Logf("booted to init and powered off in %d instructions", res.instret)
}

// TestBootDeterminism boots the real kernel twice, once in large steps and
// once in small odd ones, and requires the same instruction count, console
// output and state digest: how the caller slices execution must not be
// observable.
func TestBootDeterminism(t *testing.T) {
	a := boot(t, poweroffCmdline, 1<<22, 2e9)
	b := boot(t, poweroffCmdline, 99991, 2e9)
	if a.instret != b.instret || a.digest != b.digest || a.console != b.console {
		t.Fatalf("runs differ: %d instructions, digest %x vs %d instructions, digest %x",
			a.instret, a.digest, b.instret, b.digest)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestIncrementalDigest checks dirty-page tracking: a machine that takes a
// digest every few million instructions (rehashing only pages written in
// between) must end with the same digest as one hashed from scratch at the
// end. A store path that forgot to mark its page would make them differ.
func TestIncrementalDigest(t *testing.T) {
	k, i := testsupport.DefaultGuest(t)
	mk := func() *Machine {
		m, err := New(Config{Kernel: k, Initrd: i, Cmdline: poweroffCmdline, Net: true,
			Disk: vm.NewMemDisk(make([]byte, 1<<20))})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b := mk(), mk()
	const end = 40e6
	for n := uint64(3e6); n < end; n += 3e6 {
		a.Run(n)
		a.Digest()
	}
	a.Run(end)
	b.Run(end)
	da, db := a.Digest(), b.Digest()
	if da.Sum != db.Sum {
		t.Fatalf("incremental digest %x differs from full digest %x: %v", da.Sum, db.Sum, da.Parts)
	}
}

// TestSnapshotRestore saves a running Linux guest mid-boot, restores it into
// a new machine, and requires both to continue identically: same console
// output from there on, same instruction count at power-off, same digest.
func TestSnapshotRestore(t *testing.T) {
	k, i := testsupport.DefaultGuest(t)
	var conA, conB bytes.Buffer
	a, err := New(Config{Kernel: k, Initrd: i, Cmdline: poweroffCmdline, Net: true,
		Disk:    vm.NewMemDisk(make([]byte, 1<<20)),
		Outputs: Outputs{Console: func(_ uint64, b []byte) { conA.Write(b) }}})
	if err != nil {
		t.Fatal(err)
	}
	a.Run(30e6)
	var snap bytes.Buffer
	if err := a.Save(&snap); err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot at %d instructions: %d bytes", a.Instret(), snap.Len())
	mark := conA.Len()
	b, err := Restore(bytes.NewReader(snap.Bytes()), RestoreOptions{
		Outputs: Outputs{Console: func(_ uint64, p []byte) { conB.Write(p) }}})
	if err != nil {
		t.Fatal(err)
	}
	if b.Digest().Sum != a.Digest().Sum {
		t.Fatalf("restored machine's digest differs: %v vs %v", b.Digest().Parts, a.Digest().Parts)
	}
	ra, rb := a.Run(2e9), b.Run(2e9)
	if ra != StopPowerOff || rb != StopPowerOff || a.Instret() != b.Instret() {
		t.Fatalf("original stopped with %v at %d, restored with %v at %d", ra, a.Instret(), rb, b.Instret())
	}
	if conA.String()[mark:] != conB.String() {
		t.Errorf("console after the snapshot differs:\n--- original\n%s\n--- restored\n%s", conA.String()[mark:], conB.String())
	}
	if a.Digest().Sum != b.Digest().Sum {
		t.Errorf("final digests differ")
	}

	// Damaged snapshots are refused with an error, never a panic.
	bad := append([]byte(nil), snap.Bytes()...)
	bad[len(bad)/3] ^= 1
	if _, err := Restore(bytes.NewReader(bad), RestoreOptions{}); err == nil {
		t.Error("a damaged snapshot was accepted")
	}
}
