package vm

import "testing"

// TestStopReasonNames: every reason reads back from its name (an End
// record's), older logs' name of a lockup too, and a name from a newer
// writer ends the run as a power-off.
func TestStopReasonNames(t *testing.T) {
	for r := StopLimit; r <= StopLockup; r++ {
		if got := ParseStopReason(r.String()); got != r {
			t.Errorf("ParseStopReason(%q) = %v, want %v", r.String(), got, r)
		}
	}
	if got := ParseStopReason("lockup (trap loop)"); got != StopLockup {
		t.Errorf("an older log's lockup reads as %v", got)
	}
	if got := ParseStopReason("halted by a newer engine"); got != StopPowerOff {
		t.Errorf("an unknown reason reads as %v, want poweroff", got)
	}
	if s := StopReason(99).String(); s != "unknown" {
		t.Errorf("StopReason(99) = %q", s)
	}
}
