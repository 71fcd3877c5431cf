package riscv

import (
	"encoding/binary"
	"math/bits"
)

// fetch returns the decoded instruction at h.PC, or nil after raising a
// fetch fault (the hart is then at the trap handler).
func (h *Hart) fetch() *inst {
	pc := h.PC
	m := &h.mmu
	if pc>>pageShift<<1|1 != m.fetchTag {
		if !h.fetchMiss(pc) {
			return nil
		}
	}
	d := &m.fetchPage.insts[pc&(pageSize-1)>>1]
	if d.op == opNone {
		h.decodeSlot(d, pc)
	}
	return d
}

// fetchTranslate returns the RAM offset of the page holding va for an
// instruction fetch: from the fetch TLB, or by a page walk that fills it
// (ok false after raising the fetch fault).
func (h *Hart) fetchTranslate(va uint64) (off uint64, ok bool) {
	e := &h.mmu.x[va>>pageShift&(tlbSize-1)]
	if e.hit(va, h.mmu.xkey) {
		return e.pageOff(), true
	}
	pa, ok := h.translate(va, accFetch)
	if !ok {
		return 0, false
	}
	off, ok = h.ramOffset(pa, 2)
	if !ok {
		h.trap(causeFetchAccess, va)
		return 0, false
	}
	h.mmu.fill(&h.mmu.x, va, h.mmu.xkey, off)
	return off &^ (pageSize - 1), true
}

func (h *Hart) fetchMiss(pc uint64) bool {
	off, ok := h.fetchTranslate(pc)
	if !ok {
		return false
	}
	p := off >> pageShift
	dp, created := h.decoded.page(p)
	if created {
		// The page now holds code: stores to it must take the slow path,
		// so drop any write-TLB entry that maps it.
		h.dropWriteTLBPage(p << pageShift)
	}
	h.mmu.fetchTag = pc>>pageShift<<1 | 1
	h.mmu.fetchOff = off &^ (pageSize - 1)
	h.mmu.fetchPage = dp
	return true
}

func (h *Hart) decodeSlot(d *inst, pc uint64) {
	off := h.mmu.fetchOff | pc&(pageSize-1)
	lo := uint32(h.readRAM(off, 2))
	if lo&3 != 3 {
		decode(d, lo)
		return
	}
	if pc&(pageSize-1) == pageSize-2 {
		d.op = opCross
		return
	}
	decode(d, lo|uint32(h.readRAM(off+2, 2))<<16)
}

// fetchCross decodes a 32-bit instruction whose halves lie in two pages,
// translating each (the second through the fetch TLB too). It is never
// cached, since the second page may be remapped independently.
func (h *Hart) fetchCross(pc uint64, d *inst) bool {
	lo := uint32(h.readRAM(h.mmu.fetchOff|pc&(pageSize-1), 2))
	off, ok := h.fetchTranslate(pc + 2) // the start of the next page
	if !ok {
		return false
	}
	decode(d, lo|uint32(h.readRAM(off, 2))<<16)
	return true
}

func (h *Hart) illegal(d *inst) {
	var tval uint64
	if d.op == opIllegal {
		tval = uint64(d.imm)
	}
	h.trap(causeIllegal, tval)
}

// run is the interpreter loop. Each case either falls through to the common
// retire step at the bottom or, after raising an exception (which moves PC
// to the handler), continues without retiring.
func (h *Hart) run(limit uint64) Exit {
	x := &h.X
	var cross inst
	m := &h.mmu
	for {
		if h.attention {
			h.attention = false
			if h.halted {
				if h.lockedUp {
					return StopLockup
				}
				return StopHalt
			}
			if h.checkIRQ {
				h.checkIRQ = false
				if c := h.pendingInterrupt(); c != 0 {
					h.trap(c, 0)
				}
			}
		}
		if h.Instret >= limit {
			return StopLimit
		}
		pc := h.PC
		var d *inst
		if pc>>pageShift<<1|1 == m.fetchTag {
			d = &m.fetchPage.insts[pc&(pageSize-1)>>1]
		} else if d = h.fetch(); d == nil {
			continue
		}
	dispatch:
		next := pc + uint64(d.size)
		// Undecoded slots and page-straddling instructions are cases of
		// the switch, not tests before it, so the common path pays for
		// one indirect jump only.
		switch d.op {
		case opNone:
			h.decodeSlot(d, pc)
			goto dispatch
		case opCross:
			if !h.fetchCross(pc, &cross) {
				continue
			}
			d = &cross
			goto dispatch
		case opLUI:
			x[d.rd&31] = uint64(d.imm)
		case opAUIPC:
			x[d.rd&31] = pc + uint64(d.imm)
		case opJAL:
			x[d.rd&31] = next
			next = pc + uint64(d.imm)
		case opJALR:
			t := (x[d.rs1&31] + uint64(d.imm)) &^ 1
			x[d.rd&31] = next
			next = t
		case opBEQ:
			if x[d.rs1&31] == x[d.rs2&31] {
				next = pc + uint64(d.imm)
			}
		case opBNE:
			if x[d.rs1&31] != x[d.rs2&31] {
				next = pc + uint64(d.imm)
			}
		case opBLT:
			if int64(x[d.rs1&31]) < int64(x[d.rs2&31]) {
				next = pc + uint64(d.imm)
			}
		case opBGE:
			if int64(x[d.rs1&31]) >= int64(x[d.rs2&31]) {
				next = pc + uint64(d.imm)
			}
		case opBLTU:
			if x[d.rs1&31] < x[d.rs2&31] {
				next = pc + uint64(d.imm)
			}
		case opBGEU:
			if x[d.rs1&31] >= x[d.rs2&31] {
				next = pc + uint64(d.imm)
			}
		case opLB:
			v, ok := h.load(x[d.rs1&31]+uint64(d.imm), 1)
			if !ok {
				continue
			}
			x[d.rd&31] = uint64(int8(v))
		case opLH:
			v, ok := h.load(x[d.rs1&31]+uint64(d.imm), 2)
			if !ok {
				continue
			}
			x[d.rd&31] = uint64(int16(v))
		case opLW:
			v, ok := h.load(x[d.rs1&31]+uint64(d.imm), 4)
			if !ok {
				continue
			}
			x[d.rd&31] = uint64(int32(v))
		case opLD:
			v, ok := h.load(x[d.rs1&31]+uint64(d.imm), 8)
			if !ok {
				continue
			}
			x[d.rd&31] = v
		case opLBU:
			v, ok := h.load(x[d.rs1&31]+uint64(d.imm), 1)
			if !ok {
				continue
			}
			x[d.rd&31] = v
		case opLHU:
			v, ok := h.load(x[d.rs1&31]+uint64(d.imm), 2)
			if !ok {
				continue
			}
			x[d.rd&31] = v
		case opLWU:
			v, ok := h.load(x[d.rs1&31]+uint64(d.imm), 4)
			if !ok {
				continue
			}
			x[d.rd&31] = v
		case opSB:
			if !h.store(x[d.rs1&31]+uint64(d.imm), 1, x[d.rs2&31]) {
				continue
			}
		case opSH:
			if !h.store(x[d.rs1&31]+uint64(d.imm), 2, x[d.rs2&31]) {
				continue
			}
		case opSW:
			if !h.store(x[d.rs1&31]+uint64(d.imm), 4, x[d.rs2&31]) {
				continue
			}
		case opSD:
			if !h.store(x[d.rs1&31]+uint64(d.imm), 8, x[d.rs2&31]) {
				continue
			}
		case opADDI:
			x[d.rd&31] = x[d.rs1&31] + uint64(d.imm)
		case opSLTI:
			x[d.rd&31] = b2u(int64(x[d.rs1&31]) < d.imm)
		case opSLTIU:
			x[d.rd&31] = b2u(x[d.rs1&31] < uint64(d.imm))
		case opXORI:
			x[d.rd&31] = x[d.rs1&31] ^ uint64(d.imm)
		case opORI:
			x[d.rd&31] = x[d.rs1&31] | uint64(d.imm)
		case opANDI:
			x[d.rd&31] = x[d.rs1&31] & uint64(d.imm)
		case opSLLI:
			x[d.rd&31] = x[d.rs1&31] << uint(d.imm)
		case opSRLI:
			x[d.rd&31] = x[d.rs1&31] >> uint(d.imm)
		case opSRAI:
			x[d.rd&31] = uint64(int64(x[d.rs1&31]) >> uint(d.imm))
		case opADD:
			x[d.rd&31] = x[d.rs1&31] + x[d.rs2&31]
		case opSUB:
			x[d.rd&31] = x[d.rs1&31] - x[d.rs2&31]
		case opSLL:
			x[d.rd&31] = x[d.rs1&31] << (x[d.rs2&31] & 63)
		case opSLT:
			x[d.rd&31] = b2u(int64(x[d.rs1&31]) < int64(x[d.rs2&31]))
		case opSLTU:
			x[d.rd&31] = b2u(x[d.rs1&31] < x[d.rs2&31])
		case opXOR:
			x[d.rd&31] = x[d.rs1&31] ^ x[d.rs2&31]
		case opSRL:
			x[d.rd&31] = x[d.rs1&31] >> (x[d.rs2&31] & 63)
		case opSRA:
			x[d.rd&31] = uint64(int64(x[d.rs1&31]) >> (x[d.rs2&31] & 63))
		case opOR:
			x[d.rd&31] = x[d.rs1&31] | x[d.rs2&31]
		case opAND:
			x[d.rd&31] = x[d.rs1&31] & x[d.rs2&31]
		case opADDIW:
			x[d.rd&31] = sx32(x[d.rs1&31] + uint64(d.imm))
		case opSLLIW:
			x[d.rd&31] = sx32(x[d.rs1&31] << uint(d.imm))
		case opSRLIW:
			x[d.rd&31] = sx32(uint64(uint32(x[d.rs1&31]) >> uint(d.imm)))
		case opSRAIW:
			x[d.rd&31] = uint64(int64(int32(x[d.rs1&31]) >> uint(d.imm)))
		case opADDW:
			x[d.rd&31] = sx32(x[d.rs1&31] + x[d.rs2&31])
		case opSUBW:
			x[d.rd&31] = sx32(x[d.rs1&31] - x[d.rs2&31])
		case opSLLW:
			x[d.rd&31] = sx32(x[d.rs1&31] << (x[d.rs2&31] & 31))
		case opSRLW:
			x[d.rd&31] = sx32(uint64(uint32(x[d.rs1&31]) >> (x[d.rs2&31] & 31)))
		case opSRAW:
			x[d.rd&31] = uint64(int64(int32(x[d.rs1&31]) >> (x[d.rs2&31] & 31)))
		case opMUL:
			x[d.rd&31] = x[d.rs1&31] * x[d.rs2&31]
		case opMULH:
			x[d.rd&31] = mulh(x[d.rs1&31], x[d.rs2&31])
		case opMULHSU:
			x[d.rd&31] = mulhsu(x[d.rs1&31], x[d.rs2&31])
		case opMULHU:
			x[d.rd&31], _ = bits.Mul64(x[d.rs1&31], x[d.rs2&31])
		case opDIV:
			x[d.rd&31] = div(x[d.rs1&31], x[d.rs2&31])
		case opDIVU:
			x[d.rd&31] = divu(x[d.rs1&31], x[d.rs2&31])
		case opREM:
			x[d.rd&31] = rem(x[d.rs1&31], x[d.rs2&31])
		case opREMU:
			x[d.rd&31] = remu(x[d.rs1&31], x[d.rs2&31])
		case opMULW:
			x[d.rd&31] = sx32(x[d.rs1&31] * x[d.rs2&31])
		case opDIVW:
			x[d.rd&31] = divw(x[d.rs1&31], x[d.rs2&31])
		case opDIVUW:
			x[d.rd&31] = divuw(x[d.rs1&31], x[d.rs2&31])
		case opREMW:
			x[d.rd&31] = remw(x[d.rs1&31], x[d.rs2&31])
		case opREMUW:
			x[d.rd&31] = remuw(x[d.rs1&31], x[d.rs2&31])
		case opFENCE:
			if h.atomics != nil {
				h.atomics.Fence()
			}
			if d.imm == pauseHint && d.rd|d.rs1 == 0 && h.yieldHints {
				h.PC = next
				h.Instret++
				return StopYield
			}
		case opFENCEI:
			h.decoded.flushAll()
			h.mmu.flushFetch()
		case opECALL:
			if h.Priv == PrivS && h.EcallHook != nil && h.EcallHook(h) {
				break
			}
			h.trap([4]uint64{causeEcallU, causeEcallS, 0, causeEcallM}[h.Priv], 0)
			continue
		case opEBREAK:
			h.trap(causeBreakpoint, pc)
			continue
		case opSRET:
			if h.Priv < PrivS || h.Priv == PrivS && h.csr.mstatus&msTSR != 0 {
				h.illegal(d)
				continue
			}
			h.sret()
			h.Instret++
			continue
		case opMRET:
			if h.Priv < PrivM {
				h.illegal(d)
				continue
			}
			h.mret()
			h.Instret++
			continue
		case opWFI:
			if h.Priv == PrivU || h.Priv == PrivS && h.csr.mstatus&msTW != 0 {
				h.illegal(d)
				continue
			}
			h.PC = next
			h.Instret++
			if h.csr.mip&h.csr.mie == 0 {
				h.waiting = true
				return StopIdle
			}
			continue
		case opSFENCEVMA:
			if h.Priv == PrivU || h.Priv == PrivS && h.csr.mstatus&msTVM != 0 {
				h.illegal(d)
				continue
			}
			if d.rs1 != 0 {
				h.mmu.flushPage(h.X[d.rs1])
			} else {
				h.mmu.flush()
			}
		case opCSRRW, opCSRRS, opCSRRC, opCSRRWI, opCSRRSI, opCSRRCI:
			if !h.execCSR(d) {
				h.illegal(d)
				continue
			}
		case opLRW, opLRD:
			size := uint64(4)
			if d.op == opLRD {
				size = 8
			}
			off, ok := h.translateAMO(x[d.rs1&31], size, accRead)
			if !ok {
				continue
			}
			v := h.readRAM(off, size)
			h.resValid, h.resAddr, h.resVal = true, off, v
			if size == 4 {
				v = sx32(v)
			}
			x[d.rd&31] = v
		case opSCW, opSCD:
			size := uint64(4)
			if d.op == opSCD {
				size = 8
			}
			off, ok := h.translateAMO(x[d.rs1&31], size, accWrite)
			if !ok {
				continue
			}
			done := false
			if h.resValid && h.resAddr == off {
				if h.atomics != nil {
					done = h.atomics.CompareAndSwap(off, int(size), h.resVal, x[d.rs2&31]&sizeMask(size))
				} else {
					done = true
					h.writeRAM(off, size, x[d.rs2&31])
				}
			}
			h.resValid = false
			if done {
				h.noteStore(off, size)
				x[d.rd&31] = 0
			} else {
				x[d.rd&31] = 1
				if h.yieldHints {
					x[0] = 0
					h.PC = next
					h.Instret++
					return StopYield
				}
			}
		case opAMOSWAPW, opAMOADDW, opAMOXORW, opAMOANDW, opAMOORW,
			opAMOMINW, opAMOMAXW, opAMOMINUW, opAMOMAXUW:
			off, ok := h.translateAMO(x[d.rs1&31], 4, accWrite)
			if !ok {
				continue
			}
			h.noteStore(off, 4)
			src := sx32(x[d.rs2&31])
			var old uint64
			if a := h.atomics; a != nil {
				for {
					old = sx32(a.Load(off, 4))
					if a.CompareAndSwap(off, 4, old&0xffffffff, amo(d.op-opAMOSWAPW, old, src)&0xffffffff) {
						break
					}
				}
			} else {
				old = sx32(uint64(binary.LittleEndian.Uint32(h.ram[off:])))
				binary.LittleEndian.PutUint32(h.ram[off:], uint32(amo(d.op-opAMOSWAPW, old, src)))
			}
			x[d.rd&31] = old
		case opAMOSWAPD, opAMOADDD, opAMOXORD, opAMOANDD, opAMOORD,
			opAMOMIND, opAMOMAXD, opAMOMINUD, opAMOMAXUD:
			off, ok := h.translateAMO(x[d.rs1&31], 8, accWrite)
			if !ok {
				continue
			}
			h.noteStore(off, 8)
			var old uint64
			if a := h.atomics; a != nil {
				for {
					old = a.Load(off, 8)
					if a.CompareAndSwap(off, 8, old, amo(d.op-opAMOSWAPD, old, x[d.rs2&31])) {
						break
					}
				}
			} else {
				old = binary.LittleEndian.Uint64(h.ram[off:])
				binary.LittleEndian.PutUint64(h.ram[off:], amo(d.op-opAMOSWAPD, old, x[d.rs2&31]))
			}
			x[d.rd&31] = old
		case opIllegal:
			h.illegal(d)
			continue
		default:
			if !h.execFP(d) {
				continue
			}
		}
		x[0] = 0
		h.PC = next
		h.Instret++
	}
}

// pauseHint is the fm/pred/succ field of the Zihintpause hint, fence w,0.
const pauseHint = 0x010

func sizeMask(size uint64) uint64 {
	if size == 8 {
		return ^uint64(0)
	}
	return 1<<(8*size) - 1
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func sx32(v uint64) uint64 { return uint64(int64(int32(v))) }

func mulh(a, b uint64) uint64 {
	hi, _ := bits.Mul64(a, b)
	if int64(a) < 0 {
		hi -= b
	}
	if int64(b) < 0 {
		hi -= a
	}
	return hi
}

func mulhsu(a, b uint64) uint64 {
	hi, _ := bits.Mul64(a, b)
	if int64(a) < 0 {
		hi -= b
	}
	return hi
}

// Division by zero and overflow give the results the M extension specifies
// (unprivileged spec table 7.1) instead of trapping.
func div(a, b uint64) uint64 {
	switch {
	case b == 0:
		return ^uint64(0)
	case int64(a) == -1<<63 && int64(b) == -1:
		return a
	}
	return uint64(int64(a) / int64(b))
}

func divu(a, b uint64) uint64 {
	if b == 0 {
		return ^uint64(0)
	}
	return a / b
}

func rem(a, b uint64) uint64 {
	switch {
	case b == 0:
		return a
	case int64(a) == -1<<63 && int64(b) == -1:
		return 0
	}
	return uint64(int64(a) % int64(b))
}

func remu(a, b uint64) uint64 {
	if b == 0 {
		return a
	}
	return a % b
}

func divw(a, b uint64) uint64 {
	x, y := int32(a), int32(b)
	switch {
	case y == 0:
		return ^uint64(0)
	case x == -1<<31 && y == -1:
		return uint64(int64(x))
	}
	return uint64(int64(x / y))
}

func divuw(a, b uint64) uint64 {
	x, y := uint32(a), uint32(b)
	if y == 0 {
		return ^uint64(0)
	}
	return sx32(uint64(x / y))
}

func remw(a, b uint64) uint64 {
	x, y := int32(a), int32(b)
	switch {
	case y == 0:
		return uint64(int64(x))
	case x == -1<<31 && y == -1:
		return 0
	}
	return uint64(int64(x % y))
}

func remuw(a, b uint64) uint64 {
	x, y := uint32(a), uint32(b)
	if y == 0 {
		return sx32(uint64(x))
	}
	return sx32(uint64(x % y))
}

// amo computes the new memory value of an AMO; k is the op's distance from
// the SWAP op of its width. Word operands arrive sign-extended, so signed
// and unsigned comparisons work for both widths.
func amo(k op, old, src uint64) uint64 {
	switch k {
	case 0:
		return src
	case opAMOADDW - opAMOSWAPW:
		return old + src
	case opAMOXORW - opAMOSWAPW:
		return old ^ src
	case opAMOANDW - opAMOSWAPW:
		return old & src
	case opAMOORW - opAMOSWAPW:
		return old | src
	case opAMOMINW - opAMOSWAPW:
		if int64(src) < int64(old) {
			return src
		}
	case opAMOMAXW - opAMOSWAPW:
		if int64(src) > int64(old) {
			return src
		}
	case opAMOMINUW - opAMOSWAPW:
		if src < old {
			return src
		}
	case opAMOMAXUW - opAMOSWAPW:
		if src > old {
			return src
		}
	}
	return old
}

// execCSR executes a Zicsr instruction; false means illegal.
func (h *Hart) execCSR(d *inst) bool {
	n := uint32(d.imm)
	var src uint64
	switch d.op {
	case opCSRRW, opCSRRS, opCSRRC:
		src = h.X[d.rs1]
	default:
		src = uint64(d.rs1) // uimm
	}
	write := d.op == opCSRRW || d.op == opCSRRWI || d.rs1 != 0
	if write && n>>10 == 3 {
		return false // read-only CSR
	}
	old, ok := h.readCSR(n)
	if !ok {
		return false
	}
	if write {
		// A read-modify-write of mip/sip uses only the software-writable
		// bits, not the levels driven by devices (privileged spec 3.1.9).
		base := old
		if n == csrMip || n == csrSip {
			base = h.csr.sw
		}
		v := src
		switch d.op {
		case opCSRRS, opCSRRSI:
			v = base | src
		case opCSRRC, opCSRRCI:
			v = base &^ src
		}
		if !h.writeCSR(n, v) {
			return false
		}
		h.updateKey()
		h.needIRQCheck()
	}
	h.X[d.rd] = old
	return true
}
