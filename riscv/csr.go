package riscv

// CSR numbers (privileged spec 1.12, chapter 2).
const (
	csrFflags = 0x001
	csrFrm    = 0x002
	csrFcsr   = 0x003

	csrCycle   = 0xc00
	csrTime    = 0xc01
	csrInstret = 0xc02

	csrSstatus    = 0x100
	csrSie        = 0x104
	csrStvec      = 0x105
	csrScounteren = 0x106
	csrSenvcfg    = 0x10a
	csrSscratch   = 0x140
	csrSepc       = 0x141
	csrScause     = 0x142
	csrStval      = 0x143
	csrSip        = 0x144
	csrSatp       = 0x180

	csrMvendorid  = 0xf11
	csrMarchid    = 0xf12
	csrMimpid     = 0xf13
	csrMhartid    = 0xf14
	csrMconfigptr = 0xf15

	csrMstatus       = 0x300
	csrMisa          = 0x301
	csrMedeleg       = 0x302
	csrMideleg       = 0x303
	csrMie           = 0x304
	csrMtvec         = 0x305
	csrMcounteren    = 0x306
	csrMenvcfg       = 0x30a
	csrMcountinhibit = 0x320
	csrMscratch      = 0x340
	csrMepc          = 0x341
	csrMcause        = 0x342
	csrMtval         = 0x343
	csrMip           = 0x344
	csrPmpcfg0       = 0x3a0
	csrPmpaddr0      = 0x3b0
	csrMcycle        = 0xb00
	csrMinstret      = 0xb02
	csrTselect       = 0x7a0
	csrTdata1        = 0x7a1
)

// mstatus fields.
const (
	msSIE  = 1 << 1
	msMIE  = 1 << 3
	msSPIE = 1 << 5
	msMPIE = 1 << 7
	msSPP  = 1 << 8
	msMPP  = 3 << 11
	msFS   = 3 << 13
	msMPRV = 1 << 17
	msSUM  = 1 << 18
	msMXR  = 1 << 19
	msTVM  = 1 << 20
	msTW   = 1 << 21
	msTSR  = 1 << 22
	msUXL  = 3 << 32
	msSXL  = 3 << 34
	msSD   = 1 << 63

	// Writable through mstatus. UBE/SBE/MBE stay 0 (little-endian only),
	// VS and XS stay 0 (no vector, no custom state).
	mstatusWritable = msSIE | msMIE | msSPIE | msMPIE | msSPP | msMPP | msFS |
		msMPRV | msSUM | msMXR | msTVM | msTW | msTSR
	// The subset sstatus exposes (privileged spec 4.1.1).
	sstatusMask = msSIE | msSPIE | msSPP | msFS | msSUM | msMXR | msUXL | msSD
)

const (
	misaValue = 2<<62 | 1<<('A'-'A') | 1<<('C'-'A') | 1<<('D'-'A') | 1<<('F'-'A') |
		1<<('I'-'A') | 1<<('M'-'A') | 1<<('S'-'A') | 1<<('U'-'A')

	// Interrupts S-mode can see and delegate.
	sInterrupts   = 1<<IntSSI | 1<<IntSTI | 1<<IntSEI
	allInterrupts = sInterrupts | 1<<IntMSI | 1<<IntMTI | 1<<IntMEI
	// Exceptions that may be delegated: everything but ecall from M.
	delegableExceptions = 0xffff &^ (1 << causeEcallM)
)

type csrFile struct {
	mstatus    uint64
	medeleg    uint64
	mideleg    uint64
	mie        uint64
	mip        uint64 // lines | sw, recomputed by updateMIP
	sw         uint64 // software-written SSIP/STIP/SEIP
	lines      uint64 // levels driven by devices
	mtvec      uint64
	mcounteren uint64
	menvcfg    uint64
	mscratch   uint64
	mepc       uint64
	mcause     uint64
	mtval      uint64
	mcountinh  uint64
	stvec      uint64
	scounteren uint64
	senvcfg    uint64
	sscratch   uint64
	sepc       uint64
	scause     uint64
	stval      uint64
	satp       uint64
	fflags     uint64
	frm        uint64
	// cycleOff/instretOff let mcycle/minstret be written without
	// disturbing Instret, which the machine uses as its position.
	cycleOff   uint64
	instretOff uint64
	pmpcfg     [16]uint64
	pmpaddr    [64]uint64
}

func (c *csrFile) reset() {
	c.mstatus = 2<<32 | 2<<34 // UXL = SXL = 64-bit
}

func (c *csrFile) updateMIP() { c.mip = c.lines | c.sw }

// readCSR returns the value of CSR n, or ok=false when the access is illegal
// at the current privilege (which raises an illegal-instruction exception).
func (h *Hart) readCSR(n uint32) (uint64, bool) {
	c := &h.csr
	if uint8(n>>8&3) > h.Priv {
		return 0, false
	}
	switch n {
	case csrFflags, csrFrm, csrFcsr:
		if c.mstatus&msFS == 0 {
			return 0, false
		}
		switch n {
		case csrFflags:
			return c.fflags, true
		case csrFrm:
			return c.frm, true
		}
		return c.frm<<5 | c.fflags, true
	case csrCycle, csrTime, csrInstret:
		if !h.counterAllowed(n - csrCycle) {
			return 0, false
		}
		switch n {
		case csrCycle:
			return h.Instret + c.cycleOff, true
		case csrTime:
			return h.sys.Time(), true
		}
		return h.Instret + c.instretOff, true
	case csrSstatus:
		return h.mstatusRead() & sstatusMask, true
	case csrSie:
		return c.mie & c.mideleg, true
	case csrStvec:
		return c.stvec, true
	case csrScounteren:
		return c.scounteren, true
	case csrSenvcfg:
		return c.senvcfg, true
	case csrSscratch:
		return c.sscratch, true
	case csrSepc:
		return c.sepc, true
	case csrScause:
		return c.scause, true
	case csrStval:
		return c.stval, true
	case csrSip:
		return c.mip & c.mideleg, true
	case csrSatp:
		if h.Priv == PrivS && c.mstatus&msTVM != 0 {
			return 0, false
		}
		return c.satp, true
	case csrMhartid:
		return h.id, true
	case csrMvendorid, csrMarchid, csrMimpid, csrMconfigptr:
		return 0, true
	case csrMstatus:
		return h.mstatusRead(), true
	case csrMisa:
		return misaValue, true
	case csrMedeleg:
		return c.medeleg, true
	case csrMideleg:
		return c.mideleg, true
	case csrMie:
		return c.mie, true
	case csrMtvec:
		return c.mtvec, true
	case csrMcounteren:
		return c.mcounteren, true
	case csrMenvcfg:
		return c.menvcfg, true
	case csrMcountinhibit:
		return c.mcountinh, true
	case csrMscratch:
		return c.mscratch, true
	case csrMepc:
		return c.mepc, true
	case csrMcause:
		return c.mcause, true
	case csrMtval:
		return c.mtval, true
	case csrMip:
		return c.mip, true
	case csrMcycle:
		return h.Instret + c.cycleOff, true
	case csrMinstret:
		return h.Instret + c.instretOff, true
	case csrTselect, csrTdata1:
		return 0, true
	}
	switch {
	case n >= csrPmpcfg0 && n < csrPmpcfg0+16:
		if n&1 != 0 { // RV64 has only the even pmpcfg registers
			return 0, false
		}
		return c.pmpcfg[n-csrPmpcfg0], true
	case n >= csrPmpaddr0 && n < csrPmpaddr0+64:
		return c.pmpaddr[n-csrPmpaddr0], true
	case n >= 0xc03 && n <= 0xc1f: // hpmcounter3..31: not implemented, read zero
		return 0, h.counterAllowed(n - csrCycle)
	case n >= 0xb03 && n <= 0xb1f, n >= 0x323 && n <= 0x33f: // mhpmcounter/mhpmevent
		return 0, true
	}
	return 0, false
}

// counterAllowed applies mcounteren/scounteren to U- and S-mode reads of
// cycle/time/instret/hpmcounter (privileged spec 3.1.11).
func (h *Hart) counterAllowed(i uint32) bool {
	bit := uint64(1) << i
	if h.Priv < PrivM && h.csr.mcounteren&bit == 0 {
		return false
	}
	if h.Priv == PrivU && h.csr.scounteren&bit == 0 {
		return false
	}
	return true
}

func (h *Hart) mstatusRead() uint64 {
	s := h.csr.mstatus
	if s&msFS == msFS {
		s |= msSD
	}
	return s
}

// writeCSR writes v to CSR n, returning false if the write is illegal.
// Read-only CSRs (number bits 11:10 == 3) are rejected by the caller.
func (h *Hart) writeCSR(n uint32, v uint64) bool {
	c := &h.csr
	if uint8(n>>8&3) > h.Priv {
		return false
	}
	switch n {
	case csrFflags, csrFrm, csrFcsr:
		if c.mstatus&msFS == 0 {
			return false
		}
		switch n {
		case csrFflags:
			c.fflags = v & 0x1f
		case csrFrm:
			c.frm = v & 7
		default:
			c.fflags = v & 0x1f
			c.frm = v >> 5 & 7
		}
		c.mstatus |= msFS
	case csrSstatus:
		h.setMstatus(c.mstatus&^sstatusMask | v&sstatusMask)
	case csrSie:
		c.mie = c.mie&^c.mideleg | v&c.mideleg
	case csrStvec:
		c.stvec = v &^ 2 // modes 0 (direct) and 1 (vectored)
	case csrScounteren:
		c.scounteren = v & 0xffffffff
	case csrSenvcfg:
		c.senvcfg = v & 1 // FIOM only
	case csrSscratch:
		c.sscratch = v
	case csrSepc:
		c.sepc = v &^ 1
	case csrScause:
		c.scause = v
	case csrStval:
		c.stval = v
	case csrSip:
		// Only SSIP is writable from S-mode (privileged spec 4.1.3).
		m := c.mideleg & (1 << IntSSI)
		c.sw = c.sw&^m | v&m
		c.updateMIP()
	case csrSatp:
		if h.Priv == PrivS && c.mstatus&msTVM != 0 {
			return false
		}
		h.setSatp(v)
	case csrMstatus:
		h.setMstatus(v)
	case csrMisa:
		// WARL: the extensions are fixed.
	case csrMedeleg:
		c.medeleg = v & delegableExceptions
	case csrMideleg:
		c.mideleg = v & sInterrupts
	case csrMie:
		c.mie = v & allInterrupts
	case csrMtvec:
		c.mtvec = v &^ 2
	case csrMcounteren:
		c.mcounteren = v & 0xffffffff
	case csrMenvcfg:
		c.menvcfg = v & 1
	case csrMcountinhibit:
		// WARL, hardwired to zero: the counters always count (the cycle
		// and instret counters are the machine's notion of progress).
	case csrMscratch:
		c.mscratch = v
	case csrMepc:
		c.mepc = v &^ 1
	case csrMcause:
		c.mcause = v
	case csrMtval:
		c.mtval = v
	case csrMip:
		m := uint64(1<<IntSSI | 1<<IntSTI | 1<<IntSEI)
		c.sw = c.sw&^m | v&m
		c.updateMIP()
	case csrMcycle:
		c.cycleOff = v - h.Instret
	case csrMinstret:
		// The write replaces this instruction's own increment: the
		// next instruction reads v (unprivileged spec, Zicsr).
		c.instretOff = v - h.Instret - 1
	case csrTselect, csrTdata1:
	default:
		switch {
		case n >= csrPmpcfg0 && n < csrPmpcfg0+16:
			if n&1 != 0 {
				return false
			}
			c.pmpcfg[n-csrPmpcfg0] = v
		case n >= csrPmpaddr0 && n < csrPmpaddr0+64:
			c.pmpaddr[n-csrPmpaddr0] = v & (1<<54 - 1)
		case n >= 0xb03 && n <= 0xb1f, n >= 0x323 && n <= 0x33f:
		default:
			return false
		}
	}
	return true
}

func (h *Hart) setMstatus(v uint64) {
	c := &h.csr
	old := c.mstatus
	v = old&^mstatusWritable | v&mstatusWritable
	if v&msMPP == 2<<11 { // MPP is WARL: 2 (H) is not a mode here
		v = v&^msMPP | old&msMPP
	}
	c.mstatus = v
	// MPRV, MPP, SUM and MXR change how loads and stores translate. The
	// effective privilege and SUM are part of the TLB key (updateKey), so
	// only MXR needs a flush.
	if (old^v)&msMXR != 0 {
		h.mmu.flush()
	}
}

func (h *Hart) setSatp(v uint64) {
	mode := v >> 60
	if mode != 0 && mode != 8 {
		// Unsupported modes leave satp unchanged (WARL); Linux probes Sv57
		// and Sv48 this way.
		return
	}
	// ASIDLEN = 0: the ASID field reads as zero.
	h.csr.satp = mode<<60 | v&(1<<44-1)
	h.mmu.flush()
}
