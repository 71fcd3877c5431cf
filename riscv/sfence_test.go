package riscv

import (
	"encoding/binary"
	"testing"
)

// TestSfenceAddress checks SFENCE.VMA with an address against the
// privileged spec: after a PTE changes, a fence for an address it maps
// makes every address it maps translate anew (the other pages of a
// superpage too), while the translations of other pages stay cached.
func TestSfenceAddress(t *testing.T) {
	h, ram := sv39Hart(t)
	setPTE := func(tableOff, idx uint64, pa uint64, flags uint64) {
		binary.LittleEndian.PutUint64(ram[tableOff+idx*8:], pa>>12<<10|flags|pteA|pteD)
	}
	load := func(va uint64) uint64 {
		t.Helper()
		v, ok := h.load(va, 8)
		if !ok {
			t.Fatalf("load %#x faulted (scause %d)", va, h.csr.scause)
		}
		return v
	}
	put := func(off, v uint64) { binary.LittleEndian.PutUint64(ram[off:], v) }
	fence := func(va uint64) {
		// sfence.vma a0, zero, run from the gigapage (va 1G -> RAM)
		h.X[10] = va
		put(0x9000, 0x12050073)
		h.PC = 0x40009000
		h.mmu.flushFetch()
		if r := h.Run(h.Instret + 1); r != StopLimit || h.csr.scause != 0 {
			t.Fatalf("sfence.vma: %v, scause %d mcause %d mtval %#x pc %#x priv %d", r, h.csr.scause, h.csr.mcause, h.csr.mtval, h.PC, h.Priv)
		}
	}

	// A 4 KiB page (va 0x4000 -> RAM+0x5000), and the 2 MiB superpage at
	// va 0x200000, both cached.
	put(0x5008, 1)
	put(0x200008, 2)
	put(0x201008, 3)
	if load(0x4008) != 1 || load(0x200008) != 2 || load(0x201008) != 3 {
		t.Fatal("initial values")
	}
	// Remap both elsewhere (RAM+0x8000 and RAM+0x400000).
	setPTE(0x3000, 4, testRAMBase+0x8000, pteV|pteR|pteW|pteX)
	setPTE(0x2000, 1, testRAMBase+0x400000, pteV|pteR|pteW)
	put(0x8008, 10)
	put(0x400008, 20)
	put(0x401008, 30)
	// Without a fence the old translations may stay: ours do.
	if load(0x4008) != 1 || load(0x201008) != 3 {
		t.Fatal("the TLB did not cache the translations: the test checks nothing")
	}
	// A fence for another page leaves them.
	fence(0xa000)
	if load(0x201008) != 3 {
		t.Error("a fence for an unrelated page dropped a superpage's entry")
	}
	// A fence for one address of the superpage drops its other pages too.
	fence(0x200000)
	if v := load(0x201008); v != 30 {
		t.Errorf("after sfence.vma 0x200000, va 0x201008 reads %d, want 30 (the new superpage)", v)
	}
	if v := load(0x200008); v != 20 {
		t.Errorf("after sfence.vma 0x200000, va 0x200008 reads %d, want 20", v)
	}
	fence(0x4ff8)
	if v := load(0x4008); v != 10 {
		t.Errorf("after sfence.vma 0x4ff8, va 0x4008 reads %d, want 10 (the new page)", v)
	}
}
