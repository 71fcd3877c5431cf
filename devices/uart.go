package devices

import "errors"

// 16550A UART at QEMU virt's address, reg-shift 0, reg-io-width 1.
const (
	UARTBase = 0x10000000
	UARTSize = 0x100
	UARTIRQ  = 10 // PLIC source

	// UARTRxCap bounds the receive FIFO. A real 16550A holds 16 bytes; the
	// extra room lets the board hand over input in fewer, larger pieces.
	// Input never drops: it reports how much it took.
	UARTRxCap = 4096
)

// Register offsets (National Semiconductor PC16550D datasheet, table II).
const (
	uartRBR = 0 // read, DLAB=0 (THR on write; DLL with DLAB=1)
	uartIER = 1 // DLM with DLAB=1
	uartIIR = 2 // read (FCR on write)
	uartLCR = 3
	uartMCR = 4
	uartLSR = 5
	uartMSR = 6
	uartSCR = 7
)

// Register bits.
const (
	ierRDA  = 0x01 // ERBFI: received data available
	ierTHRE = 0x02 // ETBEI: transmitter holding register empty
	ierRLS  = 0x04 // ELSI: receiver line status
	ierMS   = 0x08 // EDSSI: modem status
	ierMask = 0x0F // the 16550A has no more IER bits (8250 autoconfig tests UUE)

	iirNone  = 0x01
	iirMS    = 0x00
	iirTHRE  = 0x02
	iirRDA   = 0x04
	iirRLS   = 0x06
	iirCTI   = 0x0C // character timeout
	iirFIFOs = 0xC0 // both bits set: FIFOs enabled on a 16550A

	fcrEnable  = 0x01
	fcrClearRX = 0x02
	fcrTrigger = 0xC0
	fcrMask    = fcrEnable | fcrTrigger // what FCR keeps; bit 5 (64-byte FIFO) is a 16750 feature

	lcrDLAB = 0x80

	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOUT1 = 0x04
	mcrOUT2 = 0x08
	mcrLoop = 0x10
	mcrMask = 0x1F

	lsrDR     = 0x01
	lsrOE     = 0x02
	lsrErrors = 0x1E // OE, PE, FE, BI: cleared by reading LSR
	lsrTHRE   = 0x20
	lsrTEMT   = 0x40

	msrDCTS  = 0x01
	msrDDSR  = 0x02
	msrTERI  = 0x04
	msrDDCD  = 0x08
	msrDelta = 0x0F
	msrCTS   = 0x10
	msrDSR   = 0x20
	msrRI    = 0x40
	msrDCD   = 0x80
)

// UARTState is the complete state of a UART.
type UARTState struct {
	IER, LCR, MCR, SCR, DLL, DLM uint8
	FCR                          uint8 // FIFO enable and trigger bits
	LSRErrors                    uint8 // sticky LSR error bits (overrun)
	MSRDelta                     uint8 // MSR delta bits, cleared by reading MSR
	THRPending                   bool  // THRE interrupt pending (only with IER.ETBEI)
	RX                           []byte
}

// UART is a 16550A with instantaneous transmit: a byte written to THR goes
// straight to the output callback, so THR and the shift register are always
// empty (LSR.THRE and LSR.TEMT always set).
type UART struct {
	irq IRQLine
	out func(byte)

	ier, lcr, mcr, scr, dll, dlm uint8
	fcr, lsrErr, msrDelta        uint8
	thrPending                   bool

	rx     [UARTRxCap]byte // ring buffer
	rxHead int
	rxLen  int
}

// NewUART returns a UART that raises irq (its PLIC source) and sends every
// transmitted byte to out. Either may be nil.
func NewUART(irq IRQLine, out func(byte)) *UART {
	if irq == nil {
		irq = IRQFunc(func(bool) {})
	}
	if out == nil {
		out = func(byte) {}
	}
	u := &UART{irq: irq, out: out}
	u.update()
	return u
}

// Input appends received bytes to the RX FIFO and returns how many it
// accepted: fewer than len(p) when the FIFO is full, and none in loopback
// mode, where the serial input is disconnected. The board keeps the rest and
// offers it again after the guest has read some.
func (u *UART) Input(p []byte) int {
	if u.mcr&mcrLoop != 0 {
		return 0
	}
	n := u.push(p)
	u.update()
	return n
}

// RXSpace returns how many bytes Input would accept now.
func (u *UART) RXSpace() int {
	if u.mcr&mcrLoop != 0 {
		return 0
	}
	return UARTRxCap - u.rxLen
}

func (u *UART) push(p []byte) int {
	n := 0
	for _, b := range p {
		if u.rxLen == UARTRxCap {
			break
		}
		u.rx[(u.rxHead+u.rxLen)%UARTRxCap] = b
		u.rxLen++
		n++
	}
	return n
}

func (u *UART) pop() byte {
	if u.rxLen == 0 {
		return 0
	}
	b := u.rx[u.rxHead]
	u.rxHead = (u.rxHead + 1) % UARTRxCap
	u.rxLen--
	return b
}

func (u *UART) clearRX() { u.rxHead, u.rxLen = 0, 0 }

// trigger returns the RX FIFO trigger level selected by FCR bits 7:6
// (datasheet, FCR description).
func (u *UART) trigger() int {
	return [4]int{1, 4, 8, 14}[u.fcr>>6]
}

func (u *UART) lsr() uint8 {
	v := u.lsrErr | lsrTHRE | lsrTEMT
	if u.rxLen > 0 {
		v |= lsrDR
	}
	return v
}

// modemStatus returns the MSR status bits. In loopback mode the modem
// control outputs feed the inputs (RTS->CTS, DTR->DSR, OUT1->RI,
// OUT2->DCD), which the 8250 driver's loopback test relies on; otherwise
// the line looks like a connected, ready peer.
func modemStatus(mcr uint8) uint8 {
	if mcr&mcrLoop == 0 {
		return msrDCD | msrDSR | msrCTS
	}
	var v uint8
	if mcr&mcrRTS != 0 {
		v |= msrCTS
	}
	if mcr&mcrDTR != 0 {
		v |= msrDSR
	}
	if mcr&mcrOUT1 != 0 {
		v |= msrRI
	}
	if mcr&mcrOUT2 != 0 {
		v |= msrDCD
	}
	return v
}

// iir returns the highest-priority enabled pending interrupt (datasheet,
// table IV: line status, then received data or character timeout, then
// THR empty, then modem status).
func (u *UART) iir() uint8 {
	id := uint8(iirNone)
	switch {
	case u.ier&ierRLS != 0 && u.lsrErr != 0:
		id = iirRLS
	case u.ier&ierRDA != 0 && u.rxLen > 0:
		// The timeout indication needs a clock; reporting it whenever
		// data sits below the trigger level is deterministic, and Linux
		// drains the FIFO on either indication.
		id = iirRDA
		if u.fcr&fcrEnable != 0 && u.rxLen < u.trigger() {
			id = iirCTI
		}
	case u.ier&ierTHRE != 0 && u.thrPending:
		id = iirTHRE
	case u.ier&ierMS != 0 && u.msrDelta != 0:
		id = iirMS
	}
	if u.fcr&fcrEnable != 0 {
		id |= iirFIFOs
	}
	return id
}

func (u *UART) update() { u.irq.SetLevel(u.iir()&iirNone == 0) }

// Read implements MMIO. Registers are one byte wide at offsets 0..7; wider
// accesses act on the register at offset alone.
func (u *UART) Read(off uint64, size int) uint64 {
	if off > uartSCR {
		return 0
	}
	var v uint8
	switch off {
	case uartRBR:
		if u.lcr&lcrDLAB != 0 {
			return uint64(u.dll)
		}
		v = u.pop()
	case uartIER:
		if u.lcr&lcrDLAB != 0 {
			return uint64(u.dlm)
		}
		return uint64(u.ier)
	case uartIIR:
		v = u.iir()
		// Reading IIR when it reports THRE clears that interrupt
		// (datasheet, table IV, "reset control").
		if v&0x0F == iirTHRE {
			u.thrPending = false
		}
	case uartLCR:
		return uint64(u.lcr)
	case uartMCR:
		return uint64(u.mcr)
	case uartLSR:
		v = u.lsr()
		u.lsrErr = 0
	case uartMSR:
		v = modemStatus(u.mcr) | u.msrDelta
		u.msrDelta = 0
	case uartSCR:
		return uint64(u.scr)
	}
	u.update()
	return uint64(v)
}

// Write implements MMIO, with the same access rules as Read.
func (u *UART) Write(off uint64, size int, value uint64) {
	if off > uartSCR {
		return
	}
	v := uint8(value)
	switch off {
	case uartRBR:
		if u.lcr&lcrDLAB != 0 {
			u.dll = v
			return
		}
		if u.mcr&mcrLoop != 0 {
			if u.push([]byte{v}) == 0 {
				u.lsrErr |= lsrOE
			}
		} else {
			u.out(v)
		}
		// THR empties at once, which raises THRE again.
		u.thrPending = u.ier&ierTHRE != 0
	case uartIER:
		if u.lcr&lcrDLAB != 0 {
			u.dlm = v
			return
		}
		v &= ierMask
		// Setting ETBEI with THR empty raises THRE, even if an IIR read
		// had cleared it; Linux's startup THRE test checks for this.
		if (v^u.ier)&ierTHRE != 0 {
			u.thrPending = v&ierTHRE != 0
		}
		u.ier = v
	case uartIIR: // FCR
		if v&fcrEnable == 0 {
			// FCR0 must be set for the other bits to take effect;
			// turning the FIFOs off (or on) clears them.
			if u.fcr&fcrEnable != 0 {
				u.clearRX()
			}
			u.fcr = 0
			break
		}
		if u.fcr&fcrEnable == 0 || v&fcrClearRX != 0 {
			u.clearRX()
		}
		u.fcr = v & fcrMask
	case uartLCR:
		u.lcr = v
	case uartMCR:
		v &= mcrMask
		old, cur := modemStatus(u.mcr), modemStatus(v)
		ch := old ^ cur
		if ch&msrCTS != 0 {
			u.msrDelta |= msrDCTS
		}
		if ch&msrDSR != 0 {
			u.msrDelta |= msrDDSR
		}
		if old&msrRI != 0 && cur&msrRI == 0 {
			u.msrDelta |= msrTERI
		}
		if ch&msrDCD != 0 {
			u.msrDelta |= msrDDCD
		}
		u.mcr = v
	case uartSCR:
		u.scr = v
	}
	u.update()
}

// State returns a copy of the UART's state.
func (u *UART) State() UARTState {
	rx := make([]byte, u.rxLen)
	for i := range rx {
		rx[i] = u.rx[(u.rxHead+i)%UARTRxCap]
	}
	return UARTState{
		IER: u.ier, LCR: u.lcr, MCR: u.mcr, SCR: u.scr, DLL: u.dll, DLM: u.dlm,
		FCR: u.fcr, LSRErrors: u.lsrErr, MSRDelta: u.msrDelta,
		THRPending: u.thrPending, RX: rx,
	}
}

// SetState restores a state returned by State and re-drives the IRQ line.
func (u *UART) SetState(s UARTState) error {
	switch {
	case s.IER&^ierMask != 0:
		return errors.New("uart: invalid IER")
	case s.MCR&^mcrMask != 0:
		return errors.New("uart: invalid MCR")
	case s.FCR&^fcrMask != 0 || (s.FCR&fcrEnable == 0 && s.FCR != 0):
		return errors.New("uart: invalid FCR")
	case s.LSRErrors&^lsrErrors != 0:
		return errors.New("uart: invalid LSR error bits")
	case s.MSRDelta&^msrDelta != 0:
		return errors.New("uart: invalid MSR delta bits")
	case s.THRPending && s.IER&ierTHRE == 0:
		return errors.New("uart: THRE pending with ETBEI clear")
	case len(s.RX) > UARTRxCap:
		return errors.New("uart: RX FIFO too long")
	}
	u.ier, u.lcr, u.mcr, u.scr, u.dll, u.dlm = s.IER, s.LCR, s.MCR, s.SCR, s.DLL, s.DLM
	u.fcr, u.lsrErr, u.msrDelta, u.thrPending = s.FCR, s.LSRErrors, s.MSRDelta, s.THRPending
	u.rxHead, u.rxLen = 0, copy(u.rx[:], s.RX)
	u.update()
	return nil
}
