package machine

import "ftvm/riscv"

// What the harts of one machine do to each other through the SBI: start,
// stop and suspend (the HSM extension), interrupt (IPI) and fence (RFENCE).
// In the interleaved mode only one hart runs at a time, so these act on the
// other harts directly; in parallel mode they go through parallel.go.

// SBI HSM hart states (SBI specification, table "HSM Hart States"). A start
// or a resume takes effect at once here, so the pending states never show.
const (
	hsmStarted   = 0
	hsmStopped   = 1
	hsmSuspended = 4
)

// hsmState is one hart's HSM state.
type hsmState struct {
	status uint8
	// A non-retentive suspend resumes at resume with a1 = opaque.
	nonRetentive   bool
	resume, opaque uint64
}

// HSMState is the snapshot form of hsmState.
type HSMState struct {
	Status         uint8
	NonRetentive   bool   `json:",omitempty"`
	Resume, Opaque uint64 `json:",omitempty"`
}

func (s hsmState) export() HSMState {
	return HSMState{s.status, s.nonRetentive, s.resume, s.opaque}
}

func (s HSMState) valid() bool {
	return s.Status == hsmStarted || s.Status == hsmStopped || s.Status == hsmSuspended
}

func (s HSMState) hsm() hsmState {
	return hsmState{s.Status, s.NonRetentive, s.Resume, s.Opaque}
}

// resume makes a suspended hart that is about to run started again. A
// non-retentive suspend lost the hart's state: it restarts at its resume
// address as from hart_start.
func (m *Machine) resume(i int) {
	st := &m.hsm[i]
	if st.status != hsmSuspended {
		return
	}
	st.status = hsmStarted
	if st.nonRetentive {
		m.harts[i].StartSupervisor(st.resume, uint64(i), st.opaque)
	}
}

// withDevices runs f, which touches devices, on behalf of hart self.
func (m *Machine) withDevices(self int, f func()) {
	if p := m.par; p != nil {
		p.lock(self)
		defer p.unlock()
	}
	f()
}

// setTimer is the SBI's set_timer for hart self.
func (m *Machine) setTimer(self int, t uint64) {
	m.withDevices(self, func() { m.clint.SetTimecmp(self, t) })
	m.timerChanged()
}

// sendIPI raises the supervisor software interrupt of every hart in set.
// The sender then gives way to the first of them after itself.
func (m *Machine) sendIPI(self int, set uint64) {
	first := -1
	n := len(m.harts)
	for k := 1; k <= n; k++ {
		j := (self + k) % n
		if set>>j&1 == 0 {
			continue
		}
		if m.par != nil {
			m.par.post(self, j, mailIPI)
			continue
		}
		m.harts[j].SetSoftwarePending(riscv.IntSSI, true)
		if first < 0 && j != self {
			first = j
		}
	}
	if first >= 0 {
		m.yield(first)
	}
}

type fenceKind uint8

const (
	fenceI   fenceKind = 1 // fence.i: drop decoded instructions
	fenceVMA fenceKind = 2 // sfence.vma: drop translations
)

// remoteFence makes every hart in set execute the fence before it returns
// (the SBI's remote fence.i and sfence.vma; the address range and ASID
// are not used: the whole TLB goes).
func (m *Machine) remoteFence(self int, set uint64, k fenceKind) {
	if m.par != nil {
		m.par.fence(self, set, k)
		return
	}
	for j, h := range m.harts {
		if set>>j&1 != 0 {
			fenceHart(h, k)
		}
	}
}

func fenceHart(h *riscv.Hart, k fenceKind) {
	if k&fenceI != 0 {
		h.FlushICache()
	}
	if k&fenceVMA != 0 {
		h.FlushTLB()
	}
}

// hartStart is the HSM's hart_start: hart id starts in S-mode at addr with
// a0 = id, a1 = opaque.
func (m *Machine) hartStart(self int, id, addr, opaque uint64) int64 {
	if id >= uint64(len(m.harts)) {
		return sbiErrInvalidParam
	}
	if _, ok := m.ramRange(addr, 4); !ok {
		return sbiErrInvalidAddr
	}
	start := func() int64 {
		if m.hsm[id].status != hsmStopped {
			return sbiErrAlreadyAvail
		}
		h := m.harts[id]
		h.Reset(addr)
		m.firmware(h)
		h.StartSupervisor(addr, id, opaque)
		m.hsm[id] = hsmState{status: hsmStarted}
		return sbiSuccess
	}
	if m.par != nil {
		return m.par.startHart(self, int(id), start)
	}
	return start()
}

// hartStop is the HSM's hart_stop: the calling hart stops until another
// starts it again. It does not return to the guest.
func (m *Machine) hartStop(self int) int64 {
	if m.par != nil {
		m.par.stopSelf(self)
		return sbiSuccess
	}
	m.hsm[self] = hsmState{status: hsmStopped}
	m.yield(-1)
	return sbiSuccess
}

// hartStatus is the HSM's hart_get_status.
func (m *Machine) hartStatus(id uint64) (uint64, int64) {
	if id >= uint64(len(m.harts)) {
		return 0, sbiErrInvalidParam
	}
	if m.par != nil {
		return m.par.status(int(id)), sbiSuccess
	}
	return uint64(m.hsm[id].status), sbiSuccess
}

// Suspend types (SBI specification, HSM hart_suspend).
const (
	suspendRetentive    = 0x00000000
	suspendNonRetentive = 0x80000000
)

// hartSuspend is the HSM's hart_suspend: the calling hart waits for an
// interrupt as in WFI, then returns (retentive) or restarts at resume with
// a1 = opaque (non-retentive).
func (m *Machine) hartSuspend(self int, typ, resume, opaque uint64) int64 {
	switch {
	case typ == suspendRetentive:
	case typ == suspendNonRetentive:
		if _, ok := m.ramRange(resume, 4); !ok {
			return sbiErrInvalidAddr
		}
	case typ < 0x10000000 || typ > suspendNonRetentive && typ < 0x90000000:
		return sbiErrInvalidParam // reserved types
	default:
		return sbiErrNotSupported // platform-specific types
	}
	st := hsmState{status: hsmSuspended, nonRetentive: typ == suspendNonRetentive, resume: resume, opaque: opaque}
	if m.par != nil {
		m.par.suspendSelf(self, st)
		return sbiSuccess
	}
	m.hsm[self] = st
	m.harts[self].Wait()
	m.yield(-1)
	return sbiSuccess
}

// noteWrite tells the harts that something other than a hart (DMA, the
// HTIF, a rewind, a state transfer) wrote RAM at [pa, pa+n): the pages are
// dirty, decodes of them go. LR reservations stay: a state transfer writes
// pages under a reservation that the sender's hart still holds, and the A
// extension speaks of other harts' stores only.
func (m *Machine) noteWrite(pa, n uint64) {
	if m.par != nil {
		m.par.noteWrite(pa, n)
		return
	}
	for _, h := range m.harts {
		h.NoteWrite(pa, n)
	}
}

// DebugWritePhys writes p to RAM at pa for a debugger, between Run calls:
// every hart drops its decodes of the pages, so the new bytes are what
// executes. It reports false if the range is not all RAM.
func (m *Machine) DebugWritePhys(pa uint64, p []byte) bool {
	off, ok := m.ramRange(pa, uint64(len(p)))
	if !ok {
		return false
	}
	copy(m.ram[off:], p)
	m.noteWrite(pa, uint64(len(p)))
	return true
}
