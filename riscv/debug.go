package riscv

// Debugger access to the hart. Everything here is side-effect free on the
// guest's computation: no trap is raised, no A/D bit is set, no TLB entry or
// decode is filled, no device register is touched. A debugger that only
// reads leaves the run bit-for-bit identical to an undebugged one, which
// replay's digests check. Writes (registers, memory, CSRs) change the guest
// on purpose and keep the hart's caches coherent with the change.
//
// Stepping is not here: a single step is Machine.Run(Instret+1) (see the
// doc of Step), because the machine, not the hart, knows where a timer must
// interrupt a slice; stepping the hart directly would skip that and break
// determinism.

// Step executes until exactly one more instruction has retired (or the hart
// stops: WFI with nothing pending, halt, lockup) and returns why Run
// stopped. Callers inside a machine should step through the machine's Run
// instead, for the reason in this file's comment.
//
// A step is one retired instruction, so the debugger's position is always
// an instruction count, the same coordinate replay uses (reverse execution
// is re-execution to Instret-1). Trap entry retires nothing: when the
// instruction at PC traps, or an interrupt is taken first, the step
// continues into the handler and ends after the handler's first
// instruction, so the PC always moves.
func (h *Hart) Step() Exit { return h.Run(h.Instret + 1) }

// DebugTranslate maps the virtual address va to a physical address the way
// an instruction fetch in the current privilege mode would see it (the
// address space of the code being debugged), ignoring permissions: a
// debugger may look at any mapped page. It walks Sv39 from satp reading
// PTEs without updating A/D bits and without touching the TLB. ok is false
// when va is unmapped.
func (h *Hart) DebugTranslate(va uint64) (pa uint64, ok bool) {
	if h.Priv == PrivM || h.csr.satp>>60 == 0 {
		return va, true
	}
	if uint64(int64(va<<25)>>25) != va {
		return 0, false // not a canonical Sv39 address
	}
	a := (h.csr.satp & (1<<44 - 1)) << pageShift
	for level := 2; level >= 0; level-- {
		pte, ok := h.physLoad64(a + (va>>(pageShift+9*uint(level))&0x1ff)*8)
		if !ok || pte&pteV == 0 || pte&(pteR|pteW) == pteW || pte>>54 != 0 {
			return 0, false
		}
		ppn := pte >> 10 & (1<<44 - 1)
		if pte&(pteR|pteX) == 0 {
			a = ppn << pageShift
			continue
		}
		if level > 0 && ppn&(1<<(9*uint(level))-1) != 0 {
			return 0, false // misaligned superpage: the hardware would fault
		}
		return ppn<<pageShift | va&(1<<(pageShift+9*uint(level))-1), true
	}
	return 0, false
}

// DebugReadPhys copies RAM at physical address pa into p. Only RAM is
// readable: reading a device register can change the device (a UART's
// receive FIFO), which a debugger must never do.
func (h *Hart) DebugReadPhys(pa uint64, p []byte) bool {
	off, ok := h.ramOffset(pa, uint64(len(p)))
	if !ok {
		return false
	}
	copy(p, h.ram[off:])
	return true
}

// DebugWritePhys writes p to RAM at pa, marking the pages dirty and
// dropping cached decodes so the new bytes are what executes.
func (h *Hart) DebugWritePhys(pa uint64, p []byte) bool {
	off, ok := h.ramOffset(pa, uint64(len(p)))
	if !ok {
		return false
	}
	copy(h.ram[off:], p)
	h.NoteWrite(pa, uint64(len(p)))
	return true
}

// DebugReadCSR reads CSR n as M-mode would, without the access checks that
// make the guest trap (fcsr with the FPU off still reads). Reads of CSRs
// have no side effects in this hart.
func (h *Hart) DebugReadCSR(n uint32) (uint64, bool) {
	switch n {
	case csrFflags:
		return h.csr.fflags, true
	case csrFrm:
		return h.csr.frm, true
	case csrFcsr:
		return h.csr.frm<<5 | h.csr.fflags, true
	}
	saved := h.Priv
	h.Priv = PrivM // a plain field write: no flush, no IRQ re-evaluation
	v, ok := h.readCSR(n)
	h.Priv = saved
	return v, ok
}

// DebugWriteCSR writes CSR n as M-mode would. Read-only CSRs (and counters,
// whose offsets are not what a debugger means to change) are refused.
func (h *Hart) DebugWriteCSR(n uint32, v uint64) bool {
	switch n {
	case csrFflags:
		h.csr.fflags = v & 0x1f
		return true
	case csrFrm:
		h.csr.frm = v & 7
		return true
	case csrFcsr:
		h.csr.fflags, h.csr.frm = v&0x1f, v>>5&7
		return true
	}
	if n>>10 == 3 || n == csrMcycle || n == csrMinstret {
		return false
	}
	ok := h.SetMachineCSR(n, v)
	h.mmu.flush() // satp or mstatus may have changed the address space
	return ok
}

// SetPriv changes the privilege level (a debugger writing the virtual
// "priv" register).
func (h *Hart) SetPriv(p uint8) bool {
	if p != PrivU && p != PrivS && p != PrivM {
		return false
	}
	h.setPriv(p)
	return true
}

// CSR numbers a debugger shows.
const (
	CSRFflags   = csrFflags
	CSRFrm      = csrFrm
	CSRFcsr     = csrFcsr
	CSRSstatus  = csrSstatus
	CSRSie      = csrSie
	CSRStvec    = csrStvec
	CSRSscratch = csrSscratch
	CSRSepc     = csrSepc
	CSRScause   = csrScause
	CSRStval    = csrStval
	CSRSip      = csrSip
	CSRSatp     = csrSatp
	CSRMisa     = csrMisa
	CSRMscratch = csrMscratch
	CSRMepc     = csrMepc
	CSRMcause   = csrMcause
	CSRMtval    = csrMtval
	CSRMip      = csrMip
	CSRCycle    = csrCycle
	CSRTime     = csrTime
	CSRInstret  = csrInstret
)
