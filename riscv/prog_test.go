package riscv

import "testing"

func TestProgALU(t *testing.T) { runProgram(t, "alu.S") }

func TestProgMem(t *testing.T) {
	_, image := buildProgram(t, "mem.S")
	h, s := newTestHart(image)
	s.time = 0x1234
	checkPassed(t, "mem.S", h, s, runBounded(t, h, 1e6))
}

func TestProgMulDiv(t *testing.T) { runProgram(t, "muldiv.S") }

func TestProgAtomic(t *testing.T) { runProgram(t, "atomic.S") }

func TestProgCSR(t *testing.T) {
	_, image := buildProgram(t, "csr.S")
	h, s := newTestHart(image)
	s.time = 0x55aa
	checkPassed(t, "csr.S", h, s, runBounded(t, h, 1e6))
}

func TestProgFP(t *testing.T) { runProgram(t, "fp.S") }

func TestProgPriv(t *testing.T) { runProgram(t, "priv.S") }

func TestProgIRQ(t *testing.T) {
	_, image := buildProgram(t, "irq.S")
	h, s := newTestHart(image)
	r := runBounded(t, h, 1e6)
	if r != StopIdle || !h.Waiting() || len(s.marks) != 1 || s.failed {
		t.Fatalf("first WFI: stop %v, waiting %v, marks %v, failed %v (line %d)\n%s", r, h.Waiting(), s.marks, s.failed, s.failVal, dumpHart(h))
	}
	// Still idle: nothing changed.
	n := h.Instret
	if r := h.Run(1e6); r != StopIdle || h.Instret != n {
		t.Fatalf("second Run: %v, instret %d -> %d", r, n, h.Instret)
	}
	h.SetInterrupt(IntMTI, true)
	r = runBounded(t, h, 1e6)
	if len(s.marks) != 3 {
		t.Errorf("marks %v, want [1 2 3]", s.marks)
	}
	checkPassed(t, "irq.S", h, s, r)
}

func TestProgSv39(t *testing.T) { runProgram(t, "vm.S") }

func TestProgSelfModifying(t *testing.T) { runProgram(t, "smc.S") }

// TestNoteWrite checks that a write to RAM from outside the hart (a loader,
// DMA) followed by NoteWrite replaces cached decodes.
func TestNoteWrite(t *testing.T) {
	ram := make([]byte, 1<<16)
	put := func(off int, insn uint32) {
		ram[off], ram[off+1], ram[off+2], ram[off+3] = byte(insn), byte(insn>>8), byte(insn>>16), byte(insn>>24)
	}
	put(0, 0x00100513) // addi a0, zero, 1
	put(4, 0xffdff06f) // j 0
	s := &testSys{}
	h := New(s, ram, testRAMBase, testRAMBase)
	s.h = h
	h.Run(4)
	if h.X[10] != 1 {
		t.Fatalf("a0 = %d, want 1", h.X[10])
	}
	put(0, 0x00200513) // addi a0, zero, 2
	h.NoteWrite(testRAMBase, 4)
	h.Run(8)
	if h.X[10] != 2 {
		t.Fatalf("after NoteWrite a0 = %d, want 2", h.X[10])
	}
	if h.Dirty()[0]&1 == 0 {
		t.Errorf("page 0 not dirty after NoteWrite")
	}
}
