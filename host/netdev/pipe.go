package netdev

import "sync/atomic"

// PipeEnd is one end of an in-memory Ethernet link: a frame transmitted on
// one end becomes receivable on the other. It is meant for tests (two
// machines, or a machine and a test harness) and never touches the host
// network.
type PipeEnd struct {
	in     *inbox
	peer   *PipeEnd
	closed atomic.Bool
}

var _ Backend = (*PipeEnd)(nil)

// NewPipe returns the two connected ends of a link.
func NewPipe() (a, b *PipeEnd) {
	a = &PipeEnd{in: newInbox(DefaultQueueFrames)}
	b = &PipeEnd{in: newInbox(DefaultQueueFrames)}
	a.peer, b.peer = b, a
	return a, b
}

// Transmit copies frame to the peer's receive queue. It is dropped if
// either end is closed or the peer's queue is full.
func (e *PipeEnd) Transmit(frame []byte) {
	if e.closed.Load() || e.peer.closed.Load() {
		return
	}
	e.peer.in.push(append([]byte(nil), frame...))
}

// TryReceive implements Backend.
func (e *PipeEnd) TryReceive() ([]byte, bool) { return e.in.pop() }

// Ready implements Backend.
func (e *PipeEnd) Ready() <-chan struct{} { return e.in.ready }

// Pending is the number of frames waiting in TryReceive.
func (e *PipeEnd) Pending() int { return e.in.len() }

// Dropped counts frames dropped because this end's queue was full.
func (e *PipeEnd) Dropped() uint64 { return e.in.drops() }

// Close implements Backend.
func (e *PipeEnd) Close() error {
	e.closed.Store(true)
	return nil
}
