package virtio

import (
	"fmt"

	"ftvm/devices"
)

// virtio-mmio register offsets (spec 4.2.2, version 2 layout).
const (
	regMagicValue        = 0x000
	regVersion           = 0x004
	regDeviceID          = 0x008
	regVendorID          = 0x00c
	regDeviceFeatures    = 0x010
	regDeviceFeaturesSel = 0x014
	regDriverFeatures    = 0x020
	regDriverFeaturesSel = 0x024
	regQueueSel          = 0x030
	regQueueNumMax       = 0x034
	regQueueNum          = 0x038
	regQueueReady        = 0x044
	regQueueNotify       = 0x050
	regInterruptStatus   = 0x060
	regInterruptACK      = 0x064
	regStatus            = 0x070
	regQueueDescLow      = 0x080
	regQueueDescHigh     = 0x084
	regQueueDriverLow    = 0x090
	regQueueDriverHigh   = 0x094
	regQueueDeviceLow    = 0x0a0
	regQueueDeviceHigh   = 0x0a4
	regSHMSel            = 0x0ac
	regSHMLenLow         = 0x0b0
	regSHMLenHigh        = 0x0b4
	regSHMBaseLow        = 0x0b8
	regSHMBaseHigh       = 0x0bc
	regConfigGeneration  = 0x0fc
	regConfig            = 0x100

	// MMIOSize is the size of the register window (QEMU virt spaces the
	// transports 0x1000 apart). Accesses at or beyond it read 0.
	MMIOSize = 0x1000

	// MagicValue is "virt" little-endian (spec 4.2.2).
	MagicValue = 0x74726976
	// Version is the modern (non-legacy) virtio-mmio version.
	Version = 2
	// VendorID is the value of the VendorID register ("QEMU", as QEMU's
	// virtio-mmio; drivers do not interpret it).
	VendorID = 0x554d4551

	validStatusBits = StatusAcknowledge | StatusDriver | StatusDriverOK |
		StatusFeaturesOK | StatusDeviceNeedsReset | StatusFailed

	// transportFeatures are the transport-owned feature bits this
	// implementation supports: VERSION_1 (mandatory, spec 6.1) and
	// indirect descriptors (spec 2.7.5.3). EVENT_IDX, packed rings,
	// ACCESS_PLATFORM, notification data etc. are not offered.
	transportFeatures = FeatureVersion1 | FeatureIndirectDesc
)

// MMIO is a virtio-mmio (version 2) transport. It implements devices.MMIO.
type MMIO struct {
	dev Device
	mem Memory
	irq devices.IRQLine

	status            uint32
	deviceFeaturesSel uint32
	driverFeaturesSel uint32
	driverFeatures    uint64
	queueSel          uint32
	interruptStatus   uint32
	configGeneration  uint32
	queues            []*Queue

	level bool  // level last driven on irq
	err   error // why DEVICE_NEEDS_RESET was set (diagnostics only)

	// Pacing (pace.go): nil means none. debt is the work owed at guest
	// time debtAt.
	pace   *Pace
	debt   uint64
	debtAt uint64
}

var _ devices.MMIO = (*MMIO)(nil)
var _ Transport = (*MMIO)(nil)

// NewMMIO creates a transport for dev, DMA-ing into mem and signalling on
// irq, and attaches dev to it. The device starts in the reset state.
func NewMMIO(dev Device, mem Memory, irq devices.IRQLine) *MMIO {
	m := &MMIO{dev: dev, mem: mem, irq: irq}
	n := dev.NumQueues()
	m.queues = make([]*Queue, n)
	for i := range m.queues {
		max := dev.MaxQueueSize(i)
		if max > MaxQueueSize || max&(max-1) != 0 {
			panic(fmt.Sprintf("virtio: device queue %d max size %d invalid", i, max)) // programming error, not guest input
		}
		m.queues[i] = &Queue{t: m, index: i, max: max}
	}
	dev.Attach(m)
	return m
}

// Device returns the device behind the transport.
func (m *MMIO) Device() Device { return m.dev }

// Memory implements Transport.
func (m *MMIO) Memory() Memory { return m.mem }

// DriverFeatures implements Transport: the features accepted at
// FEATURES_OK, or 0 before that.
func (m *MMIO) DriverFeatures() uint64 {
	if m.status&StatusFeaturesOK == 0 {
		return 0
	}
	return m.driverFeatures
}

// Queue implements Transport.
func (m *MMIO) Queue(q int) *Queue {
	if q < 0 || q >= len(m.queues) || !m.live() || !m.queues[q].s.Ready {
		return nil
	}
	return m.queues[q]
}

// Fail implements Transport: enter DEVICE_NEEDS_RESET (spec 2.1.2) and, if
// the driver is running, tell it with a configuration change notification.
func (m *MMIO) Fail(err error) {
	if m.status&StatusDeviceNeedsReset != 0 {
		return
	}
	m.err = err
	m.status |= StatusDeviceNeedsReset
	if m.status&StatusDriverOK != 0 {
		m.raise(InterruptConfigChanged)
	}
}

// ConfigChanged implements Transport: bump ConfigGeneration (spec 2.5.1,
// so the driver re-reads a multi-field config consistently) and send a
// configuration change notification once the driver is running.
func (m *MMIO) ConfigChanged() {
	m.configGeneration++
	if m.status&StatusDriverOK != 0 {
		m.raise(InterruptConfigChanged)
	}
}

// Err reports why the device entered DEVICE_NEEDS_RESET (nil if it has not,
// or if the state was restored from a snapshot).
func (m *MMIO) Err() error {
	if m.status&StatusDeviceNeedsReset == 0 {
		return nil
	}
	return m.err
}

// offered is the full feature set the device offers (spec 2.2).
func (m *MMIO) offered() uint64 {
	return m.dev.Features()&^transportFeatureMask | transportFeatures
}

// live reports whether the device may process buffers: the driver
// finished initialisation (spec 3.1.1) and nothing went wrong.
func (m *MMIO) live() bool {
	const need = StatusFeaturesOK | StatusDriverOK
	return m.status&need == need && m.status&(StatusDeviceNeedsReset|StatusFailed) == 0
}

func (m *MMIO) raise(bits uint32) {
	m.interruptStatus |= bits
	m.updateIRQ()
}

// updateIRQ drives the level-triggered line: high while InterruptStatus
// is non-zero (spec 4.2.3.4 on how the driver acknowledges).
func (m *MMIO) updateIRQ() {
	level := m.interruptStatus != 0
	if level != m.level {
		m.level = level
		m.irq.SetLevel(level)
	}
}

// SyncIRQ drives the interrupt line to the level implied by the current
// InterruptStatus even if it has not changed (for use after the board
// restored its interrupt controller).
func (m *MMIO) SyncIRQ() {
	m.level = m.interruptStatus != 0
	m.irq.SetLevel(m.level)
}

// Kick processes buffers already made available on every enabled queue as
// if the driver had written QueueNotify for each (in queue order). The
// board calls it after a restore or failover, when a notification may have
// been lost. It is harmless when nothing is pending.
func (m *MMIO) Kick() {
	for i := range m.queues {
		if m.Queue(i) != nil {
			m.dev.QueueNotify(i)
		}
	}
}

// Rescan is an alias of Kick.
func (m *MMIO) Rescan() { m.Kick() }

// reset implements spec 2.4 / 4.2.3.1: writing 0 to Status resets the
// transport and device; interrupts are deasserted.
func (m *MMIO) reset() {
	m.status = 0
	m.deviceFeaturesSel = 0
	m.driverFeaturesSel = 0
	m.driverFeatures = 0
	m.queueSel = 0
	m.interruptStatus = 0
	m.err = nil
	for _, q := range m.queues {
		q.s = QueueState{}
		q.pushed = false
	}
	m.updateIRQ()
	m.dev.Reset()
}

func (m *MMIO) selQueue() *Queue {
	if m.queueSel >= uint32(len(m.queues)) {
		return nil
	}
	return m.queues[m.queueSel]
}

// Read implements devices.MMIO.
func (m *MMIO) Read(offset uint64, size int) uint64 {
	if size != 1 && size != 2 && size != 4 && size != 8 {
		return 0
	}
	if offset >= MMIOSize {
		return 0
	}
	if offset >= regConfig {
		// Spec 4.2.2.2: config space allows 8/16/32-bit accesses; a
		// 64-bit access is served too (the bus may generate one).
		var b [8]byte
		m.dev.ReadConfig(offset-regConfig, b[:size])
		return le64(b[:])
	}
	// Spec 4.2.2.2: control registers are accessed 32 bits wide, aligned.
	if size != 4 || offset%4 != 0 {
		return 0
	}
	q := m.selQueue()
	switch offset {
	case regMagicValue:
		return MagicValue
	case regVersion:
		return Version
	case regDeviceID:
		return uint64(m.dev.DeviceID())
	case regVendorID:
		return VendorID
	case regDeviceFeatures:
		if m.deviceFeaturesSel > 1 {
			return 0
		}
		return uint64(uint32(m.offered() >> (32 * m.deviceFeaturesSel)))
	case regQueueNumMax:
		if q == nil {
			return 0 // spec 4.2.2: 0 means the queue is not available
		}
		return uint64(q.max)
	case regQueueNum:
		if q == nil {
			return 0
		}
		return uint64(q.s.Num)
	case regQueueReady:
		if q == nil || !q.s.Ready {
			return 0
		}
		return 1
	case regInterruptStatus:
		return uint64(m.interruptStatus)
	case regStatus:
		return uint64(m.status)
	case regQueueDescLow, regQueueDescHigh, regQueueDriverLow, regQueueDriverHigh, regQueueDeviceLow, regQueueDeviceHigh:
		if q == nil {
			return 0
		}
		a := m.queueAddr(q, offset)
		if offset&4 != 0 {
			return *a >> 32
		}
		return *a & 0xffffffff
	case regSHMLenLow, regSHMLenHigh, regSHMBaseLow, regSHMBaseHigh:
		// Spec 4.2.2 (1.2): no shared memory regions; a non-existent
		// region reads length and base as all ones.
		return 0xffffffff
	case regConfigGeneration:
		return uint64(m.configGeneration)
	}
	return 0
}

func (m *MMIO) queueAddr(q *Queue, offset uint64) *uint64 {
	switch offset &^ 4 {
	case regQueueDescLow:
		return &q.s.DescAddr
	case regQueueDriverLow:
		return &q.s.DriverAddr
	default:
		return &q.s.DeviceAddr
	}
}

// Write implements devices.MMIO.
func (m *MMIO) Write(offset uint64, size int, value uint64) {
	if size != 1 && size != 2 && size != 4 && size != 8 {
		return
	}
	if offset >= MMIOSize {
		return
	}
	if offset >= regConfig {
		var b [8]byte
		put64(b[:], value)
		m.dev.WriteConfig(offset-regConfig, b[:size])
		return
	}
	if size != 4 || offset%4 != 0 {
		return
	}
	v := uint32(value)
	q := m.selQueue()
	switch offset {
	case regDeviceFeaturesSel:
		m.deviceFeaturesSel = v
	case regDriverFeatures:
		// Spec 3.1.1: features are fixed once FEATURES_OK is set.
		if m.status&StatusFeaturesOK != 0 || m.driverFeaturesSel > 1 {
			return
		}
		shift := 32 * m.driverFeaturesSel
		m.driverFeatures = m.driverFeatures&^(0xffffffff<<shift) | uint64(v)<<shift
	case regDriverFeaturesSel:
		m.driverFeaturesSel = v
	case regQueueSel:
		m.queueSel = v
	case regQueueNum:
		// Spec 4.2.3.2: queue registers are written only while the queue
		// is disabled; later writes are ignored so an enabled queue's
		// validated configuration cannot change under the device.
		if q != nil && !q.s.Ready {
			q.s.Num = v
		}
	case regQueueDescLow, regQueueDescHigh, regQueueDriverLow, regQueueDriverHigh, regQueueDeviceLow, regQueueDeviceHigh:
		if q == nil || q.s.Ready {
			return
		}
		a := m.queueAddr(q, offset)
		if offset&4 != 0 {
			*a = *a&0xffffffff | uint64(v)<<32
		} else {
			*a = *a&^0xffffffff | uint64(v)
		}
	case regQueueReady:
		m.writeQueueReady(q, v)
	case regQueueNotify:
		// Without VIRTIO_F_NOTIFICATION_DATA the value is the queue index.
		if m.Queue(int(v)) != nil {
			m.dev.QueueNotify(int(v))
		}
	case regInterruptACK:
		m.interruptStatus &^= v
		m.updateIRQ()
	case regStatus:
		m.writeStatus(v)
	}
}

func (m *MMIO) writeQueueReady(q *Queue, v uint32) {
	if q == nil {
		return
	}
	if v&1 == 0 {
		q.s.Ready, q.s.Deferred = false, false
		return
	}
	if q.s.Ready {
		return
	}
	if err := validQueue(&q.s, q.max); err != nil {
		m.Fail(fmt.Errorf("virtio: queue %d: %w", q.index, err))
		return
	}
	// A newly enabled queue starts at index 0 in both rings: the driver
	// allocates fresh, zeroed rings before enabling (spec 2.7.13: the
	// driver's idx starts at 0).
	q.s.Ready = true
	q.s.LastAvail, q.s.UsedIdx = 0, 0
	q.pushed = false
}

func (m *MMIO) writeStatus(v uint32) {
	if v == 0 {
		m.reset()
		return
	}
	// The driver never clears bits (spec 2.1.1: only a reset does), so
	// status bits are sticky; DEVICE_NEEDS_RESET is device-owned.
	v &= validStatusBits &^ StatusDeviceNeedsReset
	old := m.status
	next := old | v
	if next&StatusFeaturesOK != 0 && old&StatusFeaturesOK == 0 {
		// Spec 2.2.2 / 3.1.1: accept FEATURES_OK only for a subset of the
		// offered features, and spec 6.1: VERSION_1 is mandatory for a
		// modern transport. Leaving the bit clear tells the driver.
		f := m.driverFeatures
		if f&^m.offered() != 0 || f&FeatureVersion1 == 0 {
			next &^= StatusFeaturesOK
		}
	}
	m.status = next
	if next&StatusDriverOK != 0 && old&StatusDriverOK == 0 {
		// Buffers made available before DRIVER_OK (e.g. virtio-net
		// filling its RX ring) must not be missed.
		m.Kick()
	}
}

// MMIOState is the snapshot state of a transport (the device's own state
// is saved separately through the device's State method).
type MMIOState struct {
	Status            uint32
	DeviceFeaturesSel uint32
	DriverFeaturesSel uint32
	DriverFeatures    uint64
	QueueSel          uint32
	InterruptStatus   uint32
	ConfigGeneration  uint32
	Queues            []QueueState
	// The pacing debt (pace.go): bytes owed at guest time DebtAt.
	Debt   uint64 `json:",omitempty"`
	DebtAt uint64 `json:",omitempty"`
}

// State returns a deep copy of the transport state.
func (m *MMIO) State() MMIOState {
	s := MMIOState{
		Status:            m.status,
		DeviceFeaturesSel: m.deviceFeaturesSel,
		DriverFeaturesSel: m.driverFeaturesSel,
		DriverFeatures:    m.driverFeatures,
		QueueSel:          m.queueSel,
		InterruptStatus:   m.interruptStatus,
		ConfigGeneration:  m.configGeneration,
		Queues:            make([]QueueState, len(m.queues)),
		Debt:              m.debt,
		DebtAt:            m.debtAt,
	}
	for i, q := range m.queues {
		s.Queues[i] = q.s
	}
	return s
}

// SetState restores a state produced by State, validating it as untrusted
// input; on error nothing changes. It then drives the interrupt line to
// the restored level, re-raising a pending interrupt. It does not process
// queues: call Kick once the whole machine is restored.
func (m *MMIO) SetState(s MMIOState) error {
	if len(s.Queues) != len(m.queues) {
		return fmt.Errorf("%w: %d queues, device has %d", ErrBadState, len(s.Queues), len(m.queues))
	}
	if s.Status&^validStatusBits != 0 {
		return fmt.Errorf("%w: status %#x", ErrBadState, s.Status)
	}
	if s.InterruptStatus&^(InterruptUsedBuffer|InterruptConfigChanged) != 0 {
		return fmt.Errorf("%w: interrupt status %#x", ErrBadState, s.InterruptStatus)
	}
	if s.Status&StatusFeaturesOK != 0 {
		if s.DriverFeatures&^m.offered() != 0 || s.DriverFeatures&FeatureVersion1 == 0 {
			return fmt.Errorf("%w: driver features %#x not acceptable", ErrBadState, s.DriverFeatures)
		}
	}
	for i := range s.Queues {
		qs := &s.Queues[i]
		if qs.Ready {
			if err := validQueue(qs, m.queues[i].max); err != nil {
				return fmt.Errorf("%w: queue %d: %v", ErrBadState, i, err)
			}
		}
	}
	if err := validPace(&s); err != nil {
		return fmt.Errorf("%w: %v", ErrBadState, err)
	}
	m.status = s.Status
	m.deviceFeaturesSel = s.DeviceFeaturesSel
	m.driverFeaturesSel = s.DriverFeaturesSel
	m.driverFeatures = s.DriverFeatures
	m.queueSel = s.QueueSel
	m.interruptStatus = s.InterruptStatus
	m.configGeneration = s.ConfigGeneration
	m.debt, m.debtAt = s.Debt, s.DebtAt
	m.err = nil
	if m.status&StatusDeviceNeedsReset != 0 {
		m.err = fmt.Errorf("virtio: device needs reset (restored)")
	}
	for i, q := range m.queues {
		q.s = s.Queues[i]
		q.pushed = false
	}
	m.SyncIRQ()
	return nil
}
