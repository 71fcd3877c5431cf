package devices

import "testing"

// readTime reads the clock as Linux's driver does: low half (latching the
// high half), then high half.
func readTime(r *RTC) uint64 {
	lo := r.Read(rtcTimeLow, 4)
	return r.Read(rtcTimeHigh, 4)<<32 | lo
}

func TestRTCShowsTheBoardTime(t *testing.T) {
	now := uint64(1_765_000_000_123_456_789)
	r := NewRTC(func() uint64 { return now })
	if got := readTime(r); got != now {
		t.Fatalf("time %d, want %d", got, now)
	}
	// The high half is latched by the low read: a carry between the two
	// reads must not tear the value.
	now = 0x1_ffff_fff0
	lo := r.Read(rtcTimeLow, 4)
	now = 0x2_0000_0010
	if got := r.Read(rtcTimeHigh, 4)<<32 | lo; got != 0x1_ffff_fff0 {
		t.Fatalf("torn read %#x", got)
	}
}

func TestRTCSetTime(t *testing.T) {
	now := uint64(5_000_000_000)
	r := NewRTC(func() uint64 { return now })
	want := uint64(1_800_000_000_000_000_000)
	// Linux's goldfish_rtc_set_time: high half, then low half.
	r.Write(rtcTimeHigh, 4, want>>32)
	r.Write(rtcTimeLow, 4, want&0xffffffff)
	if got := readTime(r); got != want {
		t.Fatalf("after set: %d, want %d", got, want)
	}
	now += 1_000
	if got := readTime(r); got != want+1_000 {
		t.Fatalf("the clock does not run after a set: %d, want %d", got, want+1_000)
	}
	// The offset is state: a restored clock shows the same time.
	r2 := NewRTC(func() uint64 { return now })
	if err := r2.SetState(r.State()); err != nil {
		t.Fatal(err)
	}
	if a, b := readTime(r), readTime(r2); a != b {
		t.Fatalf("restored clock shows %d, original %d", b, a)
	}
}

func TestRTCIgnoresOddAccesses(t *testing.T) {
	r := NewRTC(func() uint64 { return 42 })
	for off := uint64(0); off < RTCSize; off += 1 {
		for _, size := range []int{1, 2, 8} {
			if v := r.Read(off, size); v != 0 {
				t.Fatalf("read %d bytes at %#x = %#x, want 0", size, off, v)
			}
			r.Write(off, size, ^uint64(0))
		}
	}
	if got := readTime(r); got != 42 {
		t.Fatalf("odd-sized writes moved the clock to %d", got)
	}
	if r.Read(rtcAlarmStatus, 4) != 0 {
		t.Fatal("alarm status should read 0")
	}
}
