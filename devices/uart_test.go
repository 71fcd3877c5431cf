package devices

import (
	"bytes"
	"testing"
)

type testUART struct {
	*UART
	irq *line
	out bytes.Buffer
}

func newTestUART() *testUART {
	u := &testUART{irq: &line{}}
	u.UART = NewUART(u.irq, func(b byte) { u.out.WriteByte(b) })
	return u
}

func (u *testUART) in(off uint64) uint8   { return uint8(u.Read(off, 1)) }
func (u *testUART) set(off uint64, v int) { u.Write(off, 1, uint64(v)) }

// autoconfig replays the register sequence of Linux 6.1's 8250_port.c
// autoconfig() (with the 16550A variant probes of autoconfig_16550a and
// size_fifo) and returns the port type it would settle on.
func autoconfig(t *testing.T, u *testUART) string {
	t.Helper()
	// IER existence test.
	scratch := u.in(uartIER)
	u.set(uartIER, 0)
	scratch2 := u.in(uartIER) & 0x0F
	u.set(uartIER, 0x0F)
	scratch3 := u.in(uartIER) & 0x0F
	u.set(uartIER, int(scratch))
	if scratch2 != 0 || scratch3 != 0x0F {
		return "none (IER test)"
	}
	saveMCR, saveLCR := u.in(uartMCR), u.in(uartLCR)
	// Loopback test: MCR = LOOP|OUT2|RTS must read back DCD|CTS.
	u.set(uartMCR, mcrLoop|0x0A)
	status1 := u.in(uartMSR) & 0xF0
	u.set(uartMCR, int(saveMCR))
	if status1 != 0x90 {
		return "none (loopback test)"
	}
	u.set(uartLCR, 0xBF) // UART_LCR_CONF_MODE_B
	u.set(2, 0)          // UART_EFR
	u.set(uartLCR, 0)
	u.set(2, fcrEnable)
	var typ string
	switch u.in(uartIIR) >> 6 {
	case 0:
		typ = "8250/16450"
	case 1:
		typ = "unknown"
	case 2:
		typ = "16550"
	case 3:
		typ = autoconfig16550A(u)
	}
	u.set(uartLCR, int(saveLCR))
	u.set(uartMCR, int(saveMCR))
	u.set(2, fcrEnable|0x06) // serial8250_clear_fifos
	u.set(2, 0)
	u.in(uartRBR)
	u.set(uartIER, 0)
	return typ
}

func autoconfig16550A(u *testUART) string {
	u.set(uartLCR, 0x80) // UART_LCR_CONF_MODE_A
	if u.in(2) == 0 {    // EFR reads as zero only on EFR parts
		return "16650"
	}
	u.set(uartLCR, 0xBF)
	if u.in(2) == 0 {
		return "EFRv2"
	}
	// National SuperIO: bank 2 EXCR1 mirrors MCR.LOOP.
	u.set(uartLCR, 0)
	s1 := u.in(uartMCR)
	u.set(uartLCR, 0xE0)
	s2 := u.in(2)
	if (s2^s1)&mcrLoop == 0 {
		u.set(uartLCR, 0)
		u.set(uartMCR, int(s1^mcrLoop))
		u.set(uartLCR, 0xE0)
		s2 = u.in(2)
		u.set(uartLCR, 0)
		u.set(uartMCR, int(s1))
		if (s2^s1)&mcrLoop != 0 {
			return "NS16550A"
		}
	}
	// TI16750: IIR bit 5 after FCR bit 5, with and without DLAB.
	u.set(uartLCR, 0)
	u.set(2, fcrEnable|0x20)
	st1 := u.in(uartIIR) & 0xE0
	u.set(2, fcrEnable)
	u.set(uartLCR, 0x80)
	u.set(2, fcrEnable|0x20)
	st2 := u.in(uartIIR) & 0xE0
	u.set(2, fcrEnable)
	u.set(uartLCR, 0)
	if st1 == 0xC0 && st2 == 0xE0 {
		return "16750"
	}
	// XScale: IER bit 6 (UUE) writable.
	iersave := u.in(uartIER)
	u.set(uartIER, int(iersave&^0x40))
	if u.in(uartIER)&0x40 == 0 {
		u.set(uartIER, int(iersave|0x40))
		if u.in(uartIER)&0x40 != 0 {
			return "XScale"
		}
	} else {
		return "XScale?"
	}
	u.set(uartIER, int(iersave))
	if sizeFIFO(u) == 64 {
		return "U6_16550A"
	}
	return "16550A"
}

// sizeFIFO is Linux's size_fifo(): count bytes that come back in loopback.
func sizeFIFO(u *testUART) int {
	oldLCR := u.in(uartLCR)
	u.set(uartLCR, 0)
	oldFCR := u.in(2)
	oldMCR := u.in(uartMCR)
	u.set(2, fcrEnable|0x06)
	u.set(uartMCR, mcrLoop)
	u.set(uartLCR, 0x80)
	oldDL := int(u.in(0)) | int(u.in(1))<<8
	u.set(0, 1)
	u.set(1, 0)
	u.set(uartLCR, 0x03)
	for i := 0; i < 256; i++ {
		u.set(uartRBR, i)
	}
	n := 0
	for ; u.in(uartLSR)&lsrDR != 0 && n < 256; n++ {
		u.in(uartRBR)
	}
	u.set(2, int(oldFCR))
	u.set(uartMCR, int(oldMCR))
	u.set(uartLCR, 0x80)
	u.set(0, oldDL&0xFF)
	u.set(1, oldDL>>8)
	u.set(uartLCR, int(oldLCR))
	return n
}

func TestUARTAutoconfig16550A(t *testing.T) {
	u := newTestUART()
	if typ := autoconfig(t, u); typ != "16550A" {
		t.Fatalf("Linux would detect %q, want 16550A", typ)
	}
	if u.out.Len() != 0 {
		t.Fatalf("loopback bytes leaked to the output: %q", u.out.Bytes())
	}
	if u.in(uartLSR)&lsrDR != 0 {
		t.Fatal("loopback bytes left in the RX FIFO")
	}
	expectLevel(t, "IRQ", u.irq, false)
}

func TestUARTRegistersPlain(t *testing.T) {
	u := newTestUART()
	if v := u.in(uartIIR); v != 0x01 {
		t.Fatalf("IIR at reset = %#x", v)
	}
	if v := u.in(uartLSR); v != lsrTHRE|lsrTEMT {
		t.Fatalf("LSR at reset = %#x", v)
	}
	u.set(uartSCR, 0xA5)
	if v := u.in(uartSCR); v != 0xA5 {
		t.Fatalf("SCR = %#x", v)
	}
	// Divisor latch behind DLAB; IER/THR unaffected.
	u.set(uartLCR, 0x83)
	u.set(0, 0x12)
	u.set(1, 0x34)
	u.set(uartLCR, 0x03)
	if v := u.in(uartIER); v != 0 {
		t.Fatalf("DLM write reached IER: %#x", v)
	}
	if u.out.Len() != 0 {
		t.Fatal("DLL write was transmitted")
	}
	u.set(uartLCR, 0x83)
	if a, b := u.in(0), u.in(1); a != 0x12 || b != 0x34 {
		t.Fatalf("DLL/DLM = %#x %#x", a, b)
	}
	u.set(uartLCR, 0x03)
	if v := u.in(uartLCR); v != 0x03 {
		t.Fatalf("LCR = %#x", v)
	}
	// FIFO bits in IIR follow FCR0.
	u.set(2, 0xC1)
	if v := u.in(uartIIR); v != 0xC1 {
		t.Fatalf("IIR with FIFOs = %#x", v)
	}
	u.set(2, 0)
	if v := u.in(uartIIR); v != 0x01 {
		t.Fatalf("IIR without FIFOs = %#x", v)
	}
	// Wide accesses address the one register.
	u.Write(uartSCR, 4, 0xFFFFFF5A)
	if v := u.Read(uartSCR, 8); v != 0x5A {
		t.Fatalf("wide SCR read = %#x", v)
	}
}

// serial8250_do_startup's THRE test: a working 16550 re-asserts THRE when
// ETBEI is set again after the interrupt was cleared by reading IIR.
func TestUARTStartupTHRETest(t *testing.T) {
	u := newTestUART()
	u.set(uartIER, ierTHRE)
	expectLevel(t, "IRQ", u.irq, true)
	iir1 := u.in(uartIIR)
	expectLevel(t, "IRQ after IIR read", u.irq, false)
	if u.in(uartIIR)&1 == 0 {
		t.Fatal("THRE not cleared by reading IIR")
	}
	u.set(uartIER, 0)
	u.set(uartIER, ierTHRE)
	iir := u.in(uartIIR)
	u.set(uartIER, 0)
	if iir1&0x0F != iirTHRE || iir&0x0F != iirTHRE {
		t.Fatalf("IIRs %#x %#x, want THRE twice (else Linux sets UART_BUG_THRE)", iir1, iir)
	}
	expectLevel(t, "IRQ", u.irq, false)
}

// Interrupt-driven transmit as in serial8250_tx_chars: each THRE interrupt
// writes bytes to THR; stop_tx clears ETBEI.
func TestUARTTransmit(t *testing.T) {
	u := newTestUART()
	u.set(uartIER, ierRDA|ierRLS) // serial8250_startup
	msg := []byte("hello, world\n")
	u.set(uartIER, ierRDA|ierRLS|ierTHRE) // start_tx
	for len(msg) > 0 {
		if !u.irq.high {
			t.Fatal("THRE interrupt missing while transmitting")
		}
		iir := u.in(uartIIR)
		if iir&0x0F != iirTHRE {
			t.Fatalf("IIR = %#x", iir)
		}
		if u.in(uartLSR)&lsrTHRE == 0 {
			t.Fatal("THR not empty")
		}
		n := min(len(msg), 16) // tx_loadsz of a 16550A
		for _, b := range msg[:n] {
			u.set(uartRBR, int(b))
		}
		msg = msg[n:]
	}
	expectLevel(t, "IRQ after last write", u.irq, true)
	u.in(uartIIR)
	u.set(uartIER, ierRDA|ierRLS) // stop_tx
	expectLevel(t, "IRQ", u.irq, false)
	if got := u.out.String(); got != "hello, world\n" {
		t.Fatalf("output %q", got)
	}
	// Polled console write with IER = 0: no interrupts at all.
	u.set(uartIER, 0)
	u.set(uartRBR, '!')
	expectLevel(t, "IRQ", u.irq, false)
	if u.in(uartLSR)&(lsrTHRE|lsrTEMT) != lsrTHRE|lsrTEMT {
		t.Fatal("not BOTH_EMPTY")
	}
}

func TestUARTReceive(t *testing.T) {
	u := newTestUART()
	u.set(2, 0x81) // FIFO, trigger 8 (Linux: UART_FCR_R_TRIG_10)
	u.set(uartIER, ierRDA|ierRLS)
	if n := u.Input([]byte("abc")); n != 3 {
		t.Fatalf("Input took %d", n)
	}
	expectLevel(t, "IRQ", u.irq, true)
	if v := u.in(uartIIR); v != 0xCC {
		t.Fatalf("IIR below trigger = %#x, want character timeout 0xCC", v)
	}
	u.Input([]byte("defghijk"))
	if v := u.in(uartIIR); v != 0xC4 {
		t.Fatalf("IIR at trigger = %#x, want 0xC4", v)
	}
	var got []byte
	for u.in(uartLSR)&lsrDR != 0 {
		got = append(got, u.in(uartRBR))
	}
	if string(got) != "abcdefghijk" {
		t.Fatalf("received %q", got)
	}
	expectLevel(t, "IRQ after draining", u.irq, false)
	if v := u.in(uartRBR); v != 0 {
		t.Fatalf("RBR when empty = %#x", v)
	}

	// Without FIFOs, data ready is RDA.
	u.set(2, 0)
	u.Input([]byte("x"))
	if v := u.in(uartIIR); v != iirRDA {
		t.Fatalf("IIR = %#x", v)
	}
	u.in(uartRBR)

	// Bounded FIFO: Input reports what it took and never drops.
	big := make([]byte, UARTRxCap+100)
	for i := range big {
		big[i] = byte(i)
	}
	if n := u.Input(big); n != UARTRxCap {
		t.Fatalf("Input took %d, want %d", n, UARTRxCap)
	}
	if n := u.Input([]byte("z")); n != 0 || u.RXSpace() != 0 {
		t.Fatal("Input took bytes while full")
	}
	if u.in(uartLSR)&lsrOE != 0 {
		t.Fatal("host input overran")
	}
	for i := 0; i < 10; i++ {
		if b := u.in(uartRBR); b != byte(i) {
			t.Fatalf("byte %d = %d", i, b)
		}
	}
	if n := u.Input(big[UARTRxCap:]); n != 10 {
		t.Fatalf("Input after reading 10 took %d", n)
	}
	// FCR clear-RX empties the FIFO (Linux does this on startup).
	u.set(2, fcrEnable|fcrClearRX)
	if u.in(uartLSR)&lsrDR != 0 {
		t.Fatal("FIFO not cleared")
	}
}

func TestUARTLoopbackAndModemStatus(t *testing.T) {
	u := newTestUART()
	if v := u.in(uartMSR); v != msrDCD|msrDSR|msrCTS {
		t.Fatalf("MSR = %#x", v)
	}
	u.set(uartIER, ierMS|ierRLS|ierRDA)
	u.set(uartMCR, mcrLoop|mcrDTR|mcrOUT1)
	if n := u.Input([]byte("x")); n != 0 {
		t.Fatal("Input accepted data in loopback mode")
	}
	// Leaving DCD|CTS for DSR|RI: DCTS and DDCD.
	expectLevel(t, "IRQ (modem status)", u.irq, true)
	if v := u.in(uartIIR); v != iirMS {
		t.Fatalf("IIR = %#x", v)
	}
	if v := u.in(uartMSR); v != msrDSR|msrRI|msrDCTS|msrDDCD {
		t.Fatalf("MSR = %#x", v)
	}
	expectLevel(t, "IRQ after MSR read", u.irq, false)
	u.set(uartMCR, mcrLoop|mcrDTR) // RI falls: TERI
	if v := u.in(uartMSR); v != msrDSR|msrTERI {
		t.Fatalf("MSR = %#x", v)
	}
	// Loopback overrun raises a line status interrupt, cleared by LSR.
	for i := 0; i <= UARTRxCap; i++ {
		u.set(uartRBR, 'a')
	}
	if v := u.in(uartIIR); v != iirRLS {
		t.Fatalf("IIR = %#x, want RLS", v)
	}
	if v := u.in(uartLSR); v&lsrOE == 0 {
		t.Fatalf("LSR = %#x, want OE", v)
	}
	if v := u.in(uartLSR); v&lsrOE != 0 {
		t.Fatal("OE not cleared by reading LSR")
	}
	if u.out.Len() != 0 {
		t.Fatal("loopback transmitted")
	}
}

func TestUARTState(t *testing.T) {
	u := newTestUART()
	u.set(2, 0xC1)
	u.set(uartLCR, 0x03)
	u.set(uartIER, ierRDA|ierTHRE)
	u.set(uartSCR, 0x42)
	u.Input([]byte("pending input"))
	u.in(uartRBR)
	s := u.State()

	v := newTestUART()
	if err := v.SetState(s); err != nil {
		t.Fatal(err)
	}
	expectLevel(t, "restored IRQ", v.irq, true)
	if got := v.State(); string(got.RX) != "ending input" {
		t.Fatalf("RX %q", got.RX)
	}
	for off := uint64(0); off < 8; off++ {
		if a, b := u.in(off), v.in(off); a != b {
			t.Fatalf("register %d: %#x vs %#x", off, a, b)
		}
	}

	bad := []func(*UARTState){
		func(s *UARTState) { s.IER = 0x40 },
		func(s *UARTState) { s.MCR = 0x20 },
		func(s *UARTState) { s.FCR = 0xC0 },
		func(s *UARTState) { s.FCR = 0x21 },
		func(s *UARTState) { s.LSRErrors = 0x01 },
		func(s *UARTState) { s.MSRDelta = 0x10 },
		func(s *UARTState) { s.IER = 0; s.THRPending = true },
		func(s *UARTState) { s.RX = make([]byte, UARTRxCap+1) },
	}
	for i, f := range bad {
		st := s
		f(&st)
		if err := v.SetState(st); err == nil {
			t.Errorf("bad state %d accepted", i)
		}
	}
}

func TestUARTNoPanic(t *testing.T) {
	u := newTestUART()
	fuzzMMIO(t, u, UARTSize)
}
