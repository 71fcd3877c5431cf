// Package riscv is the RV64GC hart: decode, execute, CSRs, traps, and the
// Sv39 MMU with its TLB. It knows the ISA and a physical memory interface and
// nothing else: no devices by name, no host, no clock, no replication.
//
// A Hart is a deterministic function of its state and the physical memory it
// sees. Time reaches it only through System.Time, and interrupt lines only
// through SetInterrupt, both driven by the machine between Run calls or from
// device accesses the guest itself performed.
package riscv

// System is the physical world a hart sees outside RAM.
type System interface {
	// Load reads size bytes (1, 2, 4, 8) of MMIO at paddr. ok=false raises
	// an access fault.
	Load(paddr uint64, size int) (v uint64, ok bool)
	// Store writes size bytes of MMIO at paddr. ok=false raises an access fault.
	Store(paddr uint64, size int, v uint64) (ok bool)
	// Time returns the current value of the machine timer (the time CSR).
	Time() uint64
}

// Privilege levels.
const (
	PrivU = 0
	PrivS = 1
	PrivM = 3
)

// Interrupt-pending bits (mip/mie).
const (
	IntSSI = 1
	IntMSI = 3
	IntSTI = 5
	IntMTI = 7
	IntSEI = 9
	IntMEI = 11
)

// Exit says why the hart's Run returned. It is the hart's signal to the
// machine that runs it (limit, waiting in WFI, halted on request, locked
// up), not an engine's stop reason: the machine turns it into a
// vm.StopReason, which is the only stop reason above the machine.
type Exit int

const (
	StopLimit  Exit = iota // the instruction count reached the limit
	StopIdle               // the hart is in WFI with no interrupt pending
	StopHalt               // Halt was called (by an ecall hook or device access)
	StopLockup             // traps keep firing with no instruction retiring (e.g. the trap vector faults)
	// StopYield: with yield hints on, the hart retired an instruction that
	// says it is waiting for another hart (a pause hint, a failed
	// store-conditional). A scheduler that interleaves harts on one thread
	// runs another one.
	StopYield
)

func (r Exit) String() string {
	switch r {
	case StopLimit:
		return "limit"
	case StopIdle:
		return "idle"
	case StopHalt:
		return "halt"
	case StopLockup:
		return "lockup"
	case StopYield:
		return "yield"
	}
	return "unknown"
}

// Hart is one RISC-V hardware thread.
//
// Execution entry points: Run (until the hart's own Instret reaches a
// limit) and Step (one instruction). Each runs this hart alone, on the
// caller's goroutine, and returns at an instruction boundary; nothing else
// may touch the hart meanwhile. A machine with several harts schedules them
// itself (package machine): interleaved on one thread by calling Run on each
// in turn, or in parallel, one goroutine per hart, with the host-atomic
// memory operations of SetAtomics.
type Hart struct {
	X  [32]uint64 // integer registers; X[0] is forced to zero
	F  [32]uint64 // floating-point registers (NaN-boxed singles)
	PC uint64

	Priv uint8
	// Instret counts retired instructions since reset. It is the machine's
	// notion of progress: replay positions are expressed in it.
	Instret uint64

	csr csrFile

	// Reservation for LR/SC: a RAM offset, valid only while resValid.
	// resVal is the value LR read, for the compare-and-swap that stands
	// for SC when harts run in parallel (SetAtomics).
	resValid bool
	resAddr  uint64
	resVal   uint64

	id uint64 // mhartid

	// yieldHints makes Run return StopYield at a pause hint or a failed
	// SC (SetYieldHints).
	yieldHints bool
	// peers are the other harts interleaved with this one on one thread
	// (SetPeers); peerRes counts those holding an LR reservation while
	// this hart runs: its stores must break them (see watchPeers).
	peers   []*Hart
	peerRes int
	// atomics is set when harts run in parallel (SetAtomics).
	atomics Atomics

	// WFI state: the hart stalls until an interrupt is locally pending.
	waiting bool
	halted  bool

	// EcallHook, if set, is offered every ECALL from S-mode before it traps.
	// It returns true when it has handled the call (the SBI built into the
	// machine); the hart then resumes after the ecall.
	EcallHook func(h *Hart) bool

	sys     System
	ram     []byte
	ramBase uint64
	ramEnd  uint64

	mmu     mmu
	decoded decodeCache
	dirty   []uint64 // one bit per RAM page written since ClearDirty

	// checkIRQ is set whenever something may have made an interrupt
	// takeable (a line, mie, mstatus, privilege); the run loop evaluates
	// interrupts only then, not before every instruction.
	checkIRQ bool
	// Lockup detection: trapRun counts traps taken at instruction count
	// trapAt. A guest whose trap vector itself faults traps forever without
	// retiring anything; past lockupTraps the hart stops for good.
	trapAt   uint64
	trapRun  int
	lockedUp bool

	// attention is set with checkIRQ or halted, so the run loop tests one
	// flag per instruction instead of two.
	attention bool

	// engine, when set, executes what it can of each Run (engine.go).
	engine Engine
}

func (h *Hart) needIRQCheck() { h.checkIRQ, h.attention = true, true }

// New returns a hart in its reset state, executing from resetPC in M-mode,
// with RAM of len(ram) bytes at physical address ramBase.
func New(sys System, ram []byte, ramBase uint64, resetPC uint64) *Hart {
	h := &Hart{sys: sys, ram: ram, ramBase: ramBase, ramEnd: ramBase + uint64(len(ram))}
	h.decoded.init(len(ram))
	h.dirty = make([]uint64, (len(ram)>>pageShift+63)/64)
	h.Reset(resetPC)
	return h
}

// Reset puts the hart in its reset state.
func (h *Hart) Reset(pc uint64) {
	h.X = [32]uint64{}
	h.F = [32]uint64{}
	h.PC = pc
	h.Priv = PrivM
	lines := h.csr.lines // driven from outside: a reset does not move them
	h.csr = csrFile{}
	h.csr.reset()
	h.csr.lines = lines
	h.csr.updateMIP()
	h.resValid = false
	h.waiting = false
	h.halted = false
	h.lockedUp, h.trapRun = false, 0
	h.mmu.flush()
	h.decoded.flushAll()
	h.updateKey()
	h.needIRQCheck()
}

// SetInterrupt drives an interrupt-pending line (one of the Int* bits) from
// a device or the machine. Software-writable bits (SSIP, STIP, SEIP) are
// ORed with the line as the privileged spec describes for SEIP.
func (h *Hart) SetInterrupt(bit uint, level bool) {
	m := uint64(1) << bit
	if level {
		h.csr.lines |= m
	} else {
		h.csr.lines &^= m
	}
	h.csr.updateMIP()
	h.needIRQCheck()
}

// SetHartID sets the value of mhartid.
func (h *Hart) SetHartID(id uint64) { h.id = id }

// HartID returns mhartid.
func (h *Hart) HartID() uint64 { return h.id }

// SetYieldHints chooses whether Run returns StopYield after a pause hint
// (fence w,0, which Linux's cpu_relax emits in every spin-wait loop when
// the device tree lists Zihintpause) or a store-conditional that failed.
// A machine with one hart leaves it off.
func (h *Hart) SetYieldHints(on bool) { h.yieldHints = on }

// SetPeers names the harts that share h's RAM and run interleaved with it
// on one thread (peers may include h itself, which is skipped). A store by
// h then breaks the LR reservation of any peer on the same doubleword, as
// the A extension requires of stores from other harts. Harts running in
// parallel use SetAtomics instead.
func (h *Hart) SetPeers(peers []*Hart) { h.peers = peers }

// InterruptPending reports whether an interrupt is both pending and
// enabled in mie, which is what wakes a hart from WFI (whatever the
// global enables say).
func (h *Hart) InterruptPending() bool { return h.csr.mip&h.csr.mie != 0 }

// Runnable reports whether Run would execute anything: the hart is not
// waiting in WFI, or an interrupt wakes it, and it has not locked up.
func (h *Hart) Runnable() bool {
	return !h.lockedUp && (!h.waiting || h.csr.mip&h.csr.mie != 0)
}

// Wait puts the hart in the state WFI leaves it in: Run returns StopIdle
// until an interrupt is pending and enabled (an SBI suspend).
func (h *Hart) Wait() { h.waiting = true }

// SetSoftwarePending sets or clears a software-writable pending bit (SSIP,
// STIP or SEIP) in mip, as M-mode firmware does to inject an interrupt into
// S-mode (an SBI IPI sets SSIP; the guest clears it through sip).
func (h *Hart) SetSoftwarePending(bit uint, on bool) {
	m := uint64(1) << bit & (1<<IntSSI | 1<<IntSTI | 1<<IntSEI)
	if on {
		h.csr.sw |= m
	} else {
		h.csr.sw &^= m
	}
	h.csr.updateMIP()
	h.needIRQCheck()
}

// StartSupervisor puts the hart at pc in S-mode with a0 and a1 set, satp
// zero and S-mode interrupts off, out of WFI: the state in which an SBI
// hart_start, or the resume from a non-retentive hart_suspend, leaves a
// hart (SBI specification, hart state management).
func (h *Hart) StartSupervisor(pc, a0, a1 uint64) {
	h.csr.satp = 0
	h.csr.mstatus &^= msSIE
	h.mmu.flush()
	h.X[10], h.X[11] = a0, a1
	h.waiting = false
	h.EnterMode(PrivS, pc)
}

// Halt makes the current Run return StopHalt after the current instruction.
func (h *Hart) Halt() { h.halted, h.attention = true, true }

// LockedUp reports whether the hart has stopped in a trap loop.
func (h *Hart) LockedUp() bool { return h.lockedUp }

// Waiting reports whether the hart is stalled in WFI.
func (h *Hart) Waiting() bool { return h.waiting }

// Wakeable reports whether an interrupt could ever wake the hart from WFI:
// some interrupt is enabled in mie. WFI waits for a pending and enabled
// interrupt whatever the global enables say (privileged spec 3.3.3), and
// nothing outside the hart writes mie, so a waiting hart with mie zero
// waits forever.
func (h *Hart) Wakeable() bool { return h.csr.mie != 0 }

// NoteWrite tells the hart that something else (DMA, a loader) wrote the
// physical range [pa, pa+n) of RAM: the pages become dirty and cached
// decodes of them are dropped.
func (h *Hart) NoteWrite(pa, n uint64) {
	off, ok := h.ramOffset(pa, n)
	if !ok || n == 0 {
		return
	}
	for p := off >> pageShift; p <= (off+n-1)>>pageShift; p++ {
		h.dirty[p>>6] |= 1 << (p & 63)
		if h.decoded.pages[p] != nil {
			h.invalidatePage(p)
		}
	}
}

// Dirty returns the dirty-page bitmap: bit i of word i/64 is set when RAM
// page i has been written since the last ClearDirty.
func (h *Hart) Dirty() []uint64 { return h.dirty }

// ClearDirty empties the dirty bitmap. The write TLB is flushed too, so the
// next store to each page takes the slow path and marks it again.
func (h *Hart) ClearDirty() {
	clear(h.dirty)
	h.mmu.w = [tlbSize]tlbEntry{}
}

// Run executes until Instret (this hart's own count) reaches limit, the
// hart idles in WFI with no interrupt pending, it is halted, or (with yield
// hints on) it yields. It always returns at an instruction boundary, with
// every retired instruction counted in Instret.
func (h *Hart) Run(limit uint64) Exit {
	if h.lockedUp {
		return StopLockup
	}
	if h.peers != nil {
		h.watchPeers()
	}
	h.halted = false
	h.attention = h.checkIRQ
	if h.waiting {
		if h.csr.mip&h.csr.mie == 0 {
			return StopIdle
		}
		h.waiting = false
	}
	if h.engine != nil {
		return h.runEngine(limit)
	}
	return h.run(limit)
}

// FlushTLB discards all cached translations (SBI remote sfence.vma).
func (h *Hart) FlushTLB() { h.mmu.flush() }

// FlushICache discards all cached decodes (SBI remote fence.i).
func (h *Hart) FlushICache() {
	h.decoded.flushAll()
	h.mmu.flushFetch()
}

// SetMachineCSR writes an M-mode CSR by number, as firmware would before
// handing over to a lower mode; it reports whether the CSR exists.
func (h *Hart) SetMachineCSR(n uint32, v uint64) bool {
	saved := h.Priv
	h.Priv = PrivM
	ok := h.writeCSR(n, v)
	h.Priv = saved
	h.updateKey()
	h.needIRQCheck()
	return ok
}

// EnterMode drops from M-mode to priv at pc, like an MRET with MPP = priv.
func (h *Hart) EnterMode(priv uint8, pc uint64) {
	h.PC = pc
	h.setPriv(priv)
}

// Machine CSR numbers a board needs to set up a lower-privilege guest.
const (
	CSRMedeleg    = csrMedeleg
	CSRMideleg    = csrMideleg
	CSRMcounteren = csrMcounteren
	CSRScounteren = csrScounteren
	CSRMtvec      = csrMtvec
	CSRMie        = csrMie
	CSRMstatus    = csrMstatus
)
