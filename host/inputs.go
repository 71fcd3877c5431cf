package host

import (
	"time"

	"ftvm/host/netdev"
	"ftvm/vm"
)

// Inputs is what the host has for a guest: bytes typed on its console and
// frames received for its NIC. A run loop hands them to the engine between
// Runs with Deliver (so every one enters at an instruction count the loop
// chooses, and can log), and sleeps on Ready while the guest idles.
type Inputs struct {
	console <-chan []byte  // nil once closed
	net     netdev.Backend // nil: no NIC
	pending []byte         // console bytes the UART has not taken yet
}

// NewInputs reads console input from console (nil: none) and frames from
// net (nil: none).
func NewInputs(console <-chan []byte, net netdev.Backend) *Inputs {
	return &Inputs{console: console, net: net}
}

// maxPending bounds the console bytes held for a guest that takes them
// more slowly than they come (a large file piped to the console): the rest
// waits in the channel, and the writer waits for the guest, instead of the
// host's memory growing with the input.
const maxPending = 64 << 10

// Deliver hands e every console byte its UART accepts and every frame
// waiting, and reports whether anything was delivered.
func (in *Inputs) Deliver(e vm.Engine) bool {
	for in.console != nil && len(in.pending) < maxPending {
		select {
		case b, ok := <-in.console:
			in.take(b, ok)
			continue
		default:
		}
		break
	}
	delivered := false
	if len(in.pending) > 0 {
		n, _ := e.Deliver(vm.ConsoleInput{Data: in.pending})
		in.pending = in.pending[n:]
		delivered = n > 0
	}
	if in.net != nil {
		for {
			f, ok := in.net.TryReceive()
			if !ok {
				break
			}
			e.Deliver(vm.NetReceive{Frame: f})
			delivered = true
		}
	}
	return delivered
}

func (in *Inputs) take(b []byte, ok bool) {
	if !ok {
		in.console = nil
		return
	}
	in.pending = append(in.pending, b...)
}

// Pending reports console bytes the guest has not accepted yet: it must
// run (its UART drains) before more can go in.
func (in *Inputs) Pending() bool { return len(in.pending) > 0 }

// Dead reports that nothing can ever come in: no console input left and
// no NIC.
func (in *Inputs) Dead() bool { return in.console == nil && in.net == nil }

// Console is the channel console input arrives on (nil once it closed,
// or while maxPending bytes wait for the guest). A loop that receives from
// it while it waits hands what it got to Took.
func (in *Inputs) Console() <-chan []byte {
	if len(in.pending) >= maxPending {
		return nil
	}
	return in.console
}

// Took keeps console input a waiting loop received (ok false: the channel
// closed).
func (in *Inputs) Took(b []byte, ok bool) { in.take(b, ok) }

// NetReady is signalled when frames may be waiting (nil: no NIC).
func (in *Inputs) NetReady() <-chan struct{} {
	if in.net == nil {
		return nil
	}
	return in.net.Ready()
}

// Pace ties an idle guest's clock to the host's: guest time moves with the
// instruction count while the guest computes, and jumps to the host's time
// when it idles, so its timers fire in real time.
type Pace struct {
	wall0 time.Time
	mt0   uint64
	tick  time.Duration
}

// NewPace starts pacing e's clock from now.
func NewPace(e vm.Engine) Pace {
	return Pace{time.Now(), e.Now(), time.Second / time.Duration(e.TicksPerSecond())}
}

// Now is the host's time in guest ticks.
func (p Pace) Now() uint64 { return p.mt0 + uint64(time.Since(p.wall0)/p.tick) }

// Until is how long to wait, at guest time now, for guest deadline dl
// (^0: none).
func (p Pace) Until(dl, now uint64) time.Duration {
	if dl == ^uint64(0) {
		return 1 << 62
	}
	return time.Duration(dl-now) * p.tick
}
