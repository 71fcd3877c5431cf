package devices

import "testing"

func TestSyscon(t *testing.T) {
	type req struct {
		a    PowerAction
		code uint16
	}
	var got []req
	s := NewSyscon(func(a PowerAction, code uint16) { got = append(got, req{a, code}) })
	s.Write(0, 4, 0x5555)         // syscon-poweroff
	s.Write(0, 4, 0x7777)         // syscon-reboot
	s.Write(0, 4, 0x3333|42<<16)  // failure, code 42
	s.Write(0, 4, 0x1234)         // unknown value
	s.Write(4, 4, 0x5555)         // wrong offset
	s.Write(0, 1, 0x5555)         // wrong size
	s.Write(0, 8, 0xFFFFFFFF0000) // wrong size
	want := []req{{PowerOff, 0}, {PowerReset, 0}, {PowerFail, 42}}
	if len(got) != len(want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("request %d = %v, want %v", i, got[i], want[i])
		}
	}
	if s.Read(0, 4) != 0 {
		t.Fatal("read not zero")
	}
	if err := s.SetState(s.State()); err != nil {
		t.Fatal(err)
	}
	fuzzMMIO(t, NewSyscon(nil), SysconSize)
}
