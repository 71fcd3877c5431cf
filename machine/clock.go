package machine

// clock is the machine's virtual time: a pure function of the instruction
// count, plus explicit jumps. Nothing here reads the host clock.
//
//	mtime = base + (instret - at) / ipt
//
// ipt (instructions per tick) fixes the guest's nominal speed: with the
// default 10 MHz timebase and ipt = 10 the guest believes it runs at 100
// million instructions per second. Jumps (Advance) happen when the hart is
// idle, so a waiting guest does not spin through its timer ticks.
type clock struct {
	base uint64 // mtime at instret == at
	at   uint64
	ipt  uint64
}

func (c *clock) now(instret uint64) uint64 { return c.base + (instret-c.at)/c.ipt }

// instretAt returns the first instruction count at which mtime >= t, or
// ^0 if t is unreachable by execution (far future).
func (c *clock) instretAt(t, instret uint64) uint64 {
	if t <= c.now(instret) {
		return instret
	}
	d := t - c.base
	if d > (^uint64(0)-c.at)/c.ipt {
		return ^uint64(0)
	}
	return c.at + d*c.ipt
}

// advance jumps mtime forward to t (never backwards) at instret.
func (c *clock) advance(t, instret uint64) {
	if now := c.now(instret); t < now {
		t = now
	}
	c.base, c.at = t, instret
}
