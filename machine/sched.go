package machine

import (
	"errors"

	"ftvm/riscv"
	"ftvm/vm"
)

// How the harts take turns when they are interleaved on one thread (the
// default, deterministic mode).
//
// The machine's instruction count is the total of every hart's: Run(until)
// stops when the harts together have retired until instructions, the clock
// follows that total, events and outputs are placed on it. Which hart runs
// is a pure function of the instruction stream, so a replay (or a backup)
// interleaves the harts exactly as the recording did:
//
//   - a hart runs for a quantum of Config.Quantum instructions, then the
//     next runnable hart in hart order takes over;
//   - a hart gives up the rest of its quantum at the points where the guest
//     itself says it is waiting for another hart: WFI with nothing pending,
//     the pause hint (Linux's cpu_relax, in every spin-wait loop), a failed
//     store-conditional, an SBI hart_stop or hart_suspend;
//   - after an SBI IPI the sender gives way to the first hart it
//     interrupted, which the sender is usually about to wait for;
//   - stopped harts and harts waiting for an interrupt are skipped; when no
//     hart can run, the clock jumps to the next timer (or Run returns
//     StopIdle, as with one hart).
//
// The quantum carries over from one Run to the next, so how the caller
// slices Run is not visible to the guest. Timers, device interrupts and
// events can make a hart runnable at any instruction count; it then waits
// for its turn.

// DefaultQuantum is the default Config.Quantum.
const DefaultQuantum = 20_000

type sched struct {
	total   uint64 // instructions retired by all harts
	cur     int    // the hart whose turn it is
	left    uint64 // what is left of its quantum
	quantum uint64
	// next, when >= 0, is the hart to try first at the next switch (the
	// target of an IPI).
	next int

	running  *riscv.Hart // the hart inside Run, nil between slices
	runStart uint64      // its Instret when its slice began

	stats SchedStats
}

// SchedStats counts why interleaved harts gave up their turn: what the
// scheduler costs and where the guest waited for itself. They are not part
// of the machine's state (a restored machine starts from zero).
type SchedStats struct {
	Quantum uint64 // a quantum ran out
	Idle    uint64 // WFI, or an SBI suspend or stop
	Pause   uint64 // a pause hint or a failed SC
	IPI     uint64 // an SBI IPI (the sender gives way)
}

// SchedStats returns the scheduler's counters (zero in parallel mode).
func (m *Machine) SchedStats() SchedStats { return m.sched.stats }

func (s *sched) init(harts int, quantum uint64) {
	s.quantum = quantum
	if harts == 1 {
		s.quantum = ^uint64(0) // a single hart never switches
	}
	s.left, s.next = s.quantum, -1
}

// count is the machine's instruction count, also in the middle of a slice
// (for outputs, which carry the count that produced them).
func (m *Machine) count() uint64 {
	if m.par != nil {
		return m.par.count()
	}
	if h := m.sched.running; h != nil {
		return m.sched.total + (h.Instret - m.sched.runStart)
	}
	return m.sched.total
}

// haltRunning ends the current slice after the instruction that is
// executing (nothing happens between Run calls).
func (m *Machine) haltRunning() {
	if m.par != nil {
		m.par.haltAll()
		return
	}
	if h := m.sched.running; h != nil {
		h.Halt()
	}
}

// yield ends the running hart's quantum; with to >= 0, hart to is tried
// first for the next turn.
func (m *Machine) yield(to int) {
	if m.par != nil {
		return
	}
	m.sched.left, m.sched.next = 0, to
	if to >= 0 {
		m.sched.stats.IPI++
	} else {
		m.sched.stats.Idle++
	}
	m.haltRunning()
}

// runnable reports whether hart i can execute now.
func (m *Machine) runnable(i int) bool {
	return m.hsm[i].status != hsmStopped && m.harts[i].Runnable()
}

// pick returns the hart to run now, or -1 when none can: the current hart
// while it has quantum left, otherwise the next runnable one, whose
// quantum starts afresh.
func (m *Machine) pick() int {
	s := &m.sched
	j, switched := m.peek()
	if switched {
		s.cur, s.left, s.next = j, s.quantum, -1
		m.resume(j)
	}
	return j
}

// peek is pick without its effects: the hart pick would return, and
// whether it would start a new turn.
func (m *Machine) peek() (int, bool) {
	s := &m.sched
	if s.left > 0 && m.runnable(s.cur) {
		return s.cur, false
	}
	n := len(m.harts)
	start := s.cur + 1
	if s.next >= 0 {
		start = s.next
	}
	for i := range n {
		if j := (start + i) % n; m.runnable(j) {
			return j, true
		}
	}
	return -1, false
}

// Run executes until the instruction count reaches until, the guest stops
// itself, or (with idle skip off) every hart idles. It returns why it
// stopped.
func (m *Machine) Run(until uint64) vm.StopReason {
	if m.par != nil {
		return m.par.run(until)
	}
	s := &m.sched
	for !m.stopped {
		if s.total >= until {
			return StopLimit
		}
		i := m.pick()
		if i < 0 {
			// Every hart is stopped or waits for an interrupt.
			if m.htif != nil && !m.htif.idlePolled {
				m.htif.idlePolled = true
				m.htif.poll(m)
				continue
			}
			if m.unwakeable() {
				// Every hart waits with every interrupt disabled (a
				// kernel cut short parks its harts so) or is stopped:
				// nothing can ever wake the guest.
				m.halt(StopLockup, 0)
				break
			}
			dl := m.deadline()
			if dl == ^uint64(0) || !m.idleSkip {
				return StopIdle
			}
			m.clock.advance(dl, s.total)
			m.updateTimers()
			continue
		}
		h := m.harts[i]
		limit := until
		if s.left < limit-s.total {
			limit = s.total + s.left
		}
		if t := m.clock.instretAt(m.deadline(), s.total); t < limit {
			limit = max(t, s.total+1)
		}
		if m.htif != nil {
			// The HTIF is looked at when the count reaches a multiple
			// of htifPoll, a point that does not depend on how Run is
			// sliced.
			limit = min(limit, (s.total/htifPoll+1)*htifPoll)
		}
		s.running, s.runStart = h, h.Instret
		r := h.Run(h.Instret + (limit - s.total))
		n := h.Instret - s.runStart
		s.running = nil
		s.total += n
		if m.htif != nil && n > 0 {
			m.htif.idlePolled = false
		}
		s.left -= min(n, s.left)
		m.updateTimers()
		switch r {
		case riscv.StopLockup:
			m.halt(StopLockup, 0)
		case riscv.StopHalt:
			if m.paused && !m.stopped {
				m.paused = false
				return StopLimit
			}
		case riscv.StopIdle:
			s.left = 0
			s.stats.Idle++
		case riscv.StopYield:
			s.left = 0
			s.stats.Pause++
		case riscv.StopLimit:
			if s.left == 0 {
				s.stats.Quantum++
			}
		}
		if m.htif != nil && s.total%htifPoll == 0 {
			m.htif.poll(m)
		}
	}
	return m.stop
}

// unwakeable reports whether no hart can ever run again: each is stopped,
// or waits for an interrupt with none enabled.
func (m *Machine) unwakeable() bool {
	for i, h := range m.harts {
		if m.hsm[i].status != hsmStopped && (!h.Waiting() || h.Wakeable()) {
			return false
		}
	}
	return true
}

// CurrentHart is the hart that executes the machine's next instruction, if
// any can (a debugger shows it as the current thread); when none can it is
// the one that ran last.
func (m *Machine) CurrentHart() int {
	if m.par != nil {
		return 0
	}
	if i, _ := m.peek(); i >= 0 {
		return i
	}
	return m.sched.cur
}

// SchedState is the snapshot form of the harts' turns and HSM states, for
// a machine with more than one hart.
type SchedState struct {
	Cur  int
	Left uint64
	Next int
	HSM  []HSMState
}

func (m *Machine) schedState() SchedState {
	s := SchedState{Cur: m.sched.cur, Left: m.sched.left, Next: m.sched.next}
	for _, h := range m.hsm {
		s.HSM = append(s.HSM, h.export())
	}
	return s
}

// setSchedState restores a SchedState (validated: it may come from a
// snapshot file) and the instruction count, which is the harts' total.
func (m *Machine) setSchedState(s SchedState) error {
	n := len(m.harts)
	if s.Cur < 0 || s.Cur >= n || s.Next < -1 || s.Next >= n || len(s.HSM) != n {
		return errors.New("scheduler state does not fit the harts")
	}
	for _, h := range s.HSM {
		if !h.valid() {
			return errors.New("invalid HSM state")
		}
	}
	if s.Left > m.sched.quantum {
		return errors.New("scheduler state: more than a quantum left")
	}
	m.sched.cur, m.sched.left, m.sched.next = s.Cur, s.Left, s.Next
	for i, h := range s.HSM {
		m.hsm[i] = h.hsm()
	}
	m.resetCount()
	return nil
}

// resetCount derives the instruction count from the harts' after their
// states were set: it is their total.
func (m *Machine) resetCount() {
	m.sched.total = 0
	for _, h := range m.harts {
		m.sched.total += h.Instret
	}
	if m.par != nil {
		m.par.total.Store(m.sched.total)
	}
}
