//go:build linux

#include "textflag.h"
#include "go_asm.h"

// func enter(code uintptr, hart, c unsafe.Pointer)
//
// enter runs translated code from code until it returns. The code runs on
// this goroutine's stack only as far as the return address CALL pushes:
// it never pushes, never calls Go and never touches the goroutine, so the
// Go runtime sees one assembly function (not preemptible asynchronously,
// as wazero's compiler relies on too). Generated code owns every register
// but RSP: the frame (8 bytes) makes the assembler save RBP on entry and
// restore it on return, and the ABI wrapper restores R14 and X15. While it
// runs: R15 = hart (biased, see hartBias), R13 = c, R12 = the instruction
// budget, RBX = the base of guest RAM; R13 is still c when it returns.
TEXT ·enter(SB), NOSPLIT, $8-24
	MOVQ hart+8(FP), R15
	MOVQ c+16(FP), R13
	MOVQ ctx_budget(R13), R12
	MOVQ ctx_ram(R13), BX
	MOVQ code+0(FP), AX
	CALL AX
	// FP instructions leave their rounding mode and flags in MXCSR: Go
	// code (the interpreter's, say) must find the default again.
	LDMXCSR ctx_mxcsr(R13)
	RET
