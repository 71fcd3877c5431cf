package virtio

import (
	"errors"
	"fmt"
)

// Split virtqueue layout (spec 2.7):
//
//	descriptor table: Num entries of {addr u64, len u32, flags u16, next u16}
//	driver area (avail): flags u16, idx u16, ring[Num] u16 (, used_event u16)
//	device area (used):  flags u16, idx u16, ring[Num] {id u32, len u32} (, avail_event u16)
const (
	descSize = 16

	descFNext     = 1 // VIRTQ_DESC_F_NEXT
	descFWrite    = 2 // VIRTQ_DESC_F_WRITE
	descFIndirect = 4 // VIRTQ_DESC_F_INDIRECT

	availFNoInterrupt = 1 // VIRTQ_AVAIL_F_NO_INTERRUPT

	// MaxQueueSize is the largest queue size the split ring allows (spec
	// 2.7: "The maximum Queue Size value is 32768").
	MaxQueueSize = 32768
)

// QueueState is the snapshot state of one virtqueue: the driver-written
// transport registers plus the device's private ring cursors. The cursors
// are kept by the device, never re-read from guest memory, so a guest
// scribbling over used->idx cannot confuse the device (spec 2.7.13/2.7.14
// describe the device's copy of last_avail_idx implicitly).
type QueueState struct {
	Num        uint32 // QueueNum as written by the driver
	Ready      bool   // QueueReady
	DescAddr   uint64 // QueueDescLow/High
	DriverAddr uint64 // QueueDriverLow/High (available ring)
	DeviceAddr uint64 // QueueDeviceLow/High (used ring)
	LastAvail  uint16 // next avail->ring slot the device will consume (free-running)
	UsedIdx    uint16 // device's used->idx (free-running)
	// Deferred: chains are waiting for the device's pace (pace.go).
	Deferred bool `json:",omitempty"`
}

// Queue is one split virtqueue as seen by a device model. Devices obtain
// it from Transport.Queue; a *Queue is only valid for the duration of the
// call in which it was obtained.
type Queue struct {
	t      *MMIO
	index  int
	max    uint16
	s      QueueState
	pushed bool  // used entries added since the last Interrupt
	chain  Chain // scratch, reused by Pop
}

// segment is one guest-physical buffer of a descriptor chain.
type segment struct {
	addr uint64
	len  uint32
}

// Chain is a parsed descriptor chain: its device-readable part followed by
// its device-writable part, each exposed as a flat byte stream so devices
// make no assumption about how the driver split a message into
// descriptors (spec 2.6.4 "Message Framing").
type Chain struct {
	// Head is the index of the first descriptor, returned in the used ring.
	Head uint16
	// ReadLen and WriteLen are the total byte lengths of the
	// device-readable and device-writable parts.
	ReadLen, WriteLen uint64

	mem    Memory
	t      *MMIO
	rd, wr []segment
}

// ReadAt copies len(p) bytes of the device-readable stream starting at off
// into p. It returns ErrNoRoom if the range exceeds ReadLen and ErrMemory
// if a buffer lies outside guest RAM.
func (c *Chain) ReadAt(p []byte, off uint64) error {
	return c.access(c.rd, c.ReadLen, p, off, false)
}

// WriteAt copies p into the device-writable stream at off. Errors as ReadAt.
func (c *Chain) WriteAt(p []byte, off uint64) error {
	return c.access(c.wr, c.WriteLen, p, off, true)
}

func (c *Chain) access(segs []segment, total uint64, p []byte, off uint64, write bool) error {
	if off > total || uint64(len(p)) > total-off {
		return ErrNoRoom
	}
	c.t.charge(uint64(len(p)))
	for _, s := range segs {
		if len(p) == 0 {
			break
		}
		if off >= uint64(s.len) {
			off -= uint64(s.len)
			continue
		}
		n := uint64(s.len) - off
		if n > uint64(len(p)) {
			n = uint64(len(p))
		}
		var ok bool
		if write {
			ok = c.mem.WritePhys(s.addr+off, p[:n])
		} else {
			ok = c.mem.ReadPhys(s.addr+off, p[:n])
		}
		if !ok {
			return ErrMemory
		}
		p = p[n:]
		off = 0
	}
	return nil
}

// Index is the queue's index within its device.
func (q *Queue) Index() int { return q.index }

// Size is the negotiated queue size (QueueNum).
func (q *Queue) Size() int { return int(q.s.Num) }

func (q *Queue) fail(format string, args ...any) error {
	err := fmt.Errorf("virtio: queue %d: "+format, append([]any{q.index}, args...)...)
	q.t.Fail(err)
	return errors.Join(ErrQueue, err)
}

// Pop takes the next available descriptor chain. It returns (nil, nil) when
// the driver has made no further buffers available, or when the device
// must wait for its pace (pace.go: the queue is then resumed later with
// QueueNotify). A non-nil error is
// structural: the transport is already in DEVICE_NEEDS_RESET and the
// device must stop using the queue. The returned chain is valid until the
// next Pop on this queue.
//
// Devices must bound their Pop loops by Size(): device writes into guest
// memory (e.g. block reads) could land on avail->idx and keep advancing
// it, so "pop until empty" alone would let the guest keep the device busy
// forever.
func (q *Queue) Pop() (*Chain, error) {
	if !q.t.live() || !q.s.Ready {
		return nil, errNeedReset
	}
	mem := q.t.mem
	n := uint16(q.s.Num) // validated power of two in [1, 32768]
	var b [2]byte
	if !mem.ReadPhys(q.s.DriverAddr+2, b[:]) {
		return nil, q.fail("avail ring at %#x outside RAM", q.s.DriverAddr)
	}
	availIdx := le16(b[:])
	pending := availIdx - q.s.LastAvail
	if pending == 0 {
		return nil, nil
	}
	// Spec 2.7.13.3: the driver never has more than Num chains
	// outstanding, so a larger gap means a corrupt index.
	if pending > n {
		return nil, q.fail("avail idx %d runs %d ahead of device (size %d)", availIdx, pending, n)
	}
	if !q.t.mayWork(q) {
		return nil, nil // later: see pace.go
	}
	slot := q.s.LastAvail & (n - 1)
	if !mem.ReadPhys(q.s.DriverAddr+4+2*uint64(slot), b[:]) {
		return nil, q.fail("avail ring at %#x outside RAM", q.s.DriverAddr)
	}
	head := le16(b[:])
	if head >= n {
		return nil, q.fail("head index %d >= size %d", head, n)
	}
	descs, err := q.parse(head)
	q.t.charge(ChainCost + descSize*uint64(descs))
	if err != nil {
		return nil, err
	}
	q.s.LastAvail++
	return &q.chain, nil
}

// Unpop returns the chain most recently taken by Pop to the available
// ring; the next Pop returns it again. Used by virtio-net when a frame
// does not fit the buffer (the buffer stays with the device).
func (q *Queue) Unpop() { q.s.LastAvail-- }

// parse walks the chain starting at head into q.chain (spec 2.7.5 and
// 2.7.5.3 for indirect descriptors) and returns how many descriptors it
// read.
func (q *Queue) parse(head uint16) (descs int, err error) {
	c := &q.chain
	c.Head = head
	c.ReadLen, c.WriteLen = 0, 0
	c.mem, c.t = q.t.mem, q.t
	c.rd, c.wr = c.rd[:0], c.wr[:0]

	indirectOK := q.t.DriverFeatures()&FeatureIndirectDesc != 0
	table := q.s.DescAddr
	size := uint32(q.s.Num)
	indirect := false
	idx := uint32(head)
	// visited bounds the walk of one table: a chain can visit each
	// descriptor of its table at most once, so more visits mean a loop.
	visited := uint32(0)
	var d [descSize]byte
	fail := func(format string, args ...any) (int, error) { return descs, q.fail(format, args...) }
	for {
		visited++
		if visited > size {
			return fail("descriptor chain from head %d loops or exceeds table size %d", head, size)
		}
		descs++
		if !q.t.mem.ReadPhys(table+uint64(idx)*descSize, d[:]) {
			return fail("descriptor table at %#x outside RAM", table)
		}
		addr, length, flags, next := le64(d[0:]), le32(d[8:]), le16(d[12:]), le16(d[14:])
		if flags&descFIndirect != 0 {
			switch {
			case !indirectOK:
				return fail("indirect descriptor without VIRTIO_F_INDIRECT_DESC")
			case indirect:
				return fail("nested indirect descriptor") // spec 2.7.5.3.1
			case flags&descFNext != 0:
				return fail("indirect descriptor with NEXT") // spec 2.7.5.3.1
			case length == 0 || length%descSize != 0 || length/descSize > uint32(q.max):
				// Spec 2.7.5.3.1: a chain is never longer than the queue
				// size. We cap a table at QueueNumMax (256 for our devices),
				// above what Linux builds (virtio-blk: seg_max+2 = 130,
				// virtio-net: MAX_SKB_FRAGS+2), which bounds the work one
				// chain can cause.
				return fail("indirect table length %d invalid", length)
			case addr+uint64(length) < addr:
				return fail("indirect table address wraps")
			}
			// Spec 2.7.5.3.2: the device ignores WRITE on the indirect
			// descriptor itself; the table's entries start at index 0.
			table, size, indirect, idx, visited = addr, length/descSize, true, 0, 0
			continue
		}
		if addr+uint64(length) < addr {
			return fail("descriptor %d address wraps", idx)
		}
		if flags&descFWrite != 0 {
			c.wr = append(c.wr, segment{addr, length})
			c.WriteLen += uint64(length)
		} else {
			// Spec 2.7.4.2: device-readable descriptors precede all
			// device-writable ones.
			if len(c.wr) != 0 {
				return fail("device-readable descriptor after device-writable one")
			}
			c.rd = append(c.rd, segment{addr, length})
			c.ReadLen += uint64(length)
		}
		if flags&descFNext == 0 {
			return descs, nil
		}
		if uint32(next) >= size {
			return fail("next index %d >= table size %d", next, size)
		}
		idx = uint32(next)
	}
}

// Push returns a chain to the driver through the used ring, recording
// that written bytes were stored into its device-writable part
// (spec 2.7.8). Errors are structural.
func (q *Queue) Push(c *Chain, written uint32) error {
	if !q.t.live() || !q.s.Ready {
		return errNeedReset
	}
	n := uint16(q.s.Num)
	var e [8]byte
	put32(e[0:], uint32(c.Head))
	put32(e[4:], written)
	slot := q.s.UsedIdx & (n - 1)
	if !q.t.mem.WritePhys(q.s.DeviceAddr+4+8*uint64(slot), e[:]) {
		return q.fail("used ring at %#x outside RAM", q.s.DeviceAddr)
	}
	q.s.UsedIdx++
	// The element is written before the index (spec 2.7.8.2); memory is
	// not concurrently visible to the guest here, but keep the order.
	put16(e[:], q.s.UsedIdx)
	if !q.t.mem.WritePhys(q.s.DeviceAddr+2, e[:2]) {
		return q.fail("used ring at %#x outside RAM", q.s.DeviceAddr)
	}
	q.pushed = true
	return nil
}

// Interrupt sends a used buffer notification if buffers were pushed since
// the last call, unless the driver suppressed it with
// VIRTQ_AVAIL_F_NO_INTERRUPT (spec 2.7.7; EVENT_IDX is not offered).
// Devices call it once after a batch of Push calls.
func (q *Queue) Interrupt() {
	if !q.pushed {
		return
	}
	q.pushed = false
	if !q.t.live() || !q.s.Ready {
		return
	}
	var b [2]byte
	if !q.t.mem.ReadPhys(q.s.DriverAddr, b[:]) {
		q.fail("avail ring at %#x outside RAM", q.s.DriverAddr)
		return
	}
	if le16(b[:])&availFNoInterrupt == 0 {
		q.t.raise(InterruptUsedBuffer)
	}
}

// validQueue checks a queue configuration the driver (or a snapshot) wants
// to enable: spec 2.7 (size a power of two, at most QueueNumMax) and
// 2.7.2 table alignment (descriptors 16, avail 2, used 4). It also rejects
// rings whose end would wrap the 64-bit address space, so later offset
// arithmetic cannot overflow into low memory.
func validQueue(s *QueueState, max uint16) error {
	n := uint64(s.Num)
	switch {
	case n == 0 || n > uint64(max) || n&(n-1) != 0:
		return fmt.Errorf("queue size %d invalid (max %d)", s.Num, max)
	case s.DescAddr%16 != 0 || s.DriverAddr%2 != 0 || s.DeviceAddr%4 != 0:
		return fmt.Errorf("misaligned ring (desc %#x avail %#x used %#x)", s.DescAddr, s.DriverAddr, s.DeviceAddr)
	case s.DescAddr+16*n < s.DescAddr,
		s.DriverAddr+6+2*n < s.DriverAddr,
		s.DeviceAddr+6+8*n < s.DeviceAddr:
		return fmt.Errorf("ring wraps address space")
	}
	return nil
}
