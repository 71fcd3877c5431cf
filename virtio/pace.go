package virtio

import "fmt"

// Pacing bounds the host work a guest can cause through a device. A
// notification is one store, but each chain it makes available can move
// megabytes (a block request of MaxBlockRequest bytes, through an
// indirect table), and a queue holds up to 256 of them: without a bound,
// one store could keep the host busy for a fifth of a second, long enough
// to silence a replica's heartbeats.
//
// With a Pace set, the transport keeps a debt in bytes: every byte a
// chain moves through ReadAt or WriteAt, plus ChainCost per chain and what
// devices add with Charge, increases it, and it decreases by BytesPerTick
// per tick of guest time. A device takes a chain off a queue only while
// the debt is below Burst; otherwise Pop answers "no buffer", the queue is
// deferred, and the transport's Deadline says at which guest time the debt
// will be below Burst again. The board runs the guest until then (or lets
// guest time jump there while the guest idles), and Update resumes the
// deferred queues. So a notification does at most Burst bytes of work plus
// one chain, any interval of guest time at most that plus BytesPerTick per
// tick, and the guest sees a device of finite bandwidth. When work is done
// depends only on guest time (the instruction count, and the time advances
// delivered to the machine), never on host time: runs stay deterministic
// and replayable. Debt and deferred queues are part of the transport's
// state (snapshots, checkpoints, digests).

// ChainCost is the work charged for each chain taken off a queue, besides
// the bytes it moves and 16 per descriptor read: the used ring and the
// device's own handling of it, which for a transmitted frame is a write
// to the host's network (a system call, worth copying a few KiB).
const ChainCost = 2048

// maxDebt bounds a restored debt, so that its arithmetic cannot overflow.
const maxDebt = 1 << 40

// Pace is the bandwidth of a device in guest time (see above).
type Pace struct {
	// Now returns the guest time, in ticks.
	Now func() uint64
	// Changed is called when a queue is deferred from inside a register
	// access or a delivery: the transport's Deadline changed, and a board
	// running the guest must stop and look at it.
	Changed func()
	// BytesPerTick is how much work the device catches up per tick.
	BytesPerTick uint64
	// Burst is the work the device does before it waits.
	Burst uint64
}

// SetPace bounds the device's work (see Pace). Without it, the device does
// all the work a notification asks for at once.
func (m *MMIO) SetPace(p Pace) {
	if p.Now == nil || p.BytesPerTick == 0 {
		panic("virtio: a Pace needs a clock and a non-zero rate") // programming error
	}
	m.pace = &p
}

// debtNow is the debt left at guest time now.
func (m *MMIO) debtNow(now uint64) uint64 {
	if now <= m.debtAt {
		return m.debt
	}
	paid := (now - m.debtAt)
	if paid >= m.debt/m.pace.BytesPerTick+1 {
		return 0
	}
	return m.debt - min(m.debt, paid*m.pace.BytesPerTick)
}

// charge adds n bytes of work to the debt.
func (m *MMIO) charge(n uint64) {
	if m.pace == nil {
		return
	}
	now := m.pace.Now()
	m.debt = min(m.debtNow(now)+n, maxDebt)
	m.debtAt = max(now, m.debtAt)
}

// mayWork reports whether a device may take another chain off q; if not,
// q is deferred until Deadline.
func (m *MMIO) mayWork(q *Queue) bool {
	if m.pace == nil || m.debtNow(m.pace.Now()) < m.pace.Burst {
		return true
	}
	if !q.s.Deferred {
		q.s.Deferred = true
		if m.pace.Changed != nil {
			m.pace.Changed()
		}
	}
	return false
}

// Deadline is the guest time at which deferred queues may resume, or ^0
// when no queue is deferred.
func (m *MMIO) Deadline() uint64 {
	if m.pace == nil || !m.deferred() {
		return ^uint64(0)
	}
	if m.debt < m.pace.Burst {
		return m.debtAt
	}
	ticks := (m.debt-m.pace.Burst)/m.pace.BytesPerTick + 1
	return m.debtAt + ticks
}

func (m *MMIO) deferred() bool {
	for _, q := range m.queues {
		if q.s.Deferred {
			return true
		}
	}
	return false
}

// Update resumes the deferred queues, in queue order, once guest time has
// reached Deadline. The board calls it whenever guest time moves (as it
// updates its timer).
func (m *MMIO) Update() {
	if m.pace == nil || !m.deferred() || m.pace.Now() < m.Deadline() {
		return
	}
	for i, q := range m.queues {
		if !q.s.Deferred {
			continue
		}
		q.s.Deferred = false
		if m.Queue(i) != nil {
			m.dev.QueueNotify(i)
		}
	}
}

// Charge adds n bytes of device work to the pace of the transport the
// chain came from, for work that is not a copy of the chain's buffers (a
// block device's flush).
func (c *Chain) Charge(n uint64) { c.t.charge(n) }

// validPace checks a restored debt.
func validPace(s *MMIOState) error {
	if s.Debt > maxDebt {
		return fmt.Errorf("device debt %d bytes", s.Debt)
	}
	for i, q := range s.Queues {
		if q.Deferred && !q.Ready {
			return fmt.Errorf("queue %d deferred but not ready", i)
		}
	}
	return nil
}
