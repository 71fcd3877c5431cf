//go:build linux && amd64

package jit

import (
	"encoding/binary"
	"math/rand"
	"testing"

	"ftvm/riscv"
)

// Random machine code for the differential tests: instruction words built
// from their fields (not text, so no assembler is needed and the fuzzer can
// mutate them), run from RAM on both engines. Nothing about the program has
// to make sense: whatever it does (fault, loop, write over itself, jump
// into data) both engines must do identically.

// Memory map of a random program (RAM offsets).
const (
	genHandler = 0x0000  // M-mode trap handler: skip the instruction, return
	genCode    = 0x1000  // random code, genCodePages pages
	genData    = 0x8000  // data the pointer registers point into
	genTables  = 0x10000 // Sv39 page tables: root, one level-1, one level-0 table
	genRAM     = 0x14000

	// With paging, RAM page i is mapped at genVA + i*4096, and the pages
	// of code and data a second time at genAlias + i*4096.
	genVA    = 0x40000000
	genAlias = 0x40100000

	genCodePages = 4
)

func encR(opc, f3, f7, rd, rs1, rs2 uint32) uint32 {
	return f7<<25 | rs2<<20 | rs1<<15 | f3<<12 | rd<<7 | opc
}

func encI(opc, f3, rd, rs1 uint32, imm int32) uint32 {
	return uint32(imm)<<20 | rs1<<15 | f3<<12 | rd<<7 | opc
}

func encS(opc, f3, rs1, rs2 uint32, imm int32) uint32 {
	u := uint32(imm)
	return (u>>5&0x7f)<<25 | rs2<<20 | rs1<<15 | f3<<12 | (u&0x1f)<<7 | opc
}

func encB(f3, rs1, rs2 uint32, imm int32) uint32 {
	u := uint32(imm)
	return (u>>12&1)<<31 | (u>>5&0x3f)<<25 | rs2<<20 | rs1<<15 | f3<<12 | (u>>1&0xf)<<8 | (u>>11&1)<<7 | 0x63
}

func encJ(rd uint32, imm int32) uint32 {
	u := uint32(imm)
	return (u>>20&1)<<31 | (u>>1&0x3ff)<<21 | (u>>11&1)<<20 | (u>>12&0xff)<<12 | rd<<7 | 0x6f
}

func encU(opc, rd uint32, imm uint32) uint32 { return imm&0xfffff000 | rd<<7 | opc }

// gen makes random instructions. Registers 2 and 3 hold pointers into the
// data area and 4 into the code, and are written only rarely, so most
// memory accesses and indirect jumps land somewhere that matters. Most
// operands come from a window of nregs registers: a few, so values flow,
// or many, so the translator runs out of host registers.
type gen struct {
	r     *rand.Rand
	nregs int
}

func (g *gen) reg() uint32 {
	if g.r.Intn(8) == 0 {
		return uint32(g.r.Intn(32))
	}
	return uint32(5 + g.r.Intn(g.nregs))
}

func (g *gen) dst() uint32 {
	if g.r.Intn(50) == 0 {
		return uint32(g.r.Intn(5)) // rarely x0 or a pointer register
	}
	return uint32(5 + g.r.Intn(g.nregs))
}

func (g *gen) ptr() uint32 {
	if g.r.Intn(10) == 0 {
		return g.reg()
	}
	return uint32(2 + g.r.Intn(2))
}

func (g *gen) imm12() int32 {
	switch g.r.Intn(4) {
	case 0:
		return int32(g.r.Intn(4096)) - 2048
	case 1:
		return []int32{0, 1, -1, 2047, -2048, 31, 32, 63}[g.r.Intn(8)]
	}
	return int32(g.r.Intn(64)) - 32
}

// fp returns an F or D instruction, with operands from a few FP registers
// and rounding modes of every kind (static, dynamic, the one SSE lacks,
// invalid ones).
func (g *gen) fp() uint32 {
	r := g.r
	freg := func() uint32 { return uint32(r.Intn(8)) }
	rm := func() uint32 { return []uint32{0, 1, 2, 3, 7, 7, 7, 4, 5}[r.Intn(9)] }
	fmt := uint32(r.Intn(2)) // single, double
	op := func(f5, rs2, rm uint32) uint32 { return encR(0x53, rm, f5<<2|fmt, freg(), freg(), rs2) }
	switch r.Intn(16) {
	case 0:
		return encI(0x07, 2+fmt, freg(), g.ptr(), g.imm12()) // flw, fld
	case 1:
		return encS(0x27, 2+fmt, g.ptr(), freg(), g.imm12()) // fsw, fsd
	case 2, 3, 4:
		return op(uint32(r.Intn(4)), freg(), rm()) // add, sub, mul, div
	case 5:
		return op(0x0b, 0, rm()) // sqrt
	case 6:
		return op(0x04, freg(), uint32(r.Intn(3))) // sgnj, sgnjn, sgnjx
	case 7:
		return op(0x05, freg(), uint32(r.Intn(2))) // min, max
	case 8:
		return encR(0x53, rm(), 0x08<<2|fmt, freg(), freg(), 1-fmt) // fcvt.s.d, fcvt.d.s
	case 9:
		return encR(0x53, uint32(r.Intn(3)), 0x14<<2|fmt, g.dst(), freg(), freg()) // fle, flt, feq
	case 10:
		return encR(0x53, rm(), 0x18<<2|fmt, g.dst(), freg(), uint32(r.Intn(4))) // fcvt to an integer
	case 11:
		return encR(0x53, rm(), 0x1a<<2|fmt, freg(), g.reg(), uint32(r.Intn(4))) // fcvt from an integer
	case 12:
		return encR(0x53, uint32(r.Intn(2)), 0x1c<<2|fmt, g.dst(), freg(), 0) // fmv.x, fclass
	case 13:
		return encR(0x53, 0, 0x1e<<2|fmt, freg(), g.reg(), 0) // fmv.w.x, fmv.d.x
	case 14:
		return uint32(r.Intn(4))<<27 | fmt<<25 | encR([]uint32{0x43, 0x47, 0x4b, 0x4f}[r.Intn(4)], rm(), 0, freg(), freg(), freg()) // fused
	}
	switch r.Intn(3) { // the FP CSRs
	case 0:
		return encI(0x73, 1, 0, g.reg(), 0x002) // csrw frm
	case 1:
		return encI(0x73, 5, 0, uint32(r.Intn(8)), 0x002) // csrwi frm
	}
	return encI(0x73, 1, g.dst(), 0, 0x001) // csrrw fflags, x0: read and clear
}

// fpValue returns an interesting FP register value: a double or a boxed
// single of a special kind (zero, subnormal, normal near the limits,
// infinity, quiet or signaling NaN), a badly boxed single, or random bits.
func fpValue(r *rand.Rand) uint64 {
	special := func(expBits, manBits uint) uint64 {
		var e, m uint64
		switch r.Intn(7) {
		case 0: // zero
		case 1: // subnormal
			m = 1 + uint64(r.Int63n(1<<manBits-1))
		case 2: // infinity
			e = 1<<expBits - 1
		case 3: // quiet NaN
			e, m = 1<<expBits-1, 1<<(manBits-1)|uint64(r.Intn(4))
		case 4: // signaling NaN
			e, m = 1<<expBits-1, 1+uint64(r.Intn(4))
		case 5: // the largest and smallest normals, one
			e = []uint64{1, 1<<expBits - 2, 1<<(expBits-1) - 1}[r.Intn(3)]
			m = []uint64{0, 1<<manBits - 1}[r.Intn(2)]
		default: // a modest normal number
			e = 1<<(expBits-1) - 1 + uint64(r.Intn(80)) - 40
			m = uint64(r.Int63n(1 << manBits))
		}
		return uint64(r.Intn(2))<<(expBits+manBits) | e<<manBits | m
	}
	switch r.Intn(6) {
	case 0, 1:
		return special(11, 52)
	case 2, 3:
		return boxMask | special(8, 23)
	case 4:
		return special(8, 23) // not boxed
	}
	return r.Uint64()
}

// alu returns an integer instruction that neither jumps nor accesses
// memory.
func (g *gen) alu() (uint32, int) {
	for {
		v, n := g.insn()
		in := riscv.Decode(v)
		if translated(in) && !endsBlock(in.Op) && !mayExit(in) {
			return v, n
		}
	}
}

// insn returns one instruction: raw bits and size in bytes.
func (g *gen) insn() (uint32, int) {
	r := g.r
	switch k := r.Intn(40); {
	case k < 6: // register-register, RV64I and M
		type rr struct{ f3, f7 uint32 }
		ops := []rr{{0, 0}, {0, 0x20}, {1, 0}, {2, 0}, {3, 0}, {4, 0}, {5, 0}, {5, 0x20}, {6, 0}, {7, 0},
			{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}, {6, 1}, {7, 1}}
		o := ops[r.Intn(len(ops))]
		return encR(0x33, o.f3, o.f7, g.dst(), g.reg(), g.reg()), 4
	case k < 9: // 32-bit register-register
		type rr struct{ f3, f7 uint32 }
		ops := []rr{{0, 0}, {0, 0x20}, {1, 0}, {5, 0}, {5, 0x20}, {0, 1}, {4, 1}, {5, 1}, {6, 1}, {7, 1}}
		o := ops[r.Intn(len(ops))]
		return encR(0x3b, o.f3, o.f7, g.dst(), g.reg(), g.reg()), 4
	case k < 14: // immediate
		f3 := uint32(r.Intn(8))
		imm := g.imm12()
		switch f3 {
		case 1:
			imm = int32(r.Intn(64))
		case 5:
			imm = int32(r.Intn(64)) | int32(r.Intn(2))<<10
		}
		if r.Intn(3) == 0 { // the W forms
			switch f3 = []uint32{0, 1, 5}[r.Intn(3)]; f3 {
			case 1:
				imm = int32(r.Intn(32))
			case 5:
				imm = int32(r.Intn(32)) | int32(r.Intn(2))<<10
			}
			return encI(0x1b, f3, g.dst(), g.reg(), imm), 4
		}
		return encI(0x13, f3, g.dst(), g.reg(), imm), 4
	case k < 16:
		return encU([]uint32{0x37, 0x17}[r.Intn(2)], g.dst(), r.Uint32()), 4
	case k < 21: // loads
		return encI(0x03, uint32(r.Intn(7)), g.dst(), g.ptr(), g.imm12()), 4
	case k < 25: // stores
		return encS(0x23, uint32(r.Intn(4)), g.ptr(), g.reg(), g.imm12()), 4
	case k < 28: // branches, mostly short
		f3 := []uint32{0, 1, 4, 5, 6, 7}[r.Intn(6)]
		off := int32(r.Intn(64)-24) * 2
		return encB(f3, g.reg(), g.reg(), off), 4
	case k < 29:
		return encJ(g.dst(), int32(r.Intn(128)-48)*2), 4
	case k < 30: // indirect jumps through the code pointer
		rs1 := uint32(4)
		if r.Intn(4) == 0 {
			rs1 = g.reg()
		}
		return encI(0x67, 0, g.dst(), rs1, int32(r.Intn(256))*2), 4
	case k < 36: // compressed: any 16-bit pattern that is not a 32-bit one
		for {
			v := uint32(r.Intn(1 << 16))
			if v&3 != 3 {
				return v, 2
			}
		}
	case k < 37: // system and CSR instructions: mostly the interpreter's
		switch r.Intn(12) {
		case 6:
			return encI(0x73, 6, g.dst(), 2, 0x100), 4 // csrrsi rd, sstatus, SIE
		case 7:
			return encI(0x73, 7, g.dst(), 2, 0x100), 4 // csrrci rd, sstatus, SIE
		case 8:
			return encI(0x73, 2, g.dst(), 0, 0x100), 4 // csrr rd, sstatus
		case 9: // csrs or csrc sstatus, reg: SIE alone or more
			return encI(0x73, 2+uint32(r.Intn(2)), 0, g.reg(), 0x100), 4
		case 10:
			return encI(0x73, 1, g.dst(), g.reg(), 0x140), 4 // csrrw rd, sscratch, reg
		case 11:
			return encI(0x73, uint32(1+r.Intn(7)), g.dst(), uint32(r.Intn(32)), 0x140), 4 // sscratch, any form
		}
		switch r.Intn(7) {
		case 5:
			return encR(0x73, 0, 0x09, 0, g.reg(), 0), 4 // sfence.vma rs1, zero: one page
		case 0:
			return 0x0000100f, 4 // fence.i
		case 1:
			return 0x0ff0000f, 4 // fence
		case 2:
			return encI(0x73, 2, g.dst(), 0, 0x340), 4 // csrr mscratch
		case 3:
			return encI(0x73, 1, 0, g.reg(), 0x340), 4 // csrw mscratch
		case 4:
			return encI(0x73, 2, g.dst(), 0, 0xc00), 4 // rdcycle
		}
		return 0x00000073, 4 // ecall
	case k < 39: // atomics on the data pointers
		f5 := []uint32{0x02, 0x03, 0x01, 0x00, 0x04, 0x0c, 0x08, 0x10, 0x14, 0x18, 0x1c}[r.Intn(11)]
		rs2 := g.reg()
		if f5 == 0x02 {
			rs2 = 0
		}
		return encR(0x2f, uint32(2+r.Intn(2)), f5<<2, g.dst(), g.ptr(), rs2), 4
	}
	return r.Uint32() | 3, 4 // anything
}

// idiom returns a sequence compilers emit for what x86 does in one or two
// instructions: rotates as two shifts and an OR, zero and sign extension
// as two shifts; sometimes slightly off (then not fused) and often
// followed by a write of the temporary, which lets the translator fuse.
func (g *gen) idiom() []uint32 {
	r := g.r
	x, ra, rb := g.reg(), g.dst(), g.dst()
	switch r.Intn(3) {
	case 0: // zext.w, sext.w
		s1, s2 := uint32(32), uint32(32)
		if r.Intn(6) == 0 {
			s2 = uint32(r.Intn(64))
		}
		f7 := uint32(r.Intn(2)) << 5
		return []uint32{encI(0x13, 1, ra, x, int32(s1)), encI(0x13, 5, ra, ra, int32(s2|f7<<5))}
	}
	bits := []int32{32, 64}[r.Intn(2)]
	opc := uint32(0x13)
	if bits == 32 {
		opc = 0x1b
	}
	sh := 1 + r.Int31n(bits-1)
	sh2 := bits - sh
	if r.Intn(8) == 0 {
		sh2 = r.Int31n(bits)
	}
	rd := rb
	if r.Intn(3) == 0 {
		rd = g.dst()
	}
	or := encR(0x33, 6, 0, rd, ra, rb)
	if r.Intn(2) == 0 {
		or = encR(0x33, 6, 0, rd, rb, ra)
	}
	seq := []uint32{encI(opc, 5, ra, x, sh), encI(opc, 1, rb, x, sh2), or}
	if r.Intn(4) != 0 {
		seq = append(seq, encI(0x13, 0, ra, g.reg(), g.imm12())) // ra overwritten: dead
	}
	return seq
}

// genValue returns an interesting register value.
func genValue(r *rand.Rand) uint64 {
	switch r.Intn(6) {
	case 0:
		return []uint64{0, 1, ^uint64(0), 1 << 63, 1<<63 - 1, 1 << 31, 1<<31 - 1, 0xffffffff, 0xffffffff80000000}[r.Intn(9)]
	case 1:
		return uint64(r.Intn(128))
	case 2:
		return uint64(int64(int32(r.Uint32())))
	case 3:
		return ramBase + uint64(r.Intn(genRAM))
	}
	return r.Uint64()
}

// genProgram writes a random program into ram and returns the initial
// register values.
func genProgram(r *rand.Rand, ram []byte) (x [32]uint64) {
	g := &gen{r: r, nregs: []int{8, 27}[r.Intn(2)]}
	aluOnly := r.Intn(3) == 0 // long blocks of arithmetic, as in hash functions
	fpRate := []int{0, 4, 30}[r.Intn(3)]
	for off := genCode; off < genCode+genCodePages*4096-4; {
		v, n := g.insn()
		if aluOnly && r.Intn(16) != 0 {
			v, n = g.alu()
		}
		if r.Intn(100) < fpRate {
			v, n = g.fp(), 4
		}
		if r.Intn(40) == 0 && off+4*8 < genCode+genCodePages*4096-4 {
			// A burst of loads or stores from one base, some across a
			// page boundary.
			base, imm, store := g.ptr(), g.imm12(), r.Intn(2) == 0
			for i := r.Intn(6); i > 0; i-- {
				imm += int32(r.Intn(17)) - 4
				if imm > 2047 {
					imm = 2047
				}
				if store {
					binary.LittleEndian.PutUint32(ram[off:], encS(0x23, uint32(r.Intn(4)), base, g.reg(), imm))
				} else {
					binary.LittleEndian.PutUint32(ram[off:], encI(0x03, uint32(r.Intn(7)), g.dst(), base, imm))
				}
				off += 4
			}
		}
		if r.Intn(24) == 0 && off+4*4 < genCode+genCodePages*4096-4 {
			// An idiom the translator fuses (or almost one: a register
			// still read afterwards, an operand swapped, a wrong shift).
			for _, w := range g.idiom() {
				binary.LittleEndian.PutUint32(ram[off:], w)
				off += 4
			}
		}
		if n == 2 {
			binary.LittleEndian.PutUint16(ram[off:], uint16(v))
		} else {
			binary.LittleEndian.PutUint32(ram[off:], v)
		}
		off += n
	}
	r.Read(ram[genData : genData+4096])
	writeHandler(ram)
	for i := 1; i < 32; i++ {
		x[i] = genValue(r)
	}
	x[2] = ramBase + genData + uint64(r.Intn(2048))
	x[3] = ramBase + genData + 2048 + uint64(r.Intn(2048))
	x[4] = ramBase + genCode + uint64(r.Intn(genCodePages*4096-512))&^1
	return x
}

// genFP returns initial FP registers and fcsr for a generated program.
func genFP(r *rand.Rand) (f [32]uint64, frm uint64) {
	for i := range f {
		f[i] = fpValue(r)
	}
	return f, []uint64{0, 0, 1, 2, 3, 4, 5}[r.Intn(7)]
}

// writeHandler puts the trap handler at genHandler: mepc += 4, mret. It
// uses x31 only.
func writeHandler(ram []byte) {
	code := []uint32{
		encI(0x73, 2, 31, 0, 0x341), // csrr x31, mepc
		encI(0x13, 0, 31, 31, 4),    // addi x31, x31, 4
		encI(0x73, 1, 0, 31, 0x341), // csrw mepc, x31
		0x30200073,                  // mret
	}
	for i, c := range code {
		binary.LittleEndian.PutUint32(ram[genHandler+4*i:], c)
	}
}

// genPaging builds Sv39 tables mapping RAM pages 0-15 at genVA and the code
// and data pages again at genAlias, with random permissions and A/D bits,
// for a program running in mode priv, and returns satp.
func genPaging(r *rand.Rand, ram []byte, priv uint8) uint64 {
	root, l1, l0 := uint64(genTables), uint64(genTables+0x1000), uint64(genTables+0x2000)
	put := func(table, idx, v uint64) { binary.LittleEndian.PutUint64(ram[table+8*idx:], v) }
	ppn := func(off uint64) uint64 { return (ramBase + off) >> 12 }
	put(root, genVA>>30, ppn(l1)<<10|1)
	put(l1, genVA>>21&0x1ff, ppn(l0)<<10|1)
	leaf := func(off uint64, code bool) uint64 {
		v := ppn(off)<<10 | 1
		if r.Intn(10) != 0 {
			v |= 1 << 1 // R
		}
		if r.Intn(10) < 7 {
			v |= 1 << 2 // W (without R it is reserved: a fault)
		}
		if code && r.Intn(10) != 0 || !code && r.Intn(5) == 0 {
			v |= 1 << 3 // X
		}
		if priv == riscv.PrivU || r.Intn(10) == 0 {
			v |= 1 << 4 // U
		}
		v |= uint64(r.Intn(4)) << 6 // A, D
		return v
	}
	for i := uint64(0); i < 16; i++ {
		code := i*4096 >= genCode && i*4096 < genCode+genCodePages*4096
		put(l0, (genVA>>12&0x1ff)+i, leaf(i*4096, code))
		if i*4096 >= genCode {
			put(l0, (genAlias>>12&0x1ff)+i, leaf(i*4096, code))
		}
	}
	return 8<<60 | ppn(root)
}

// setupGenerated makes a pair of harts that start ram (a generated
// program) at genCode with registers x, in mode priv (with random Sv39
// mappings below M) with the FPU on and, with irqs, the timer interrupt
// enabled.
func setupGenerated(t testing.TB, ram []byte, x [32]uint64, r *rand.Rand, irqs bool, priv uint8) *pair {
	t.Helper()
	var satp uint64
	pc := uint64(ramBase + genCode)
	if priv != riscv.PrivM {
		satp = genPaging(r, ram, priv)
		// Move the pointers to the virtual addresses, some to the alias.
		for i := range x {
			if x[i] >= ramBase && x[i] < ramBase+genRAM {
				x[i] = x[i] - ramBase + genVA
				if r.Intn(3) == 0 && x[i] >= genVA+genCode {
					x[i] += genAlias - genVA
				}
			}
		}
		pc = pc - ramBase + genVA
	}
	sum := r.Intn(4) == 0
	fregs, frm := genFP(r)
	fs := r.Intn(8) != 0 // sometimes the FPU is off
	p := newPair(t, ram, genRAM)
	for _, s := range []side{p.interp, p.jit} {
		h := s.h
		h.X = x
		h.X[0] = 0
		h.F = fregs
		h.SetMachineCSR(riscv.CSRFrm, frm)
		h.SetMachineCSR(riscv.CSRMtvec, ramBase+genHandler)
		st := uint64(0)
		if fs {
			st |= 1 << 13 // FS initial
		}
		if irqs {
			st |= 1 << 3 // MIE
			h.SetMachineCSR(riscv.CSRMie, 1<<riscv.IntMTI)
		}
		if sum {
			st |= 1 << 18 // SUM
		}
		h.SetMachineCSR(riscv.CSRMstatus, st)
		h.SetMachineCSR(0x180, satp)
		h.EnterMode(priv, pc)
	}
	return p
}

// runGenerated runs a generated program (see setupGenerated) on both
// engines in slices drawn from r, comparing after each, for about insns
// instructions. With irqs, the timer interrupt line toggles between some
// slices.
func runGenerated(t testing.TB, ram []byte, x [32]uint64, r *rand.Rand, insns uint64, irqs bool, priv uint8) *pair {
	t.Helper()
	p := setupGenerated(t, ram, x, r, irqs, priv)
	level := false
	// Bounded in slices too: a hart that stops idle at once forever (WFI
	// with the timer interrupt disabled, say) would loop otherwise.
	for slices := 0; p.interp.h.Instret < insns && slices < 10_000; slices++ {
		n := uint64(1 + r.Intn(2000))
		if r.Intn(4) == 0 {
			n = uint64(1 + r.Intn(5))
		}
		stop := p.step(p.interp.h.Instret + n)
		if stop == riscv.StopLockup || stop == riscv.StopHalt {
			break
		}
		if irqs && (stop == riscv.StopIdle || r.Intn(8) == 0) {
			level = !level
			p.interp.h.SetInterrupt(riscv.IntMTI, level)
			p.jit.h.SetInterrupt(riscv.IntMTI, level)
		} else if stop == riscv.StopIdle {
			break
		}
	}
	return p
}

// TestRandomPrograms runs random programs on both engines.
func TestRandomPrograms(t *testing.T) {
	seeds := 200
	if testing.Short() {
		seeds = 40
	}
	var total, blocks, native, fused uint64
	for seed := int64(1); seed <= int64(seeds); seed++ {
		r := rand.New(rand.NewSource(seed))
		ram := make([]byte, genRAM)
		x := genProgram(r, ram)
		p := runGenerated(t, ram, x, r, 200_000, seed%2 == 0, []uint8{riscv.PrivM, riscv.PrivS, riscv.PrivU}[seed%3])
		if t.Failed() {
			t.Fatalf("seed %d", seed)
		}
		total += p.jit.h.Instret
		blocks += p.jit.j.Stats.Blocks
		native += p.jit.j.Stats.Native
		fused += p.jit.j.Stats.Fused
	}
	t.Logf("%d programs, %d instructions (%d in generated code), %d blocks translated, %d idioms fused", seeds, total, native, blocks, fused)
	if fused == 0 {
		t.Error("no idiom was fused: the programs do not test fusion")
	}
}

// FuzzTranslate runs fuzzer-chosen code on both engines: data is the code
// (repeated to fill the code pages), seed picks the registers and slices.
func FuzzTranslate(f *testing.F) {
	for seed := int64(1); seed <= 8; seed++ {
		r := rand.New(rand.NewSource(seed))
		ram := make([]byte, genRAM)
		genProgram(r, ram)
		f.Add(ram[genCode:genCode+512], seed, seed%2 == 0, uint8(seed%3))
	}
	// csrw mie, zero; wfi: in M-mode with the timer interrupt toggled, a
	// hart that idles at once forever (runGenerated must end anyway).
	f.Add([]byte{0x73, 0x10, 0x40, 0x30, 0x73, 0x00, 0x50, 0x10}, int64(1), true, uint8(0))
	f.Fuzz(func(t *testing.T, code []byte, seed int64, irqs bool, mode uint8) {
		if len(code) == 0 {
			return
		}
		r := rand.New(rand.NewSource(seed))
		ram := make([]byte, genRAM)
		x := genProgram(r, ram)
		for off := genCode; off < genCode+genCodePages*4096; off += len(code) {
			copy(ram[off:genCode+genCodePages*4096], code)
		}
		runGenerated(t, ram, x, r, 20_000, irqs, []uint8{riscv.PrivM, riscv.PrivS, riscv.PrivU}[mode%3])
	})
}
