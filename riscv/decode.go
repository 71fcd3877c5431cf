package riscv

// decode fills d from the instruction bits raw (the low 16 bits only, for a
// compressed instruction). It never fails: unknown encodings become
// opIllegal, which raises an illegal-instruction exception when executed.
func decode(d *inst, raw uint32) {
	*d = inst{}
	if raw&3 != 3 {
		d.size = 2
		decodeCompressed(d, raw&0xffff)
		if d.op == opIllegal {
			d.imm = int64(raw & 0xffff)
		}
		return
	}
	d.size = 4
	decode32(d, raw)
	if d.op == opIllegal {
		d.imm = int64(raw)
	}
}

func bf(x uint32, hi, lo uint) uint32 { return x >> lo & (1<<(hi-lo+1) - 1) }

// sext sign-extends the low n bits of x.
func sext(x uint32, n uint) int64 { return int64(x) << (64 - n) >> (64 - n) }

func immI(r uint32) int64 { return int64(int32(r) >> 20) }
func immS(r uint32) int64 { return int64(int32(r)>>25<<5) | int64(bf(r, 11, 7)) }
func immB(r uint32) int64 {
	v := bf(r, 31, 31)<<12 | bf(r, 7, 7)<<11 | bf(r, 30, 25)<<5 | bf(r, 11, 8)<<1
	return sext(v, 13)
}
func immU(r uint32) int64 { return int64(int32(r & 0xfffff000)) }
func immJ(r uint32) int64 {
	v := bf(r, 31, 31)<<20 | bf(r, 19, 12)<<12 | bf(r, 20, 20)<<11 | bf(r, 30, 21)<<1
	return sext(v, 21)
}

var (
	branchOps = [8]op{opBEQ, opBNE, opIllegal, opIllegal, opBLT, opBGE, opBLTU, opBGEU}
	loadOps   = [8]op{opLB, opLH, opLW, opLD, opLBU, opLHU, opLWU, opIllegal}
	storeOps  = [8]op{opSB, opSH, opSW, opSD, opIllegal, opIllegal, opIllegal, opIllegal}
	opImmOps  = [8]op{opADDI, opSLLI, opSLTI, opSLTIU, opXORI, opSRLI, opORI, opANDI}
	opRegOps  = [8]op{opADD, opSLL, opSLT, opSLTU, opXOR, opSRL, opOR, opAND}
	mulOps    = [8]op{opMUL, opMULH, opMULHSU, opMULHU, opDIV, opDIVU, opREM, opREMU}
	mulWOps   = [8]op{opMULW, opIllegal, opIllegal, opIllegal, opDIVW, opDIVUW, opREMW, opREMUW}
	csrOps    = [8]op{opIllegal, opCSRRW, opCSRRS, opCSRRC, opIllegal, opCSRRWI, opCSRRSI, opCSRRCI}
)

// amoOps maps funct5 to the word op; the doubleword op follows at a fixed
// distance (opLRD - opLRW).
var amoOps = map[uint32]op{
	0x02: opLRW, 0x03: opSCW, 0x01: opAMOSWAPW, 0x00: opAMOADDW, 0x04: opAMOXORW,
	0x0c: opAMOANDW, 0x08: opAMOORW, 0x10: opAMOMINW, 0x14: opAMOMAXW,
	0x18: opAMOMINUW, 0x1c: opAMOMAXUW,
}

func decode32(d *inst, r uint32) {
	d.rd = uint8(bf(r, 11, 7))
	d.rs1 = uint8(bf(r, 19, 15))
	d.rs2 = uint8(bf(r, 24, 20))
	f3 := bf(r, 14, 12)
	f7 := bf(r, 31, 25)
	d.op = opIllegal
	switch r & 0x7f {
	case 0x37:
		d.op, d.imm = opLUI, immU(r)
	case 0x17:
		d.op, d.imm = opAUIPC, immU(r)
	case 0x6f:
		d.op, d.imm = opJAL, immJ(r)
	case 0x67:
		if f3 == 0 {
			d.op, d.imm = opJALR, immI(r)
		}
	case 0x63:
		d.op, d.imm = branchOps[f3], immB(r)
	case 0x03:
		d.op, d.imm = loadOps[f3], immI(r)
	case 0x23:
		d.op, d.imm = storeOps[f3], immS(r)
	case 0x13:
		d.imm = immI(r)
		switch f3 {
		case 1:
			if bf(r, 31, 26) == 0 {
				d.op, d.imm = opSLLI, int64(bf(r, 25, 20))
			}
		case 5:
			switch bf(r, 31, 26) {
			case 0:
				d.op, d.imm = opSRLI, int64(bf(r, 25, 20))
			case 0x10:
				d.op, d.imm = opSRAI, int64(bf(r, 25, 20))
			}
		default:
			d.op = opImmOps[f3]
		}
	case 0x1b:
		switch {
		case f3 == 0:
			d.op, d.imm = opADDIW, immI(r)
		case f3 == 1 && f7 == 0:
			d.op, d.imm = opSLLIW, int64(d.rs2)
		case f3 == 5 && f7 == 0:
			d.op, d.imm = opSRLIW, int64(d.rs2)
		case f3 == 5 && f7 == 0x20:
			d.op, d.imm = opSRAIW, int64(d.rs2)
		}
	case 0x33:
		switch f7 {
		case 0:
			d.op = opRegOps[f3]
		case 0x20:
			switch f3 {
			case 0:
				d.op = opSUB
			case 5:
				d.op = opSRA
			}
		case 1:
			d.op = mulOps[f3]
		}
	case 0x3b:
		switch {
		case f7 == 0 && f3 == 0:
			d.op = opADDW
		case f7 == 0 && f3 == 1:
			d.op = opSLLW
		case f7 == 0 && f3 == 5:
			d.op = opSRLW
		case f7 == 0x20 && f3 == 0:
			d.op = opSUBW
		case f7 == 0x20 && f3 == 5:
			d.op = opSRAW
		case f7 == 1:
			d.op = mulWOps[f3]
		}
	case 0x0f:
		switch f3 {
		case 0:
			// fm, pred and succ: the pause hint is fence w, 0.
			d.op, d.imm = opFENCE, int64(bf(r, 31, 20))
		case 1:
			d.op = opFENCEI
		}
	case 0x73:
		d.imm = int64(bf(r, 31, 20))
		if f3 != 0 {
			d.op = csrOps[f3]
			break
		}
		switch {
		case r == 0x00000073:
			d.op = opECALL
		case r == 0x00100073:
			d.op = opEBREAK
		case r == 0x10200073:
			d.op = opSRET
		case r == 0x30200073:
			d.op = opMRET
		case r == 0x10500073:
			d.op = opWFI
		case f7 == 0x09 && d.rd == 0:
			d.op = opSFENCEVMA
		}
	case 0x2f:
		o, ok := amoOps[bf(r, 31, 27)]
		if !ok || (o == opLRW && d.rs2 != 0) {
			break
		}
		switch f3 {
		case 2:
			d.op = o
		case 3:
			d.op = o + (opLRD - opLRW)
		}
	case 0x07:
		d.imm = immI(r)
		switch f3 {
		case 2:
			d.op = opFLW
		case 3:
			d.op = opFLD
		}
	case 0x27:
		d.imm = immS(r)
		switch f3 {
		case 2:
			d.op = opFSW
		case 3:
			d.op = opFSD
		}
	case 0x43, 0x47, 0x4b, 0x4f:
		d.rs3 = uint8(bf(r, 31, 27))
		d.rm = uint8(f3)
		base := [4]op{opFMADDS, opFMSUBS, opFNMSUBS, opFNMADDS}[(r&0x7f-0x43)/4]
		switch bf(r, 26, 25) {
		case 0:
			d.op = base
		case 1:
			d.op = base + (opFMADDD - opFMADDS)
		}
	case 0x53:
		d.rm = uint8(f3)
		decodeOpFP(d, f7, f3)
	}
}

func decodeOpFP(d *inst, f7, f3 uint32) {
	dbl := f7&1 != 0
	pick := func(s, dd op) op {
		if dbl {
			return dd
		}
		return s
	}
	switch f7 &^ 1 {
	case 0x00:
		d.op = pick(opFADDS, opFADDD)
	case 0x04:
		d.op = pick(opFSUBS, opFSUBD)
	case 0x08:
		d.op = pick(opFMULS, opFMULD)
	case 0x0c:
		d.op = pick(opFDIVS, opFDIVD)
	case 0x2c:
		if d.rs2 == 0 {
			d.op = pick(opFSQRTS, opFSQRTD)
		}
	case 0x10:
		if f3 < 3 {
			d.op = pick(opFSGNJS, opFSGNJD) + op(f3)
		}
	case 0x14:
		if f3 < 2 {
			d.op = pick(opFMINS, opFMIND) + op(f3)
		}
	case 0x20:
		switch {
		case !dbl && d.rs2 == 1:
			d.op = opFCVTSD
		case dbl && d.rs2 == 0:
			d.op = opFCVTDS
		}
	case 0x50:
		switch f3 {
		case 0:
			d.op = pick(opFLES, opFLED)
		case 1:
			d.op = pick(opFLTS, opFLTD)
		case 2:
			d.op = pick(opFEQS, opFEQD)
		}
	case 0x60:
		if d.rs2 < 4 {
			d.op = pick(opFCVTWS, opFCVTWD) + op(d.rs2)
		}
	case 0x68:
		if d.rs2 < 4 {
			d.op = pick(opFCVTSW, opFCVTDW) + op(d.rs2)
		}
	case 0x70:
		switch {
		case f3 == 0 && d.rs2 == 0:
			d.op = pick(opFMVXW, opFMVXD)
		case f3 == 1 && d.rs2 == 0:
			d.op = pick(opFCLASSS, opFCLASSD)
		}
	case 0x78:
		if f3 == 0 && d.rs2 == 0 {
			d.op = pick(opFMVWX, opFMVDX)
		}
	}
}

// decodeCompressed expands an RVC instruction (unprivileged spec chapter
// 16, RV64 column) into the equivalent 32-bit operation.
func decodeCompressed(d *inst, r uint32) {
	d.op = opIllegal
	f3 := bf(r, 15, 13)
	rdp := uint8(bf(r, 4, 2) + 8) // rd'/rs2'
	rs1p := uint8(bf(r, 9, 7) + 8)
	rd := uint8(bf(r, 11, 7))
	rs2 := uint8(bf(r, 6, 2))
	ciImm := sext(bf(r, 12, 12)<<5|bf(r, 6, 2), 6)
	switch r & 3 {
	case 0:
		switch f3 {
		case 0: // C.ADDI4SPN
			imm := bf(r, 12, 11)<<4 | bf(r, 10, 7)<<6 | bf(r, 6, 6)<<2 | bf(r, 5, 5)<<3
			if imm != 0 {
				d.op, d.rd, d.rs1, d.imm = opADDI, rdp, 2, int64(imm)
			}
		case 1, 3, 5, 7: // C.FLD, C.LD, C.FSD, C.SD
			imm := int64(bf(r, 12, 10)<<3 | bf(r, 6, 5)<<6)
			d.rs1, d.imm = rs1p, imm
			switch f3 {
			case 1:
				d.op, d.rd = opFLD, rdp
			case 3:
				d.op, d.rd = opLD, rdp
			case 5:
				d.op, d.rs2 = opFSD, rdp
			case 7:
				d.op, d.rs2 = opSD, rdp
			}
		case 2, 6: // C.LW, C.SW
			imm := int64(bf(r, 12, 10)<<3 | bf(r, 6, 6)<<2 | bf(r, 5, 5)<<6)
			d.rs1, d.imm = rs1p, imm
			if f3 == 2 {
				d.op, d.rd = opLW, rdp
			} else {
				d.op, d.rs2 = opSW, rdp
			}
		}
	case 1:
		switch f3 {
		case 0: // C.ADDI (C.NOP when rd = 0)
			d.op, d.rd, d.rs1, d.imm = opADDI, rd, rd, ciImm
		case 1: // C.ADDIW
			if rd != 0 {
				d.op, d.rd, d.rs1, d.imm = opADDIW, rd, rd, ciImm
			}
		case 2: // C.LI
			d.op, d.rd, d.rs1, d.imm = opADDI, rd, 0, ciImm
		case 3:
			if rd == 2 { // C.ADDI16SP
				imm := sext(bf(r, 12, 12)<<9|bf(r, 6, 6)<<4|bf(r, 5, 5)<<6|bf(r, 4, 3)<<7|bf(r, 2, 2)<<5, 10)
				if imm != 0 {
					d.op, d.rd, d.rs1, d.imm = opADDI, 2, 2, imm
				}
			} else if ciImm != 0 { // C.LUI
				d.op, d.rd, d.imm = opLUI, rd, ciImm<<12
			}
		case 4:
			d.rd, d.rs1 = rs1p, rs1p
			shamt := int64(bf(r, 12, 12)<<5 | bf(r, 6, 2))
			switch bf(r, 11, 10) {
			case 0:
				d.op, d.imm = opSRLI, shamt
			case 1:
				d.op, d.imm = opSRAI, shamt
			case 2:
				d.op, d.imm = opANDI, ciImm
			case 3:
				d.rs2 = rdp
				k := bf(r, 12, 12)<<2 | bf(r, 6, 5)
				d.op = [8]op{opSUB, opXOR, opOR, opAND, opSUBW, opADDW, opIllegal, opIllegal}[k]
			}
		case 5: // C.J
			v := bf(r, 12, 12)<<11 | bf(r, 11, 11)<<4 | bf(r, 10, 9)<<8 | bf(r, 8, 8)<<10 |
				bf(r, 7, 7)<<6 | bf(r, 6, 6)<<7 | bf(r, 5, 3)<<1 | bf(r, 2, 2)<<5
			d.op, d.rd, d.imm = opJAL, 0, sext(v, 12)
		case 6, 7: // C.BEQZ, C.BNEZ
			v := bf(r, 12, 12)<<8 | bf(r, 11, 10)<<3 | bf(r, 6, 5)<<6 | bf(r, 4, 3)<<1 | bf(r, 2, 2)<<5
			d.rs1, d.rs2, d.imm = rs1p, 0, sext(v, 9)
			if f3 == 6 {
				d.op = opBEQ
			} else {
				d.op = opBNE
			}
		}
	case 2:
		switch f3 {
		case 0: // C.SLLI
			d.op, d.rd, d.rs1, d.imm = opSLLI, rd, rd, int64(bf(r, 12, 12)<<5|bf(r, 6, 2))
		case 1, 3: // C.FLDSP, C.LDSP
			imm := int64(bf(r, 12, 12)<<5 | bf(r, 6, 5)<<3 | bf(r, 4, 2)<<6)
			d.rd, d.rs1, d.imm = rd, 2, imm
			if f3 == 1 {
				d.op = opFLD
			} else if rd != 0 {
				d.op = opLD
			}
		case 2: // C.LWSP
			if rd != 0 {
				imm := int64(bf(r, 12, 12)<<5 | bf(r, 6, 4)<<2 | bf(r, 3, 2)<<6)
				d.op, d.rd, d.rs1, d.imm = opLW, rd, 2, imm
			}
		case 4:
			switch {
			case bf(r, 12, 12) == 0 && rs2 == 0: // C.JR
				if rd != 0 {
					d.op, d.rd, d.rs1, d.imm = opJALR, 0, rd, 0
				}
			case bf(r, 12, 12) == 0: // C.MV
				d.op, d.rd, d.rs1, d.rs2 = opADD, rd, 0, rs2
			case rd == 0 && rs2 == 0: // C.EBREAK
				d.op = opEBREAK
			case rs2 == 0: // C.JALR
				d.op, d.rd, d.rs1, d.imm = opJALR, 1, rd, 0
			default: // C.ADD
				d.op, d.rd, d.rs1, d.rs2 = opADD, rd, rd, rs2
			}
		case 5, 7: // C.FSDSP, C.SDSP
			imm := int64(bf(r, 12, 10)<<3 | bf(r, 9, 7)<<6)
			d.rs1, d.rs2, d.imm = 2, rs2, imm
			if f3 == 5 {
				d.op = opFSD
			} else {
				d.op = opSD
			}
		case 6: // C.SWSP
			imm := int64(bf(r, 12, 9)<<2 | bf(r, 8, 7)<<6)
			d.op, d.rs1, d.rs2, d.imm = opSW, 2, rs2, imm
		}
	}
}
