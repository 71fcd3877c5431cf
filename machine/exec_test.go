package machine

import (
	"bytes"
	"fmt"
	"testing"

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
// maxInsns. It returns the interpreted machine and the console output.
func lockstep(t *testing.T, mk func(exec string, console *bytes.Buffer) *Machine, step, maxInsns uint64, digestEvery int) (*Machine, *Machine) {
	t.Helper()
	var ci, cj bytes.Buffer
	mi, mj := mk(ExecInterp, &ci), mk(ExecJIT, &cj)
	for n := 1; ; n++ {
		until := min(mi.Instret()+step, maxInsns)
		ri, rj := mi.Run(until), mj.Run(until)
		if ri != rj || mi.Instret() != mj.Instret() {
			t.Fatalf("interpreter stopped (%v) at %d, translator (%v) at %d", ri, mi.Instret(), rj, mj.Instret())
		}
		if si, sj := mi.Hart(0).State(), mj.Hart(0).State(); si != sj {
			t.Fatalf("at %d instructions the hart states differ:\ninterpreter %+v\ntranslator  %+v", mi.Instret(), si, sj)
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
			break
		}
	}
	return mi, mj
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

// TestExecLinuxBoot boots the real kernel to init and power-off on both
// engines in lockstep: the same hart state after every slice of odd length,
// the same digest and console at every tenth slice and at the end.
func TestExecLinuxBoot(t *testing.T) {
	requireJIT(t)
	k, i := testsupport.DefaultGuest(t)
	mk := func(exec string, console *bytes.Buffer) *Machine {
		m, err := New(Config{Kernel: k, Initrd: i, Cmdline: poweroffCmdline, Exec: exec, Net: true,
			Disk:    vm.NewMemDisk(make([]byte, 1<<20)),
			Outputs: Outputs{Console: func(_ uint64, b []byte) { console.Write(b) }}})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	mi, mj := lockstep(t, mk, 1_000_003, 2e9, 10)
	st := mj.TranslatorStats()
	t.Logf("both powered off at %d instructions; translator: %d blocks (%d guest instructions, %d KiB of code), %d entries, %d links, %d pages invalidated, %d FENCE.I (%d pages found unchanged), %d flushes",
		mi.Instret(), st.Blocks, st.GuestInsns, st.CodeBytes>>10, st.Entries, st.Links, st.Invalidated, st.Suspended, st.Verified, st.Flushes)
}
