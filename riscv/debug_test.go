package riscv

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// sv39Hart builds a hart in S-mode with an Sv39 address space made by
// hand: root table at RAM+0x1000, a level-1 table at +0x2000, a level-0
// table at +0x3000, and these mappings:
//
//	va 0x0000_4000 (4 KiB)   -> RAM+0x5000
//	va 0x0020_0000 (2 MiB)   -> RAM+0x200000
//	va 0x4000_0000 (1 GiB)   -> RAM (0x80000000)
//	va 0x0000_6000           -> invalid PTE
//	va 0x0000_7000 (U page)  -> RAM+0x7000 (S-mode without SUM may not touch it; a debugger may)
func sv39Hart(t *testing.T) (*Hart, []byte) {
	t.Helper()
	ram := make([]byte, testRAMSize)
	h := New(&testSys{}, ram, testRAMBase, testRAMBase)
	pte := func(tableOff, idx uint64, pa uint64, flags uint64) {
		binary.LittleEndian.PutUint64(ram[tableOff+idx*8:], pa>>12<<10|flags)
	}
	const root, l1, l0 = 0x1000, 0x2000, 0x3000
	pte(root, 0, testRAMBase+l1, pteV)        // va 0..1G: next level
	pte(root, 1, testRAMBase, pteV|pteR|pteX) // va 1G..2G: gigapage
	pte(l1, 0, testRAMBase+l0, pteV)          // va 0..2M: next level
	pte(l1, 1, testRAMBase+0x200000, pteV|pteR|pteW)
	pte(l0, 4, testRAMBase+0x5000, pteV|pteR|pteW|pteX)
	pte(l0, 6, testRAMBase+0x6000, pteR|pteW) // not valid
	pte(l0, 7, testRAMBase+0x7000, pteV|pteR|pteU)
	if !h.SetMachineCSR(csrSatp, 8<<60|(testRAMBase+root)>>12) {
		t.Fatal("satp not writable")
	}
	h.EnterMode(PrivS, 0x4000)
	return h, ram
}

func TestDebugTranslate(t *testing.T) {
	h, ram := sv39Hart(t)
	tables := append([]byte(nil), ram[0x1000:0x4000]...)
	cases := []struct {
		va, pa uint64
		ok     bool
	}{
		{0x4123, testRAMBase + 0x5123, true},
		{0x200000 + 0x12345, testRAMBase + 0x200000 + 0x12345, true},
		{0x40000000 + 0x1234567, testRAMBase + 0x1234567, true},
		{0x6000, 0, false},
		{0x5000, 0, false}, // no PTE at all
		{0x7008, testRAMBase + 0x7008, true},
		{0x80000000, 0, false},          // root entry 2 is empty
		{1 << 40, 0, false},             // not canonical
		{^uint64(0) &^ 0xfff, 0, false}, // canonical, upper half, unmapped
	}
	for _, c := range cases {
		pa, ok := h.DebugTranslate(c.va)
		if ok != c.ok || ok && pa != c.pa {
			t.Errorf("DebugTranslate(%#x) = %#x, %v; want %#x, %v", c.va, pa, ok, c.pa, c.ok)
		}
	}
	// No side effects: the PTEs have no A or D bits, nothing entered the
	// TLB, and no trap was taken.
	if !bytes.Equal(ram[0x1000:0x4000], tables) {
		t.Error("DebugTranslate changed the page tables (A/D bits)")
	}
	if h.mmu.r != ([tlbSize]tlbEntry{}) || h.mmu.w != ([tlbSize]tlbEntry{}) {
		t.Error("DebugTranslate filled the TLB")
	}
	if h.Priv != PrivS || h.csr.scause != 0 || h.csr.mcause != 0 || h.PC != 0x4000 {
		t.Errorf("DebugTranslate trapped: priv %d scause %d mcause %d pc %#x", h.Priv, h.csr.scause, h.csr.mcause, h.PC)
	}
	// The real walk agrees, and it is the one that sets A: the check
	// above is meaningful.
	if pa, ok := h.translate(0x4123, accRead); !ok || pa != testRAMBase+0x5123 {
		t.Fatalf("translate = %#x %v", pa, ok)
	}
	if binary.LittleEndian.Uint64(ram[0x3000+4*8:])&pteA == 0 {
		t.Error("the hart's own walk did not set A: test is not checking anything")
	}
	// M-mode sees physical addresses.
	h.EnterMode(PrivM, 0)
	if pa, ok := h.DebugTranslate(0x4123); !ok || pa != 0x4123 {
		t.Errorf("M-mode DebugTranslate = %#x %v", pa, ok)
	}
}

func TestDebugMemoryAndCSRs(t *testing.T) {
	h, ram := sv39Hart(t)
	p := make([]byte, 4)
	if !h.DebugReadPhys(testRAMBase+0x1000, p) || !bytes.Equal(p, ram[0x1000:0x1004]) {
		t.Error("DebugReadPhys")
	}
	if h.DebugReadPhys(ctrlBase, p) || h.DebugReadPhys(testRAMBase+testRAMSize-2, p) {
		t.Error("DebugReadPhys read outside RAM (MMIO or past the end)")
	}
	// A write to a page with cached decodes must drop them.
	binary.LittleEndian.PutUint32(ram[0x5000:], 0x00000013) // nop
	h.X[1] = 0
	if h.Run(1) != StopLimit || h.PC != 0x4004 {
		t.Fatalf("nop did not execute: pc %#x", h.PC)
	}
	h.PC = 0x4000
	if !h.DebugWritePhys(testRAMBase+0x5000, []byte{0x93, 0x00, 0x50, 0x00}) { // addi x1, x0, 5
		t.Fatal("DebugWritePhys")
	}
	if h.Run(2) != StopLimit || h.X[1] != 5 {
		t.Errorf("the debugger's write did not reach execution: x1 = %d", h.X[1])
	}
	// CSRs: readable from S-mode by the debugger even when M-only, with no
	// change of mode; fcsr readable with the FPU off.
	if v, ok := h.DebugReadCSR(csrMisa); !ok || v != misaValue || h.Priv != PrivS {
		t.Errorf("misa = %#x %v, priv %d", v, ok, h.Priv)
	}
	if !h.DebugWriteCSR(csrFcsr, 3<<5|1) {
		t.Fatal("fcsr write")
	}
	if v, _ := h.DebugReadCSR(csrFcsr); v != 3<<5|1 {
		t.Errorf("fcsr = %#x", v)
	}
	if h.DebugWriteCSR(csrCycle, 5) || h.DebugWriteCSR(csrMinstret, 5) {
		t.Error("counters must not be writable by the debugger")
	}
	if v, ok := h.DebugReadCSR(csrSatp); !ok || v>>60 != 8 {
		t.Errorf("satp = %#x", v)
	}
}

func TestStepRetiresOne(t *testing.T) {
	h, ram := sv39Hart(t)
	for i := 0; i < 4; i++ {
		binary.LittleEndian.PutUint32(ram[0x5000+4*i:], 0x00108093) // addi x1, x1, 1
	}
	for i := uint64(1); i <= 3; i++ {
		if r := h.Step(); r != StopLimit || h.Instret != i || h.X[1] != i || h.PC != 0x4000+4*i {
			t.Fatalf("step %d: %v instret %d x1 %d pc %#x", i, r, h.Instret, h.X[1], h.PC)
		}
	}
}
