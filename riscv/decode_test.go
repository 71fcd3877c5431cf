package riscv

import (
	"fmt"
	"strings"
	"testing"
)

// rvcPairs lists compressed instructions next to the 32-bit instruction the
// unprivileged spec (chapter 16) says each expands to.
var rvcPairs = [][2]string{
	{"c.addi4spn a0, sp, 4", "addi a0, sp, 4"},
	{"c.addi4spn s0, sp, 1020", "addi s0, sp, 1020"},
	{"c.addi4spn a5, sp, 8", "addi a5, sp, 8"},
	{"c.addi4spn s1, sp, 512", "addi s1, sp, 512"},
	{"c.addi4spn a2, sp, 36", "addi a2, sp, 36"},
	{"c.fld fs0, 0(a0)", "fld fs0, 0(a0)"},
	{"c.fld fa5, 248(s1)", "fld fa5, 248(s1)"},
	{"c.fld fs1, 8(a5)", "fld fs1, 8(a5)"},
	{"c.lw a0, 0(a1)", "lw a0, 0(a1)"},
	{"c.lw s0, 124(a5)", "lw s0, 124(a5)"},
	{"c.lw a2, 64(s1)", "lw a2, 64(s1)"},
	{"c.lw a3, 4(a4)", "lw a3, 4(a4)"},
	{"c.ld a0, 0(a1)", "ld a0, 0(a1)"},
	{"c.ld s1, 248(a5)", "ld s1, 248(a5)"},
	{"c.ld a4, 128(s0)", "ld a4, 128(s0)"},
	{"c.ld a3, 8(a2)", "ld a3, 8(a2)"},
	{"c.fsd fa0, 0(s0)", "fsd fa0, 0(s0)"},
	{"c.fsd fs1, 248(a5)", "fsd fs1, 248(a5)"},
	{"c.fsd fa3, 136(a1)", "fsd fa3, 136(a1)"},
	{"c.sw a0, 124(a1)", "sw a0, 124(a1)"},
	{"c.sw s0, 0(a5)", "sw s0, 0(a5)"},
	{"c.sw a5, 64(s1)", "sw a5, 64(s1)"},
	{"c.sw a1, 36(a2)", "sw a1, 36(a2)"},
	{"c.sd s0, 248(a5)", "sd s0, 248(a5)"},
	{"c.sd a1, 8(a0)", "sd a1, 8(a0)"},
	{"c.sd a5, 192(s1)", "sd a5, 192(s1)"},
	{"c.nop", "addi x0, x0, 0"},
	{"c.addi a0, 1", "addi a0, a0, 1"},
	{"c.addi t0, -32", "addi t0, t0, -32"},
	{"c.addi s11, 31", "addi s11, s11, 31"},
	{"c.addi ra, -1", "addi ra, ra, -1"},
	{"c.addi sp, 16", "addi sp, sp, 16"},
	{"c.addiw a0, 0", "addiw a0, a0, 0"},
	{"c.addiw t1, -32", "addiw t1, t1, -32"},
	{"c.addiw s2, 31", "addiw s2, s2, 31"},
	{"c.addiw ra, -1", "addiw ra, ra, -1"},
	{"c.li a0, 0", "addi a0, x0, 0"},
	{"c.li t6, -32", "addi t6, x0, -32"},
	{"c.li s0, 31", "addi s0, x0, 31"},
	{"c.li ra, -1", "addi ra, x0, -1"},
	{"c.addi16sp sp, -512", "addi sp, sp, -512"},
	{"c.addi16sp sp, 496", "addi sp, sp, 496"},
	{"c.addi16sp sp, 16", "addi sp, sp, 16"},
	{"c.addi16sp sp, -16", "addi sp, sp, -16"},
	{"c.addi16sp sp, 272", "addi sp, sp, 272"},
	{"c.lui a0, 1", "lui a0, 1"},
	{"c.lui t0, 31", "lui t0, 31"},
	{"c.lui s1, 0xfffe0", "lui s1, 0xfffe0"},
	{"c.lui ra, 0xfffff", "lui ra, 0xfffff"},
	{"c.lui t6, 0xffff0", "lui t6, 0xffff0"},
	{"c.srli a0, 1", "srli a0, a0, 1"},
	{"c.srli s0, 63", "srli s0, s0, 63"},
	{"c.srli a5, 32", "srli a5, a5, 32"},
	{"c.srli s1, 31", "srli s1, s1, 31"},
	{"c.srai a0, 1", "srai a0, a0, 1"},
	{"c.srai s0, 63", "srai s0, s0, 63"},
	{"c.srai a5, 32", "srai a5, a5, 32"},
	{"c.srai a3, 17", "srai a3, a3, 17"},
	{"c.andi a0, -32", "andi a0, a0, -32"},
	{"c.andi s0, 31", "andi s0, s0, 31"},
	{"c.andi a5, 0", "andi a5, a5, 0"},
	{"c.andi s1, -1", "andi s1, s1, -1"},
	{"c.sub a0, a1", "sub a0, a0, a1"},
	{"c.sub s0, a5", "sub s0, s0, a5"},
	{"c.xor a5, s0", "xor a5, a5, s0"},
	{"c.xor s1, a2", "xor s1, s1, a2"},
	{"c.or a3, a4", "or a3, a3, a4"},
	{"c.or s0, s1", "or s0, s0, s1"},
	{"c.and a2, a5", "and a2, a2, a5"},
	{"c.and a0, a0", "and a0, a0, a0"},
	{"c.subw a0, a1", "subw a0, a0, a1"},
	{"c.subw a5, s0", "subw a5, a5, s0"},
	{"c.addw s1, a4", "addw s1, s1, a4"},
	{"c.addw a2, a3", "addw a2, a2, a3"},
	{"c.j .+2046", "jal x0, .+2046"},
	{"c.j .-2048", "jal x0, .-2048"},
	{"c.j .+2", "jal x0, .+2"},
	{"c.j .-2", "jal x0, .-2"},
	{"c.j .+0x400", "jal x0, .+0x400"},
	{"c.j .-0x22a", "jal x0, .-0x22a"},
	{"c.beqz s0, .-256", "beq s0, x0, .-256"},
	{"c.beqz a5, .+254", "beq a5, x0, .+254"},
	{"c.beqz a0, .+2", "beq a0, x0, .+2"},
	{"c.beqz s1, .-2", "beq s1, x0, .-2"},
	{"c.beqz a3, .-0x56", "beq a3, x0, .-0x56"},
	{"c.bnez s0, .-256", "bne s0, x0, .-256"},
	{"c.bnez a5, .+254", "bne a5, x0, .+254"},
	{"c.bnez a1, .-100", "bne a1, x0, .-100"},
	{"c.bnez a4, .+0xaa", "bne a4, x0, .+0xaa"},
	{"c.slli a0, 1", "slli a0, a0, 1"},
	{"c.slli t0, 63", "slli t0, t0, 63"},
	{"c.slli s11, 32", "slli s11, s11, 32"},
	{"c.slli ra, 31", "slli ra, ra, 31"},
	{"c.fldsp fa0, 0(sp)", "fld fa0, 0(sp)"},
	{"c.fldsp fs11, 504(sp)", "fld fs11, 504(sp)"},
	{"c.fldsp ft0, 8(sp)", "fld ft0, 8(sp)"},
	{"c.fldsp ft5, 264(sp)", "fld ft5, 264(sp)"},
	{"c.lwsp a0, 0(sp)", "lw a0, 0(sp)"},
	{"c.lwsp t6, 252(sp)", "lw t6, 252(sp)"},
	{"c.lwsp ra, 4(sp)", "lw ra, 4(sp)"},
	{"c.lwsp s3, 132(sp)", "lw s3, 132(sp)"},
	{"c.ldsp a0, 0(sp)", "ld a0, 0(sp)"},
	{"c.ldsp t6, 504(sp)", "ld t6, 504(sp)"},
	{"c.ldsp ra, 8(sp)", "ld ra, 8(sp)"},
	{"c.ldsp s4, 264(sp)", "ld s4, 264(sp)"},
	{"c.jr a0", "jalr x0, 0(a0)"},
	{"c.jr ra", "jalr x0, 0(ra)"},
	{"c.jr t6", "jalr x0, 0(t6)"},
	{"c.mv a0, a1", "add a0, x0, a1"},
	{"c.mv t6, ra", "add t6, x0, ra"},
	{"c.mv s0, sp", "add s0, x0, sp"},
	{"c.ebreak", "ebreak"},
	{"c.jalr a0", "jalr ra, 0(a0)"},
	{"c.jalr t6", "jalr ra, 0(t6)"},
	{"c.jalr ra", "jalr ra, 0(ra)"},
	{"c.add a0, a1", "add a0, a0, a1"},
	{"c.add t6, t5", "add t6, t6, t5"},
	{"c.add sp, ra", "add sp, sp, ra"},
	{"c.fsdsp fa0, 0(sp)", "fsd fa0, 0(sp)"},
	{"c.fsdsp fs11, 504(sp)", "fsd fs11, 504(sp)"},
	{"c.fsdsp ft3, 72(sp)", "fsd ft3, 72(sp)"},
	{"c.swsp a0, 0(sp)", "sw a0, 0(sp)"},
	{"c.swsp t6, 252(sp)", "sw t6, 252(sp)"},
	{"c.swsp s5, 68(sp)", "sw s5, 68(sp)"},
	{"c.sdsp ra, 504(sp)", "sd ra, 504(sp)"},
	{"c.sdsp x0, 8(sp)", "sd x0, 8(sp)"},
	{"c.sdsp s6, 136(sp)", "sd s6, 136(sp)"},
	// Alternating bit patterns, so that swapped immediate bits show.
	{"c.j .+0x2aa", "jal x0, .+0x2aa"},
	{"c.j .+0x554", "jal x0, .+0x554"},
	{"c.j .-0x556", "jal x0, .-0x556"},
	{"c.j .+0x40", "jal x0, .+0x40"},
	{"c.beqz s0, .+0xaa", "beq s0, x0, .+0xaa"},
	{"c.beqz a2, .+0x54", "beq a2, x0, .+0x54"},
	{"c.bnez a3, .-0xac", "bne a3, x0, .-0xac"},
	{"c.bnez a3, .-0x56", "bne a3, x0, .-0x56"},
	{"c.addi4spn a0, sp, 0x2a8", "addi a0, sp, 0x2a8"},
	{"c.addi4spn a1, sp, 0x154", "addi a1, sp, 0x154"},
	{"c.addi16sp sp, 0x150", "addi sp, sp, 0x150"},
	{"c.addi16sp sp, 0xa0", "addi sp, sp, 0xa0"},
	{"c.addi16sp sp, -0x160", "addi sp, sp, -0x160"},
	{"c.lw a0, 0x54(a1)", "lw a0, 0x54(a1)"},
	{"c.sw a0, 0x28(a1)", "sw a0, 0x28(a1)"},
	{"c.ld a0, 0xa8(a1)", "ld a0, 0xa8(a1)"},
	{"c.sd a0, 0x50(a1)", "sd a0, 0x50(a1)"},
	{"c.fld fa0, 0x50(a1)", "fld fa0, 0x50(a1)"},
	{"c.fsd fa0, 0xa8(a1)", "fsd fa0, 0xa8(a1)"},
	{"c.lwsp a0, 0xa8(sp)", "lw a0, 0xa8(sp)"},
	{"c.lwsp a0, 0x54(sp)", "lw a0, 0x54(sp)"},
	{"c.ldsp a0, 0x150(sp)", "ld a0, 0x150(sp)"},
	{"c.ldsp a0, 0xa8(sp)", "ld a0, 0xa8(sp)"},
	{"c.fldsp fa0, 0x150(sp)", "fld fa0, 0x150(sp)"},
	{"c.swsp a0, 0xa8(sp)", "sw a0, 0xa8(sp)"},
	{"c.swsp a0, 0x54(sp)", "sw a0, 0x54(sp)"},
	{"c.sdsp a0, 0x150(sp)", "sd a0, 0x150(sp)"},
	{"c.fsdsp fa0, 0xa8(sp)", "fsd fa0, 0xa8(sp)"},
	{"c.addi a0, 0x15", "addi a0, a0, 0x15"},
	{"c.addi a0, -0x16", "addi a0, a0, -0x16"},
	{"c.lui a0, 0xfffea", "lui a0, 0xfffea"},
	{"c.lui a0, 0x15", "lui a0, 0x15"},
	{"c.slli a0, 0x2a", "slli a0, a0, 0x2a"},
	{"c.srli a0, 0x15", "srli a0, a0, 0x15"},
	{"c.srai a0, 0x2a", "srai a0, a0, 0x2a"},
	{"c.andi a0, 0x15", "andi a0, a0, 0x15"},
}

// fieldsOf returns the decoded fields that are architecturally meaningful
// for d's op (the others hold whatever the encoding's bits happened to be).
func fieldsOf(d *inst) string {
	var rd, rs1, rs2, imm bool
	switch d.op {
	case opLUI, opAUIPC, opJAL:
		rd, imm = true, true
	case opJALR, opADDI, opSLTI, opSLTIU, opXORI, opORI, opANDI, opSLLI, opSRLI, opSRAI,
		opADDIW, opSLLIW, opSRLIW, opSRAIW, opLB, opLH, opLW, opLD, opLBU, opLHU, opLWU, opFLW, opFLD:
		rd, rs1, imm = true, true, true
	case opBEQ, opBNE, opBLT, opBGE, opBLTU, opBGEU, opSB, opSH, opSW, opSD, opFSW, opFSD:
		rs1, rs2, imm = true, true, true
	case opEBREAK, opECALL:
	default:
		rd, rs1, rs2 = true, true, true
	}
	s := d.op.String()
	if rd {
		s += fmt.Sprintf(" rd=%d", d.rd)
	}
	if rs1 {
		s += fmt.Sprintf(" rs1=%d", d.rs1)
	}
	if rs2 {
		s += fmt.Sprintf(" rs2=%d", d.rs2)
	}
	if imm {
		s += fmt.Sprintf(" imm=%d", d.imm)
	}
	return s
}

func assembleList(t *testing.T, option string, lines []string) []disasm {
	t.Helper()
	src := ".option norelax\n.option " + option + "\n" + strings.Join(lines, "\n") + "\n"
	ds := objdumpText(t, assembleObj(t, src))
	if len(ds) != len(lines) {
		t.Fatalf("objdump shows %d instructions for %d source lines", len(ds), len(lines))
	}
	return ds
}

// TestDecodeCompressedOracle checks the RVC decoder against GNU as: each
// compressed instruction must decode exactly like its 32-bit expansion.
func TestDecodeCompressedOracle(t *testing.T) {
	var cs, fs []string
	for _, p := range rvcPairs {
		cs = append(cs, p[0])
		fs = append(fs, p[1])
	}
	c := assembleList(t, "rvc", cs)
	f := assembleList(t, "norvc", fs)
	for i, p := range rvcPairs {
		if c[i].size != 2 || f[i].size != 4 {
			t.Errorf("%q: sizes %d/%d, want 2/4", p[0], c[i].size, f[i].size)
			continue
		}
		var dc, df inst
		decode(&dc, c[i].raw)
		decode(&df, f[i].raw)
		if dc.size != 2 || df.size != 4 {
			t.Errorf("%q: decoded sizes %d/%d", p[0], dc.size, df.size)
		}
		if df.op == opIllegal {
			t.Errorf("%q: 32-bit form %08x decodes as illegal", p[1], f[i].raw)
			continue
		}
		if got, want := fieldsOf(&dc), fieldsOf(&df); got != want {
			t.Errorf("%q (%04x): decoded %s; %q (%08x) decodes %s", p[0], c[i].raw, got, p[1], f[i].raw, want)
		}
	}
}

// rv64gc lists every RV64GC instruction with the op it must decode to.
var rv64gc = []struct {
	asm string
	op  op
}{
	{"lui a0, 0x12345", opLUI}, {"auipc t1, 0xfffff", opAUIPC},
	{"jal ra, .+2048", opJAL}, {"jalr t0, -1(a1)", opJALR},
	{"beq a0, a1, .-4", opBEQ}, {"bne a0, a1, .+4094", opBNE}, {"blt s0, s1, .-4096", opBLT},
	{"bge t0, t1, .+8", opBGE}, {"bltu a2, a3, .+12", opBLTU}, {"bgeu a4, a5, .-8", opBGEU},
	{"lb a0, -2048(a1)", opLB}, {"lh a0, 2047(a1)", opLH}, {"lw a0, 4(a1)", opLW}, {"ld a0, 8(a1)", opLD},
	{"lbu a0, 1(a1)", opLBU}, {"lhu a0, 2(a1)", opLHU}, {"lwu a0, 4(a1)", opLWU},
	{"sb a0, -1(a1)", opSB}, {"sh a0, 2(a1)", opSH}, {"sw t6, -2048(t5)", opSW}, {"sd s11, 2047(s10)", opSD},
	{"addi a0, a1, -2048", opADDI}, {"slti a0, a1, -1", opSLTI}, {"sltiu a0, a1, 1", opSLTIU},
	{"xori a0, a1, -1", opXORI}, {"ori a0, a1, 0x7ff", opORI}, {"andi a0, a1, 0x55", opANDI},
	{"slli a0, a1, 63", opSLLI}, {"srli a0, a1, 33", opSRLI}, {"srai a0, a1, 63", opSRAI},
	{"add a0, a1, a2", opADD}, {"sub a0, a1, a2", opSUB}, {"sll a0, a1, a2", opSLL},
	{"slt a0, a1, a2", opSLT}, {"sltu a0, a1, a2", opSLTU}, {"xor a0, a1, a2", opXOR},
	{"srl a0, a1, a2", opSRL}, {"sra a0, a1, a2", opSRA}, {"or a0, a1, a2", opOR}, {"and a0, a1, a2", opAND},
	{"addiw a0, a1, -1", opADDIW}, {"slliw a0, a1, 31", opSLLIW}, {"srliw a0, a1, 31", opSRLIW},
	{"sraiw a0, a1, 31", opSRAIW}, {"addw a0, a1, a2", opADDW}, {"subw a0, a1, a2", opSUBW},
	{"sllw a0, a1, a2", opSLLW}, {"srlw a0, a1, a2", opSRLW}, {"sraw a0, a1, a2", opSRAW},
	{"fence", opFENCE}, {"fence rw, w", opFENCE}, {"fence.i", opFENCEI},
	{"ecall", opECALL}, {"ebreak", opEBREAK}, {"sret", opSRET}, {"mret", opMRET}, {"wfi", opWFI},
	{"sfence.vma", opSFENCEVMA}, {"sfence.vma a0, a1", opSFENCEVMA},
	{"csrrw a0, mscratch, a1", opCSRRW}, {"csrrs a0, mstatus, x0", opCSRRS}, {"csrrc a0, sstatus, a1", opCSRRC},
	{"csrrwi a0, 0x340, 31", opCSRRWI}, {"csrrsi a0, fflags, 1", opCSRRSI}, {"csrrci x0, frm, 7", opCSRRCI},
	{"mul a0, a1, a2", opMUL}, {"mulh a0, a1, a2", opMULH}, {"mulhsu a0, a1, a2", opMULHSU},
	{"mulhu a0, a1, a2", opMULHU}, {"div a0, a1, a2", opDIV}, {"divu a0, a1, a2", opDIVU},
	{"rem a0, a1, a2", opREM}, {"remu a0, a1, a2", opREMU}, {"mulw a0, a1, a2", opMULW},
	{"divw a0, a1, a2", opDIVW}, {"divuw a0, a1, a2", opDIVUW}, {"remw a0, a1, a2", opREMW},
	{"remuw a0, a1, a2", opREMUW},
	{"lr.w a0, (a1)", opLRW}, {"sc.w a0, a2, (a1)", opSCW}, {"amoswap.w a0, a2, (a1)", opAMOSWAPW},
	{"amoadd.w.aq a0, a2, (a1)", opAMOADDW}, {"amoxor.w.rl a0, a2, (a1)", opAMOXORW},
	{"amoand.w.aqrl a0, a2, (a1)", opAMOANDW}, {"amoor.w a0, a2, (a1)", opAMOORW},
	{"amomin.w a0, a2, (a1)", opAMOMINW}, {"amomax.w a0, a2, (a1)", opAMOMAXW},
	{"amominu.w a0, a2, (a1)", opAMOMINUW}, {"amomaxu.w a0, a2, (a1)", opAMOMAXUW},
	{"lr.d.aq a0, (a1)", opLRD}, {"sc.d.rl a0, a2, (a1)", opSCD}, {"amoswap.d a0, a2, (a1)", opAMOSWAPD},
	{"amoadd.d a0, a2, (a1)", opAMOADDD}, {"amoxor.d a0, a2, (a1)", opAMOXORD},
	{"amoand.d a0, a2, (a1)", opAMOANDD}, {"amoor.d a0, a2, (a1)", opAMOORD},
	{"amomin.d a0, a2, (a1)", opAMOMIND}, {"amomax.d a0, a2, (a1)", opAMOMAXD},
	{"amominu.d a0, a2, (a1)", opAMOMINUD}, {"amomaxu.d a0, a2, (a1)", opAMOMAXUD},
	{"flw fa0, -4(a1)", opFLW}, {"fsw fa0, 4(a1)", opFSW}, {"fld ft0, 8(sp)", opFLD}, {"fsd ft11, -8(sp)", opFSD},
	{"fmadd.s fa0, fa1, fa2, fa3", opFMADDS}, {"fmsub.s fa0, fa1, fa2, fa3, rtz", opFMSUBS},
	{"fnmsub.s fa0, fa1, fa2, fa3", opFNMSUBS}, {"fnmadd.s fa0, fa1, fa2, fa3, rmm", opFNMADDS},
	{"fadd.s fa0, fa1, fa2", opFADDS}, {"fsub.s fa0, fa1, fa2, rdn", opFSUBS}, {"fmul.s fa0, fa1, fa2", opFMULS},
	{"fdiv.s fa0, fa1, fa2, rup", opFDIVS}, {"fsqrt.s fa0, fa1", opFSQRTS},
	{"fsgnj.s fa0, fa1, fa2", opFSGNJS}, {"fsgnjn.s fa0, fa1, fa2", opFSGNJNS}, {"fsgnjx.s fa0, fa1, fa2", opFSGNJXS},
	{"fmin.s fa0, fa1, fa2", opFMINS}, {"fmax.s fa0, fa1, fa2", opFMAXS},
	{"fcvt.w.s a0, fa1, rtz", opFCVTWS}, {"fcvt.wu.s a0, fa1", opFCVTWUS}, {"fcvt.l.s a0, fa1", opFCVTLS},
	{"fcvt.lu.s a0, fa1", opFCVTLUS}, {"fmv.x.w a0, fa1", opFMVXW}, {"feq.s a0, fa1, fa2", opFEQS},
	{"flt.s a0, fa1, fa2", opFLTS}, {"fle.s a0, fa1, fa2", opFLES}, {"fclass.s a0, fa1", opFCLASSS},
	{"fcvt.s.w fa0, a1", opFCVTSW}, {"fcvt.s.wu fa0, a1", opFCVTSWU}, {"fcvt.s.l fa0, a1", opFCVTSL},
	{"fcvt.s.lu fa0, a1", opFCVTSLU}, {"fmv.w.x fa0, a1", opFMVWX},
	{"fmadd.d fa0, fa1, fa2, fa3", opFMADDD}, {"fmsub.d fa0, fa1, fa2, fa3", opFMSUBD},
	{"fnmsub.d fa0, fa1, fa2, fa3", opFNMSUBD}, {"fnmadd.d fa0, fa1, fa2, fa3", opFNMADDD},
	{"fadd.d fa0, fa1, fa2", opFADDD}, {"fsub.d fa0, fa1, fa2", opFSUBD}, {"fmul.d fa0, fa1, fa2", opFMULD},
	{"fdiv.d fa0, fa1, fa2", opFDIVD}, {"fsqrt.d fa0, fa1, rne", opFSQRTD},
	{"fsgnj.d fa0, fa1, fa2", opFSGNJD}, {"fsgnjn.d fa0, fa1, fa2", opFSGNJND}, {"fsgnjx.d fa0, fa1, fa2", opFSGNJXD},
	{"fmin.d fa0, fa1, fa2", opFMIND}, {"fmax.d fa0, fa1, fa2", opFMAXD},
	{"fcvt.w.d a0, fa1", opFCVTWD}, {"fcvt.wu.d a0, fa1", opFCVTWUD}, {"fcvt.l.d a0, fa1", opFCVTLD},
	{"fcvt.lu.d a0, fa1", opFCVTLUD}, {"fmv.x.d a0, fa1", opFMVXD}, {"feq.d a0, fa1, fa2", opFEQD},
	{"flt.d a0, fa1, fa2", opFLTD}, {"fle.d a0, fa1, fa2", opFLED}, {"fclass.d a0, fa1", opFCLASSD},
	{"fcvt.d.w fa0, a1", opFCVTDW}, {"fcvt.d.wu fa0, a1", opFCVTDWU}, {"fcvt.d.l fa0, a1", opFCVTDL},
	{"fcvt.d.lu fa0, a1", opFCVTDLU}, {"fmv.d.x fa0, a1", opFMVDX},
	{"fcvt.s.d fa0, fa1", opFCVTSD}, {"fcvt.d.s fa0, fa1", opFCVTDS},
}

// TestDecode32 decodes every RV64GC instruction as GNU as encodes it.
func TestDecode32(t *testing.T) {
	var lines []string
	for _, r := range rv64gc {
		lines = append(lines, r.asm)
	}
	ds := assembleList(t, "norvc", lines)
	seen := map[op]bool{}
	for i, r := range rv64gc {
		var d inst
		decode(&d, ds[i].raw)
		seen[d.op] = true
		if d.op != r.op || d.size != 4 {
			t.Errorf("%q (%08x): decoded %v size %d, want %v", r.asm, ds[i].raw, d.op, d.size, r.op)
		}
	}
	for o := opLUI; o < opCount; o++ {
		if !seen[o] {
			t.Errorf("no test instruction decodes to %v", o)
		}
	}
}

// TestDecodeFields checks operand extraction for each instruction format.
func TestDecodeFields(t *testing.T) {
	cases := []struct {
		asm  string
		want string
	}{
		{"lui t6, 0x80000", "LUI rd=31 imm=-2147483648"},
		{"auipc a0, 0x7ffff", "AUIPC rd=10 imm=2147479552"},
		{"jal s0, .-1048576", "JAL rd=8 imm=-1048576"},
		{"jal x0, .+1048574", "JAL rd=0 imm=1048574"},
		{"jalr ra, 2047(t0)", "JALR rd=1 rs1=5 imm=2047"},
		{"beq t0, t1, .-4096", "BEQ rs1=5 rs2=6 imm=-4096"},
		{"bgeu s10, s11, .+4094", "BGEU rs1=26 rs2=27 imm=4094"},
		{"sd t6, -2048(sp)", "SD rs1=2 rs2=31 imm=-2048"},
		{"sb a0, 2047(a1)", "SB rs1=11 rs2=10 imm=2047"},
		{"lwu a0, -1(a1)", "LWU rd=10 rs1=11 imm=-1"},
		{"slli a0, a1, 63", "SLLI rd=10 rs1=11 imm=63"},
		{"srai a0, a1, 32", "SRAI rd=10 rs1=11 imm=32"},
		{"sraiw a0, a1, 31", "SRAIW rd=10 rs1=11 imm=31"},
		{"sub t3, t4, t5", "SUB rd=28 rs1=29 rs2=30"},
		{"fsd fs11, -8(t6)", "FSD rs1=31 rs2=27 imm=-8"},
		{"flw ft1, 2047(gp)", "FLW rd=1 rs1=3 imm=2047"},
	}
	var lines []string
	for _, c := range cases {
		lines = append(lines, c.asm)
	}
	ds := assembleList(t, "norvc", lines)
	for i, c := range cases {
		var d inst
		decode(&d, ds[i].raw)
		if got := fieldsOf(&d); got != c.want {
			t.Errorf("%q (%08x): %s, want %s", c.asm, ds[i].raw, got, c.want)
		}
	}
	// Fields that only the R4 and CSR formats have.
	var d inst
	fm := assembleList(t, "norvc", []string{"fnmadd.d ft1, ft2, ft3, ft4, rup", "csrrsi t0, 0xfff, 17"})
	decode(&d, fm[0].raw)
	if d.rd != 1 || d.rs1 != 2 || d.rs2 != 3 || d.rs3 != 4 || d.rm != 3 {
		t.Errorf("fnmadd.d fields: %+v", d)
	}
	decode(&d, fm[1].raw)
	if d.op != opCSRRSI || d.rd != 5 || d.rs1 != 17 || d.imm != 0xfff {
		t.Errorf("csrrsi fields: %+v", d)
	}
}

// TestDecodeIllegal lists reserved encodings that must decode as illegal,
// with the raw bits kept for mtval, next to neighbours that are legal.
func TestDecodeIllegal(t *testing.T) {
	cases := []struct {
		raw   uint32
		legal bool
	}{
		{0x0000, false},     // all zeros: C.ADDI4SPN with nzuimm = 0
		{0x8000, false},     // quadrant 0, funct3 4: reserved
		{0x6101, false},     // C.ADDI16SP with nzimm = 0
		{0x6001, false},     // C.LUI with nzimm = 0
		{0x6005, true},      // C.LUI x0, 1: a HINT, executes as a no-op
		{0x2001, false},     // C.ADDIW with rd = 0
		{0x8002, false},     // C.JR with rs1 = 0
		{0x4002, false},     // C.LWSP with rd = 0
		{0x6002, false},     // C.LDSP with rd = 0
		{0x9c41, false},     // CA format, funct6 100111, funct2 10: reserved
		{0x9c61, false},     // CA format, funct6 100111, funct2 11: reserved
		{0xffffffff, false}, // longer-instruction prefix
		{0x02001013, true},  // SLLI shamt 32 (legal on RV64)
		{0x0200101b, false}, // SLLIW with shamt[5] set
		{0x4200501b, false}, // SRAIW with shamt[5] set
		{0x04001013, false}, // SLLI with funct6 != 0
		{0x00004073, false}, // SYSTEM funct3 4
		{0x0000200f, false}, // MISC-MEM funct3 2
		{0x1010202f, false}, // LR.W with rs2 != 0
		{0x0000000b, false}, // custom-0
		{0x06000053, false}, // FADD with fmt 3 (Q)
		{0x58101053, false}, // FSQRT.S with rs2 = 1
		{0x20003053, false}, // FSGNJ funct3 3
		{0xe0002053, false}, // FMV.X.W funct3 2
		{0x302000f3, false}, // MRET with rd != 0
		{0x42101053, false}, // FCVT.D.S with rs2 = 1 (FCVT.D.Q)
	}
	for _, c := range cases {
		var d inst
		decode(&d, c.raw)
		illegal := d.op == opIllegal
		if illegal == c.legal {
			t.Errorf("%08x decoded as %v, want legal=%v", c.raw, d.op, c.legal)
			continue
		}
		want := c.raw
		if want&3 != 3 {
			want &= 0xffff
		}
		if illegal && uint32(d.imm) != want {
			t.Errorf("%08x: illegal with imm %#x, want the raw bits", c.raw, d.imm)
		}
	}
}
