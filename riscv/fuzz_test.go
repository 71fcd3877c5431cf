package riscv

import (
	"encoding/binary"
	"math/rand"
	"testing"
)

// FuzzDecode decodes any 16- or 32-bit pattern and executes it for one
// step in a fresh hart whose registers hold arbitrary values. Nothing may
// panic, the size must follow the low bits, and the step must end.
func FuzzDecode(f *testing.F) {
	for _, raw := range []uint32{0, 0xffffffff, 0x00000073, 0x30200073, 0x10500073, 0x0000100f,
		0x02a55553, 0x4515, 0x8082, 0x9002, 0x6101, 0x1000202f, 0x0005b02f, 0x12000073, 0x34011173} {
		f.Add(raw, uint64(1), uint8(0))
		f.Add(raw, uint64(0x80000000), uint8(0xff))
	}
	f.Fuzz(func(t *testing.T, raw uint32, seed uint64, mode uint8) {
		var d inst
		decode(&d, raw)
		want := uint8(4)
		if raw&3 != 3 {
			want = 2
		}
		if d.size != want {
			t.Fatalf("%08x: size %d, want %d", raw, d.size, want)
		}
		if d.op == opNone || d.op == opCross || d.op >= opCount {
			t.Fatalf("%08x: decoded to %v", raw, d.op)
		}
		if d.rd > 31 || d.rs1 > 31 || d.rs2 > 31 || d.rs3 > 31 {
			t.Fatalf("%08x: register out of range: %+v", raw, d)
		}

		// Execute it: the instruction at the start of RAM, a trap handler
		// (a loop) right after it.
		const size = 1 << 16
		ram := make([]byte, size)
		binary.LittleEndian.PutUint32(ram, raw)
		binary.LittleEndian.PutUint32(ram[0x100:], 0x0000006f) // j .
		s := &testSys{}
		h := New(s, ram, testRAMBase, testRAMBase)
		s.h = h
		r := rand.New(rand.NewSource(int64(seed)))
		for i := 1; i < 32; i++ {
			switch r.Intn(4) {
			case 0: // somewhere in RAM
				h.X[i] = testRAMBase + uint64(r.Intn(size))
			case 1: // the control device and its neighbours
				h.X[i] = ctrlBase + uint64(r.Intn(64))
			case 2:
				h.X[i] = uint64(r.Intn(64))
			default:
				h.X[i] = r.Uint64()
			}
			h.F[i] = r.Uint64()
		}
		h.F[0] = r.Uint64()
		h.SetMachineCSR(CSRMtvec, testRAMBase+0x100)
		h.SetMachineCSR(CSRMstatus, uint64(mode&3)<<13) // FS
		if mode&4 != 0 {
			h.SetMachineCSR(CSRMedeleg, 0xffff)
			h.SetMachineCSR(0x105, testRAMBase+0x100) // stvec
		}
		if mode&8 != 0 {
			h.SetMachineCSR(0x002, uint64(mode>>5)) // frm, maybe invalid
		}
		h.EnterMode([]uint8{PrivM, PrivS, PrivU, PrivM}[mode>>4&3], testRAMBase)
		done := make(chan Exit, 1)
		go func() { done <- h.Run(2) }()
		select {
		case <-done:
		case <-timeAfter(10):
			t.Fatalf("%08x (seed %d, mode %#x): Run(2) did not return; pc %#x", raw, seed, mode, h.PC)
		}
		if h.X[0] != 0 {
			t.Fatalf("%08x: x0 = %#x", raw, h.X[0])
		}
	})
}
