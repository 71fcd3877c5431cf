package riscv

// op identifies a decoded operation. Compressed instructions decode to the
// op of their 32-bit expansion, so the executor has one case per operation.
type op uint8

const (
	opNone    op = iota // slot not yet decoded
	opIllegal           // illegal encoding: raises illegal-instruction
	opCross             // 32-bit instruction straddling a page: never cached

	opLUI
	opAUIPC
	opJAL
	opJALR
	opBEQ
	opBNE
	opBLT
	opBGE
	opBLTU
	opBGEU
	opLB
	opLH
	opLW
	opLD
	opLBU
	opLHU
	opLWU
	opSB
	opSH
	opSW
	opSD
	opADDI
	opSLTI
	opSLTIU
	opXORI
	opORI
	opANDI
	opSLLI
	opSRLI
	opSRAI
	opADD
	opSUB
	opSLL
	opSLT
	opSLTU
	opXOR
	opSRL
	opSRA
	opOR
	opAND
	opADDIW
	opSLLIW
	opSRLIW
	opSRAIW
	opADDW
	opSUBW
	opSLLW
	opSRLW
	opSRAW
	opFENCE
	opFENCEI
	opECALL
	opEBREAK
	opSRET
	opMRET
	opWFI
	opSFENCEVMA
	opCSRRW
	opCSRRS
	opCSRRC
	opCSRRWI
	opCSRRSI
	opCSRRCI

	opMUL
	opMULH
	opMULHSU
	opMULHU
	opDIV
	opDIVU
	opREM
	opREMU
	opMULW
	opDIVW
	opDIVUW
	opREMW
	opREMUW

	opLRW
	opSCW
	opAMOSWAPW
	opAMOADDW
	opAMOXORW
	opAMOANDW
	opAMOORW
	opAMOMINW
	opAMOMAXW
	opAMOMINUW
	opAMOMAXUW
	opLRD
	opSCD
	opAMOSWAPD
	opAMOADDD
	opAMOXORD
	opAMOANDD
	opAMOORD
	opAMOMIND
	opAMOMAXD
	opAMOMINUD
	opAMOMAXUD

	opFLW
	opFSW
	opFLD
	opFSD
	// The FP operations below are executed by execFP.
	opFMADDS
	opFMSUBS
	opFNMSUBS
	opFNMADDS
	opFADDS
	opFSUBS
	opFMULS
	opFDIVS
	opFSQRTS
	opFSGNJS
	opFSGNJNS
	opFSGNJXS
	opFMINS
	opFMAXS
	opFCVTWS
	opFCVTWUS
	opFCVTLS
	opFCVTLUS
	opFMVXW
	opFEQS
	opFLTS
	opFLES
	opFCLASSS
	opFCVTSW
	opFCVTSWU
	opFCVTSL
	opFCVTSLU
	opFMVWX
	opFMADDD
	opFMSUBD
	opFNMSUBD
	opFNMADDD
	opFADDD
	opFSUBD
	opFMULD
	opFDIVD
	opFSQRTD
	opFSGNJD
	opFSGNJND
	opFSGNJXD
	opFMIND
	opFMAXD
	opFCVTWD
	opFCVTWUD
	opFCVTLD
	opFCVTLUD
	opFMVXD
	opFEQD
	opFLTD
	opFLED
	opFCLASSD
	opFCVTDW
	opFCVTDWU
	opFCVTDL
	opFCVTDLU
	opFMVDX
	opFCVTSD
	opFCVTDS

	opCount
)

// inst is a decoded instruction. It lives in the decode cache.
type inst struct {
	op   op
	rd   uint8
	rs1  uint8
	rs2  uint8
	rs3  uint8
	rm   uint8 // FP rounding mode field
	size uint8 // 2 or 4 bytes
	_    uint8
	imm  int64 // immediate, CSR number, or the raw bits for opIllegal
}
