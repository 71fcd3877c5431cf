// Package netdev provides host network backends for the virtio-net device
// of ftvm: a Linux TAP device and an in-process pipe for tests.
//
// This is host code, outside the deterministic core. Frames the guest
// transmits are written out synchronously by Transmit (the vm.NetBackend
// method). Frames arriving from the host are queued, in arrival order and
// bounded, by a reader goroutine (TAP) or by the peer (Pipe); the machine
// loop drains them with TryReceive between CPU runs and hands each to
// virtio.Net.Receive, so the instant a frame enters the guest is chosen by
// the machine (and can be logged for replay), never by the goroutine.
package netdev

import (
	"sync"

	"ftvm/vm"
)

// Backend is a host network endpoint for one virtio-net device.
type Backend interface {
	vm.NetBackend
	// TryReceive returns the oldest frame received from the host, if any,
	// without blocking. The caller owns the returned slice.
	TryReceive() ([]byte, bool)
	// Ready is signalled (capacity-1 channel, coalesced) when frames may
	// be waiting, so a host loop can sleep until there is input.
	Ready() <-chan struct{}
	// Close releases the backend. Transmit after Close drops the frame.
	Close() error
}

// DefaultQueueFrames bounds the frames a backend holds for the machine.
const DefaultQueueFrames = 1024

// inbox is a bounded FIFO of frames, safe for one producer and one consumer
// goroutine. When full, new frames are dropped (tail drop).
type inbox struct {
	mu      sync.Mutex
	q       [][]byte
	head    int
	max     int
	dropped uint64
	ready   chan struct{}
}

func newInbox(max int) *inbox {
	return &inbox{max: max, ready: make(chan struct{}, 1)}
}

// push takes ownership of f.
func (b *inbox) push(f []byte) bool {
	b.mu.Lock()
	if len(b.q)-b.head >= b.max {
		b.dropped++
		b.mu.Unlock()
		return false
	}
	if b.head > 0 && len(b.q) == cap(b.q) {
		// Compact instead of growing when the consumed prefix is large.
		n := copy(b.q, b.q[b.head:])
		clear(b.q[n:])
		b.q, b.head = b.q[:n], 0
	}
	b.q = append(b.q, f)
	b.mu.Unlock()
	select {
	case b.ready <- struct{}{}:
	default:
	}
	return true
}

func (b *inbox) pop() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.head == len(b.q) {
		return nil, false
	}
	f := b.q[b.head]
	b.q[b.head] = nil
	b.head++
	if b.head == len(b.q) {
		b.q, b.head = b.q[:0], 0
	}
	return f, true
}

func (b *inbox) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.q) - b.head
}

func (b *inbox) drops() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}
