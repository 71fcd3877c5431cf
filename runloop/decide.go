package runloop

// NoDeadline is the deadline of a guest with no timer set.
const NoDeadline = ^uint64(0)

// Idle is what the loop knows when the guest has stopped with vm.StopIdle:
// the facts Decide needs, all read at one moment. Times are in the guest's
// timer ticks.
type Idle struct {
	// Deadline is the guest's next timer (NoDeadline: none).
	Deadline uint64
	// GuestNow is the guest's clock; HostNow the host's clock on the same
	// scale (host.Pace).
	GuestNow, HostNow uint64
	// TimerSpent says the timer was already due when the guest last ran
	// and the guest waits again with it still due: its interrupt is
	// disabled, so it cannot wake the guest.
	TimerSpent bool
	// Took says host inputs were just delivered: the guest has work.
	Took bool
	// Full says console input is waiting that the guest's UART had no
	// room for. An idle guest with a full UART is not reading it (a
	// pending, enabled UART interrupt would have woken it), so more
	// console input cannot wake it either.
	Full bool
	// Console and Net say an input source can still deliver: the console
	// is open, a NIC is attached.
	Console, Net bool
	// Busy says a hook has work now: it asked not to sleep, its timer is
	// due, or its wake-up channel fired.
	Busy bool
}

// Action is what the loop does with an idle guest.
type Action int

const (
	// Advance moves the guest's clock to Decision.To (when it is ahead of
	// the guest's) and runs the guest.
	Advance Action = iota
	// Wait sleeps until the host's clock reaches Decision.To (NoDeadline:
	// no limit), an input arrives or a hook wakes the loop, then decides
	// again.
	Wait
	// Work calls the Tick hook without sleeping and without running the
	// guest, then decides again.
	Work
	// End ends the run: nothing can ever wake the guest.
	End
)

func (a Action) String() string {
	switch a {
	case Advance:
		return "advance"
	case Wait:
		return "wait"
	case Work:
		return "work"
	case End:
		return "end"
	}
	return "unknown"
}

// Decision is Decide's answer.
type Decision struct {
	Action Action
	To     uint64 // Advance: the guest time to move to; Wait: the host time to wait for
}

// Decide is the loop's idle policy, a pure function of what the loop knows:
//
//  1. A guest timer that is due (and can fire) wins: time moves to it.
//  2. Inputs just delivered: time moves to the host's, and the guest runs.
//  3. If no timer can fire and no source can deliver an input the guest
//     would take, nothing can ever wake the guest: the run ends (loudly,
//     by the loop's error). A NIC can always deliver; the console only
//     while it is open and the UART has room.
//  4. A busy hook gets its turn without sleeping.
//  5. Otherwise the loop sleeps until the timer or an input.
//
// Two older loops differed here: with a full UART one ran the guest again
// at once (spinning at 100% CPU while the guest ignored its UART) and the
// other jumped the guest's clock to its timer or, with no timer, ended the
// run even when a NIC frame could still wake the guest. A full UART is
// neither a reason to run nor a reason to stop: the loop waits for what
// can still wake the guest.
func Decide(in Idle) Decision {
	timer := in.Deadline
	if in.TimerSpent {
		timer = NoDeadline
	}
	if timer != NoDeadline && timer <= in.HostNow {
		return Decision{Action: Advance, To: max(timer, in.GuestNow)}
	}
	if in.Took {
		return Decision{Action: Advance, To: max(in.HostNow, in.GuestNow)}
	}
	if timer == NoDeadline && !in.Net && !(in.Console && !in.Full) {
		return Decision{Action: End}
	}
	if in.Busy {
		return Decision{Action: Work}
	}
	return Decision{Action: Wait, To: timer}
}
