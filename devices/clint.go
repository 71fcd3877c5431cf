package devices

import "errors"

// CLINT register layout (SiFive CLINT, as in QEMU's virt board), for one
// hart. The base of the region is 0x02000000.
const (
	CLINTBase = 0x02000000
	CLINTSize = 0x10000

	clintMSIP     = 0x0000 // 32-bit, only bit 0 is implemented
	clintMtimecmp = 0x4000 // 64-bit, hart 0
	clintMtime    = 0xBFF8 // 64-bit
)

// CLINTState is the complete state of a CLINT. The value of mtime is not part
// of it: mtime is the board clock plus TimeOffset.
type CLINTState struct {
	MSIP       uint32 // 0 or 1
	Mtimecmp   uint64
	TimeOffset uint64 // mtime = clock() + TimeOffset (mod 2^64)
}

// CLINT is the core-local interruptor: machine software interrupt (MSIP) and
// machine timer (mtime/mtimecmp -> MTIP) for hart 0.
//
// The CLINT has no sense of time of its own: mtime is read from the board's
// virtual clock on every access, so the board must call Update whenever the
// clock has advanced (MTIP is a level computed from mtime and mtimecmp).
type CLINT struct {
	clock      func() uint64
	msipLine   IRQLine
	mtipLine   IRQLine
	msip       uint32
	mtimecmp   uint64
	timeOffset uint64
}

// NewCLINT returns a CLINT whose mtime follows clock. msip and mtip are the
// hart's MSIP and MTIP inputs (nil means not connected). mtimecmp starts at
// all-ones, so the timer is off until the guest programs it (the privileged
// spec leaves its reset value unspecified).
func NewCLINT(clock func() uint64, msip, mtip IRQLine) *CLINT {
	if msip == nil {
		msip = IRQFunc(func(bool) {})
	}
	if mtip == nil {
		mtip = IRQFunc(func(bool) {})
	}
	c := &CLINT{clock: clock, msipLine: msip, mtipLine: mtip, mtimecmp: ^uint64(0)}
	c.drive()
	return c
}

// Mtime returns the current value of the mtime register.
func (c *CLINT) Mtime() uint64 { return c.clock() + c.timeOffset }

// Timecmp returns mtimecmp.
func (c *CLINT) Timecmp() uint64 { return c.mtimecmp }

// SetTimecmp sets mtimecmp and updates MTIP. The board uses it for the SBI
// TIME extension's set_timer, which programs the next event in mtime units.
func (c *CLINT) SetTimecmp(v uint64) {
	c.mtimecmp = v
	c.Update()
}

// Update recomputes MTIP = (mtime >= mtimecmp) and drives the line. The
// board calls it after advancing the clock (at least when the clock reaches
// Deadline) and after anything else that may have moved mtime.
func (c *CLINT) Update() {
	c.mtipLine.SetLevel(c.Mtime() >= c.mtimecmp)
}

// Deadline returns the board clock value at which MTIP will be high: the
// current clock if it already is, and all-ones if it never will (mtimecmp is
// all-ones, or mtime would first have to wrap around). With a zero time
// offset and a timer in the future this is exactly mtimecmp.
func (c *CLINT) Deadline() uint64 {
	now := c.clock()
	mtime := now + c.timeOffset
	if mtime >= c.mtimecmp {
		return now
	}
	d := now + (c.mtimecmp - mtime)
	if d < now { // the board clock would wrap first
		return ^uint64(0)
	}
	return d
}

// clintReg returns the offset of the register that contains all of
// [off, off+size), or ok=false if there is none.
func clintReg(off uint64, size int) (base uint64, ok bool) {
	var width uint64
	switch {
	case off < clintMSIP+4:
		base, width = clintMSIP, 4
	case off >= clintMtimecmp && off < clintMtimecmp+8:
		base, width = clintMtimecmp, 8
	case off >= clintMtime && off < clintMtime+8:
		base, width = clintMtime, 8
	default:
		return 0, false
	}
	if size != 1 && size != 2 && size != 4 && size != 8 {
		return 0, false
	}
	if off+uint64(size) > base+width {
		return 0, false
	}
	return base, true
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
	base, ok := clintReg(off, size)
	if !ok {
		return 0
	}
	var v uint64
	switch base {
	case clintMSIP:
		v = uint64(c.msip)
	case clintMtimecmp:
		v = c.mtimecmp
	case clintMtime:
		v = c.Mtime()
	}
	return v >> (8 * (off - base)) & sizeMask(size)
}

// Write implements MMIO. The written bytes replace those bytes of the
// register and leave the others alone, so a 64-bit store has the same effect
// as two 32-bit stores (time does not advance during one access).
func (c *CLINT) Write(off uint64, size int, value uint64) {
	base, ok := clintReg(off, size)
	if !ok {
		return
	}
	shift := 8 * (off - base)
	mask := sizeMask(size) << shift
	merge := func(old uint64) uint64 { return old&^mask | value<<shift&mask }
	switch base {
	case clintMSIP:
		c.msip = uint32(merge(uint64(c.msip))) & 1
		c.msipLine.SetLevel(c.msip != 0)
	case clintMtimecmp:
		c.mtimecmp = merge(c.mtimecmp)
		c.Update()
	case clintMtime:
		// mtime is clock+offset; keep the clock and move the offset.
		c.timeOffset = merge(c.Mtime()) - c.clock()
		c.Update()
	}
}

// State returns a copy of the CLINT's state.
func (c *CLINT) State() CLINTState {
	return CLINTState{MSIP: c.msip, Mtimecmp: c.mtimecmp, TimeOffset: c.timeOffset}
}

// SetState restores a state returned by State and re-drives MSIP and MTIP.
func (c *CLINT) SetState(s CLINTState) error {
	if s.MSIP > 1 {
		return errors.New("clint: MSIP must be 0 or 1")
	}
	c.msip, c.mtimecmp, c.timeOffset = s.MSIP, s.Mtimecmp, s.TimeOffset
	c.drive()
	return nil
}

func (c *CLINT) drive() {
	c.msipLine.SetLevel(c.msip != 0)
	c.Update()
}
