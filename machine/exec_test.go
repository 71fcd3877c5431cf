package machine

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"ftvm/guest/workload"
	"ftvm/internal/testsupport"
	"ftvm/riscv/jit"
	"ftvm/vm"
)

func requireJIT(t *testing.T) {
	t.Helper()
	if !jit.Available() {
		t.Skip("the translator needs linux on amd64")
	}
}

// lockstep runs two machines built by mk (one per engine) side by side in
// slices of step instructions, comparing the hart state after every slice
// and the whole digest every digestEvery slices, until both stop or reach
// maxInsns. It returns both machines, why the last Run stopped and the
// console output.
func lockstep(t *testing.T, mk func(exec string, console *bytes.Buffer) *Machine, step, maxInsns uint64, digestEvery int) (mi, mj *Machine, stop vm.StopReason, console string) {
	t.Helper()
	var ci, cj bytes.Buffer
	mi, mj = mk(ExecInterp, &ci), mk(ExecJIT, &cj)
	for n := 1; ; n++ {
		until := min(mi.Instret()+step, maxInsns)
		ri, rj := mi.Run(until), mj.Run(until)
		if ri != rj || mi.Instret() != mj.Instret() {
			t.Fatalf("interpreter stopped (%v) at %d, translator (%v) at %d", ri, mi.Instret(), rj, mj.Instret())
		}
		for h := range mi.NumHarts() {
			if si, sj := mi.Hart(h).State(), mj.Hart(h).State(); si != sj {
				t.Fatalf("at %d instructions the states of hart %d differ:\ninterpreter %+v\ntranslator  %+v", mi.Instret(), h, si, sj)
			}
		}
		stopped := ri != StopLimit || mi.Instret() >= maxInsns
		if n%digestEvery == 0 || stopped {
			if di, dj := mi.Digest(), mj.Digest(); di.Sum != dj.Sum {
				t.Fatalf("at %d instructions the digests differ: %s", mi.Instret(), partsDiff(di.Parts, dj.Parts))
			}
			if ci.String() != cj.String() {
				t.Fatalf("at %d instructions the consoles differ:\n--- interpreter\n%s\n--- translator\n%s", mi.Instret(), tail(ci.String(), 500), tail(cj.String(), 500))
			}
		}
		if stopped {
			return mi, mj, ri, ci.String()
		}
	}
}

func partsDiff(a, b []vm.Component) string {
	var s string
	for i := range a {
		if i < len(b) && a[i].Sum != b[i].Sum {
			s += fmt.Sprintf(" %s", a[i].Name)
		}
	}
	return "parts" + s
}

// execGuest returns a constructor of machines booting the default guest
// with cmdline and harts harts (interleaved) on the given engine.
func execGuest(t *testing.T, cmdline string, harts int) func(exec string, console *bytes.Buffer) *Machine {
	k, i := testsupport.DefaultGuest(t)
	return func(exec string, console *bytes.Buffer) *Machine {
		m, err := New(Config{Kernel: k, Initrd: i, Cmdline: cmdline, Exec: exec, Net: true, Harts: harts,
			Disk:    vm.NewMemDisk(make([]byte, 1<<20)),
			Outputs: Outputs{Console: func(_ uint64, b []byte) { console.Write(b) }}})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
}

func logStats(t *testing.T, mi, mj *Machine) {
	st := mj.TranslatorStats()
	t.Logf("both stopped at %d instructions; translator: %d blocks (%d guest instructions, %d KiB of code), %d entries, %d links, %d pages invalidated, %d FENCE.I (%d pages found unchanged), %d flushes",
		mi.Instret(), st.Blocks, st.GuestInsns, st.CodeBytes>>10, st.Entries, st.Links, st.Invalidated, st.Suspended, st.Verified, st.Flushes)
}

// TestExecLinuxBoot boots the real kernel to init and power-off on both
// engines in lockstep: the same hart state after every slice of odd length,
// the same digest and console at every tenth slice and at the end.
func TestExecLinuxBoot(t *testing.T) {
	requireJIT(t)
	mi, mj, stop, _ := lockstep(t, execGuest(t, poweroffCmdline, 1), 1_000_003, 2e9, 10)
	if stop != StopPowerOff {
		t.Fatalf("stopped with %v, not a power-off", stop)
	}
	logStats(t, mi, mj)
}

// TestExecCPUBound runs the CPU-bound guest (boot, a few rounds of the
// benchmark workload, power-off) on both engines in lockstep, and checks
// the guest's answer against the same computation on the host.
func TestExecCPUBound(t *testing.T) {
	requireJIT(t)
	if testing.Short() {
		t.Skip("slow in -short mode")
	}
	const rounds = 10
	mi, mj, stop, console := lockstep(t, execGuest(t, fmt.Sprintf("console=ttyS0 ftvm.mode=cpubench ftvm.n=%d", rounds), 1), 4_000_037, 4e9, 25)
	want := fmt.Sprintf("cpubench: done rounds=%d", rounds)
	res := workload.CPU(rounds)
	sum := fmt.Sprintf("checksum=%s", hex.EncodeToString(res.Sum[:8]))
	if stop != StopPowerOff || !strings.Contains(console, want) || !strings.Contains(console, sum) {
		t.Fatalf("stopped with %v; want %q and %q on the console:\n%s", stop, want, sum, tail(console, 500))
	}
	logStats(t, mi, mj)
}

// TestExecLinuxBootSMP boots the kernel on two interleaved harts and runs
// the lock workload (threads on both CPUs contending for one mutex, then
// a pipe ping-pong between them) to power-off on both engines in
// lockstep: the interleaving, hence every hart's state, is the same.
func TestExecLinuxBootSMP(t *testing.T) {
	requireJIT(t)
	if testing.Short() {
		t.Skip("slow in -short mode")
	}
	const n = 10000
	mi, mj, stop, console := lockstep(t, execGuest(t, fmt.Sprintf("console=ttyS0 ftvm.mode=lockbench ftvm.n=%d", n), 2), 100_003, 4e9, 50)
	if stop != StopPowerOff {
		t.Fatalf("stopped with %v, not a power-off; console:\n%s", stop, tail(console, 1000))
	}
	for _, want := range []string{
		"smp: Brought up 1 node, 2 CPUs",
		fmt.Sprintf("lockbench: lock threads=4 iterations=%d count=%d", n, 4*n),
		fmt.Sprintf("lockbench: pingpong exchanges=%d", n),
		"lockbench: done",
	} {
		if !strings.Contains(console, want) {
			t.Fatalf("console lacks %q:\n%s", want, tail(console, 1000))
		}
	}
	for h := range mi.NumHarts() {
		t.Logf("hart %d retired %d instructions", h, mi.Hart(h).Instret)
	}
	logStats(t, mi, mj)
}
