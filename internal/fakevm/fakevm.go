// Package fakevm is a small deterministic engine (a vm.Migratable) for the
// tests of the layers above the engine seam (state transfer, replication)
// that must run without a guest: what it does is a function of its state
// and of the events delivered to it, so two copies given the same state and
// the same events stay identical, and a missing or misplaced event shows in
// the digest.
//
// Each Run writes pseudo-random bytes into RAM (and, with a disk, into the
// disk) as a function of the instruction count. Delivered events change its
// registers; console input and received frames are echoed back as outputs
// (console bytes, a transmitted frame) at the start of the next Run, as a
// guest serving requests would answer them. With Idle set, Run returns
// StopIdle at once when nothing is left to answer, as an idle guest does.
package fakevm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"

	"ftvm/vm"
)

// PageSize is the engine's RAM page size.
const PageSize = 4096

// Disk is what the engine writes to (the block backends and
// migrate.TrackedDisk are Disks).
type Disk interface {
	WriteAt(p []byte, off int64) (int, error)
	Size() int64
}

// Engine is the fake machine. Its exported fields may be set between Run
// calls; WritesPer and Idle are part of its state (and so of its digest and
// of a transfer).
type Engine struct {
	// WritesPer is how many bytes Run writes to RAM per 1000 instructions
	// (default 4).
	WritesPer int
	// Idle makes Run return StopIdle when there is nothing to answer.
	Idle bool

	out     vm.Outputs
	ram     []byte
	instret uint64
	regs    [4]uint64 // stands for the processor and devices
	clock   uint64    // guest time, moved by AdvanceTime
	echo    []echo    // outputs owed for delivered inputs
	paused  bool
	disk    Disk
	logs    []*dirtyLog
}

// echo is an output the engine owes: console bytes or a frame.
type echo struct {
	Net  bool
	Data []byte
}

type state struct {
	Instret   uint64
	Regs      [4]uint64
	Clock     uint64
	WritesPer int
	Idle      bool
	Echo      []echo
	Pages     int
}

// New returns an engine with pages pages of RAM (half of them filled with
// a pattern), writing to disk (nil: none) and emitting to out.
func New(pages int, disk Disk, out vm.Outputs) *Engine {
	e := &Engine{ram: make([]byte, pages*PageSize), disk: disk, WritesPer: 4, out: out}
	for i := range e.ram[:len(e.ram)/2] {
		e.ram[i] = byte(i*7 + i>>12)
	}
	return e
}

var (
	_ vm.Syncable = (*Engine)(nil)
	_ vm.Pauser   = (*Engine)(nil)
)

func (e *Engine) rnd(k uint64) uint64 {
	x := k*0x9e3779b97f4a7c15 + e.regs[0]
	x ^= x >> 31
	x *= 0xbf58476d1ce4e5b9
	return x ^ x>>29
}

// Run executes until the instruction count reaches until, answering the
// inputs delivered since the last Run first (one answer per 1000
// instructions, each at the count where it is emitted).
func (e *Engine) Run(until uint64) vm.StopReason {
	e.paused = false
	for e.instret < until {
		if e.Idle && len(e.echo) == 0 {
			return vm.StopIdle
		}
		step := min(until-e.instret, 1000)
		for i := range e.WritesPer {
			x := e.rnd(e.instret*16 + uint64(i))
			off := int(x % uint64(len(e.ram)))
			e.ram[off] = byte(x >> 40)
			for _, l := range e.logs {
				l.bits[off/PageSize/64] |= 1 << (off / PageSize % 64)
			}
		}
		if e.disk != nil && e.instret%50000 < step {
			x := e.rnd(e.instret)
			var b [512]byte
			binary.LittleEndian.PutUint64(b[:], x)
			e.disk.WriteAt(b[:], int64(x%uint64(e.disk.Size()/512))*512)
		}
		e.regs[1] += e.rnd(e.instret) & 0xff
		e.instret += step
		if len(e.echo) > 0 {
			o := e.echo[0]
			e.echo = e.echo[1:]
			if o.Net && e.out.Net != nil {
				e.out.Net(e.instret, o.Data)
			} else if !o.Net && e.out.Console != nil {
				e.out.Console(e.instret, o.Data)
			}
		}
		if e.paused {
			e.paused = false
			return vm.StopLimit
		}
	}
	return vm.StopLimit
}

// Pause ends the running Run after the current step (vm.Pauser).
func (e *Engine) Pause() { e.paused = true }

func (e *Engine) Instret() uint64 { return e.instret }

// Deliver takes console input (all of it), a received frame or a time
// advance, and mixes it into the state; input and frames are answered by
// the next Run.
func (e *Engine) Deliver(ev vm.Event) (int, error) {
	switch ev := ev.(type) {
	case vm.ConsoleInput:
		e.mix(ev.Data)
		e.echo = append(e.echo, echo{false, append([]byte(nil), ev.Data...)})
		return len(ev.Data), nil
	case vm.NetReceive:
		e.mix(ev.Frame)
		e.echo = append(e.echo, echo{true, append([]byte(nil), ev.Frame...)})
		return len(ev.Frame), nil
	case vm.AdvanceTime:
		e.clock = max(e.clock, ev.To)
		e.regs[3] ^= ev.To
		return 0, nil
	}
	return 0, fmt.Errorf("fakevm: cannot take %T", ev)
}

func (e *Engine) mix(b []byte) {
	s := sha256.Sum256(append(binary.LittleEndian.AppendUint64(nil, e.regs[2]), b...))
	e.regs[2] = binary.LittleEndian.Uint64(s[:])
}

func (e *Engine) Now() uint64            { return e.clock }
func (e *Engine) Deadline() uint64       { return ^uint64(0) }
func (e *Engine) SetIdleSkip(bool)       {}
func (e *Engine) TicksPerSecond() uint64 { return 1000 }
func (e *Engine) PageSize() int          { return PageSize }
func (e *Engine) Pages() int             { return len(e.ram) / PageSize }

// RAM is the engine's memory (for tests that compare or damage it).
func (e *Engine) RAM() []byte { return e.ram }

func (e *Engine) ReadPage(i int, p []byte) error {
	copy(p, e.ram[i*PageSize:])
	return nil
}

func (e *Engine) state() state {
	return state{e.instret, e.regs, e.clock, e.WritesPer, e.Idle, e.echo, e.Pages()}
}

func (e *Engine) SaveState(w io.Writer) error { return json.NewEncoder(w).Encode(e.state()) }

func (e *Engine) Digest() vm.Digest {
	r := sha256.Sum256(e.ram)
	s, _ := json.Marshal(e.state())
	c := sha256.Sum256(s)
	all := sha256.Sum256(append(r[:], c[:]...))
	return vm.Digest{Sum: all, Parts: []vm.Component{{Name: "ram", Sum: r}, {Name: "cpu", Sum: c}}}
}

// DirtyLogs is the number of dirty logs started and not stopped.
func (e *Engine) DirtyLogs() int { return len(e.logs) }

type dirtyLog struct {
	e    *Engine
	bits []uint64
}

func (e *Engine) TrackDirty() vm.DirtyLog {
	l := &dirtyLog{e: e, bits: make([]uint64, (e.Pages()+63)/64)}
	e.logs = append(e.logs, l)
	return l
}

func (l *dirtyLog) Collect(dst []uint64) []uint64 {
	dst = append(dst[:0], l.bits...)
	clear(l.bits)
	return dst
}

func (l *dirtyLog) Stop() {
	for i, x := range l.e.logs {
		if x == l {
			l.e.logs = append(l.e.logs[:i], l.e.logs[i+1:]...)
			return
		}
	}
}

// WritePage overwrites RAM page i (vm.Syncable); dirty logs report it.
func (e *Engine) WritePage(i int, p []byte) error {
	if i < 0 || i >= e.Pages() || len(p) != PageSize {
		return fmt.Errorf("fakevm: WritePage(%d) with %d bytes", i, len(p))
	}
	copy(e.ram[i*PageSize:], p)
	for _, l := range e.logs {
		l.bits[i/64] |= 1 << (i % 64)
	}
	return nil
}

// LoadState replaces the engine's state with one SaveState wrote
// (vm.Syncable), keeping RAM; it is validated like untrusted input.
func (e *Engine) LoadState(r io.Reader) error {
	st, err := decodeState(r)
	if err != nil {
		return err
	}
	if st.Pages != e.Pages() {
		return fmt.Errorf("fake state: %d pages, the engine has %d", st.Pages, e.Pages())
	}
	e.instret, e.regs, e.clock, e.WritesPer, e.Idle, e.echo = st.Instret, st.Regs, st.Clock, st.WritesPer, st.Idle, st.Echo
	return nil
}

func decodeState(r io.Reader) (state, error) {
	var st state
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return state{}, fmt.Errorf("fake state: %w", err)
	}
	if st.WritesPer < 0 || st.WritesPer > 64 || len(st.Echo) > 1<<16 || st.Pages < 0 {
		return state{}, fmt.Errorf("fake state: %d writes, %d answers", st.WritesPer, len(st.Echo))
	}
	return st, nil
}

// Factory restores an Engine from a state saved by SaveState and RAM
// received separately, validating the state like untrusted input (it has
// the signature of migrate.Factory). The engine writes to disk and emits
// to out.
func Factory(disk Disk, out vm.Outputs) func(st io.Reader, ram []byte) (vm.Migratable, error) {
	return func(r io.Reader, ram []byte) (vm.Migratable, error) {
		st, err := decodeState(r)
		if err != nil {
			return nil, err
		}
		if st.Pages*PageSize != len(ram) {
			return nil, fmt.Errorf("fake state: %d pages do not fit %d bytes of RAM", st.Pages, len(ram))
		}
		return &Engine{ram: ram, instret: st.Instret, regs: st.Regs, clock: st.Clock, WritesPer: st.WritesPer,
			Idle: st.Idle, echo: st.Echo, disk: disk, out: out}, nil
	}
}
