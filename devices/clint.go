package devices

import (
	"errors"
	"fmt"
	"slices"
)

// CLINT register layout (SiFive CLINT, as in QEMU's virt board): one msip
// word and one mtimecmp per hart, one mtime. The base of the region is
// 0x02000000.
const (
	CLINTBase = 0x02000000
	CLINTSize = 0x10000
	// CLINTMaxHarts is how many harts the register layout has room for.
	CLINTMaxHarts = 4095

	clintMSIP     = 0x0000 // 32-bit per hart, only bit 0 is implemented
	clintMtimecmp = 0x4000 // 64-bit per hart
	clintMtime    = 0xBFF8 // 64-bit
)

// CLINTState is the complete state of a CLINT, one MSIP and Mtimecmp per
// hart. The value of mtime is not part of it: mtime is the board clock plus
// TimeOffset.
type CLINTState struct {
	MSIP       []uint32 // 0 or 1
	Mtimecmp   []uint64
	TimeOffset uint64 // mtime = clock() + TimeOffset (mod 2^64)
}

// HartLines are the interrupt inputs of one hart that the CLINT drives: its
// machine software interrupt (msip) and timer interrupt (mtimecmp). Nil
// means not connected.
type HartLines struct {
	Soft, Timer IRQLine
}

// CLINT is the core-local interruptor: a machine software interrupt (MSIP)
// and a machine timer (mtime/mtimecmp -> MTIP) for each hart.
//
// The CLINT has no sense of time of its own: mtime is read from the board's
// virtual clock on every access, so the board must call Update whenever the
// clock has advanced (MTIP is a level computed from mtime and mtimecmp).
type CLINT struct {
	clock      func() uint64
	lines      []HartLines
	timer      []bool // the level last driven on each hart's timer line
	msip       []uint32
	mtimecmp   []uint64
	timeOffset uint64
}

// NewCLINT returns a CLINT whose mtime follows clock, for one hart per
// element of harts (one unconnected hart if there are none). Each mtimecmp
// starts at all-ones, so the timer is off until the guest programs it (the
// privileged spec leaves its reset value unspecified).
func NewCLINT(clock func() uint64, harts ...HartLines) *CLINT {
	if len(harts) == 0 {
		harts = []HartLines{{}}
	}
	c := &CLINT{clock: clock, lines: make([]HartLines, len(harts)), timer: make([]bool, len(harts)),
		msip: make([]uint32, len(harts)), mtimecmp: make([]uint64, len(harts))}
	nop := IRQFunc(func(bool) {})
	for i, l := range harts {
		if l.Soft == nil {
			l.Soft = nop
		}
		if l.Timer == nil {
			l.Timer = nop
		}
		c.lines[i] = l
		c.mtimecmp[i] = ^uint64(0)
	}
	c.drive()
	return c
}

// Harts is the number of harts the CLINT serves.
func (c *CLINT) Harts() int { return len(c.msip) }

// Mtime returns the current value of the mtime register.
func (c *CLINT) Mtime() uint64 { return c.clock() + c.timeOffset }

// Timecmp returns hart's mtimecmp.
func (c *CLINT) Timecmp(hart int) uint64 { return c.mtimecmp[hart] }

// SetTimecmp sets hart's mtimecmp and updates its MTIP. The board uses it
// for the SBI TIME extension's set_timer, which programs the next event in
// mtime units.
func (c *CLINT) SetTimecmp(hart int, v uint64) {
	c.mtimecmp[hart] = v
	c.updateHart(hart)
}

// SetMSIP sets hart's msip bit (an SBI IPI in firmware is such a write).
func (c *CLINT) SetMSIP(hart int, on bool) {
	c.msip[hart] = uint32(b2u(on))
	c.lines[hart].Soft.SetLevel(on)
}

// Update recomputes every hart's MTIP = (mtime >= mtimecmp) and drives the
// lines that changed. The board calls it after advancing the clock (at
// least when the clock reaches Deadline) and after anything else that may
// have moved mtime.
func (c *CLINT) Update() {
	mtime := c.Mtime()
	for i, cmp := range c.mtimecmp {
		if l := mtime >= cmp; l != c.timer[i] {
			c.timer[i] = l
			c.lines[i].Timer.SetLevel(l)
		}
	}
}

func (c *CLINT) updateHart(i int) {
	l := c.Mtime() >= c.mtimecmp[i]
	c.timer[i] = l
	c.lines[i].Timer.SetLevel(l)
}

// Deadline returns the board clock value at which the next MTIP line will
// rise: the earliest deadline of the harts whose line is still low (the
// current clock if one of them is due but Update has not yet run), and
// all-ones if none will rise (every such mtimecmp is all-ones, or mtime
// would first have to wrap around). A timer that has fired is not waited
// for again until its mtimecmp or mtime is rewritten. With a zero time
// offset and timers in the future this is exactly the smallest mtimecmp.
func (c *CLINT) Deadline() uint64 {
	d := ^uint64(0)
	for i := range c.mtimecmp {
		if !c.timer[i] {
			d = min(d, c.HartDeadline(i))
		}
	}
	return d
}

// HartDeadline returns the board clock value at which hart's MTIP is high:
// the current clock if it already is, all-ones if it never will be.
func (c *CLINT) HartDeadline(hart int) uint64 {
	now := c.clock()
	mtime := now + c.timeOffset
	cmp := c.mtimecmp[hart]
	if mtime >= cmp {
		return now
	}
	d := now + (cmp - mtime)
	if d < now { // the board clock would wrap first
		return ^uint64(0)
	}
	return d
}

// clintReg returns the offset of the register that contains all of
// [off, off+size) and the hart it belongs to, or ok=false if there is none.
func (c *CLINT) clintReg(off uint64, size int) (base uint64, hart int, ok bool) {
	var width uint64
	n := uint64(len(c.msip))
	switch {
	case off < clintMSIP+4*n:
		base, width, hart = off&^3, 4, int(off/4)
	case off >= clintMtimecmp && off < clintMtimecmp+8*n:
		base, width, hart = off&^7, 8, int((off-clintMtimecmp)/8)
	case off >= clintMtime && off < clintMtime+8:
		base, width = clintMtime, 8
	default:
		return 0, 0, false
	}
	if size != 1 && size != 2 && size != 4 && size != 8 {
		return 0, 0, false
	}
	if off+uint64(size) > base+width {
		return 0, 0, false
	}
	return base, hart, true
}

// sizeMask returns a mask of the low size bytes.
func sizeMask(size int) uint64 {
	if size >= 8 {
		return ^uint64(0)
	}
	return 1<<(8*uint(size)) - 1
}

// Read implements MMIO. Any access that lies inside one register reads the
// addressed bytes of it, so 32-bit reads of either half of mtime/mtimecmp
// and 64-bit reads all work; anything else reads as zero.
func (c *CLINT) Read(off uint64, size int) uint64 {
	base, hart, ok := c.clintReg(off, size)
	if !ok {
		return 0
	}
	var v uint64
	switch {
	case base == clintMtime:
		v = c.Mtime()
	case base >= clintMtimecmp:
		v = c.mtimecmp[hart]
	default:
		v = uint64(c.msip[hart])
	}
	return v >> (8 * (off - base)) & sizeMask(size)
}

// Write implements MMIO. The written bytes replace those bytes of the
// register and leave the others alone, so a 64-bit store has the same effect
// as two 32-bit stores (time does not advance during one access).
func (c *CLINT) Write(off uint64, size int, value uint64) {
	base, hart, ok := c.clintReg(off, size)
	if !ok {
		return
	}
	shift := 8 * (off - base)
	mask := sizeMask(size) << shift
	merge := func(old uint64) uint64 { return old&^mask | value<<shift&mask }
	switch {
	case base == clintMtime:
		// mtime is clock+offset; keep the clock and move the offset.
		c.timeOffset = merge(c.Mtime()) - c.clock()
		c.Update()
	case base >= clintMtimecmp:
		c.mtimecmp[hart] = merge(c.mtimecmp[hart])
		c.updateHart(hart)
	default:
		c.SetMSIP(hart, merge(uint64(c.msip[hart]))&1 != 0)
	}
}

// State returns a copy of the CLINT's state.
func (c *CLINT) State() CLINTState {
	return CLINTState{MSIP: slices.Clone(c.msip), Mtimecmp: slices.Clone(c.mtimecmp), TimeOffset: c.timeOffset}
}

// SetState restores a state returned by State and re-drives every MSIP and
// MTIP.
func (c *CLINT) SetState(s CLINTState) error {
	if len(s.MSIP) != len(c.msip) || len(s.Mtimecmp) != len(c.mtimecmp) {
		return fmt.Errorf("clint: state for %d and %d harts, the CLINT has %d", len(s.MSIP), len(s.Mtimecmp), len(c.msip))
	}
	for _, v := range s.MSIP {
		if v > 1 {
			return errors.New("clint: MSIP must be 0 or 1")
		}
	}
	copy(c.msip, s.MSIP)
	copy(c.mtimecmp, s.Mtimecmp)
	c.timeOffset = s.TimeOffset
	c.drive()
	return nil
}

func (c *CLINT) drive() {
	for i := range c.msip {
		c.lines[i].Soft.SetLevel(c.msip[i] != 0)
		c.updateHart(i)
	}
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
