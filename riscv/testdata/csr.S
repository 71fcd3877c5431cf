/* Zicsr: read-only CSRs, read-without-write, counters, WARL fields. */
#include "test.h"
	.section .text.init
	.globl _start
_start:
	INSTALL_MTRAP
	/* mscratch round trip, and csrrw returns the old value */
	li a0, 0x0123456789abcdef
	csrw mscratch, a0
	csrr a1, mscratch
	CHECK(a1, 0x0123456789abcdef)
	li a2, -1
	csrrw a1, mscratch, a2
	CHECK(a1, 0x0123456789abcdef)
	csrrc a1, mscratch, a0
	CHECK(a1, -1)
	csrr a1, mscratch
	CHECK(a1, 0xfedcba9876543210)
	csrrs a1, mscratch, a0
	csrr a1, mscratch
	CHECK(a1, -1)
	csrrwi a1, mscratch, 17
	csrrsi a1, mscratch, 8
	CHECK(a1, 17)
	csrrci a1, mscratch, 1
	CHECK(a1, 25)
	csrr a1, mscratch
	CHECK(a1, 24)
	/* csrrw with rd = rs1 reads before writing */
	li a3, 99
	csrrw a3, mscratch, a3
	CHECK(a3, 24)
	CHECKCSR(mscratch, 99)

	/* read-only CSRs: reading is fine, also with CSRRS/CSRRC rs1 = x0
	   and with a zero immediate (those do not write) */
	csrr a1, mhartid
	CHECK(a1, 0)
	csrrs a1, mvendorid, zero
	csrrc a1, marchid, zero
	csrrsi a1, mimpid, 0
	csrrci a1, mhartid, 0
	csrrs a1, cycle, zero
	/* but any write is illegal, even of the same value */
	EXPECT_TRAP(1f)
	csrrw a1, mhartid, zero
1:	CHECK(s2, 2)
	EXPECT_TRAP(1f)
	csrrs a1, cycle, a2
1:	CHECK(s2, 2)
	EXPECT_TRAP(1f)
	csrrsi a1, instret, 1
1:	CHECK(s2, 2)
	EXPECT_TRAP(1f)
	csrrwi zero, time, 0
1:	CHECK(s2, 2)
	/* a CSR that does not exist */
	EXPECT_TRAP(1f)
	csrr a1, 0x7ff
1:	CHECK(s2, 2)
	/* a trapped CSR instruction leaves rd alone */
	li a1, 1234
	EXPECT_TRAP(1f)
	csrrw a1, mhartid, zero
1:	CHECK(a1, 1234)

	/* instret counts retired instructions; the csrr itself retires */
	csrr a0, instret
	nop
	nop
	csrr a1, instret
	sub a1, a1, a0
	CHECK(a1, 3)
	csrr a0, minstret
	csrr a1, minstret
	sub a1, a1, a0
	CHECK(a1, 1)
	csrr a0, cycle
	nop
	csrr a1, cycle
	bleu a1, a0, fail
	csrr a0, mcycle
	csrr a1, mcycle
	bleu a1, a0, fail
	/* a value written to minstret is what the next instruction reads */
	li a0, 1000
	csrw minstret, a0
	csrr a1, minstret
	csrr a2, instret
	CHECK(a1, 1000)
	CHECK(a2, 1001)
	/* time comes from the system */
	csrr a1, time
	CHECK(a1, 0x55aa)

	/* misa: RV64 with IMAFDCSU */
	csrr a1, misa
	CHECK(a1, 0x800000000014112d)
	/* WARL: misa ignores writes */
	csrw misa, zero
	CHECKCSR(misa, 0x800000000014112d)
	/* mstatus: MPP cannot hold 2; UXL/SXL read 64-bit */
	li a0, 3 << 11
	csrc mstatus, a0
	li a0, 2 << 11
	csrs mstatus, a0
	csrr a1, mstatus
	srli a1, a1, 11
	andi a1, a1, 3
	beq a1, a0, fail
	li a0, 2 << 11
	bnez a1, 2f	/* stayed at its old value 0 */
2:	csrr a1, mstatus
	srli a1, a1, 32
	andi a1, a1, 0xf
	CHECK(a1, 0xa)
	/* sstatus is a view of mstatus */
	li a0, 1 << 18	/* SUM */
	csrs sstatus, a0
	csrr a1, mstatus
	and a1, a1, a0
	bne a1, a0, fail
	csrc mstatus, a0
	csrr a1, sstatus
	and a1, a1, a0
	bnez a1, fail
	/* MIE is not visible in sstatus */
	csrsi mstatus, 8
	csrr a1, sstatus
	andi a1, a1, 8
	bnez a1, fail
	csrci mstatus, 8
	/* mtvec keeps its mode bit 0, mepc clears bit 0 */
	li a0, 0x80000101
	csrw mepc, a0
	CHECKCSR(mepc, 0x80000100)
	/* mideleg: only supervisor interrupts are delegable */
	li a0, -1
	csrw mideleg, a0
	CHECKCSR(mideleg, 0x222)
	csrw mideleg, zero
	/* medeleg: ecall from M is not delegable */
	csrw medeleg, a0
	csrr a1, medeleg
	srli a1, a1, 11
	andi a1, a1, 1
	CHECK(a1, 0)
	csrw medeleg, zero
	/* mip: only SSIP, STIP, SEIP are writable */
	csrw mip, a0
	CHECKCSR(mip, 0x222)
	csrw mip, zero
	CHECKCSR(mip, 0)
	/* satp: Sv48 and Sv57 are not supported, the write is ignored */
	li a0, (8 << 60) | 0x80123
	csrw satp, a0
	csrr a1, satp
	bne a0, a1, fail
	li a2, (9 << 60) | 0x80456
	csrw satp, a2
	csrr a1, satp
	bne a0, a1, fail
	li a2, (10 << 60) | 0x80456
	csrw satp, a2
	csrr a1, satp
	bne a0, a1, fail
	csrw satp, zero
	CHECKCSR(satp, 0)
	PASS
fail:
	FAIL
	TRAP_HANDLERS
