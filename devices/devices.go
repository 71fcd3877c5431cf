// Package devices holds the board-level device models of the ftvm machine
// (CLINT, PLIC, 16550 UART, syscon) and the small interfaces every device
// model shares with the bus.
//
// Device models are part of the deterministic core: they never touch the
// host (no os, net, time, goroutines). Anything from outside reaches them
// through explicit method calls made by the machine between Run calls.
package devices

// MMIO is a memory-mapped device region. Offsets are relative to the
// region's base. size is 1, 2, 4 or 8. Accesses the device does not
// implement read as zero and ignore writes; a device never panics on a
// guest-controlled offset, size or value.
type MMIO interface {
	Read(offset uint64, size int) uint64
	Write(offset uint64, size int, value uint64)
}

// IRQLine is a level-triggered interrupt input (a PLIC source, or a hart's
// interrupt-pending bit). Devices call SetLevel whenever their line changes.
type IRQLine interface {
	SetLevel(high bool)
}

// IRQFunc adapts a function to IRQLine.
type IRQFunc func(high bool)

// SetLevel calls f(high).
func (f IRQFunc) SetLevel(high bool) { f(high) }
