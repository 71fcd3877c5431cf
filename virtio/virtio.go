// Package virtio implements the modern (version 2) virtio-mmio transport
// with split virtqueues, and the virtio-blk and virtio-net device models
// of the ftvm machine.
//
// References are to the OASIS "Virtual I/O Device (VIRTIO) Version 1.2"
// specification (sections are the same in 1.1 unless noted):
// 2.1 device status, 2.2 feature bits, 2.4 device reset, 2.5 config space,
// 2.7 split virtqueues, 4.2 virtio over MMIO, 5.1 network device,
// 5.2 block device.
//
// # Determinism
//
// This package is part of the deterministic core: it never touches the
// host (no os, net, time, goroutines, random numbers) and never iterates
// a map. Everything a device does is a function of its state, guest
// memory and the calls the machine makes (register accesses, Receive,
// Kick, Update). Block requests complete synchronously inside the
// QueueNotify write, so their completion point is fixed by guest
// execution; with a Pace (pace.go), work beyond the device's bandwidth
// waits for a deadline in guest time, which the machine honours at a
// fixed instruction count.
//
// # Untrusted guest and error policy
//
// Every ring index, descriptor, length and address comes from the guest.
// The transport and devices never panic on them, bound every loop by the
// queue size, never allocate in proportion to a guest-supplied length
// beyond fixed caps, and touch guest memory only through Memory, whose
// false return is always handled. A Pace bounds the host work one
// notification, and any stretch of guest time, can cause.
//
// Errors are split in two classes:
//
//   - Structural errors: a ring that lies outside RAM, a queue enabled with
//     an invalid size or misaligned ring, an avail index that runs ahead of
//     the device by more than the queue size, a head or next index >= queue
//     size, a descriptor chain longer than allowed (a loop), an indirect
//     descriptor when INDIRECT_DESC was not negotiated (or a nested one), a
//     device-readable descriptor after a device-writable one, a descriptor
//     whose address+length wraps, and (block) a request with no room for
//     the header or status byte or whose status byte cannot be written.
//     The transport then sets DEVICE_NEEDS_RESET (status bit 0x40, spec
//     2.1.1), raises a configuration change interrupt if DRIVER_OK was set
//     (spec 2.1.2), and the device consumes no more buffers on any queue
//     until the driver resets it. This mirrors what QEMU's virtio_error
//     does and keeps a confused driver from racing a half-broken ring.
//
//   - Request errors: a well-formed chain whose data buffers lie outside
//     RAM, a block request for an out-of-range sector, a misaligned length,
//     an unsupported type or a backend error. The chain is completed
//     normally with an error status (VIRTIO_BLK_S_IOERR / _UNSUPP); a
//     virtio-net TX frame that cannot be read is dropped (and counted) and
//     its chain returned with length 0; a receive buffer outside RAM is
//     returned with length 0 and the frame dropped; a frame larger than the
//     next receive buffer is dropped and the buffer kept for the next frame.
//
// # Usage by the board
//
//	blk := virtio.NewBlock(image, false)
//	bt := virtio.NewMMIO(blk, ram, blkIRQ) // map at e.g. 0x10001000, size MMIOSize
//	nic := virtio.NewNet(mac, tap)         // tap: a host/netdev Backend
//	nt := virtio.NewMMIO(nic, ram, netIRQ)
//	// between CPU runs:
//	for f, ok := tap.TryReceive(); ok; f, ok = tap.TryReceive() { nic.Receive(f) }
//
// Snapshots: save bt.State() and blk.State() (nt.State(), nic.State()).
// Restore with SetState on freshly constructed objects over the restored
// RAM, restore the interrupt controller, then call SyncIRQ and Kick on
// every transport: SyncIRQ re-drives a pending interrupt, Kick processes
// buffers the guest made available but whose notification was lost.
package virtio

import "errors"

// Memory is guest physical memory as the device sees it (DMA). Both return
// false, touching nothing, if any byte of [addr, addr+len(p)) lies outside
// guest RAM. The implementation (the board's RAM) also records dirty pages
// on WritePhys.
type Memory interface {
	ReadPhys(addr uint64, p []byte) bool
	WritePhys(addr uint64, p []byte) bool
}

// Device is a virtio device model behind a transport (spec 2: a device
// has a type, feature bits, a configuration space and virtqueues).
//
// All methods are called from the machine's single execution thread.
type Device interface {
	// DeviceID is the virtio device type (spec 5: 1 net, 2 block).
	DeviceID() uint32
	// Features returns the device-type feature bits the device offers
	// (spec 2.2). Bits 28..40 are transport features and are decided by
	// the transport; the device's values for them are ignored.
	Features() uint64
	// ReadConfig fills p with the bytes of the device configuration space
	// starting at offset (little-endian layout, spec 2.5). Bytes beyond
	// the end of the configuration space read as zero.
	ReadConfig(offset uint64, p []byte)
	// WriteConfig stores p at offset in the configuration space; read-only
	// fields ignore the write.
	WriteConfig(offset uint64, p []byte)
	// NumQueues is the number of virtqueues; it never changes.
	NumQueues() int
	// MaxQueueSize is QueueNumMax for queue q (a power of two <= 32768).
	MaxQueueSize(q int) uint16
	// Attach is called once by the transport constructor.
	Attach(t Transport)
	// QueueNotify tells the device that buffers may be available on queue
	// q: the driver wrote QueueNotify, or the machine called Kick. The
	// device processes what it can synchronously.
	QueueNotify(q int)
	// Reset returns the device to its initial state (spec 2.4); the
	// transport has already reset its own registers and queues.
	Reset()
}

// Transport is the device's view of the transport it sits behind.
type Transport interface {
	// Memory is guest memory.
	Memory() Memory
	// Queue returns queue q if the device is live (FEATURES_OK and
	// DRIVER_OK set, DEVICE_NEEDS_RESET clear) and the queue is enabled;
	// otherwise nil. Spec 2.1.2 / 4.2.2.2: the device must not consume
	// buffers before DRIVER_OK nor touch a queue whose QueueReady is 0.
	Queue(q int) *Queue
	// DriverFeatures is the negotiated feature set (0 before FEATURES_OK).
	DriverFeatures() uint64
	// Fail puts the device in the DEVICE_NEEDS_RESET state (see the
	// package documentation for when).
	Fail(err error)
	// ConfigChanged reports a change of the device configuration space.
	ConfigChanged()
}

// Feature bits shared by all devices (spec 6, "Reserved Feature Bits").
const (
	FeatureIndirectDesc = 1 << 28 // VIRTIO_F_INDIRECT_DESC
	FeatureEventIdx     = 1 << 29 // VIRTIO_F_EVENT_IDX (not offered)
	FeatureVersion1     = 1 << 32 // VIRTIO_F_VERSION_1

	// transportFeatureMask covers the reserved range 28..40 the transport
	// owns (spec 2.2: "Feature bits 28 to 37 (and 38..) are reserved for
	// extensions to the queue and feature negotiation mechanisms").
	transportFeatureMask = ((uint64(1) << 41) - 1) &^ ((uint64(1) << 28) - 1)
)

// Device status bits (spec 2.1).
const (
	StatusAcknowledge      = 1
	StatusDriver           = 2
	StatusDriverOK         = 4
	StatusFeaturesOK       = 8
	StatusDeviceNeedsReset = 0x40
	StatusFailed           = 0x80
)

// InterruptStatus bits (spec 4.2.2, InterruptStatus register).
const (
	InterruptUsedBuffer    = 1
	InterruptConfigChanged = 2
)

// Device IDs (spec 5).
const (
	DeviceIDNet   = 1
	DeviceIDBlock = 2
)

// Errors reported by queue operations. Structural errors have already put
// the transport into DEVICE_NEEDS_RESET when returned.
var (
	ErrMemory    = errors.New("virtio: guest buffer outside RAM")
	ErrQueue     = errors.New("virtio: malformed virtqueue")
	ErrNotLive   = errors.New("virtio: device not live")
	ErrBadState  = errors.New("virtio: invalid state")
	ErrTooLarge  = errors.New("virtio: request too large")
	ErrNoRoom    = errors.New("virtio: buffer too small")
	errNeedReset = errors.New("virtio: device needs reset")
)

func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }
func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
func le64(b []byte) uint64 { return uint64(le32(b)) | uint64(le32(b[4:]))<<32 }

func put16(b []byte, v uint16) { b[0], b[1] = byte(v), byte(v>>8) }
func put32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}
func put64(b []byte, v uint64) { put32(b, uint32(v)); put32(b[4:], uint32(v>>32)) }

// readConfigBytes copies the part of cfg that overlaps [off, off+len(p))
// into p and zeroes the rest. Overflow-safe for any off.
func readConfigBytes(cfg []byte, off uint64, p []byte) {
	for i := range p {
		p[i] = 0
		o := off + uint64(i)
		if o >= off && o < uint64(len(cfg)) {
			p[i] = cfg[o]
		}
	}
}
