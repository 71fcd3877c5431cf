package machine

// Parallel mode: the harts run at the same time, one goroutine each, on as
// many host cores as there are. This file is the one place in the
// deterministic core that imports sync and unsafe and starts goroutines
// (the purity test names it); everything else in the machine is
// single-threaded, and in the default mode this file's code never runs.
//
// A parallel run is not deterministic: which hart gets a lock first, and
// the instruction counts at which devices see accesses, depend on the host
// scheduler. It cannot be recorded, replayed or used by a replicated pair
// that replays; it is for speed.
//
// How the harts stay correct against each other:
//
//   - Memory. Plain loads and stores are plain host accesses (single-copy
//     atomic when aligned; the host's TSO order is stronger than RVWMO).
//     AMOs, LR/SC and the MMU's A/D updates are host compare-and-swaps,
//     FENCE a host barrier (ramAtomics, set as each hart's riscv.Atomics).
//   - Devices, the clock, the HSM states and the mailboxes are behind one
//     lock, mu. A hart takes it for every MMIO access and SBI call that
//     touches them, and between its slices.
//   - A hart's own state (registers, CSRs, TLB, decodes, dirty bitmap) is
//     touched only by its goroutine while it is inside Hart.Run. Anything
//     another hart or a device does to it (raise an interrupt line, an
//     IPI, a remote fence, DMA invalidating decodes) goes to its mailbox
//     under mu and is applied by its goroutine between slices, at most
//     parallelSlice instructions later; a hart outside Run is changed
//     directly under mu.
//   - A remote fence waits for every target to acknowledge before the SBI
//     call returns, and serves its own mailbox meanwhile, so two harts
//     fencing each other do not deadlock.
//   - Dirty pages: each hart marks its own bitmap; they are folded between
//     Run calls, when no goroutine runs.
//   - A hart that spins (a pause hint, a failed SC) yields its host thread
//     to the other goroutines, so a lock holder that has no host core of
//     its own gets one.

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"ftvm/riscv"
	"ftvm/vm"
)

// parallelSlice is how many instructions a hart runs between looks at its
// mailbox: the latency of cross-hart interrupts and fences, and how far
// Run may overshoot its limit per hart.
const parallelSlice = 10_000

type parallel struct {
	m     *Machine
	total atomic.Uint64 // instructions retired by all harts
	ram   ramAtomics

	mu      sync.Mutex
	cond    *sync.Cond // broadcast when a mailbox, a hart or the run changes
	owner   int        // the hart whose goroutine holds mu, -1 for none
	active  bool       // Run's goroutines exist
	running []bool     // hart i is inside Hart.Run
	start   []uint64   // its Instret when its slice began
	box     []mailbox
	until   uint64 // Run's limit
	stop    bool   // Run must end
	idle    bool   // it ends because every hart waits
}

// mailbox holds what was done to a hart while it ran, for its goroutine
// to apply between slices.
type mailbox struct {
	lineMask, lineVal uint64 // interrupt input bits to drive
	ipi               bool   // raise SSIP
	fence             fenceKind
	fenceReq          uint64 // fences asked of the hart so far
	fenceAck          uint64 // fences it has done
	writes            []span // RAM written by DMA
	flushAll          bool   // too many writes to list: drop all decodes
}

type span struct{ pa, n uint64 }

const maxSpans = 32

// startParallel switches a machine built by newBoard to parallel mode.
func (m *Machine) startParallel() {
	n := len(m.harts)
	p := &parallel{m: m, owner: -1, running: make([]bool, n), start: make([]uint64, n), box: make([]mailbox, n)}
	p.cond = sync.NewCond(&p.mu)
	p.ram = ramAtomics{ram: m.ram}
	if uintptr(unsafe.Pointer(unsafe.SliceData(m.ram)))%8 != 0 {
		panic(fmt.Sprintf("machine: RAM at %p is not 8-byte aligned", unsafe.SliceData(m.ram)))
	}
	for _, h := range m.harts {
		h.SetAtomics(&p.ram)
		h.SetPeers(nil)
		h.SetYieldHints(true) // pause-loop exiting: see hartLoop
	}
	m.par = p
	m.resetCount()
}

func (p *parallel) lock(hart int) {
	p.mu.Lock()
	p.owner = hart
}

func (p *parallel) unlock() {
	p.owner = -1
	p.mu.Unlock()
}

// count is the instruction count: what the harts retired by the end of
// their last slices, plus, inside a device access, the accessing hart's
// progress in its current slice.
func (p *parallel) count() uint64 {
	c := p.total.Load()
	if i := p.owner; i >= 0 && p.running[i] {
		c += p.m.harts[i].Instret - p.start[i]
	}
	return c
}

func (p *parallel) time() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m.clint.Mtime()
}

// direct reports whether hart i may be changed by the caller, who holds mu
// (or no Run is active): it is the caller's own hart, or it is not inside
// Hart.Run.
func (p *parallel) direct(i int) bool {
	return !p.active || i == p.owner || !p.running[i]
}

func (p *parallel) setLine(i int, bit uint, level bool) {
	if p.direct(i) {
		// A level for this line may wait in the mailbox (driven while the
		// hart ran, before it took mu itself): it is older than this one
		// and must not replace it when the mail is applied.
		p.box[i].lineMask &^= 1 << bit
		p.m.harts[i].SetInterrupt(bit, level)
	} else {
		b := &p.box[i]
		b.lineMask |= 1 << bit
		b.lineVal = b.lineVal&^(1<<bit) | b2u(level)<<bit
	}
	p.cond.Broadcast()
}

type mail uint8

const mailIPI mail = 1

// post raises hart j's supervisor software interrupt for hart self.
func (p *parallel) post(self, j int, _ mail) {
	p.lock(self)
	defer p.unlock()
	if p.direct(j) {
		p.m.harts[j].SetSoftwarePending(riscv.IntSSI, true)
	} else {
		p.box[j].ipi = true
	}
	p.cond.Broadcast()
}

// fence makes every hart in set execute fence k, and returns when they all
// have.
func (p *parallel) fence(self int, set uint64, k fenceKind) {
	p.lock(self)
	defer p.unlock()
	want := make([]uint64, len(p.box))
	for j := range p.box {
		if set>>j&1 == 0 {
			continue
		}
		if p.direct(j) {
			fenceHart(p.m.harts[j], k)
			continue
		}
		b := &p.box[j]
		b.fence |= k
		b.fenceReq++
		want[j] = b.fenceReq
	}
	p.cond.Broadcast()
	for {
		p.apply(self) // a hart fencing us while we wait
		done := true
		for j, w := range want {
			if p.box[j].fenceAck < w {
				done = false
			}
		}
		if done {
			return
		}
		p.owner = -1
		p.cond.Wait()
		p.owner = self
	}
}

// startHart runs start (hart_start's effect on hart j) once hart j is out
// of Run; a hart that stopped itself but is still finishing its slice is
// not stopped yet.
func (p *parallel) startHart(self, j int, start func() int64) int64 {
	p.lock(self)
	defer p.unlock()
	if !p.direct(j) {
		return sbiErrAlreadyAvail
	}
	r := start()
	p.cond.Broadcast()
	return r
}

func (p *parallel) stopSelf(self int) {
	p.lock(self)
	defer p.unlock()
	p.m.hsm[self] = hsmState{status: hsmStopped}
	p.m.harts[self].Halt()
}

func (p *parallel) suspendSelf(self int, st hsmState) {
	p.lock(self)
	defer p.unlock()
	p.m.hsm[self] = st
	p.m.harts[self].Wait()
	p.m.harts[self].Halt()
}

// hsmStopPending is the HSM status of a hart that has stopped itself but
// is still finishing its slice.
const hsmStopPending = 3

func (p *parallel) status(j int) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := uint64(p.m.hsm[j].status)
	if st == hsmStopped && p.running[j] {
		st = hsmStopPending
	}
	return st
}

func (p *parallel) noteWrite(pa, n uint64) {
	for j, h := range p.m.harts {
		if p.direct(j) {
			h.NoteWrite(pa, n)
			continue
		}
		b := &p.box[j]
		if len(b.writes) < maxSpans {
			b.writes = append(b.writes, span{pa, n})
		} else {
			b.flushAll = true
		}
	}
}

// haltAll ends the Run (a power-off, a pause): every hart stops at the end
// of its slice, the caller's at once.
func (p *parallel) haltAll() {
	p.stop = true
	if p.owner >= 0 {
		p.m.harts[p.owner].Halt()
	}
	p.cond.Broadcast()
}

// apply carries out hart i's mail. Its goroutine calls it with mu held.
func (p *parallel) apply(i int) {
	b := &p.box[i]
	h := p.m.harts[i]
	for b.lineMask != 0 {
		bit := uint(0)
		for b.lineMask>>bit&1 == 0 {
			bit++
		}
		b.lineMask &^= 1 << bit
		h.SetInterrupt(bit, b.lineVal>>bit&1 != 0)
	}
	if b.ipi {
		b.ipi = false
		h.SetSoftwarePending(riscv.IntSSI, true)
	}
	if b.fenceAck < b.fenceReq {
		fenceHart(h, b.fence)
		b.fence, b.fenceAck = 0, b.fenceReq
		p.cond.Broadcast()
	}
	for _, w := range b.writes {
		h.NoteWrite(w.pa, w.n)
	}
	b.writes = b.writes[:0]
	if b.flushAll {
		b.flushAll = false
		h.FlushICache()
	}
}

// run is Machine.Run in parallel mode: it runs a goroutine per hart until
// the harts together reach until (give or take a slice each), the guest
// stops, a pause, or every hart waits (StopIdle, or with idle skip a jump
// of the clock to the next timer).
func (p *parallel) run(until uint64) vm.StopReason {
	m := p.m
	if m.stopped {
		return m.stop
	}
	if p.total.Load() >= until {
		return StopLimit
	}
	p.until, p.stop, p.idle, p.active = until, false, false, true
	var wg sync.WaitGroup
	for i := range m.harts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.hartLoop(i)
		}()
	}
	wg.Wait()
	p.active = false
	m.sched.total = p.total.Load()
	switch {
	case m.stopped:
		return m.stop
	case m.paused:
		m.paused = false
		return StopLimit
	case p.idle:
		return StopIdle
	}
	return StopLimit
}

// allIdle reports, with mu held, whether no hart runs or can run: each is
// out of Run, and stopped or waiting for an interrupt. (A goroutine woken
// from its wait that has not yet taken mu is not idle: its hart is
// runnable.)
func (p *parallel) allIdle() bool {
	for j := range p.m.harts {
		if p.running[j] || p.m.runnable(j) {
			return false
		}
	}
	return true
}

func (p *parallel) hartLoop(i int) {
	m := p.m
	h := m.harts[i]
	p.lock(i)
	defer p.unlock()
	for {
		p.apply(i)
		if p.stop || m.stopped {
			return
		}
		total := p.total.Load()
		if total >= p.until {
			p.haltAll()
			return
		}
		if !m.runnable(i) {
			if p.allIdle() {
				// Every hart waits: jump to the next timer, or end the
				// Run as idle.
				if m.unwakeable() {
					m.halt(StopLockup, 0)
					return
				}
				dl := m.deadline()
				if dl == ^uint64(0) || !m.idleSkip {
					p.idle = true
					p.haltAll()
					return
				}
				m.clock.advance(dl, total)
				m.updateTimers()
				continue
			}
			p.owner = -1
			p.cond.Wait()
			p.owner = i
			continue
		}
		m.resume(i)
		budget := min(uint64(parallelSlice), p.until-total)
		p.running[i], p.start[i] = true, h.Instret
		p.unlock()
		limit := h.Instret + budget
		r := h.Run(limit)
		for r == riscv.StopYield {
			// The guest spins, waiting for another hart (a pause hint,
			// a failed SC). There may be more harts than host cores:
			// give the host thread to another goroutine, perhaps the
			// hart it waits for, as a host's pause-loop exiting gives
			// the CPU to another vCPU; then carry on with the slice.
			runtime.Gosched()
			if h.Instret >= limit {
				break
			}
			r = h.Run(limit)
		}
		p.lock(i)
		p.running[i] = false
		p.total.Add(h.Instret - p.start[i])
		m.updateTimers()
		if m.htif != nil {
			m.htif.poll(m)
		}
		if r == riscv.StopLockup {
			m.halt(StopLockup, 0)
		}
	}
}

// ramAtomics is riscv.Atomics on the machine's RAM: host atomic
// instructions on the guest's words.
type ramAtomics struct {
	ram   []byte
	fence atomic.Uint64
}

var _ riscv.Atomics = (*ramAtomics)(nil)

func (a *ramAtomics) p32(off uint64) *uint32 { return (*uint32)(unsafe.Pointer(&a.ram[off])) }
func (a *ramAtomics) p64(off uint64) *uint64 { return (*uint64)(unsafe.Pointer(&a.ram[off])) }

func (a *ramAtomics) CompareAndSwap(off uint64, size int, old, new uint64) bool {
	if size == 4 {
		return atomic.CompareAndSwapUint32(a.p32(off), uint32(old), uint32(new))
	}
	return atomic.CompareAndSwapUint64(a.p64(off), old, new)
}

func (a *ramAtomics) Load(off uint64, size int) uint64 {
	switch {
	case size == 8 && off%8 == 0:
		return atomic.LoadUint64(a.p64(off))
	case size == 4 && off%4 == 0:
		return uint64(atomic.LoadUint32(a.p32(off)))
	}
	var v uint64
	for k := range uint64(size) {
		w := atomic.LoadUint32(a.p32((off + k) &^ 3))
		v |= uint64(w>>(8*((off+k)&3))&0xff) << (8 * k)
	}
	return v
}

func (a *ramAtomics) Store(off uint64, size int, v uint64) {
	switch {
	case size == 8 && off%8 == 0:
		atomic.StoreUint64(a.p64(off), v)
		return
	case size == 4 && off%4 == 0:
		atomic.StoreUint32(a.p32(off), uint32(v))
		return
	}
	for k := range uint64(size) {
		p := a.p32((off + k) &^ 3)
		sh := 8 * ((off + k) & 3)
		for {
			w := atomic.LoadUint32(p)
			if atomic.CompareAndSwapUint32(p, w, w&^(0xff<<sh)|uint32(v>>(8*k)&0xff)<<sh) {
				break
			}
		}
	}
}

// Fence is a full barrier: on amd64 an atomic read-modify-write is a locked
// instruction, which orders every load and store around it.
func (a *ramAtomics) Fence() { a.fence.Add(1) }
