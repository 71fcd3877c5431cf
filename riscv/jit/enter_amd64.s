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
// but RSP and RBP; on the way back the ABI wrapper restores R14 and X15.
// While it runs: R15 = hart (biased, see hartBias), R13 = c, R12 = the
// instruction budget, RBX = the base of guest RAM.
TEXT ·enter(SB), NOSPLIT, $0-24
	MOVQ hart+8(FP), R15
	MOVQ c+16(FP), R13
	MOVQ ctx_budget(R13), R12
	MOVQ ctx_ram(R13), BX
	MOVQ code+0(FP), AX
	CALL AX
	RET
