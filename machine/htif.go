package machine

import "encoding/binary"

// htifPoll is how often (in instructions) a bare-metal program's tohost
// word is checked: whenever the count is a multiple of it. Programs that
// report through HTIF spin after writing it, so polling at fixed
// instruction counts keeps runs deterministic.
const htifPoll = 4096

// htif implements the tohost/fromhost convention of the RISC-V test
// programs (riscv-tests, Spike's front-end server): a write of (code<<1)|1
// to tohost ends the program with exit status code; a device-1 command-1
// word prints a character; any other even value points to a "magic memory"
// syscall block whose write(64) and exit(93) calls are served.
type htif struct {
	tohost, fromhost uint64
	// idlePolled: tohost was looked at since the last instruction, when
	// every hart was waiting (a program may write it and sleep).
	idlePolled bool
}

func (t *htif) poll(m *Machine) {
	off, ok := m.ramRange(t.tohost, 8)
	if !ok {
		return
	}
	v := m.load64(off)
	if v == 0 {
		return
	}
	m.store64(off, 0) // the host clears tohost after reading it
	m.noteWrite(t.tohost, 8)
	dev, cmd, payload := v>>56, v>>48&0xff, v&(1<<48-1)
	switch {
	case dev == 0 && cmd == 0 && payload&1 == 1:
		m.halt(StopPowerOff, uint32(payload>>1))
	case dev == 0 && cmd == 0:
		t.syscall(m, payload)
	case dev == 1 && cmd == 1:
		m.emitConsole([]byte{byte(payload)})
		t.respond(m, dev<<56|cmd<<48)
	}
}

func (t *htif) syscall(m *Machine, addr uint64) {
	off, ok := m.ramRange(addr, 64)
	if !ok {
		m.halt(StopPowerOff, 0xbad)
		return
	}
	var a [8]uint64
	for i := range a {
		a[i] = m.load64(off + uint64(8*i))
	}
	ret := ^uint64(0) // -1: unsupported
	switch a[0] {
	case 64: // write(fd, buf, len)
		if b, ok := m.ramRange(a[2], a[3]); ok && a[3] <= 1<<20 {
			m.emitConsole(append([]byte(nil), m.ram[b:b+a[3]]...))
			ret = a[3]
		}
	case 93: // exit(code)
		m.halt(StopPowerOff, uint32(a[1]))
		return
	}
	m.store64(off, ret)
	m.noteWrite(addr, 8)
	t.respond(m, 1)
}

func (t *htif) respond(m *Machine, v uint64) {
	if off, ok := m.ramRange(t.fromhost, 8); ok && t.fromhost != 0 {
		m.store64(off, v)
		m.noteWrite(t.fromhost, 8)
	}
}

// load64 and store64 access the doubleword at RAM offset off (8-aligned)
// for the HTIF, atomically when harts run in parallel.
func (m *Machine) load64(off uint64) uint64 {
	if m.par != nil && off%8 == 0 {
		return m.par.ram.Load(off, 8)
	}
	return binary.LittleEndian.Uint64(m.ram[off:])
}

func (m *Machine) store64(off, v uint64) {
	if m.par != nil && off%8 == 0 {
		m.par.ram.Store(off, 8, v)
		return
	}
	binary.LittleEndian.PutUint64(m.ram[off:], v)
}
