package runloop

import (
	"context"
	"errors"
	"testing"
	"time"

	"ftvm/host"
	"ftvm/host/netdev"
	"ftvm/vm"
)

// guest is a small scripted engine standing for a machine: it computes for
// work instructions each time it wakes, then waits for an interrupt. Its
// clock is ticks = base + instret/10 (10 MHz at 100 M instructions per
// second, like the machine's); a timer wakes it when enabled and due;
// console bytes go into a UART FIFO of uartCap bytes that it drains when
// it wakes only if reads is set; frames wake it. onWake runs at each wake,
// before the frames are consumed.
type guest struct {
	instret, base uint64
	deadline      uint64 // guest time of the timer, NoDeadline: none
	timerOn       bool
	waiting       bool
	uart          []byte
	uartCap       int
	reads         bool
	frames        int
	work          uint64
	stop          vm.StopReason // set to end Run with it (poweroff, lockup)
	onWake        func(g *guest)

	runs      int      // Run calls
	events    []string // what was delivered, in order
	idleSkip  bool
	consoleIn []byte
}

func newGuest() *guest {
	return &guest{deadline: NoDeadline, uartCap: 16, work: 1000, waiting: true, stop: vm.StopLimit}
}

func (g *guest) Now() uint64            { return g.base + g.instret/10 }
func (g *guest) Deadline() uint64       { return g.deadline }
func (g *guest) SetIdleSkip(on bool)    { g.idleSkip = on }
func (g *guest) TicksPerSecond() uint64 { return 10_000_000 }
func (g *guest) Instret() uint64        { return g.instret }
func (g *guest) Digest() vm.Digest      { return vm.Digest{} }

func (g *guest) Deliver(e vm.Event) (int, error) {
	switch e := e.(type) {
	case vm.ConsoleInput:
		n := min(len(e.Data), g.uartCap-len(g.uart))
		g.uart = append(g.uart, e.Data[:n]...)
		g.events = append(g.events, "console")
		return n, nil
	case vm.NetReceive:
		g.frames++
		g.events = append(g.events, "frame")
		return 1, nil
	case vm.AdvanceTime:
		if e.To > g.Now() {
			g.base += e.To - g.Now()
		}
		g.events = append(g.events, "time")
	}
	return 0, nil
}

func (g *guest) Run(until uint64) vm.StopReason {
	g.runs++
	for {
		if g.stop != vm.StopLimit {
			return g.stop
		}
		if g.instret >= until {
			return vm.StopLimit
		}
		if g.waiting {
			timer := g.timerOn && g.deadline <= g.Now()
			if !timer && g.frames == 0 && !(g.reads && len(g.uart) > 0) {
				return vm.StopIdle
			}
			g.waiting = false
			if g.reads {
				g.consoleIn = append(g.consoleIn, g.uart...)
				g.uart = g.uart[:0]
			}
			if timer {
				g.deadline = NoDeadline
			}
			if g.onWake != nil {
				g.onWake(g)
			}
			g.frames = 0
			continue
		}
		n := min(g.work, until-g.instret)
		g.instret += n
		if n == g.work {
			g.waiting = true
		}
	}
}

var _ vm.Engine = (*guest)(nil)

// run runs the loop on its own goroutine and returns its result, failing
// the test if it takes longer than limit.
func run(t *testing.T, c Config, limit time.Duration) (vm.StopReason, error) {
	t.Helper()
	type res struct {
		r   vm.StopReason
		err error
	}
	done := make(chan res, 1)
	go func() {
		r, err := Run(c)
		done <- res{r, err}
	}()
	select {
	case x := <-done:
		return x.r, x.err
	case <-time.After(limit):
		t.Fatalf("the loop did not end within %v", limit)
	}
	return 0, nil
}

func TestLockupEndsTheRun(t *testing.T) {
	g := newGuest()
	g.waiting = false
	g.onWake = nil
	g.stop = vm.StopLockup
	r, err := run(t, Config{Engine: g}, 5*time.Second)
	if r != vm.StopLockup || !errors.Is(err, ErrLockup) {
		t.Fatalf("got (%v, %v), want lockup and ErrLockup", r, err)
	}
	if g.runs != 1 {
		t.Errorf("%d Runs after a lockup, want 1", g.runs)
	}
}

func TestNothingCanWake(t *testing.T) {
	g := newGuest()
	console := make(chan []byte)
	close(console)
	r, err := run(t, Config{Engine: g, Inputs: host.NewInputs(console, nil)}, 5*time.Second)
	if r != vm.StopIdle || !errors.Is(err, ErrNoWake) {
		t.Fatalf("got (%v, %v), want idle and ErrNoWake", r, err)
	}
}

// A full UART the guest does not read, no timer: with no NIC nothing can
// wake the guest (the run ends); with one, a frame wakes it, and until
// then the loop sleeps instead of running the guest again and again.
func TestFullUART(t *testing.T) {
	long := make([]byte, 64)
	t.Run("no NIC", func(t *testing.T) {
		g := newGuest()
		console := make(chan []byte, 1)
		console <- long
		r, err := run(t, Config{Engine: g, Inputs: host.NewInputs(console, nil)}, 5*time.Second)
		if r != vm.StopIdle || !errors.Is(err, ErrNoWake) {
			t.Fatalf("got (%v, %v), want idle and ErrNoWake", r, err)
		}
	})
	t.Run("NIC", func(t *testing.T) {
		g := newGuest()
		g.onWake = func(g *guest) {
			if g.frames > 0 {
				g.stop = vm.StopPowerOff
			}
		}
		console := make(chan []byte, 1)
		console <- long
		gEnd, hEnd := netdev.NewPipe()
		defer gEnd.Close()
		go func() {
			time.Sleep(300 * time.Millisecond)
			hEnd.Transmit(make([]byte, 60))
		}()
		start := time.Now()
		r, err := run(t, Config{Engine: g, Inputs: host.NewInputs(console, gEnd)}, 10*time.Second)
		if r != vm.StopPowerOff || err != nil {
			t.Fatalf("got (%v, %v), want poweroff (the frame woke the guest)", r, err)
		}
		if el := time.Since(start); el < 250*time.Millisecond {
			t.Fatalf("ended after %v, before the frame was sent", el)
		}
		// The guest ran once before it idled, once when the frame came,
		// and not in between.
		if g.runs > 3 {
			t.Errorf("the guest was run %d times while its UART was full: the loop spun", g.runs)
		}
		if len(g.uart) != g.uartCap {
			t.Errorf("UART holds %d bytes, want it full (%d)", len(g.uart), g.uartCap)
		}
	})
}

// A timer that is due but whose interrupt is disabled cannot wake the
// guest: the loop waits for an input instead of running it again and
// again.
func TestSpentTimer(t *testing.T) {
	g := newGuest()
	g.deadline = 0 // due at once, interrupt disabled
	g.reads = true
	g.onWake = func(g *guest) {
		if len(g.consoleIn) > 0 {
			g.stop = vm.StopPowerOff
		}
	}
	console := make(chan []byte)
	go func() {
		time.Sleep(300 * time.Millisecond)
		console <- []byte("x")
	}()
	r, err := run(t, Config{Engine: g, Inputs: host.NewInputs(console, nil)}, 10*time.Second)
	if r != vm.StopPowerOff || err != nil {
		t.Fatalf("got (%v, %v), want poweroff", r, err)
	}
	if g.runs > 4 {
		t.Errorf("the guest was run %d times while its timer could not fire: the loop spun", g.runs)
	}
}

// An idle guest's timer fires in host time: the loop sleeps until it,
// then moves the guest's clock exactly to it.
func TestTimerPaced(t *testing.T) {
	g := newGuest()
	g.timerOn = true
	g.deadline = g.Now() + 2_000_000 // 200 ms at 10 MHz
	var woke uint64
	g.onWake = func(g *guest) {
		woke = g.Now()
		g.stop = vm.StopPowerOff
	}
	start := time.Now()
	r, err := run(t, Config{Engine: g}, 10*time.Second)
	if r != vm.StopPowerOff || err != nil {
		t.Fatalf("got (%v, %v), want poweroff", r, err)
	}
	if el := time.Since(start); el < 190*time.Millisecond {
		t.Errorf("the 200 ms timer fired after %v of host time", el)
	}
	if woke != 2_000_000 {
		t.Errorf("the guest woke at guest time %d, want exactly its deadline 2000000", woke)
	}
}

// Inputs are delivered before the guest runs, the console's in the order
// typed, and the bytes the UART has no room for wait for the next slice.
func TestInputsBeforeRun(t *testing.T) {
	g := newGuest()
	g.reads = true
	g.uartCap = 4
	want := "hello, world"
	g.onWake = func(g *guest) {
		if string(g.consoleIn) == want {
			g.stop = vm.StopPowerOff
		}
	}
	console := make(chan []byte, 1)
	console <- []byte(want)
	r, err := run(t, Config{Engine: g, Inputs: host.NewInputs(console, nil)}, 5*time.Second)
	if r != vm.StopPowerOff || err != nil {
		t.Fatalf("got (%v, %v), want poweroff; the guest read %q", r, err, g.consoleIn)
	}
	if g.events[0] != "console" {
		t.Errorf("first event %q, want the console input delivered before the first Run", g.events[0])
	}
}

func TestLimit(t *testing.T) {
	g := newGuest()
	g.waiting = false
	g.work = 1 << 40
	r, err := run(t, Config{Engine: g, Limit: 12345, Slice: 1000}, 5*time.Second)
	if r != vm.StopLimit || err != nil || g.instret != 12345 {
		t.Fatalf("got (%v, %v) at %d, want limit at 12345", r, err, g.instret)
	}
	if g.runs != 13 {
		t.Errorf("%d slices, want 13 of at most 1000 instructions", g.runs)
	}
	if g.idleSkip {
		t.Error("the loop left idle skip on")
	}
}

// The hooks: Before and After around every slice, Busy and Timer give Tick
// its turn while the guest idles, Wake cuts a wait short, Stop ends the run.
func TestHooks(t *testing.T) {
	t.Run("before and after", func(t *testing.T) {
		g := newGuest()
		g.waiting = false
		g.work = 1 << 40
		var before, after int
		var order []string
		r, err := run(t, Config{Engine: g, Limit: 5000, Slice: 1000, Hooks: Hooks{
			Before: func() error { before++; order = append(order, "before"); return nil },
			After:  func(vm.StopReason) error { after++; order = append(order, "after"); return nil },
		}}, 5*time.Second)
		if err != nil || r != vm.StopLimit || before != 5 || after != 5 || order[0] != "before" || order[1] != "after" {
			t.Fatalf("(%v, %v): %d Before, %d After, order %v; want 5 each, alternating", r, err, before, after, order)
		}
	})
	t.Run("hook error", func(t *testing.T) {
		g := newGuest()
		g.timerOn, g.deadline = true, g.Now()+1_000_000
		bad := errors.New("deposed")
		_, err := run(t, Config{Engine: g, Hooks: Hooks{After: func(vm.StopReason) error { return bad }}}, 5*time.Second)
		if !errors.Is(err, bad) {
			t.Fatalf("err %v, want the hook's", err)
		}
	})
	t.Run("busy", func(t *testing.T) {
		// A hook with work (a state transfer) runs without sleeping while
		// the guest idles, and the guest's timer still fires on time.
		g := newGuest()
		g.timerOn, g.deadline = true, g.Now()+1_000_000 // 100 ms
		g.onWake = func(g *guest) { g.stop = vm.StopPowerOff }
		ticks := 0
		r, err := run(t, Config{Engine: g, Hooks: Hooks{
			Busy: func() bool { return ticks < 50 },
			Tick: func() error { ticks++; return nil },
		}}, 5*time.Second)
		if r != vm.StopPowerOff || err != nil || ticks != 50 {
			t.Fatalf("(%v, %v) after %d ticks; want poweroff after 50", r, err, ticks)
		}
	})
	t.Run("timer", func(t *testing.T) {
		// A heartbeat every 20 ms while the guest idles with no timer
		// of its own: the Timer hook alone wakes the loop, and each
		// wake-up runs Tick; after the fifth, Stop ends the run. Timers
		// never fire early, so five beats take at least 100 ms however
		// loaded the host is (an upper bound would measure the host).
		g := newGuest()
		console := make(chan []byte)
		start := time.Now()
		last, beats := start, 0
		r, err := run(t, Config{Engine: g, Inputs: host.NewInputs(console, nil), Hooks: Hooks{
			Timer: func() (time.Duration, bool) { return 20*time.Millisecond - time.Since(last), true },
			Tick: func() error {
				beats++
				last = time.Now()
				return nil
			},
			Stop: func(vm.StopReason) bool { return beats == 5 },
		}}, 5*time.Second)
		if elapsed := time.Since(start); r != vm.StopIdle || err != nil || beats != 5 || elapsed < 100*time.Millisecond {
			t.Fatalf("(%v, %v) with %d heartbeats in %v; want idle after 5 heartbeats, 100 ms at least", r, err, beats, elapsed)
		}
	})
	t.Run("wake and stop", func(t *testing.T) {
		// Nothing wakes the guest but its console; a hook's wake-up ends
		// the run through Stop.
		g := newGuest()
		wake := make(chan struct{})
		console := make(chan []byte)
		go func() { time.Sleep(100 * time.Millisecond); wake <- struct{}{} }()
		done := false
		r, err := run(t, Config{Engine: g, Inputs: host.NewInputs(console, nil), Hooks: Hooks{
			Wake: wake,
			Tick: func() error { done = true; return nil },
			Stop: func(vm.StopReason) bool { return done },
		}}, 5*time.Second)
		if r != vm.StopIdle || err != nil || !done {
			t.Fatalf("(%v, %v), Tick ran %v; want idle, no error, after Tick", r, err, done)
		}
	})
	t.Run("context", func(t *testing.T) {
		g := newGuest()
		console := make(chan []byte)
		ctx, cancel := context.WithCancel(context.Background())
		go func() { time.Sleep(100 * time.Millisecond); cancel() }()
		r, err := run(t, Config{Engine: g, Inputs: host.NewInputs(console, nil), Context: ctx}, 5*time.Second)
		if r != vm.StopIdle || !errors.Is(err, context.Canceled) {
			t.Fatalf("(%v, %v), want idle and the context's error", r, err)
		}
	})
}
