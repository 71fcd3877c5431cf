package virtio

import (
	"fmt"

	"ftvm/vm"
)

// virtio-net constants (spec 5.1).
const (
	netFMAC    = 1 << 5  // VIRTIO_NET_F_MAC
	netFStatus = 1 << 16 // VIRTIO_NET_F_STATUS

	netSLinkUp = 1 // VIRTIO_NET_S_LINK_UP

	// netHdrSize is sizeof(struct virtio_net_hdr) with VERSION_1: the
	// num_buffers field is always present (spec 5.1.6).
	netHdrSize = 12

	netRXQueue = 0 // receiveq1
	netTXQueue = 1 // transmitq1

	// NetQueueSize is QueueNumMax of both queues.
	NetQueueSize = 256
	// MaxFrameSize bounds frames in both directions (no offloads are
	// offered, so real frames are at most MTU+18 bytes).
	MaxFrameSize = 65535
	// RXFIFOFrames and RXFIFOBytes bound the frames held for the guest
	// while it has no receive buffer posted. When full, new frames are
	// dropped (tail drop: Receive returns false), which keeps the oldest
	// traffic and makes the drop decision depend only on the FIFO.
	RXFIFOFrames = 256
	RXFIFOBytes  = 4 << 20
)

// NetState is the snapshot state of a Net device.
type NetState struct {
	// Pending holds the frames waiting for receive buffers, oldest first.
	Pending [][]byte
	// LinkDown reports the link as down in the status config field.
	LinkDown bool

	RXFrames, RXDropped uint64 // delivered to / dropped before the guest
	TXFrames, TXDropped uint64 // sent to / dropped before the backend
}

// Net is a virtio-net device (spec 5.1) with one RX/TX queue pair, a MAC
// address and link status; no offloads, mergeable buffers, control queue
// or multiqueue.
type Net struct {
	t        Transport
	mac      [6]byte
	backend  vm.NetBackend
	pending  [][]byte
	pendingB int
	linkDown bool
	txbuf    []byte
	st       NetState // counters only; Pending/LinkDown live above
}

var _ Device = (*Net)(nil)

// NewNet creates a virtio-net device with the given MAC address that
// transmits to backend.
func NewNet(mac [6]byte, backend vm.NetBackend) *Net {
	return &Net{mac: mac, backend: backend, txbuf: make([]byte, MaxFrameSize)}
}

// DeviceID implements Device.
func (n *Net) DeviceID() uint32 { return DeviceIDNet }

// Features implements Device.
func (n *Net) Features() uint64 { return netFMAC | netFStatus }

// ReadConfig implements Device: struct virtio_net_config (spec 5.1.4):
// mac[6], status u16; max_virtqueue_pairs and mtu are not offered.
func (n *Net) ReadConfig(offset uint64, p []byte) {
	var cfg [8]byte
	copy(cfg[:], n.mac[:])
	if !n.linkDown {
		put16(cfg[6:], netSLinkUp)
	}
	readConfigBytes(cfg[:], offset, p)
}

// WriteConfig implements Device: without VIRTIO_NET_F_CTRL_MAC_ADDR the
// configuration is read-only for a VERSION_1 driver (spec 5.1.4.2).
func (n *Net) WriteConfig(offset uint64, p []byte) {}

// NumQueues implements Device.
func (n *Net) NumQueues() int { return 2 }

// MaxQueueSize implements Device.
func (n *Net) MaxQueueSize(q int) uint16 { return NetQueueSize }

// Attach implements Device.
func (n *Net) Attach(t Transport) { n.t = t }

// Reset implements Device: frames queued for the old driver are dropped.
func (n *Net) Reset() {
	n.st.RXDropped += uint64(len(n.pending))
	n.clearPending()
}

func (n *Net) clearPending() {
	clear(n.pending)
	n.pending = n.pending[:0]
	n.pendingB = 0
}

// SetLinkUp changes the link status reported to the guest, with a
// configuration change notification (spec 5.1.4).
func (n *Net) SetLinkUp(up bool) {
	if up == !n.linkDown {
		return
	}
	n.linkDown = !up
	if n.t != nil {
		n.t.ConfigChanged()
	}
}

// QueueNotify implements Device.
func (n *Net) QueueNotify(qi int) {
	q := n.t.Queue(qi)
	if q == nil {
		return
	}
	switch qi {
	case netRXQueue:
		n.drain(q)
		q.Interrupt()
	case netTXQueue:
		n.transmit(q)
	}
}

// transmit sends every available TX chain: a 12-byte virtio_net_hdr
// followed by the frame, both device-readable (spec 5.1.6.2). A chain
// whose frame cannot be read is dropped but still returned.
func (n *Net) transmit(q *Queue) {
	for range q.Size() { // bounded: see Queue.Pop
		c, err := q.Pop()
		if err != nil || c == nil {
			break
		}
		if c.ReadLen < netHdrSize || c.ReadLen-netHdrSize > MaxFrameSize {
			n.st.TXDropped++
		} else {
			f := n.txbuf[:c.ReadLen-netHdrSize]
			if c.ReadAt(f, netHdrSize) != nil || n.backend == nil {
				n.st.TXDropped++
			} else {
				n.st.TXFrames++
				n.backend.Transmit(f)
			}
		}
		// TX buffers are returned with len 0: the device wrote nothing.
		if q.Push(c, 0) != nil {
			break
		}
	}
	q.Interrupt()
}

type rxResult int

const (
	rxDelivered rxResult = iota
	rxNoBuffer           // no receive buffer posted: keep the frame
	rxDropped            // frame unusable for this guest: drop it
	rxFailed             // structural error: device needs reset
)

// deliver copies frame into the next receive buffer behind a zeroed
// virtio_net_hdr with num_buffers = 1 (spec 5.1.6.3/5.1.6.4).
func (n *Net) deliver(q *Queue, frame []byte) rxResult {
	c, err := q.Pop()
	if err != nil {
		return rxFailed
	}
	if c == nil {
		return rxNoBuffer
	}
	need := uint64(netHdrSize + len(frame))
	if c.WriteLen < need {
		// Without MRG_RXBUF a frame must fit one chain (spec 5.1.6.3.2).
		// The buffer stays posted; the frame is dropped.
		q.Unpop()
		return rxDropped
	}
	var hdr [netHdrSize]byte
	put16(hdr[10:], 1) // num_buffers
	if c.WriteAt(hdr[:], 0) != nil || c.WriteAt(frame, netHdrSize) != nil {
		// Buffer outside RAM: return it empty (the driver sees a short
		// frame and recycles it) and drop the frame.
		if q.Push(c, 0) != nil {
			return rxFailed
		}
		return rxDropped
	}
	if q.Push(c, uint32(need)) != nil {
		return rxFailed
	}
	return rxDelivered
}

// drain delivers queued frames while receive buffers are available.
func (n *Net) drain(q *Queue) {
	for range q.Size() { // bounded: see Queue.Pop
		if len(n.pending) == 0 {
			return
		}
		f := n.pending[0]
		switch n.deliver(q, f) {
		case rxNoBuffer, rxFailed:
			return
		case rxDropped:
			n.st.RXDropped++
		case rxDelivered:
			n.st.RXFrames++
		}
		n.pendingB -= len(f)
		copy(n.pending, n.pending[1:])
		n.pending[len(n.pending)-1] = nil
		n.pending = n.pending[:len(n.pending)-1]
	}
}

// Receive delivers one Ethernet frame to the guest. The machine calls it
// between CPU runs (never concurrently with guest execution). The frame is
// copied into the next posted receive buffer and the used buffer interrupt
// raised; if no buffer is posted it waits in a bounded FIFO until the
// guest posts one. It returns false if the frame was dropped: driver not
// running, frame empty or larger than MaxFrameSize or than the guest's
// buffer, or FIFO full. frame is not retained.
func (n *Net) Receive(frame []byte) bool {
	q := n.t.Queue(netRXQueue)
	if q == nil || len(frame) == 0 || len(frame) > MaxFrameSize {
		n.st.RXDropped++
		return false
	}
	// Older frames go first.
	n.drain(q)
	if len(n.pending) == 0 {
		r := n.deliver(q, frame)
		q.Interrupt()
		switch r {
		case rxDelivered:
			n.st.RXFrames++
			return true
		case rxDropped, rxFailed:
			n.st.RXDropped++
			return false
		}
	} else {
		q.Interrupt()
	}
	if len(n.pending) >= RXFIFOFrames || n.pendingB+len(frame) > RXFIFOBytes {
		n.st.RXDropped++
		return false
	}
	n.pending = append(n.pending, append([]byte(nil), frame...))
	n.pendingB += len(frame)
	return true
}

// Pending is the number of frames waiting for receive buffers.
func (n *Net) Pending() int { return len(n.pending) }

// State returns a deep copy of the device state.
func (n *Net) State() NetState {
	s := n.st
	s.LinkDown = n.linkDown
	s.Pending = make([][]byte, len(n.pending))
	for i, f := range n.pending {
		s.Pending[i] = append([]byte(nil), f...)
	}
	return s
}

// SetState restores a state returned by State, validating it as untrusted
// input (FIFO bounds); on error nothing changes. Call the transport's Kick
// afterwards so pending frames reach buffers the guest already posted.
func (n *Net) SetState(s NetState) error {
	if len(s.Pending) > RXFIFOFrames {
		return fmt.Errorf("%w: %d pending frames", ErrBadState, len(s.Pending))
	}
	total := 0
	for _, f := range s.Pending {
		if len(f) == 0 || len(f) > MaxFrameSize {
			return fmt.Errorf("%w: pending frame of %d bytes", ErrBadState, len(f))
		}
		total += len(f)
	}
	if total > RXFIFOBytes {
		return fmt.Errorf("%w: %d pending bytes", ErrBadState, total)
	}
	n.clearPending()
	for _, f := range s.Pending {
		n.pending = append(n.pending, append([]byte(nil), f...))
	}
	n.pendingB = total
	n.linkDown = s.LinkDown
	n.st = s
	n.st.Pending = nil
	return nil
}
