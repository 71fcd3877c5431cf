package devices

import (
	"encoding/binary"
	"reflect"
	"testing"
)

// FuzzDevices drives every device with an arbitrary sequence of guest
// accesses and board calls. Nothing may panic, and every state a device can
// reach must survive State/SetState (so SetState's validation never rejects
// a real snapshot) and leave identical register behaviour.
func FuzzDevices(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add([]byte("\x01\x01\x02\x00\x00\x00\x02\x00\x00\x01\x05\x03\x00\x00\x20"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		var now uint64
		clint := NewCLINT(func() uint64 { return now })
		plic := NewPLIC(nil, nil)
		uart := NewUART(plic.Source(UARTIRQ), nil)
		sys := NewSyscon(nil)
		rtc := NewRTC(func() uint64 { return now * 100 })
		regs := []uint64{0, 1, 2, 3, 4, 5, 6, 7, 0x4000, 0x4004, 0xBFF8, 0xBFFC,
			0x28, 0x1000, 0x2000, 0x2080, 0x200000, 0x200004, 0x201000, 0x201004}
		sizes := []int{1, 2, 4, 8}
		for len(ops) >= 4 {
			op, a, b, c := ops[0], ops[1], ops[2], ops[3]
			ops = ops[4:]
			off := regs[int(a)%len(regs)]
			size := sizes[int(b)%len(sizes)]
			v := uint64(c) * 0x0101010101010101 >> (b % 64)
			switch op % 14 {
			case 0:
				clint.Write(off, size, v)
			case 1:
				clint.Read(off, size)
			case 2:
				plic.Write(off, size, v)
			case 3:
				plic.Read(off, size)
			case 4:
				uart.Write(off%8, 1, v)
			case 5:
				uart.Read(off%8, 1)
			case 6:
				uart.Input(ops[:min(len(ops), int(c))])
			case 7:
				plic.SetLevel(int(a%34), b&1 != 0)
			case 8:
				now += uint64(c) << (b % 64)
				clint.Update()
			case 9:
				clint.SetTimecmp(0, v)
				clint.Deadline()
			case 10:
				sys.Write(off, size, v)
			case 11:
				var buf [8]byte
				binary.LittleEndian.PutUint64(buf[:], v)
				uart.Input(buf[:c%9])
			case 12:
				rtc.Write(off%0x20, size, v)
			case 13:
				rtc.Read(off%0x20, size)
			}
		}

		c2 := NewCLINT(func() uint64 { return now })
		if err := c2.SetState(clint.State()); err != nil {
			t.Fatalf("CLINT state rejected: %v %+v", err, clint.State())
		}
		p2 := NewPLIC(nil, nil)
		if err := p2.SetState(plic.State()); err != nil {
			t.Fatalf("PLIC state rejected: %v %+v", err, plic.State())
		}
		u2 := NewUART(p2.Source(UARTIRQ), nil)
		if err := u2.SetState(uart.State()); err != nil {
			t.Fatalf("UART state rejected: %v %+v", err, uart.State())
		}
		r2 := NewRTC(func() uint64 { return now * 100 })
		if err := r2.SetState(rtc.State()); err != nil {
			t.Fatalf("RTC state rejected: %v %+v", err, rtc.State())
		}
		for off := uint64(0); off < 0x20; off += 4 {
			if a, b := rtc.Read(off, 4), r2.Read(off, 4); a != b {
				t.Fatalf("RTC %#x: %#x vs %#x", off, a, b)
			}
		}
		for _, off := range regs {
			if a, b := clint.Read(off, 8), c2.Read(off, 8); a != b {
				t.Fatalf("CLINT %#x: %#x vs %#x", off, a, b)
			}
			if a, b := plic.Read(off, 4), p2.Read(off, 4); a != b {
				t.Fatalf("PLIC %#x: %#x vs %#x", off, a, b)
			}
			if a, b := uart.Read(off%8, 1), u2.Read(off%8, 1); a != b {
				t.Fatalf("UART %#x: %#x vs %#x", off, a, b)
			}
		}
		if !reflect.DeepEqual(uart.State(), u2.State()) || !reflect.DeepEqual(plic.State(), p2.State()) {
			t.Fatal("states diverged after identical reads")
		}
	})
}
