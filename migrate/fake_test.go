package migrate

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"ftvm/vm"
)

// fakeEngine is a small deterministic engine for the protocol's tests: each
// Run writes pseudo-random bytes into RAM (and, with a disk, into the disk)
// as a function of the instruction count, so two copies given the same
// state stay identical and a wrong byte anywhere shows in the digest.
type fakeEngine struct {
	ram     []byte
	instret uint64
	regs    [4]uint64 // stands for the processor and devices
	disk    Disk
	logs    []*fakeLog
	// writesPer is how many bytes Run writes per 1000 instructions.
	writesPer int
}

const fakePageSize = 4096

type fakeState struct {
	Instret   uint64
	Regs      [4]uint64
	WritesPer int
	Pages     int
}

func newFake(pages int, disk Disk) *fakeEngine {
	e := &fakeEngine{ram: make([]byte, pages*fakePageSize), disk: disk, writesPer: 4}
	for i := range e.ram[:len(e.ram)/2] {
		e.ram[i] = byte(i*7 + i>>12)
	}
	return e
}

func (e *fakeEngine) rnd(k uint64) uint64 {
	x := k*0x9e3779b97f4a7c15 + e.regs[0]
	x ^= x >> 31
	x *= 0xbf58476d1ce4e5b9
	return x ^ x>>29
}

func (e *fakeEngine) Run(until uint64) vm.StopReason {
	for e.instret < until {
		step := min(until-e.instret, 1000)
		for i := range e.writesPer {
			x := e.rnd(e.instret*16 + uint64(i))
			off := int(x % uint64(len(e.ram)))
			e.ram[off] = byte(x >> 40)
			for _, l := range e.logs {
				l.bits[off/fakePageSize/64] |= 1 << (off / fakePageSize % 64)
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
	}
	return vm.StopLimit
}

func (e *fakeEngine) Instret() uint64 { return e.instret }
func (e *fakeEngine) Deliver(vm.Event) (int, error) {
	return 0, errors.New("fake engine takes no events")
}
func (e *fakeEngine) Now() uint64                    { return e.instret }
func (e *fakeEngine) Deadline() uint64               { return ^uint64(0) }
func (e *fakeEngine) SetIdleSkip(bool)               {}
func (e *fakeEngine) TicksPerSecond() uint64         { return 1000 }
func (e *fakeEngine) PageSize() int                  { return fakePageSize }
func (e *fakeEngine) Pages() int                     { return len(e.ram) / fakePageSize }
func (e *fakeEngine) SaveState(w io.Writer) error    { return json.NewEncoder(w).Encode(e.state()) }
func (e *fakeEngine) state() fakeState               { return fakeState{e.instret, e.regs, e.writesPer, e.Pages()} }
func (e *fakeEngine) ReadPage(i int, p []byte) error { copy(p, e.ram[i*fakePageSize:]); return nil }

func (e *fakeEngine) Digest() vm.Digest {
	r := sha256.Sum256(e.ram)
	s, _ := json.Marshal(e.state())
	c := sha256.Sum256(s)
	all := sha256.Sum256(append(r[:], c[:]...))
	return vm.Digest{Sum: all, Parts: []vm.Component{{Name: "ram", Sum: r}, {Name: "cpu", Sum: c}}}
}

type fakeLog struct {
	e    *fakeEngine
	bits []uint64
}

func (e *fakeEngine) TrackDirty() vm.DirtyLog {
	l := &fakeLog{e: e, bits: make([]uint64, (e.Pages()+63)/64)}
	e.logs = append(e.logs, l)
	return l
}

func (l *fakeLog) Collect(dst []uint64) []uint64 {
	dst = append(dst[:0], l.bits...)
	clear(l.bits)
	return dst
}

func (l *fakeLog) Stop() {
	for i, x := range l.e.logs {
		if x == l {
			l.e.logs = append(l.e.logs[:i], l.e.logs[i+1:]...)
			return
		}
	}
}

// fakeFactory restores a fakeEngine, validating the state.
func fakeFactory(disk Disk) Factory {
	return func(state io.Reader, ram []byte) (vm.Migratable, error) {
		var st fakeState
		dec := json.NewDecoder(state)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&st); err != nil {
			return nil, fmt.Errorf("fake state: %w", err)
		}
		if st.Pages*fakePageSize != len(ram) || st.WritesPer < 0 || st.WritesPer > 64 {
			return nil, fmt.Errorf("fake state: %d pages, %d writes: does not fit %d bytes of RAM", st.Pages, st.WritesPer, len(ram))
		}
		return &fakeEngine{ram: ram, instret: st.Instret, regs: st.Regs, writesPer: st.WritesPer, disk: disk}, nil
	}
}
