package devices

import "errors"

// SiFive test device ("sifive,test0"), used by Linux's syscon-poweroff and
// syscon-reboot drivers, at QEMU virt's address.
const (
	SysconBase = 0x100000
	SysconSize = 0x1000

	sysconFail  = 0x3333 // low half; the exit code is in the high half
	sysconPass  = 0x5555
	sysconReset = 0x7777
)

// PowerAction is what the guest asked the test device to do.
type PowerAction int

// Power actions.
const (
	PowerOff   PowerAction = iota // 0x5555: power off, success
	PowerFail                     // 0x3333 | code<<16: power off with failure code
	PowerReset                    // 0x7777: reset
)

func (a PowerAction) String() string {
	switch a {
	case PowerOff:
		return "poweroff"
	case PowerFail:
		return "poweroff-fail"
	case PowerReset:
		return "reset"
	}
	return "unknown"
}

// SysconState is the state of the test device. It has none: the request is
// handed to the board at once, and the board stops the run loop.
type SysconState struct{}

// Syscon is the SiFive test device.
type Syscon struct {
	notify func(a PowerAction, code uint16)
}

// NewSyscon returns a test device that calls notify on a power request. code
// is the failure code for PowerFail and 0 otherwise. notify runs during the
// guest's store; the board should record the request and stop the CPU.
func NewSyscon(notify func(a PowerAction, code uint16)) *Syscon {
	if notify == nil {
		notify = func(PowerAction, uint16) {}
	}
	return &Syscon{notify: notify}
}

// Read implements MMIO; the register reads as zero.
func (s *Syscon) Read(off uint64, size int) uint64 { return 0 }

// Write implements MMIO. Only a 32-bit store to offset 0 (what the syscon
// drivers' regmap does) acts; other stores and unknown values are ignored.
func (s *Syscon) Write(off uint64, size int, value uint64) {
	if off != 0 || size != 4 {
		return
	}
	v := uint32(value)
	switch v & 0xFFFF {
	case sysconPass:
		s.notify(PowerOff, 0)
	case sysconFail:
		s.notify(PowerFail, uint16(v>>16))
	case sysconReset:
		s.notify(PowerReset, 0)
	}
}

// State returns the (empty) state.
func (s *Syscon) State() SysconState { return SysconState{} }

// SetState restores a state returned by State.
func (s *Syscon) SetState(st SysconState) error {
	if st != (SysconState{}) {
		return errors.New("syscon: invalid state")
	}
	return nil
}
