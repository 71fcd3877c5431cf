//go:build race

package riscv

// raceEnabled routes every RAM access of harts running in parallel through
// their Atomics in race-detector builds (see Hart.readRAM).
const raceEnabled = true
