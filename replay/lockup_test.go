package replay

import (
	"bytes"
	"os"
	"testing"

	"ftvm/internal/testsupport"
	"ftvm/machine"
	"ftvm/replay/eventlog"
	"ftvm/vm"
)

// TestReplayLockup: the recording of a bare-metal guest that locks up
// (its trap vector faults, or it waits for an interrupt with every
// interrupt disabled) replays to its end, final digest included, and a
// backup or a timeline going through the same End record agrees. The
// trap loop changes the hart (the trap's CSRs, the lockup) without
// retiring an instruction, so a replay that only ran to the End record's
// count used to stop short of it and report a divergence.
func TestReplayLockup(t *testing.T) {
	for _, src := range []string{"lockup.S", "wfi.S"} {
		t.Run(src, func(t *testing.T) {
			elf, err := os.ReadFile(testsupport.BareMetal(t, "../machine/testdata/"+src))
			if err != nil {
				t.Fatal(err)
			}
			newM := func() *machine.Machine {
				m, err := machine.New(machine.Config{MemoryMiB: 16, ELF: elf})
				if err != nil {
					t.Fatal(err)
				}
				return m
			}
			m := newM()
			var log bytes.Buffer
			w, err := eventlog.NewWriter(&log, eventlog.Header{Engine: "test"})
			if err != nil {
				t.Fatal(err)
			}
			rec := NewRecorder(m, w, 0)
			r := rec.Run(1e6)
			if r != vm.StopLockup {
				t.Fatalf("the program stopped with %v, want lockup", r)
			}
			if err := rec.Close(r); err != nil {
				t.Fatal(err)
			}

			rd, err := eventlog.NewReader(bytes.NewReader(log.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			m2 := newM()
			res, err := Replay(m2, rd)
			if err != nil || res.Reason != "lockup" || m2.Digest().Sum != m.Digest().Sum {
				t.Fatalf("replay: %+v, %v; want the recorded lockup at %d with its digest", res, err, m.Instret())
			}
		})
	}
}
