package machine

import (
	"bytes"
	"fmt"
	"testing"

	"ftvm/riscv/jit"
	"ftvm/vm"
)

// smpRun runs a multi-hart bare-metal program with the interpreter until
// it exits through HTIF and returns the machine and why it stopped
// (TestSMPTranslator runs them with the translator).
func smpRun(t *testing.T, elf []byte, harts int, parallel, supervisor bool, maxInsns uint64) (*Machine, vm.StopReason) {
	t.Helper()
	return smpRunExec(t, elf, harts, parallel, supervisor, maxInsns, ExecInterp)
}

func smpRunExec(t *testing.T, elf []byte, harts int, parallel, supervisor bool, maxInsns uint64, exec string) (*Machine, vm.StopReason) {
	t.Helper()
	m, err := New(Config{MemoryMiB: 16, ELF: elf, Harts: harts, Parallel: parallel, ELFSupervisor: supervisor, Exec: exec})
	if err != nil {
		t.Fatal(err)
	}
	r := StopLimit
	for r == StopLimit && m.Instret() < maxInsns {
		r = m.Run(min(m.Instret()+1_000_000, maxInsns))
	}
	return m, r
}

func modeName(parallel bool) string {
	if parallel {
		return "parallel"
	}
	return "interleaved"
}

// TestSMPAtomic: message passing with fences, and counters incremented by
// every hart with AMOs, LR/SC and a spinlock, end with exact totals, with
// the harts interleaved and in parallel.
func TestSMPAtomic(t *testing.T) {
	iters := 100_000
	if raceTest {
		iters = 10_000
	}
	for _, parallel := range []bool{false, true} {
		for _, harts := range []int{2, 4, 8} {
			t.Run(fmt.Sprintf("%s/%d", modeName(parallel), harts), func(t *testing.T) {
				elf := crossCompile(t, "smp_atomic.S", fmt.Sprintf("HARTS=%d", harts), fmt.Sprintf("ITERS=%d", iters))
				m, r := smpRun(t, elf, harts, parallel, false, 1e8)
				if r != StopPowerOff || m.ExitCode() != 0 {
					t.Fatalf("stopped with %v, exit code %d, after %d instructions", r, m.ExitCode(), m.Instret())
				}
				t.Logf("%d instructions", m.Instret())
			})
		}
	}
}

// TestSMPIPI: a storm of CLINT software interrupts, then rounds of
// interrupts to each hart in turn, each taken by a trap handler on a hart
// sleeping in WFI.
func TestSMPIPI(t *testing.T) {
	for _, parallel := range []bool{false, true} {
		for _, harts := range []int{2, 4} {
			t.Run(fmt.Sprintf("%s/%d", modeName(parallel), harts), func(t *testing.T) {
				elf := crossCompile(t, "smp_ipi.S", fmt.Sprintf("HARTS=%d", harts), "ITERS=200")
				m, r := smpRun(t, elf, harts, parallel, false, 2e8)
				if r != StopPowerOff || m.ExitCode() != 0 {
					t.Fatalf("stopped with %v, exit code %d, after %d instructions", r, m.ExitCode(), m.Instret())
				}
				t.Logf("%d instructions", m.Instret())
			})
		}
	}
}

// TestSMPHSM: harts started, suspended (retentive and not), woken by SBI
// IPIs and stopped through the SBI, in S-mode, with the SBI's error cases.
func TestSMPHSM(t *testing.T) {
	for _, parallel := range []bool{false, true} {
		for _, harts := range []int{2, 4} {
			t.Run(fmt.Sprintf("%s/%d", modeName(parallel), harts), func(t *testing.T) {
				elf := crossCompile(t, "smp_hsm.S", fmt.Sprintf("HARTS=%d", harts))
				m, r := smpRun(t, elf, harts, parallel, true, 1e8)
				if r != StopPowerOff || m.ExitCode() != 0 {
					t.Fatalf("stopped with %v, exit code %d, after %d instructions", r, m.ExitCode(), m.Instret())
				}
				t.Logf("%d instructions", m.Instret())
			})
		}
	}
}

// TestSMPReservations: another hart's store to the reserved doubleword
// makes sc fail, a store next to it does not; interleaved, a store of the
// same value breaks the reservation too.
func TestSMPReservations(t *testing.T) {
	for _, parallel := range []bool{false, true} {
		t.Run(modeName(parallel), func(t *testing.T) {
			defs := []string{"HARTS=2"}
			if !parallel {
				defs = append(defs, "ABA=1")
			}
			m, r := smpRun(t, crossCompile(t, "smp_lrsc.S", defs...), 3, parallel, false, 1e8)
			if r != StopPowerOff || m.ExitCode() != 0 {
				t.Fatalf("stopped with %v, exit code %d, after %d instructions", r, m.ExitCode(), m.Instret())
			}
		})
	}
}

// smpFinish runs m in steps of step instructions until it stops.
func smpFinish(t *testing.T, m *Machine, step uint64) (vm.StopReason, uint64, [32]byte) {
	t.Helper()
	r := StopLimit
	for r == StopLimit && m.Instret() < 1e9 {
		r = m.Run(m.Instret() + step)
	}
	return r, m.Instret(), m.Digest().Sum
}

// TestSMPDeterminism: interleaved harts give the same instruction count
// and state digest however Run is sliced, across a snapshot restored in a
// new machine, and after a rewind to a checkpoint.
func TestSMPDeterminism(t *testing.T) {
	for _, prog := range []string{"smp_atomic.S", "smp_ipi.S"} {
		t.Run(prog, func(t *testing.T) {
			elf := crossCompile(t, prog, "HARTS=4", "ITERS=300")
			build := func() *Machine {
				m, err := New(Config{MemoryMiB: 16, ELF: elf, Harts: 4, Quantum: 1000})
				if err != nil {
					t.Fatal(err)
				}
				return m
			}
			r1, n1, d1 := smpFinish(t, build(), 1<<20)
			r2, n2, d2 := smpFinish(t, build(), 7919)
			if r1 != StopPowerOff || r1 != r2 || n1 != n2 || d1 != d2 {
				t.Fatalf("sliced runs differ: %v %d %x / %v %d %x", r1, n1, d1, r2, n2, d2)
			}
			t.Logf("%d instructions", n1)

			// A snapshot in the middle, restored in a new machine.
			m := build()
			m.Run(n1 / 3)
			var snap bytes.Buffer
			if err := m.Save(&snap); err != nil {
				t.Fatal(err)
			}
			m2, err := Restore(&snap, RestoreOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if m2.Instret() != m.Instret() || m2.Digest().Sum != m.Digest().Sum {
				t.Fatalf("restored machine at %d (%x), saved at %d (%x)", m2.Instret(), m2.Digest().Sum, m.Instret(), m.Digest().Sum)
			}
			if r, n, d := smpFinish(t, m2, 1<<16); r != r1 || n != n1 || d != d1 {
				t.Fatalf("restored run: %v %d %x, want %v %d %x", r, n, d, r1, n1, d1)
			}

			// A checkpoint, a run to the end, a rewind, the same end.
			m = build()
			m.Run(n1 / 2)
			ck, err := m.Checkpoint()
			if err != nil {
				t.Fatal(err)
			}
			mid := m.Digest().Sum
			smpFinish(t, m, 1<<16)
			if err := m.Rewind(ck); err != nil {
				t.Fatal(err)
			}
			if m.Instret() != ck.Instret() || m.Digest().Sum != mid {
				t.Fatalf("rewound to %d (%x), checkpoint at %d (%x)", m.Instret(), m.Digest().Sum, ck.Instret(), mid)
			}
			if r, n, d := smpFinish(t, m, 4099); r != r1 || n != n1 || d != d1 {
				t.Fatalf("run after rewind: %v %d %x, want %v %d %x", r, n, d, r1, n1, d1)
			}
		})
	}
}

// TestSMPTranslator runs the multi-hart programs with the translator: the
// pause hint still ends a turn, and in parallel mode FENCE is still a host
// barrier, because the translator leaves both to the interpreter; the
// interleaved runs end with the interpreter's instruction count and digest.
func TestSMPTranslator(t *testing.T) {
	if !jit.Available() {
		t.Skip("the translator needs linux/amd64")
	}
	for _, parallel := range []bool{false, true} {
		t.Run(modeName(parallel), func(t *testing.T) {
			progs := []struct {
				src        string
				supervisor bool
				defs       []string
			}{
				{"smp_atomic.S", false, []string{"HARTS=4", "ITERS=20000"}},
				{"smp_ipi.S", false, []string{"HARTS=4", "ITERS=100"}},
				{"smp_hsm.S", true, []string{"HARTS=4"}},
				{"smp_lrsc.S", false, []string{"HARTS=2"}},
			}
			for _, p := range progs {
				m, r := smpRunExec(t, crossCompile(t, p.src, p.defs...), 4, parallel, p.supervisor, 2e8, ExecJIT)
				if r != StopPowerOff || m.ExitCode() != 0 {
					t.Fatalf("%s: stopped with %v, exit code %d, after %d instructions", p.src, r, m.ExitCode(), m.Instret())
				}
				if !parallel {
					ref, _ := smpRunExec(t, crossCompile(t, p.src, p.defs...), 4, false, p.supervisor, 2e8, ExecInterp)
					if ref.Instret() != m.Instret() || ref.Digest().Sum != m.Digest().Sum {
						t.Errorf("%s: interpreter %d instructions, translator %d", p.src, ref.Instret(), m.Instret())
					}
				}
			}
		})
	}
}

// TestSMPAllWaiting: when every hart waits for an interrupt, Run returns
// (idle when something could still wake a hart, lockup when nothing can)
// instead of spinning or hanging, in both modes.
func TestSMPAllWaiting(t *testing.T) {
	for _, parallel := range []bool{false, true} {
		for _, c := range []struct {
			defs []string
			want vm.StopReason
		}{{[]string{"WAKEABLE=1"}, StopIdle}, {nil, StopLockup}} {
			t.Run(fmt.Sprintf("%s/%v", modeName(parallel), c.want), func(t *testing.T) {
				m, err := New(Config{MemoryMiB: 16, ELF: crossCompile(t, "smp_idle.S", c.defs...), Harts: 4, Parallel: parallel})
				if err != nil {
					t.Fatal(err)
				}
				if r := m.Run(1e9); r != c.want {
					t.Fatalf("Run returned %v after %d instructions, want %v", r, m.Instret(), c.want)
				}
				if m.Instret() > 1000 {
					t.Errorf("%d instructions to get there", m.Instret())
				}
				if r := m.Run(2e9); r != c.want {
					t.Fatalf("second Run returned %v", r)
				}
			})
		}
	}
}

// TestSMPHartsNeverStarted: harts nobody starts stay stopped, and the
// program on the others runs to its end.
func TestSMPHartsNeverStarted(t *testing.T) {
	for _, parallel := range []bool{false, true} {
		m, r := smpRun(t, crossCompile(t, "smp_hsm.S", "HARTS=2"), 6, parallel, true, 1e8)
		if r != StopPowerOff || m.ExitCode() != 0 {
			t.Fatalf("%s: stopped with %v, exit code %d", modeName(parallel), r, m.ExitCode())
		}
		for i := 2; i < 6; i++ {
			if m.hsm[i].status != hsmStopped || m.harts[i].Instret != 0 {
				t.Errorf("%s: hart %d: status %d, %d instructions", modeName(parallel), i, m.hsm[i].status, m.harts[i].Instret)
			}
		}
	}
}

// TestParallelLineOrder: in parallel mode a device that changes the
// interrupt line of a hart in the middle of its slice leaves the change in
// the hart's mailbox; if the hart itself then drives the same line (it
// accesses the device, so it holds the device lock and is changed at once),
// its newer level must stand when the mailbox is applied at the end of the
// slice. Otherwise the line keeps a level the device no longer drives (an
// external interrupt the PLIC no longer asserts, taken again and again),
// and a replica given this machine's state, whose lines follow the devices,
// has another digest.
func TestParallelLineOrder(t *testing.T) {
	m, err := New(Config{MemoryMiB: 16, ELF: crossCompile(t, "htif.S", "EXIT_CODE=0"), Harts: 2, Parallel: true})
	if err != nil {
		t.Fatal(err)
	}
	p := m.par
	const seip = 9
	for _, level := range []bool{true, false} {
		// Both harts are inside their slices.
		p.active, p.running[0], p.running[1] = true, true, true
		// Hart 1 accesses a device that drives hart 0's line: mail.
		p.lock(1)
		m.setLine(0, seip, !level)
		p.unlock()
		// Hart 0 accesses the device, which drives its line back.
		p.lock(0)
		m.setLine(0, seip, level)
		// Hart 0's slice ends and its mail is applied.
		p.running[0] = false
		p.apply(0)
		p.unlock()
		p.active, p.running[1] = false, false
		if got := m.harts[0].State().MipLines>>seip&1 != 0; got != level {
			t.Errorf("the device last drove the line to %v; after the mail was applied it is %v", level, got)
		}
	}
}
