package devices

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
)

const (
	ctx1Enable = 0x2080
	ctx1Thresh = 0x201000
	ctx1Claim  = 0x201004
	ctx0Enable = 0x2000
	ctx0Thresh = 0x200000
	ctx0Claim  = 0x200004
)

func newTestPLIC() (*PLIC, *line, *line) {
	meip, seip := &line{}, &line{}
	return NewPLIC(meip, seip), meip, seip
}

// linuxInit does what Linux's irq-sifive-plic does for the S-mode context:
// threshold 0, and for each used source priority 1 and its enable bit.
func linuxInit(p *PLIC, ids ...int) {
	p.Write(ctx1Thresh, 4, 0)
	for _, id := range ids {
		p.Write(uint64(4*id), 4, 1)
		en := p.Read(ctx1Enable, 4)
		p.Write(ctx1Enable, 4, en|1<<uint(id))
	}
}

func claim(t *testing.T, p *PLIC, want uint64) {
	t.Helper()
	if id := p.Read(ctx1Claim, 4); id != want {
		t.Fatalf("claim = %d, want %d", id, want)
	}
}

func TestPLICLevelClaimComplete(t *testing.T) {
	p, meip, seip := newTestPLIC()
	linuxInit(p, 10)
	src := p.Source(10)

	src.SetLevel(true)
	expectLevel(t, "SEIP", seip, true)
	expectLevel(t, "MEIP", meip, false) // not enabled in context 0
	if v := p.Read(0x1000, 4); v != 1<<10 {
		t.Fatalf("pending = %#x", v)
	}
	claim(t, p, 10)
	expectLevel(t, "SEIP after claim", seip, false)
	if v := p.Read(0x1000, 4); v != 0 {
		t.Fatalf("pending after claim = %#x", v)
	}
	claim(t, p, 0) // nothing else

	// Still high while claimed: the gateway holds it back.
	src.SetLevel(false)
	src.SetLevel(true)
	expectLevel(t, "SEIP while claimed", seip, false)

	// Complete with the line still high: pending again.
	p.Write(ctx1Claim, 4, 10)
	expectLevel(t, "SEIP after complete (level high)", seip, true)
	claim(t, p, 10)
	src.SetLevel(false)
	p.Write(ctx1Claim, 4, 10)
	expectLevel(t, "SEIP after complete (level low)", seip, false)
	claim(t, p, 0)
	if v := p.Read(0x1000, 4); v != 0 {
		t.Fatalf("pending = %#x", v)
	}
}

// The spec's gateway cannot retract a request: a pulse stays pending.
func TestPLICPendingLatches(t *testing.T) {
	p, _, seip := newTestPLIC()
	linuxInit(p, 3)
	p.SetLevel(3, true)
	p.SetLevel(3, false)
	expectLevel(t, "SEIP", seip, true)
	claim(t, p, 3)
	p.Write(ctx1Claim, 4, 3)
	claim(t, p, 0)
}

func TestPLICPriorityThresholdTies(t *testing.T) {
	p, _, seip := newTestPLIC()
	linuxInit(p, 1, 2, 5, 7)
	p.Write(4*5, 4, 3)
	p.Write(4*7, 4, 3)
	p.Write(4*2, 4, 0) // priority 0: never interrupts
	for _, id := range []int{1, 2, 5, 7} {
		p.SetLevel(id, true)
	}
	claim(t, p, 5) // 5 and 7 share the top priority: lowest id
	claim(t, p, 7)

	p.Write(ctx1Thresh, 4, 1) // masks priority <= 1
	expectLevel(t, "SEIP above threshold", seip, false)
	claim(t, p, 0)
	p.Write(ctx1Thresh, 4, 0)
	expectLevel(t, "SEIP", seip, true)
	claim(t, p, 1)
	claim(t, p, 0) // source 2 has priority 0
	if v := p.Read(0x1000, 4); v != 1<<2 {
		t.Fatalf("pending = %#x, want only source 2", v)
	}

	// WARL: priority and threshold keep 3 bits.
	p.Write(4*1, 4, 0xFF)
	p.Write(ctx1Thresh, 4, 0xFF)
	if a, b := p.Read(4, 4), p.Read(ctx1Thresh, 4); a != 7 || b != 7 {
		t.Fatalf("priority %d threshold %d, want 7 7", a, b)
	}
	// Source 0 does not exist; bit 0 of the enables is hardwired to 0.
	p.Write(0, 4, 5)
	p.Write(ctx1Enable, 4, 0xFFFFFFFF)
	if a, b := p.Read(0, 4), p.Read(ctx1Enable, 4); a != 0 || b != 0xFFFFFFFE {
		t.Fatalf("priority[0] %d enable %#x", a, b)
	}
	// The pending array is read-only.
	p.Write(0x1000, 4, 0xFFFFFFFF)
	if v := p.Read(0x1000, 4); v != 1<<2 {
		t.Fatalf("pending after write = %#x", v)
	}
}

func TestPLICContexts(t *testing.T) {
	p, meip, seip := newTestPLIC()
	p.Write(4*4, 4, 2)
	p.Write(ctx0Enable, 4, 1<<4)
	p.SetLevel(4, true)
	expectLevel(t, "MEIP", meip, true)
	expectLevel(t, "SEIP", seip, false)
	claim(t, p, 0) // not enabled for context 1

	if id := p.Read(ctx0Claim, 4); id != 4 {
		t.Fatalf("context 0 claim = %d", id)
	}
	// Completing from a context where the source is not enabled is ignored.
	p.Write(ctx1Claim, 4, 4)
	expectLevel(t, "MEIP", meip, false)
	if p.State().Claimed != 1<<4 {
		t.Fatalf("claimed = %#x", p.State().Claimed)
	}
	p.Write(ctx0Claim, 4, 4)
	expectLevel(t, "MEIP after completion", meip, true)
	// Nonsense completions are ignored.
	for _, id := range []uint64{0, 32, 1 << 31, 0xFFFFFFFF} {
		p.Write(ctx0Claim, 4, id)
	}
	expectLevel(t, "MEIP", meip, true)
}

// TestPLICHarts: with two harts there are four contexts, each driving its
// own line; hart 1's S-mode context (3) claims what is enabled for it only.
func TestPLICHarts(t *testing.T) {
	lines := []*line{{}, {}, {}, {}}
	p := NewPLIC(lines[0], lines[1], lines[2], lines[3])
	if p.Contexts() != 4 {
		t.Fatalf("%d contexts", p.Contexts())
	}
	const ctx3Enable, ctx3Claim = 0x2000 + 3*0x80, 0x200000 + 3*0x1000 + 4
	p.Write(5*4, 4, 1)
	p.Write(ctx3Enable, 4, 1<<5)
	p.SetLevel(5, true)
	for i, want := range []bool{false, false, false, true} {
		expectLevel(t, fmt.Sprintf("context %d", i), lines[i], want)
	}
	if id := p.Read(ctx1Claim, 4); id != 0 {
		t.Fatalf("context 1 claimed %d", id)
	}
	if id := p.Read(ctx3Claim, 4); id != 5 {
		t.Fatalf("context 3 claimed %d", id)
	}
	expectLevel(t, "context 3 after claim", lines[3], false)
	// Registers of a fifth context do not exist.
	p.Write(0x2000+4*0x80, 4, 1<<5)
	if v := p.Read(0x2000+4*0x80, 4); v != 0 {
		t.Fatalf("context 4 enable reads %#x", v)
	}
}

func TestPLICAccessSizes(t *testing.T) {
	p, _, _ := newTestPLIC()
	// 64-bit store to priorities 2 and 3.
	p.Write(8, 8, 5<<32|4)
	if a, b := p.Read(8, 4), p.Read(12, 4); a != 4 || b != 5 {
		t.Fatalf("priorities %d %d", a, b)
	}
	if v := p.Read(8, 8); v != 5<<32|4 {
		t.Fatalf("64-bit read %#x", v)
	}
	p.Write(8, 1, 7)
	p.Write(10, 4, 7)
	if v := p.Read(8, 4); v != 4 {
		t.Fatalf("byte/misaligned write changed priority: %d", v)
	}
}

func TestPLICState(t *testing.T) {
	p, _, _ := newTestPLIC()
	linuxInit(p, 1, 10)
	p.SetLevel(1, true)
	p.SetLevel(10, true)
	claim(t, p, 1)
	s := p.State()

	q, meip, seip := newTestPLIC()
	if err := q.SetState(s); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(q.State(), s) {
		t.Fatal("state did not round-trip")
	}
	expectLevel(t, "restored SEIP", seip, true)
	expectLevel(t, "restored MEIP", meip, false)
	claim(t, q, 10)
	q.Write(ctx1Claim, 4, 1)
	claim(t, q, 1)

	bad := []func(*PLICState){
		func(s *PLICState) { s.Priority[0] = 1 },
		func(s *PLICState) { s.Priority[3] = 8 },
		func(s *PLICState) { s.Threshold[1] = 8 },
		func(s *PLICState) { s.Enable[0] = 1 },
		func(s *PLICState) { s.Level |= 1 },
		func(s *PLICState) { s.Pending |= 1 << 1 }, // 1 is claimed
		func(s *PLICState) { s.Level |= 1 << 5 },   // high but not pending
		func(s *PLICState) { s.Enable = append(s.Enable, 0) },
		func(s *PLICState) { s.Threshold = s.Threshold[:1] },
	}
	for i, f := range bad {
		st := s
		st.Enable, st.Threshold = slices.Clone(s.Enable), slices.Clone(s.Threshold)
		f(&st)
		if err := q.SetState(st); err == nil {
			t.Errorf("bad state %d accepted", i)
		}
	}
}

func TestPLICNoPanic(t *testing.T) {
	p, _, _ := newTestPLIC()
	fuzzMMIO(t, p, 0x210000)
	for _, id := range []int{-1, 0, 32, 1 << 30} {
		p.SetLevel(id, true)
	}
	if p.State().Level != 0 {
		t.Fatal("invalid source ids changed levels")
	}
}
