package devices

import (
	"errors"
	"fmt"
	"slices"
)

// PLIC layout (riscv-plic-spec, "Memory Map"; SiFive "riscv,plic0"), with
// two contexts per hart: context 2i is hart i's M-mode (MEIP), context 2i+1
// its S-mode (SEIP), matching the interrupts-extended order <&intc 11>,
// <&intc 9> of each hart, as on QEMU's virt board.
const (
	PLICBase = 0x0c000000
	PLICSize = 0x4000000

	// PLICSources is the number of interrupt sources, 1..PLICSources
	// (source 0 does not exist). The device tree's riscv,ndev is this.
	PLICSources = 31
	// PLICMaxPriority is the largest priority; priority and threshold
	// registers are WARL and keep only these bits (3, as QEMU's virt).
	PLICMaxPriority = 7
	// PLICMaxContexts is how many contexts the register layout has room
	// for.
	PLICMaxContexts = (PLICSize - plicContext) / plicCtxSize

	plicPriority   = 0x000000 // 4 bytes per source
	plicPending    = 0x001000 // bit array
	plicEnable     = 0x002000 // + 0x80 per context, bit array
	plicEnableSize = 0x80
	plicContext    = 0x200000 // + 0x1000 per context: threshold, claim
	plicCtxSize    = 0x1000

	plicValidMask = uint32(0xFFFFFFFE) // sources 1..31
)

// PLICState is the complete state of a PLIC. Bit i of each mask is source i;
// bit 0 is always clear.
type PLICState struct {
	Priority  [PLICSources + 1]uint32 // Priority[0] is always 0
	Level     uint32                  // current input levels
	Pending   uint32                  // interrupt pending bits
	Claimed   uint32                  // claimed and not yet completed
	Enable    []uint32                // per context
	Threshold []uint32                // per context
}

// PLIC is the platform-level interrupt controller.
//
// Every source goes through a level-triggered gateway (spec, "Interrupt
// Gateways"): while its input is high and it is not claimed, the source is
// pending. A claim clears the pending bit and holds the gateway closed until
// the matching completion; at completion a still-high input is pending again.
// As in the spec, a pending request is not retracted if the input drops
// before the claim: the claim may then find a source with nothing to do,
// which Linux tolerates.
type PLIC struct {
	s     PLICState
	out   []IRQLine
	level []bool // the level last driven on each context's line
}

// NewPLIC returns a PLIC with one context per line in contexts, each
// driving its line (nil means not connected): for hart i, contexts 2i and
// 2i+1 drive its MEIP and SEIP. At most PLICMaxContexts.
func NewPLIC(contexts ...IRQLine) *PLIC {
	n := min(len(contexts), PLICMaxContexts)
	p := &PLIC{out: make([]IRQLine, n), level: make([]bool, n)}
	p.s.Enable, p.s.Threshold = make([]uint32, n), make([]uint32, n)
	for i, l := range contexts[:n] {
		if l == nil {
			l = IRQFunc(func(bool) {})
		}
		p.out[i] = l
	}
	p.drive()
	return p
}

// Contexts is the number of contexts.
func (p *PLIC) Contexts() int { return len(p.out) }

// SetLevel sets the input level of source id (1..PLICSources); other ids
// are ignored.
func (p *PLIC) SetLevel(id int, high bool) {
	if id < 1 || id > PLICSources {
		return
	}
	bit := uint32(1) << uint(id)
	if high {
		p.s.Level |= bit
		if p.s.Claimed&bit == 0 {
			p.s.Pending |= bit
		}
	} else {
		p.s.Level &^= bit
	}
	p.update()
}

// Source returns the IRQLine of source id, for handing to a device.
func (p *PLIC) Source(id int) IRQLine {
	return IRQFunc(func(high bool) { p.SetLevel(id, high) })
}

// best returns the pending source enabled for ctx with the highest priority
// above the context's threshold (ties go to the lowest id), or 0.
func (p *PLIC) best(ctx int) int {
	cand := p.s.Pending & p.s.Enable[ctx]
	id, prio := 0, p.s.Threshold[ctx]
	for i := 1; i <= PLICSources; i++ {
		if cand&(1<<uint(i)) != 0 && p.s.Priority[i] > prio {
			id, prio = i, p.s.Priority[i]
		}
	}
	return id
}

// update drives each context's output: its EIP bit is set when a claim
// would return a source (spec, "Interrupt Notifications"). Only lines that
// change are driven.
func (p *PLIC) update() {
	for ctx, l := range p.out {
		if v := p.best(ctx) != 0; v != p.level[ctx] {
			p.level[ctx] = v
			l.SetLevel(v)
		}
	}
}

// drive drives every context's output, changed or not.
func (p *PLIC) drive() {
	for ctx, l := range p.out {
		p.level[ctx] = p.best(ctx) != 0
		l.SetLevel(p.level[ctx])
	}
}

// claim implements a read of the claim register (spec, "Interrupt Claim
// Process").
func (p *PLIC) claim(ctx int) uint32 {
	id := p.best(ctx)
	if id != 0 {
		bit := uint32(1) << uint(id)
		p.s.Pending &^= bit
		p.s.Claimed |= bit
		p.update()
	}
	return uint32(id)
}

// complete implements a write of the claim register (spec, "Interrupt
// Completion"): ids not enabled for the context are ignored.
func (p *PLIC) complete(ctx int, id uint32) {
	if id < 1 || id > PLICSources {
		return
	}
	bit := uint32(1) << id
	if p.s.Enable[ctx]&bit == 0 || p.s.Claimed&bit == 0 {
		return
	}
	p.s.Claimed &^= bit
	if p.s.Level&bit != 0 {
		p.s.Pending |= bit
	}
	p.update()
}

// Read implements MMIO. Registers are 32 bits wide; a naturally aligned
// 64-bit access is two 32-bit accesses (low word first). Other sizes and
// misaligned accesses read as zero.
func (p *PLIC) Read(off uint64, size int) uint64 {
	switch {
	case size == 4 && off%4 == 0:
		return uint64(p.read32(off))
	case size == 8 && off%8 == 0:
		lo := p.read32(off)
		return uint64(p.read32(off+4))<<32 | uint64(lo)
	}
	return 0
}

// Write implements MMIO, with the same access rules as Read.
func (p *PLIC) Write(off uint64, size int, v uint64) {
	switch {
	case size == 4 && off%4 == 0:
		p.write32(off, uint32(v))
	case size == 8 && off%8 == 0:
		p.write32(off, uint32(v))
		p.write32(off+4, uint32(v>>32))
	}
}

func (p *PLIC) read32(off uint64) uint32 {
	switch {
	case off < plicPending:
		if id := off / 4; id <= PLICSources {
			return p.s.Priority[id]
		}
	case off == plicPending:
		return p.s.Pending
	case off >= plicEnable && off < plicEnable+uint64(len(p.out))*plicEnableSize:
		ctx, r := (off-plicEnable)/plicEnableSize, (off-plicEnable)%plicEnableSize
		if r == 0 {
			return p.s.Enable[ctx]
		}
	case off >= plicContext && off < plicContext+uint64(len(p.out))*plicCtxSize:
		ctx, r := (off-plicContext)/plicCtxSize, (off-plicContext)%plicCtxSize
		switch r {
		case 0:
			return p.s.Threshold[ctx]
		case 4:
			return p.claim(int(ctx))
		}
	}
	return 0
}

func (p *PLIC) write32(off uint64, v uint32) {
	switch {
	case off < plicPending:
		if id := off / 4; id >= 1 && id <= PLICSources {
			p.s.Priority[id] = v & PLICMaxPriority
			p.update()
		}
	// The pending array is read-only (spec, "Interrupt Pending Bits").
	case off >= plicEnable && off < plicEnable+uint64(len(p.out))*plicEnableSize:
		ctx, r := (off-plicEnable)/plicEnableSize, (off-plicEnable)%plicEnableSize
		if r == 0 {
			p.s.Enable[ctx] = v & plicValidMask
			p.update()
		}
	case off >= plicContext && off < plicContext+uint64(len(p.out))*plicCtxSize:
		ctx, r := (off-plicContext)/plicCtxSize, (off-plicContext)%plicCtxSize
		switch r {
		case 0:
			p.s.Threshold[ctx] = v & PLICMaxPriority
			p.update()
		case 4:
			p.complete(int(ctx), v)
		}
	}
}

// State returns a copy of the PLIC's state.
func (p *PLIC) State() PLICState {
	s := p.s
	s.Enable, s.Threshold = slices.Clone(s.Enable), slices.Clone(s.Threshold)
	return s
}

// SetState restores a state returned by State and re-drives the context
// outputs. The input levels in the state are the PLIC's view; devices
// restored afterwards re-drive their lines, which is harmless.
func (p *PLIC) SetState(s PLICState) error {
	if len(s.Enable) != len(p.out) || len(s.Threshold) != len(p.out) {
		return fmt.Errorf("plic: state for %d and %d contexts, the PLIC has %d", len(s.Enable), len(s.Threshold), len(p.out))
	}
	if s.Priority[0] != 0 {
		return errors.New("plic: source 0 has a priority")
	}
	for _, pr := range s.Priority {
		if pr > PLICMaxPriority {
			return errors.New("plic: priority out of range")
		}
	}
	for _, t := range s.Threshold {
		if t > PLICMaxPriority {
			return errors.New("plic: threshold out of range")
		}
	}
	masks := append([]uint32{s.Level, s.Pending, s.Claimed}, s.Enable[:]...)
	for _, m := range masks {
		if m&^plicValidMask != 0 {
			return errors.New("plic: source 0 in a bit mask")
		}
	}
	if s.Pending&s.Claimed != 0 {
		return errors.New("plic: source both pending and claimed")
	}
	if s.Level&^s.Claimed&^s.Pending != 0 {
		return errors.New("plic: high unclaimed source not pending")
	}
	p.s = s
	p.s.Enable, p.s.Threshold = slices.Clone(s.Enable), slices.Clone(s.Threshold)
	p.drive()
	return nil
}
