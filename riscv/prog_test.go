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
