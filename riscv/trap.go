package riscv

// Exception causes (privileged spec table 3.6).
const (
	causeMisalignedFetch = 0
	causeFetchAccess     = 1
	causeIllegal         = 2
	causeBreakpoint      = 3
	causeMisalignedLoad  = 4
	causeLoadAccess      = 5
	causeMisalignedStore = 6
	causeStoreAccess     = 7
	causeEcallU          = 8
	causeEcallS          = 9
	causeEcallM          = 11
	causeFetchPage       = 12
	causeLoadPage        = 13
	causeStorePage       = 15

	interruptBit = 1 << 63

	// lockupTraps is how many traps may be taken in a row without an
	// instruction retiring. A real handler retires its first instruction;
	// only a faulting trap vector gets near this.
	lockupTraps = 64
)

// trap enters the trap handler for cause (an exception, or an interrupt
// when cause has interruptBit set) with trap value tval, at h.PC.
// Privileged spec 3.1.6-3.1.8 and 4.1.1.
func (h *Hart) trap(cause, tval uint64) {
	if h.Instret != h.trapAt {
		h.trapAt, h.trapRun = h.Instret, 0
	}
	if h.trapRun++; h.trapRun > lockupTraps {
		h.lockedUp = true
		h.Halt()
	}
	c := &h.csr
	code := cause &^ interruptBit
	deleg := c.medeleg
	if cause&interruptBit != 0 {
		deleg = c.mideleg
	}
	h.resValid = false
	if h.Priv <= PrivS && deleg>>code&1 != 0 {
		c.scause = cause
		c.sepc = h.PC
		c.stval = tval
		s := c.mstatus
		s &^= msSPIE | msSPP
		if s&msSIE != 0 {
			s |= msSPIE
		}
		s |= uint64(h.Priv) << 8
		s &^= msSIE
		c.mstatus = s
		h.PC = c.stvec &^ 3
		if c.stvec&1 != 0 && cause&interruptBit != 0 {
			h.PC += 4 * code
		}
		h.setPriv(PrivS)
		return
	}
	c.mcause = cause
	c.mepc = h.PC
	c.mtval = tval
	s := c.mstatus
	s &^= msMPIE | msMPP
	if s&msMIE != 0 {
		s |= msMPIE
	}
	s |= uint64(h.Priv) << 11
	s &^= msMIE
	c.mstatus = s
	h.PC = c.mtvec &^ 3
	if c.mtvec&1 != 0 && cause&interruptBit != 0 {
		h.PC += 4 * code
	}
	h.setPriv(PrivM)
}

// setPriv switches privilege. Fetch translation depends on the mode, so
// the cached fetch page goes; the data TLB is keyed by mode and stays.
func (h *Hart) setPriv(p uint8) {
	if p != h.Priv {
		h.Priv = p
		h.mmu.flushFetch()
	}
	h.updateKey()
	h.needIRQCheck()
}

// pendingInterrupt returns the interrupt to take now, or 0 (interrupt
// numbers are never 0 here since USI does not exist). Priority order and
// enabling rules: privileged spec 3.1.9.
func (h *Hart) pendingInterrupt() uint64 {
	c := &h.csr
	pending := c.mip & c.mie
	if pending == 0 {
		return 0
	}
	m := pending &^ c.mideleg
	if m != 0 && (h.Priv < PrivM || c.mstatus&msMIE != 0) {
		return pickInterrupt(m)
	}
	s := pending & c.mideleg
	if s != 0 && (h.Priv < PrivS || h.Priv == PrivS && c.mstatus&msSIE != 0) {
		return pickInterrupt(s)
	}
	return 0
}

var interruptOrder = [...]uint64{IntMEI, IntMSI, IntMTI, IntSEI, IntSSI, IntSTI}

func pickInterrupt(set uint64) uint64 {
	for _, i := range interruptOrder {
		if set>>i&1 != 0 {
			return i | interruptBit
		}
	}
	return 0
}

// mret implements MRET (privileged spec 3.3.2).
func (h *Hart) mret() {
	c := &h.csr
	s := c.mstatus
	mpp := uint8(s >> 11 & 3)
	s &^= msMIE
	if s&msMPIE != 0 {
		s |= msMIE
	}
	s |= msMPIE
	s &^= msMPP // MPP becomes U (least privileged supported mode)
	if mpp != PrivM {
		s &^= msMPRV
	}
	c.mstatus = s
	h.setPriv(mpp)
	h.PC = c.mepc
}

// sret implements SRET.
func (h *Hart) sret() {
	c := &h.csr
	s := c.mstatus
	spp := uint8(s >> 8 & 1)
	s &^= msSIE
	if s&msSPIE != 0 {
		s |= msSIE
	}
	s |= msSPIE
	s &^= msSPP
	s &^= msMPRV // the new mode is below M
	c.mstatus = s
	h.setPriv(spp)
	h.PC = c.sepc
}
