package machine

import "ftvm/riscv"

// SBI extension IDs and error codes (RISC-V SBI specification v2.0).
const (
	sbiExtBase   = 0x10
	sbiExtTime   = 0x54494d45
	sbiExtIPI    = 0x735049
	sbiExtRfence = 0x52464e43
	sbiExtHSM    = 0x48534d
	sbiExtSRST   = 0x53525354

	sbiSuccess          = 0
	sbiErrNotSupported  = -2
	sbiErrInvalidParam  = -3
	sbiErrInvalidAddr   = -5
	sbiErrAlreadyAvail  = -6
	sbiSpecVersion      = 1 << 24 // v1.0
	sbiImplID           = 0x4654  // "FT": not a registered implementation ID
	sbiImplVersion      = 1
	sbiLegacyGetcharNil = ^uint64(0)
)

// sbiCall implements the SBI for an ECALL from S-mode. Arguments are in
// a0-a5, the function in a6, the extension in a7; the error goes to a0 and
// the value to a1 (legacy extensions return only a0).
func (m *Machine) sbiCall(h *riscv.Hart) bool {
	x := &h.X
	a0, a1, a2 := x[10], x[11], x[12]
	eid, fid := x[17], x[16]
	self := int(h.HartID())
	ret := func(err int64, val uint64) bool {
		x[10], x[11] = uint64(err), val
		return true
	}
	all := uint64(1)<<len(m.harts) - 1
	switch eid {
	case 0x00: // legacy set_timer
		m.setTimer(self, a0)
		x[10] = 0
		return true
	case 0x01: // legacy console_putchar
		m.withDevices(self, func() { m.emitConsole([]byte{byte(a0)}) })
		x[10] = 0
		return true
	case 0x02: // legacy console_getchar: input goes through the UART only
		x[10] = sbiLegacyGetcharNil
		return true
	case 0x03: // legacy clear_ipi
		h.SetSoftwarePending(riscv.IntSSI, false)
		x[10] = 0
		return true
	case 0x04: // legacy send_ipi: its hart mask is in guest memory; all harts
		m.sendIPI(self, all)
		x[10] = 0
		return true
	case 0x05: // legacy remote_fence_i (to all harts, as above)
		m.remoteFence(self, all, fenceI)
		x[10] = 0
		return true
	case 0x06, 0x07: // legacy remote_sfence_vma(_asid)
		m.remoteFence(self, all, fenceVMA)
		x[10] = 0
		return true
	case 0x08: // legacy shutdown
		m.withDevices(self, func() { m.halt(StopPowerOff, 0) })
		x[10] = 0
		return true
	case sbiExtBase:
		switch fid {
		case 0:
			return ret(sbiSuccess, sbiSpecVersion)
		case 1:
			return ret(sbiSuccess, sbiImplID)
		case 2:
			return ret(sbiSuccess, sbiImplVersion)
		case 3:
			return ret(sbiSuccess, b2u(m.sbiProbe(a0)))
		case 4, 5, 6: // mvendorid, marchid, mimpid
			return ret(sbiSuccess, 0)
		}
	case sbiExtTime:
		if fid == 0 {
			m.setTimer(self, a0)
			return ret(sbiSuccess, 0)
		}
	case sbiExtIPI:
		if fid == 0 {
			set, ok := m.hartMask(a0, a1)
			if !ok {
				return ret(sbiErrInvalidParam, 0)
			}
			m.sendIPI(self, set)
			return ret(sbiSuccess, 0)
		}
	case sbiExtRfence:
		if fid <= 6 {
			set, ok := m.hartMask(a0, a1)
			if !ok {
				return ret(sbiErrInvalidParam, 0)
			}
			switch fid {
			case 0:
				m.remoteFence(self, set, fenceI)
				return ret(sbiSuccess, 0)
			case 1, 2:
				m.remoteFence(self, set, fenceVMA)
				return ret(sbiSuccess, 0)
			}
			// The hypervisor fences: there is no H extension.
			return ret(sbiErrNotSupported, 0)
		}
	case sbiExtHSM:
		switch fid {
		case 0: // hart_start(hartid, start_addr, opaque)
			return ret(m.hartStart(self, a0, a1, a2), 0)
		case 1: // hart_stop
			return ret(m.hartStop(self), 0)
		case 2: // hart_get_status(hartid)
			st, err := m.hartStatus(a0)
			return ret(err, st)
		case 3: // hart_suspend(suspend_type, resume_addr, opaque)
			return ret(m.hartSuspend(self, a0, a1, a2), 0)
		}
	case sbiExtSRST:
		if fid == 0 {
			switch a0 {
			case 0: // shutdown
				code := uint32(0)
				if a1 != 0 { // reason: system failure
					code = 1
				}
				m.withDevices(self, func() { m.halt(StopPowerOff, code) })
				return ret(sbiSuccess, 0)
			case 1, 2: // cold, warm reboot
				m.withDevices(self, func() { m.halt(StopReboot, 0) })
				return ret(sbiSuccess, 0)
			}
			return ret(sbiErrInvalidParam, 0)
		}
	}
	return ret(sbiErrNotSupported, 0)
}

func (m *Machine) sbiProbe(eid uint64) bool {
	switch eid {
	case 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
		sbiExtBase, sbiExtTime, sbiExtIPI, sbiExtRfence, sbiExtHSM, sbiExtSRST:
		return true
	}
	return false
}

// hartMask turns an SBI hart mask (mask, base) into a set of harts (bit i
// is hart i). A base of all-ones means every hart; a mask naming a hart
// the machine does not have is invalid.
func (m *Machine) hartMask(mask, base uint64) (uint64, bool) {
	n := uint64(len(m.harts))
	if base == ^uint64(0) {
		return 1<<n - 1, true
	}
	if mask == 0 {
		return 0, true
	}
	if base >= n || mask>>(n-base) != 0 {
		return 0, false
	}
	return mask << base, true
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
