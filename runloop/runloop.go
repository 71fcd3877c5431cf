// Package runloop is the one loop that drives a guest from the host. ftvm
// run, record, the GDB stub, the benchmarks and the replication primary
// run their engines through it; what differs between them is in hooks. As
// with etcd raft's Ready loop, the loop is written and documented once:
//
//	   ┌──────────────────────────────────────────────────────────────────┐
//	   ▼                                                                  │
//	Before ─► deliver host inputs ─► e.Run(+Slice) ─► After(r) ─► Wake? ─► Stop(r)?
//	(hook)    (console bytes the     (one slice,      (hook)      Tick    (hook: end here)
//	           UART takes, frames;    capped at                   (hook)     │
//	           then Delivered)        Limit)                                 │
//	   ┌─────────────────────────────────────────────────────────────────────┘
//	   ▼ r is
//	 limit ──────► next slice; at Limit the run ends (limit, nil)
//	 poweroff ───► end (poweroff, nil)
//	 reboot ─────► end (reboot, nil): the caller decides whether to restart
//	 lockup ─────► end (lockup, ErrLockup)
//	 idle ───► in.Deliver; Decide(Idle{timer, guest and host clocks, inputs, hooks})
//	             ├─ Advance: deliver AdvanceTime{To} ─► next slice
//	             ├─ Wait:  sleep until the guest's timer (in host time), an
//	             │         input, Wake, Timer, or the context ─► decide again
//	             ├─ Work:  Tick, Stop(idle)? ─► decide again
//	             └─ End:   (idle, ErrNoWake): nothing can ever wake the guest
//
// Every input enters the engine through Deliver between two Runs, so a
// recorder in the engine chain logs it at the count where it took effect.
// While the guest computes its clock follows the instruction count; while
// it idles, the clock is paced against the host's (host.Pace), so its
// timers fire in real time. The idle decision is the pure function Decide.
//
// It replaces two loops (ftvm run's and the replication primary's) that
// disagreed; the loop settles each disagreement so:
//
//   - Slice length: Config.Slice, 100,000 instructions by default (the
//     primary passes its epoch, whose default is the same).
//   - Inputs are delivered before each Run, also right after an idle wait,
//     never only after a Run: an input then waits at most for the slice in
//     progress, not for the guest's next timer.
//   - Every stop reason ends the run or continues it explicitly: a lockup
//     ends it with ErrLockup (one loop spun on it at 100% CPU), a reboot
//     and a power-off end it, an unknown reason is an error.
//   - A full UART (console input the guest is not reading) is neither a
//     reason to run the guest again (one loop spun) nor to end the run
//     (the other ended it with no timer set, although a NIC frame could
//     still wake the guest): the loop waits for the timer or an input that
//     can wake the guest, and ends with ErrNoWake only when there is none.
//   - A timer due whose interrupt is disabled is not waited on again and
//     again: once the guest has run with it due and waits anyway, only an
//     input can wake it.
//   - What only one loop had is a hook for all: snapshots on a signal (Wake
//     and Tick), a limit on instructions (Limit), heartbeats while idle
//     (Timer and Tick), work that must not wait for the guest (Busy).
package runloop

import (
	"context"
	"errors"
	"fmt"
	"time"

	"ftvm/host"
	"ftvm/vm"
)

// DefaultSlice is how many instructions run between two looks at the
// host's inputs when Config.Slice is 0 (about a millisecond).
const DefaultSlice = 100_000

// The run ends with these errors (wrapped with the instruction count) when
// the guest can go no further.
var (
	// ErrLockup: the guest can make no progress (a trap loop, or every
	// hart waiting for an interrupt with all interrupts disabled).
	ErrLockup = errors.New("the guest locked up: it can make no progress (a trap loop, or waiting for an interrupt with every interrupt disabled)")
	// ErrNoWake: the guest waits for an interrupt, no timer is set, and
	// no input source can reach it any more.
	ErrNoWake = errors.New("the guest waits for an interrupt that nothing can raise: no timer is set and no input can reach it")
)

// Config is one run.
type Config struct {
	// Engine is what the loop runs. To change engines between slices (a
	// recorder that starts when a backup joins), pass an engine that
	// forwards to the current one.
	Engine vm.Engine
	// Inputs are the host's console and NIC (nil: none). They outlive a
	// run: console input the guest has not taken yet stays for the next.
	Inputs *host.Inputs
	// Slice is the number of instructions per Run (0: DefaultSlice).
	Slice uint64
	// Limit ends the run when the instruction count reaches it (0: none).
	Limit uint64
	// Context ends the run when it is done (nil: never); Run then
	// returns its error.
	Context context.Context
	Hooks
}

// Hooks are what differs between the loop's users. Every hook is optional
// and runs on the loop's goroutine, between two Runs of the engine (so it
// may deliver events, save or inspect the machine). An error from a hook
// ends the run with that error.
type Hooks struct {
	// Before runs before each slice, before the host's inputs are
	// delivered.
	Before func() error
	// Delivered runs when host inputs were delivered to the engine.
	Delivered func() error
	// After runs after each slice with the reason Run returned.
	After func(vm.StopReason) error
	// Stop is the caller's part of the stop policy: it is asked after
	// every slice, and after every Tick while the guest idles (with
	// vm.StopIdle); true ends the run with that reason and no error. The
	// loop itself always ends on power-off, reboot, lockup, at Limit and
	// when nothing can wake the guest.
	Stop func(vm.StopReason) bool

	// Wake cuts an idle wait short; Tick then runs. It is also looked at
	// (without waiting) after every slice, and Tick runs when it fired.
	Wake <-chan struct{}
	// Timer is a hook's own deadline while the guest idles (a
	// heartbeat): how long from now until Tick should run; ok false: no
	// deadline. It is asked before every idle wait.
	Timer func() (d time.Duration, ok bool)
	// Busy, asked while the guest idles, says a hook has work to do now
	// (a state transfer in progress): the loop calls Tick instead of
	// sleeping.
	Busy func() bool
	// Tick does a hook's work while the guest idles: after Wake fired,
	// when Timer came due, or while Busy says so. The guest does not run
	// and its clock does not move meanwhile.
	Tick func() error
}

// Run runs the engine until the guest powers off, reboots or locks up,
// the instruction count reaches Limit, nothing can wake the idle guest,
// Stop says so, the context ends, or a hook fails. It returns the reason
// the engine last stopped with, and an error for a lockup (ErrLockup), a
// guest nothing can wake (ErrNoWake), the context's end or a hook's
// failure.
func Run(c Config) (vm.StopReason, error) {
	l := &loop{Config: c, e: c.Engine}
	if l.Slice == 0 {
		l.Slice = DefaultSlice
	}
	if l.Context == nil {
		l.Context = context.Background()
	}
	l.e.SetIdleSkip(false)
	l.pace = host.NewPace(l.e)
	return l.run()
}

type loop struct {
	Config
	e    vm.Engine
	pace host.Pace
}

func (l *loop) run() (vm.StopReason, error) {
	e := l.e
	r := vm.StopLimit
	for {
		if l.Before != nil {
			if err := l.Before(); err != nil {
				return r, err
			}
		}
		// Inputs are delivered before the guest runs, and so also right
		// after an idle wait: a frame delivered after a Run and followed
		// by another wait would sit in the NIC until the guest's next
		// timer tick.
		if err := l.deliver(); err != nil {
			return r, err
		}
		until := e.Instret() + l.Slice
		if l.Limit != 0 && until > l.Limit {
			until = l.Limit
		}
		due := timerDue(e)
		r = e.Run(until)
		if l.After != nil {
			if err := l.After(r); err != nil {
				return r, err
			}
		}
		select {
		case <-l.Wake:
			if err := l.tick(); err != nil {
				return r, err
			}
		default:
		}
		if err := l.Context.Err(); err != nil {
			return r, err
		}
		if l.Stop != nil && l.Stop(r) {
			return r, nil
		}
		switch r {
		case vm.StopLimit:
			if l.Limit != 0 && e.Instret() >= l.Limit {
				return r, nil
			}
		case vm.StopPowerOff, vm.StopReboot:
			return r, nil
		case vm.StopLockup:
			return r, fmt.Errorf("after %d instructions: %w", e.Instret(), ErrLockup)
		case vm.StopIdle:
			stop, err := l.idle(due)
			if err != nil || stop {
				return r, err
			}
		default:
			return r, fmt.Errorf("after %d instructions: the engine stopped with an unknown reason %d", e.Instret(), int(r))
		}
	}
}

// timerDue reports whether e's timer is due already.
func timerDue(e vm.Engine) bool {
	dl := e.Deadline()
	return dl != NoDeadline && dl <= e.Now()
}

// deliver hands the host's inputs to the engine and reports whether
// anything was delivered.
func (l *loop) deliver() error {
	if l.Inputs == nil || !l.Inputs.Deliver(l.e) {
		return nil
	}
	if l.Delivered != nil {
		return l.Delivered()
	}
	return nil
}

func (l *loop) tick() error {
	if l.Tick != nil {
		return l.Tick()
	}
	return nil
}

// idle handles an idle guest until it should run again (false, nil) or
// the run should end (true, or an error). due says its timer was due when
// it last ran.
func (l *loop) idle(due bool) (stop bool, err error) {
	e, in := l.e, l.Inputs
	woken := false
	for {
		took := false
		if in != nil {
			took = in.Deliver(e)
			if took && l.Delivered != nil {
				if err := l.Delivered(); err != nil {
					return true, err
				}
			}
		}
		hookWait, hookTimer := time.Duration(0), false
		if l.Timer != nil {
			hookWait, hookTimer = l.Timer()
		}
		s := Idle{
			Deadline:   e.Deadline(),
			GuestNow:   e.Now(),
			HostNow:    l.pace.Now(),
			TimerSpent: due && timerDue(e),
			Took:       took,
			Busy:       woken || hookTimer && hookWait <= 0 || l.Busy != nil && l.Busy(),
		}
		if in != nil {
			s.Full, s.Console, s.Net = in.Pending(), in.Console() != nil, in.NetReady() != nil
		}
		woken = false
		d := Decide(s)
		switch d.Action {
		case Advance:
			if d.To > s.GuestNow {
				if _, err := e.Deliver(vm.AdvanceTime{To: d.To}); err != nil {
					return true, err
				}
			}
			return false, nil
		case End:
			return true, fmt.Errorf("after %d instructions: %w", e.Instret(), ErrNoWake)
		case Work:
			if err := l.tick(); err != nil {
				return true, err
			}
			if l.Stop != nil && l.Stop(vm.StopIdle) {
				return true, nil
			}
			continue
		}
		// Wait.
		var guestTimer, hookC <-chan time.Time
		var timers [2]*time.Timer
		if d.To != NoDeadline {
			timers[0] = time.NewTimer(l.pace.Until(d.To, s.HostNow))
			guestTimer = timers[0].C
		}
		if hookTimer {
			timers[1] = time.NewTimer(hookWait)
			hookC = timers[1].C
		}
		var console <-chan []byte
		var net <-chan struct{}
		if in != nil {
			console, net = in.Console(), in.NetReady()
		}
		select {
		case b, ok := <-console:
			in.Took(b, ok)
		case <-net:
		case <-guestTimer:
		case <-hookC:
		case <-l.Wake:
			woken = true
		case <-l.Context.Done():
			err = l.Context.Err()
		}
		for _, t := range timers {
			if t != nil {
				t.Stop()
			}
		}
		if err != nil {
			return true, err
		}
	}
}
