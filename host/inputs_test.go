package host

import (
	"testing"
	"time"

	"ftvm/host/netdev"
	"ftvm/vm"
)

// takes is an engine whose UART accepts at most room bytes per delivery;
// it records what it was given. Only Deliver matters to Inputs.
type takes struct {
	vm.Engine
	room    int
	console []byte
	frames  [][]byte
}

func (e *takes) Deliver(ev vm.Event) (int, error) {
	switch x := ev.(type) {
	case vm.ConsoleInput:
		n := min(e.room, len(x.Data))
		e.console = append(e.console, x.Data[:n]...)
		return n, nil
	case vm.NetReceive:
		e.frames = append(e.frames, x.Frame)
		return 1, nil
	}
	return 0, nil
}

func TestInputs(t *testing.T) {
	con := make(chan []byte, 4)
	guest, peer := netdev.NewPipe()
	in := NewInputs(con, guest)
	e := &takes{room: 3}
	if in.Deliver(e) || in.Pending() || in.Dead() {
		t.Fatal("inputs with nothing in them")
	}
	con <- []byte("hello")
	peer.Transmit([]byte("frame-1"))
	peer.Transmit([]byte("frame-2"))
	if !in.Deliver(e) || string(e.console) != "hel" || len(e.frames) != 2 || string(e.frames[1]) != "frame-2" {
		t.Fatalf("first delivery: console %q, %d frames", e.console, len(e.frames))
	}
	if !in.Pending() {
		t.Fatal("the bytes the UART refused are not pending")
	}
	e.room = 100
	close(con)
	in.Deliver(e)
	if string(e.console) != "hello" || in.Pending() {
		t.Fatalf("console %q after the second delivery", e.console)
	}
	if in.Console() != nil || in.Dead() {
		t.Fatal("a closed console leaves the NIC: not dead")
	}
	if NewInputs(nil, nil).Dead() != true {
		t.Fatal("no console and no NIC is dead")
	}
}

type clock struct{ vm.Engine }

func (clock) Now() uint64            { return 1000 }
func (clock) TicksPerSecond() uint64 { return 10_000_000 }

func TestPace(t *testing.T) {
	p := NewPace(clock{})
	if now := p.Now(); now < 1000 || now > 1000+10_000_000 {
		t.Fatalf("host time %d ticks, started at 1000", now)
	}
	if d := p.Until(1000+10_000, 1000); d != time.Millisecond {
		t.Fatalf("10 000 ticks at 10 MHz: %v", d)
	}
	if d := p.Until(^uint64(0), 1000); d < time.Hour {
		t.Fatalf("no deadline: %v", d)
	}
}

// TestInputsBounded: console input that comes faster than the guest takes
// it waits in its channel; the bytes held for the guest stay bounded, and
// every byte arrives, in order.
func TestInputsBounded(t *testing.T) {
	con := make(chan []byte, 16)
	const total = 4 << 20
	go func() {
		for i := 0; i < total; i += 4096 {
			chunk := make([]byte, 4096)
			for j := range chunk {
				chunk[j] = byte((i + j) / 4096)
			}
			con <- chunk
		}
		close(con)
	}()
	in := NewInputs(con, nil)
	e := &takes{room: 16} // a UART FIFO
	most := 0
	for len(e.console) < total {
		in.Deliver(e)
		most = max(most, len(in.pending))
		if c := in.Console(); c != nil && len(in.pending) > 0 {
			if b, ok := <-c; ok || b != nil {
				in.Took(b, ok)
			}
		}
		most = max(most, len(in.pending))
	}
	t.Logf("%d bytes delivered, at most %d held for the guest", len(e.console), most)
	if most > maxPending+4096 {
		t.Errorf("%d console bytes held for the guest, more than %d", most, maxPending+4096)
	}
	for i, b := range e.console {
		if b != byte(i/4096) {
			t.Fatalf("byte %d is %d, want %d", i, b, byte(i/4096))
		}
	}
}
