package riscv

import "errors"

// State is the complete architectural state of a hart, apart from RAM:
// what a snapshot saves and a digest covers. Caches (TLB, decodes) are not
// state; they are rebuilt on demand.
type State struct {
	X, F     [32]uint64
	PC       uint64
	Priv     uint8
	Instret  uint64
	Waiting  bool
	ResValid bool
	ResAddr  uint64
	// ResVal is the value the LR read, which an SC compares in parallel
	// mode (SetAtomics): a hart paused between an LR and its SC resumes
	// with the same reservation, there or on a replica.
	ResVal uint64

	Mstatus, Medeleg, Mideleg, Mie, MipSW, MipLines uint64
	Mtvec, Mcounteren, Menvcfg, Mscratch, Mepc      uint64
	Mcause, Mtval, Mcountinhibit                    uint64
	Stvec, Scounteren, Senvcfg, Sscratch, Sepc      uint64
	Scause, Stval, Satp, Fflags, Frm                uint64
	CycleOffset, InstretOffset                      uint64
	Pmpcfg                                          [16]uint64
	Pmpaddr                                         [64]uint64
}

// State returns the hart's architectural state.
func (h *Hart) State() State {
	c := &h.csr
	return State{
		X: h.X, F: h.F, PC: h.PC, Priv: h.Priv, Instret: h.Instret,
		Waiting: h.waiting, ResValid: h.resValid, ResAddr: h.resAddr, ResVal: h.resVal,
		Mstatus: c.mstatus, Medeleg: c.medeleg, Mideleg: c.mideleg, Mie: c.mie,
		MipSW: c.sw, MipLines: c.lines, Mtvec: c.mtvec, Mcounteren: c.mcounteren,
		Menvcfg: c.menvcfg, Mscratch: c.mscratch, Mepc: c.mepc, Mcause: c.mcause,
		Mtval: c.mtval, Mcountinhibit: c.mcountinh, Stvec: c.stvec,
		Scounteren: c.scounteren, Senvcfg: c.senvcfg, Sscratch: c.sscratch,
		Sepc: c.sepc, Scause: c.scause, Stval: c.stval, Satp: c.satp,
		Fflags: c.fflags, Frm: c.frm, CycleOffset: c.cycleOff,
		InstretOffset: c.instretOff, Pmpcfg: c.pmpcfg, Pmpaddr: c.pmpaddr,
	}
}

// SetState restores s. It is validated like any untrusted input: fields
// with fixed legal values must have them.
func (h *Hart) SetState(s State) error {
	if s.Priv != PrivU && s.Priv != PrivS && s.Priv != PrivM {
		return errors.New("hart state: invalid privilege level")
	}
	if s.X[0] != 0 {
		return errors.New("hart state: x0 is not zero")
	}
	if m := s.Satp >> 60; m != 0 && m != 8 {
		return errors.New("hart state: unsupported satp mode")
	}
	if s.Mstatus&^(mstatusWritable|msUXL|msSXL) != 0 || s.Mstatus&msMPP == 2<<11 {
		return errors.New("hart state: invalid mstatus")
	}
	if s.Frm > 7 || s.Fflags > 0x1f {
		return errors.New("hart state: invalid fcsr")
	}
	h.X, h.F, h.PC, h.Priv, h.Instret = s.X, s.F, s.PC, s.Priv, s.Instret
	h.lockedUp, h.trapRun = false, 0
	h.waiting, h.resValid, h.resAddr, h.resVal = s.Waiting, s.ResValid, s.ResAddr, s.ResVal
	c := &h.csr
	c.mstatus, c.medeleg, c.mideleg, c.mie = s.Mstatus, s.Medeleg&delegableExceptions, s.Mideleg&sInterrupts, s.Mie&allInterrupts
	c.sw, c.lines = s.MipSW, s.MipLines
	c.mtvec, c.mcounteren, c.menvcfg, c.mscratch, c.mepc = s.Mtvec, s.Mcounteren, s.Menvcfg, s.Mscratch, s.Mepc
	c.mcause, c.mtval, c.mcountinh = s.Mcause, s.Mtval, s.Mcountinhibit
	c.stvec, c.scounteren, c.senvcfg, c.sscratch, c.sepc = s.Stvec, s.Scounteren, s.Senvcfg, s.Sscratch, s.Sepc
	c.scause, c.stval, c.satp, c.fflags, c.frm = s.Scause, s.Stval, s.Satp, s.Fflags, s.Frm
	c.cycleOff, c.instretOff, c.pmpcfg, c.pmpaddr = s.CycleOffset, s.InstretOffset, s.Pmpcfg, s.Pmpaddr
	c.updateMIP()
	h.mmu.flush()
	h.decoded.flushAll()
	h.updateKey()
	h.needIRQCheck()
	return nil
}
