package devices

// Goldfish real-time clock ("google,goldfish-rtc"), at QEMU virt's address.
// Linux's rtc-goldfish driver reads it at boot (RTC_HCTOSYS) to set the
// date. The time it shows is the board's: a function of the guest's own
// clock (so of the instruction count and the logged time advances) plus a
// wall-clock origin that is part of the machine's configuration. A read is
// therefore deterministic, the same on every replica and in every replay,
// and is not an input of its own.
const (
	RTCBase = 0x101000
	RTCSize = 0x1000

	rtcTimeLow     = 0x00 // read: latches the high half; write: sets the low half
	rtcTimeHigh    = 0x04
	rtcAlarmLow    = 0x08
	rtcAlarmHigh   = 0x0c
	rtcIRQEnabled  = 0x10
	rtcClearAlarm  = 0x14
	rtcAlarmStatus = 0x18
	rtcClearIRQ    = 0x1c
)

// RTCState is the guest-visible state of the clock: what the guest set
// (an offset from the board's time), the latched high half, and the alarm
// registers.
type RTCState struct {
	Offset     int64  // nanoseconds added to the board's time by the guest's writes
	High       uint32 // high half latched by the last read of the low half
	AlarmHigh  uint32
	Alarm      uint64
	IRQEnabled bool
}

// RTC is the Goldfish real-time clock. Alarms are stored but never fire:
// no guest of ours sets one (Linux uses them only for wake-up alarms), and
// an alarm would have to join the machine's timer schedule to fire at a
// deterministic instruction count. ALARM_STATUS therefore reads 0.
type RTC struct {
	now func() uint64 // the board's time, nanoseconds since 1970
	st  RTCState
}

// NewRTC returns a clock that shows now() plus whatever the guest sets.
func NewRTC(now func() uint64) *RTC { return &RTC{now: now} }

func (r *RTC) time() uint64 { return r.now() + uint64(r.st.Offset) }

// Read implements MMIO. The registers are 32 bits wide; other sizes read 0.
func (r *RTC) Read(off uint64, size int) uint64 {
	if size != 4 {
		return 0
	}
	switch off {
	case rtcTimeLow:
		t := r.time()
		r.st.High = uint32(t >> 32)
		return uint64(uint32(t))
	case rtcTimeHigh:
		return uint64(r.st.High)
	case rtcAlarmLow:
		return uint64(uint32(r.st.Alarm))
	case rtcAlarmHigh:
		return uint64(r.st.AlarmHigh)
	case rtcIRQEnabled:
		if r.st.IRQEnabled {
			return 1
		}
	}
	return 0
}

// Write implements MMIO. Setting either half of the time moves the clock
// by the difference, as QEMU's model does, so that Linux's set_time (high
// half, then low half) lands on the value it wrote.
func (r *RTC) Write(off uint64, size int, v uint64) {
	if size != 4 {
		return
	}
	v32 := uint64(uint32(v))
	switch off {
	case rtcTimeLow:
		t := r.time()
		r.st.Offset += int64((t&^0xffffffff | v32) - t)
	case rtcTimeHigh:
		t := r.time()
		r.st.Offset += int64((v32<<32 | t&0xffffffff) - t)
	case rtcAlarmLow:
		r.st.Alarm = uint64(r.st.AlarmHigh)<<32 | v32
	case rtcAlarmHigh:
		r.st.AlarmHigh = uint32(v32)
	case rtcIRQEnabled:
		r.st.IRQEnabled = v32&1 != 0
	case rtcClearAlarm:
		r.st.Alarm = 0
	}
}

// State returns the clock's state.
func (r *RTC) State() RTCState { return r.st }

// SetState restores a state returned by State; every value is valid.
func (r *RTC) SetState(st RTCState) error {
	r.st = st
	return nil
}
