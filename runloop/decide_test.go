package runloop

import "testing"

// TestDecide is the idle policy's table: one row per rule and per
// disagreement the two older loops had.
func TestDecide(t *testing.T) {
	const none = NoDeadline
	for _, c := range []struct {
		name string
		in   Idle
		want Decision
	}{
		{"timer due: time moves to it",
			Idle{Deadline: 100, GuestNow: 90, HostNow: 150}, Decision{Advance, 100}},
		{"timer due exactly now",
			Idle{Deadline: 150, GuestNow: 90, HostNow: 150}, Decision{Advance, 150}},
		{"timer ahead of the host: sleep until it",
			Idle{Deadline: 200, GuestNow: 90, HostNow: 150, Console: true}, Decision{Wait, 200}},
		{"timer ahead, no input source at all: the timer still wakes it",
			Idle{Deadline: 200, GuestNow: 90, HostNow: 150}, Decision{Wait, 200}},
		{"inputs delivered: time moves to the host's and the guest runs",
			Idle{Deadline: 200, GuestNow: 90, HostNow: 150, Took: true, Console: true}, Decision{Advance, 150}},
		{"inputs delivered with no timer",
			Idle{Deadline: none, GuestNow: 90, HostNow: 150, Took: true, Net: true}, Decision{Advance, 150}},
		{"the host clock behind the guest's: never backwards",
			Idle{Deadline: none, GuestNow: 300, HostNow: 150, Took: true, Console: true}, Decision{Advance, 300}},
		{"a due timer wins over inputs",
			Idle{Deadline: 120, GuestNow: 90, HostNow: 150, Took: true}, Decision{Advance, 120}},
		{"no timer, console open: typing can wake it",
			Idle{Deadline: none, GuestNow: 90, HostNow: 150, Console: true}, Decision{Wait, none}},
		{"no timer, NIC: a frame can wake it",
			Idle{Deadline: none, GuestNow: 90, HostNow: 150, Net: true}, Decision{Wait, none}},
		{"no timer, no input source: nothing can wake it",
			Idle{Deadline: none, GuestNow: 90, HostNow: 150}, Decision{End, 0}},
		// A full UART: the guest is not reading it.
		{"full UART, no timer, no NIC: nothing can wake it (no spin, loud end)",
			Idle{Deadline: none, GuestNow: 90, HostNow: 150, Console: true, Full: true}, Decision{End, 0}},
		{"full UART, no timer, NIC: a frame can still wake it (no spin, no end)",
			Idle{Deadline: none, GuestNow: 90, HostNow: 150, Console: true, Full: true, Net: true}, Decision{Wait, none}},
		{"full UART with a timer: wait for the timer in real time (no jump, no spin)",
			Idle{Deadline: 200, GuestNow: 90, HostNow: 150, Console: true, Full: true}, Decision{Wait, 200}},
		{"full UART, console closed, no timer",
			Idle{Deadline: none, GuestNow: 90, HostNow: 150, Full: true}, Decision{End, 0}},
		// A timer whose interrupt is disabled.
		{"spent timer with the console open: wait for input, do not spin on the timer",
			Idle{Deadline: 90, GuestNow: 90, HostNow: 150, TimerSpent: true, Console: true}, Decision{Wait, none}},
		{"spent timer and nothing else",
			Idle{Deadline: 90, GuestNow: 90, HostNow: 150, TimerSpent: true}, Decision{End, 0}},
		{"spent timer, inputs delivered",
			Idle{Deadline: 90, GuestNow: 90, HostNow: 150, TimerSpent: true, Took: true, Console: true}, Decision{Advance, 150}},
		// Hooks.
		{"busy hook: work, do not sleep",
			Idle{Deadline: 200, GuestNow: 90, HostNow: 150, Console: true, Busy: true}, Decision{Work, 0}},
		{"busy hook, timer due: the guest goes first",
			Idle{Deadline: 100, GuestNow: 90, HostNow: 150, Busy: true}, Decision{Advance, 100}},
		{"busy hook, inputs delivered: the guest goes first",
			Idle{Deadline: none, GuestNow: 90, HostNow: 150, Took: true, Busy: true, Console: true}, Decision{Advance, 150}},
		{"busy hook, nothing can wake the guest: the run ends",
			Idle{Deadline: none, GuestNow: 90, HostNow: 150, Busy: true}, Decision{End, 0}},
	} {
		if got := Decide(c.in); got != c.want {
			t.Errorf("%s: Decide(%+v) = {%v %d}, want {%v %d}", c.name, c.in, got.Action, got.To, c.want.Action, c.want.To)
		}
	}
}
