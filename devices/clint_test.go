package devices

import (
	"reflect"
	"testing"
)

func newTestCLINT() (*CLINT, *uint64, *line, *line) {
	now := new(uint64)
	msip, mtip := &line{}, &line{}
	return NewCLINT(func() uint64 { return *now }, HartLines{msip, mtip}), now, msip, mtip
}

func TestCLINTReset(t *testing.T) {
	c, now, _, mtip := newTestCLINT()
	*now = 1 << 62
	c.Update()
	expectLevel(t, "MTIP", mtip, false)
	if d := c.Deadline(); d != ^uint64(0) {
		t.Fatalf("Deadline = %#x, want off", d)
	}
}

func TestCLINTMSIP(t *testing.T) {
	c, _, msip, _ := newTestCLINT()
	c.Write(0, 4, 0xFFFFFFFF)
	expectLevel(t, "MSIP", msip, true)
	if v := c.Read(0, 4); v != 1 {
		t.Fatalf("msip reads %#x, want 1 (only bit 0 is implemented)", v)
	}
	c.Write(0, 4, 2)
	expectLevel(t, "MSIP", msip, false)
	if v := c.Read(0, 4); v != 0 {
		t.Fatalf("msip reads %#x", v)
	}
}

func TestCLINTMtimeReads(t *testing.T) {
	c, now, _, _ := newTestCLINT()
	*now = 0x1122334455667788
	if v := c.Read(0xBFF8, 8); v != *now {
		t.Fatalf("mtime 64 = %#x", v)
	}
	if lo, hi := c.Read(0xBFF8, 4), c.Read(0xBFFC, 4); lo != 0x55667788 || hi != 0x11223344 {
		t.Fatalf("mtime halves = %#x %#x", lo, hi)
	}
	if v := c.Read(0xBFF9, 2); v != 0x6677 {
		t.Fatalf("mtime bytes 1..2 = %#x", v)
	}
	if v := c.Read(0xBFFC, 8); v != 0 {
		t.Fatalf("access crossing the end of mtime = %#x, want 0", v)
	}
}

// Linux's timer and OpenSBI program mtimecmp either with one 64-bit store or,
// on RV32, as -1 to the high half, then low, then high; both must work and
// MTIP must follow mtime >= mtimecmp.
func TestCLINTMtimecmpAndMTIP(t *testing.T) {
	c, now, _, mtip := newTestCLINT()
	*now = 1000
	c.Write(0x4000, 8, 1500)
	if v := c.Read(0x4000, 8); v != 1500 {
		t.Fatalf("mtimecmp = %d", v)
	}
	expectLevel(t, "MTIP", mtip, false)
	if d := c.Deadline(); d != 1500 {
		t.Fatalf("Deadline = %d", d)
	}
	*now = 1499
	c.Update()
	expectLevel(t, "MTIP", mtip, false)
	*now = 1500
	c.Update()
	expectLevel(t, "MTIP", mtip, true)
	if d := c.Deadline(); d != ^uint64(0) {
		t.Fatalf("Deadline once fired = %d, want none", d)
	}
	if d := c.HartDeadline(0); d != 1500 {
		t.Fatalf("HartDeadline when due = %d", d)
	}

	// 32-bit sequence: high = -1 (timer off), low, high.
	c.Write(0x4004, 4, 0xFFFFFFFF)
	expectLevel(t, "MTIP", mtip, false)
	c.Write(0x4000, 4, 0x00000010)
	c.Write(0x4004, 4, 0x00000001)
	if v := c.Timecmp(0); v != 0x1_00000010 {
		t.Fatalf("mtimecmp after 32-bit stores = %#x", v)
	}
	expectLevel(t, "MTIP", mtip, false)
	if lo, hi := c.Read(0x4000, 4), c.Read(0x4004, 4); lo != 0x10 || hi != 1 {
		t.Fatalf("mtimecmp halves = %#x %#x", lo, hi)
	}

	// A 64-bit store equals two 32-bit stores.
	c2, now2, _, _ := newTestCLINT()
	*now2 = *now
	c2.Write(0x4000, 4, 0xDEADBEEF)
	c2.Write(0x4004, 4, 0x12345678)
	c.Write(0x4000, 8, 0x12345678DEADBEEF)
	if !reflect.DeepEqual(c.State(), c2.State()) {
		t.Fatalf("64-bit store %+v != two 32-bit stores %+v", c.State(), c2.State())
	}

	c.SetTimecmp(0, 0)
	expectLevel(t, "MTIP", mtip, true)
	c.SetTimecmp(0, ^uint64(0))
	expectLevel(t, "MTIP", mtip, false)
}

func TestCLINTMtimeWrite(t *testing.T) {
	c, now, _, mtip := newTestCLINT()
	*now = 100
	c.Write(0xBFF8, 8, 5000)
	if v := c.Mtime(); v != 5000 {
		t.Fatalf("mtime after write = %d", v)
	}
	*now = 150
	if v := c.Read(0xBFF8, 8); v != 5050 {
		t.Fatalf("mtime keeps counting: %d, want 5050", v)
	}
	c.SetTimecmp(0, 5100)
	if d := c.Deadline(); d != 200 {
		t.Fatalf("Deadline in board clock = %d, want 200", d)
	}
	*now = 200
	c.Update()
	expectLevel(t, "MTIP", mtip, true)

	// Writing the high half keeps the low half.
	c.Write(0xBFFC, 4, 7)
	if v := c.Mtime(); v != 7<<32|5100 {
		t.Fatalf("mtime after high-half write = %#x", v)
	}
	expectLevel(t, "MTIP", mtip, true)

	// Set mtime back below mtimecmp: MTIP drops at once.
	c.Write(0xBFF8, 8, 0)
	expectLevel(t, "MTIP", mtip, false)
	if d := c.Deadline(); d != 200+5100 {
		t.Fatalf("Deadline = %d", d)
	}

	// A deadline that needs the board clock to wrap is "never".
	*now = ^uint64(0) - 10
	c.Write(0xBFF8, 8, 0)
	c.SetTimecmp(0, 100)
	if d := c.Deadline(); d != ^uint64(0) {
		t.Fatalf("wrapping Deadline = %#x", d)
	}
}

func TestCLINTState(t *testing.T) {
	c, now, msip, mtip := newTestCLINT()
	*now = 10
	c.Write(0, 4, 1)
	c.Write(0x4000, 8, 20)
	c.Write(0xBFF8, 8, 30)
	s := c.State()

	d, now2, msip2, mtip2 := newTestCLINT()
	*now2 = 10
	if err := d.SetState(s); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.State(), s) || d.Mtime() != 30 {
		t.Fatalf("restored %+v mtime %d", d.State(), d.Mtime())
	}
	expectLevel(t, "restored MSIP", msip2, msip.high)
	expectLevel(t, "restored MTIP", mtip2, mtip.high)
	if err := d.SetState(CLINTState{MSIP: []uint32{2}, Mtimecmp: []uint64{0}}); err == nil {
		t.Fatal("SetState accepted MSIP=2")
	}
	if err := d.SetState(CLINTState{MSIP: []uint32{0, 0}, Mtimecmp: []uint64{0, 0}}); err == nil {
		t.Fatal("SetState accepted a state for two harts")
	}
	if !reflect.DeepEqual(d.State(), s) {
		t.Fatal("failed SetState changed the state")
	}
}

func TestCLINTNoPanic(t *testing.T) {
	c, _, _, _ := newTestCLINT()
	fuzzMMIO(t, c, CLINTSize)
}

// TestCLINTHarts: each hart has its own msip word and mtimecmp, and its
// own lines; Deadline is the earliest of them.
func TestCLINTHarts(t *testing.T) {
	now := new(uint64)
	l := []*line{{}, {}, {}, {}, {}, {}}
	c := NewCLINT(func() uint64 { return *now }, HartLines{l[0], l[1]}, HartLines{l[2], l[3]}, HartLines{l[4], l[5]})
	c.Write(8, 4, 1) // hart 2's msip
	expectLevel(t, "hart 2 MSIP", l[4], true)
	expectLevel(t, "hart 0 MSIP", l[0], false)
	if v := c.Read(12, 4); v != 0 {
		t.Fatalf("a fourth hart's msip reads %#x", v)
	}
	c.Write(0x4008, 8, 300) // hart 1
	c.Write(0x4010, 8, 200) // hart 2
	if d := c.Deadline(); d != 200 {
		t.Fatalf("Deadline %d, want 200", d)
	}
	if d := c.HartDeadline(1); d != 300 {
		t.Fatalf("hart 1 deadline %d", d)
	}
	*now = 250
	c.Update()
	expectLevel(t, "hart 2 MTIP", l[5], true)
	expectLevel(t, "hart 1 MTIP", l[3], false)
	expectLevel(t, "hart 0 MTIP", l[1], false)
	if v := c.Read(0x4018, 8); v != 0 {
		t.Fatalf("a fourth hart's mtimecmp reads %#x", v)
	}
	s := c.State()
	if len(s.MSIP) != 3 || s.Mtimecmp[2] != 200 {
		t.Fatalf("state %+v", s)
	}
}
