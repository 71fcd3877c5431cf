package machine

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"ftvm/guest/workload"
	"ftvm/internal/testsupport"
	"ftvm/vm"
)

// bootSMP boots the default guest with harts harts to power-off and
// returns the machine and its console.
func bootSMP(t *testing.T, harts int, parallel bool, cmdline string, step uint64) (*Machine, vm.StopReason, string) {
	t.Helper()
	k, i := testsupport.DefaultGuest(t)
	var console bytes.Buffer
	m, err := New(Config{Kernel: k, Initrd: i, Cmdline: cmdline, Harts: harts, Parallel: parallel,
		Outputs: Outputs{Console: func(_ uint64, b []byte) { console.Write(b) }}})
	if err != nil {
		t.Fatal(err)
	}
	r := StopLimit
	for r == StopLimit && m.Instret() < 4e9 {
		r = m.Run(m.Instret() + step)
	}
	return m, r, console.String()
}

// TestBootSMP boots Linux with 2 and 4 harts, interleaved and in parallel:
// the kernel brings every CPU up, init sees them all, and the guest powers
// off.
func TestBootSMP(t *testing.T) {
	for _, parallel := range []bool{false, true} {
		for _, harts := range []int{2, 4} {
			t.Run(fmt.Sprintf("%s/%d", modeName(parallel), harts), func(t *testing.T) {
				m, r, con := bootSMP(t, harts, parallel, poweroffCmdline, 1<<22)
				if r != StopPowerOff {
					t.Fatalf("stopped with %v after %d instructions; console:\n%s", r, m.Instret(), tail(con, 3000))
				}
				for _, want := range []string{
					fmt.Sprintf("smp: Brought up 1 node, %d CPUs", harts),
					fmt.Sprintf("ftvm-init: cpus: %d online", harts),
				} {
					if !strings.Contains(con, want) {
						t.Errorf("console lacks %q:\n%s", want, tail(con, 3000))
					}
				}
				t.Logf("powered off after %d instructions", m.Instret())
			})
		}
	}
}

// TestBootSMPDeterminism: an interleaved two-hart boot gives the same
// instruction count, console and digest however Run is sliced.
func TestBootSMPDeterminism(t *testing.T) {
	a, ra, ca := bootSMP(t, 2, false, poweroffCmdline, 1<<22)
	b, rb, cb := bootSMP(t, 2, false, poweroffCmdline, 99991)
	if ra != StopPowerOff || ra != rb || a.Instret() != b.Instret() || ca != cb || a.Digest().Sum != b.Digest().Sum {
		t.Fatalf("runs differ: %v at %d (%x) vs %v at %d (%x)", ra, a.Instret(), a.Digest().Sum, rb, b.Instret(), b.Digest().Sum)
	}
	t.Logf("%d instructions", a.Instret())
}

// TestBootSMPWorkload runs the guest's parallel CPU workload (one worker per
// CPU) with two harts, interleaved and in parallel, and checks its answer
// against the same computation on the host.
func TestBootSMPWorkload(t *testing.T) {
	const chains, rounds = 4, 1
	want := workload.Parallel(1, chains, rounds)
	for _, parallel := range []bool{false, true} {
		t.Run(modeName(parallel), func(t *testing.T) {
			m, r, con := bootSMP(t, 2, parallel, fmt.Sprintf("console=ttyS0 ftvm.mode=smpbench ftvm.chains=%d ftvm.n=%d", chains, rounds), 1<<22)
			if r != StopPowerOff {
				t.Fatalf("stopped with %v after %d instructions; console:\n%s", r, m.Instret(), tail(con, 3000))
			}
			line := fmt.Sprintf("smpbench: done workers=2 chains=%d rounds=%d checksum=%s", chains, rounds, hex.EncodeToString(want.Sum[:8]))
			if !strings.Contains(con, line) {
				t.Fatalf("console lacks %q:\n%s", line, tail(con, 1000))
			}
			t.Logf("%d instructions", m.Instret())
		})
	}
}
