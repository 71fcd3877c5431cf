// Package vm is the seam between a machine and everything above it
// (record/replay, replication): run to an instruction count, deliver an
// event, take a digest. It names no instruction set; the RISC-V machine in
// package machine is one Engine, and another (KVM, x86) could be another.
package vm

import "io"

// StopReason says why Run returned.
type StopReason int

const (
	StopLimit    StopReason = iota // reached the requested instruction count
	StopIdle                       // the guest waits for an external event
	StopPowerOff                   // the guest powered off (or a bare-metal program exited)
	StopReboot                     // the guest asked for a reboot
	StopLockup                     // the guest can make no progress (a trap loop, or waiting with every interrupt disabled)
)

var stopNames = [...]string{StopLimit: "limit", StopIdle: "idle", StopPowerOff: "poweroff", StopReboot: "reboot", StopLockup: "lockup"}

// String is the reason's name, as an event log's End record carries it.
func (r StopReason) String() string {
	if r >= 0 && int(r) < len(stopNames) {
		return stopNames[r]
	}
	return "unknown"
}

// ParseStopReason is the reverse of String, for the reason an event log's
// End record names. It also reads "lockup (trap loop)", what older logs
// say; a name it does not know (a newer writer's) reads as StopPowerOff:
// the run is over either way.
func ParseStopReason(s string) StopReason {
	if s == "lockup (trap loop)" {
		return StopLockup
	}
	for r, name := range stopNames {
		if name == s {
			return StopReason(r)
		}
	}
	return StopPowerOff
}

// Event is an input from outside the machine, applied between Run calls at
// an instruction count the caller chooses (and records).
type Event interface{ isEvent() }

// ConsoleInput is bytes typed on the console.
type ConsoleInput struct{ Data []byte }

// NetReceive is an Ethernet frame arriving at the NIC.
type NetReceive struct{ Frame []byte }

// AdvanceTime moves the guest's clock forward to To (never backwards).
type AdvanceTime struct{ To uint64 }

func (ConsoleInput) isEvent() {}
func (NetReceive) isEvent()   {}
func (AdvanceTime) isEvent()  {}

// Component is the digest of one part of the machine state.
type Component struct {
	Name string
	Sum  [32]byte
}

// Digest summarises the whole machine state; Parts say which part differs
// when two digests do.
type Digest struct {
	Sum   [32]byte
	Parts []Component
}

// Engine is a deterministic machine: what it does is a function of its
// initial image and the sequence of (instruction count, event) pairs
// delivered to it.
type Engine interface {
	// Run executes until the instruction count reaches until or the guest
	// stops or idles.
	Run(until uint64) StopReason
	// Instret is the number of instructions executed so far: with several
	// processors, by all of them together. It is the engine's one
	// position, in which events, digests, outputs and epochs are placed,
	// so a deterministic engine with several processors must interleave
	// them as a function of this count and its inputs alone. (An engine
	// whose processors run in parallel is not deterministic; it may stop
	// past until.)
	Instret() uint64
	// Deliver applies an event now. For ConsoleInput it returns how many
	// bytes were accepted (the rest must be offered again later).
	Deliver(Event) (int, error)
	// Digest returns a digest of the whole state.
	Digest() Digest
	// Now and Deadline are the guest clock and its next timer (^0: none),
	// in the guest's timer ticks; SetIdleSkip chooses whether an idle guest
	// jumps to its timer or returns StopIdle.
	Now() uint64
	Deadline() uint64
	SetIdleSkip(on bool)
	// TicksPerSecond is the guest timer frequency.
	TicksPerSecond() uint64
}

// Checkpointer is an Engine that can copy its state in memory and go back
// to such a copy: reverse execution rewinds to the nearest earlier
// checkpoint and re-executes from there with the same events.
type Checkpointer interface {
	// Checkpoint copies the state, between Run calls.
	Checkpoint() (Checkpoint, error)
	// Rewind puts the engine back in the state of one of its checkpoints.
	Rewind(Checkpoint) error
}

// Checkpoint is an engine's in-memory copy of its state.
type Checkpoint interface {
	// Instret is the instruction count at which it was taken.
	Instret() uint64
}

// Pauser is an engine whose Run can be cut short: called from an output
// callback, Pause makes the current Run return StopLimit after the
// instruction that is executing. A replication primary uses it to end an
// epoch at a transmitted frame, so the frame waits for the backup's
// acknowledgement and not for the rest of the epoch.
type Pauser interface {
	Pause()
}

// Outputs receive what the guest emits, with the instruction count at the
// point it was emitted (the output rule of the replication layer holds
// outputs back until the log is safe up to that count). The callbacks run
// inside Run, on the caller's goroutine, and must not keep b or frame.
type Outputs struct {
	Console func(instret uint64, b []byte)
	Net     func(instret uint64, frame []byte)
	// Disk is told of every write the guest makes to its disk, at byte
	// offset off, after it is done (a replay checks them too).
	Disk func(instret uint64, off int64, p []byte)
}

// Migratable is what a live state transfer (a new backup joining a running
// primary) needs from an engine besides running it: read its RAM page by
// page while it runs, learn which pages the guest wrote since the last
// look, and save the rest of its state (processor, devices, clock) once it
// is stopped. The disk is not part of it: its contents live behind the
// caller's disk backend.
type Migratable interface {
	Engine
	// PageSize is the size in bytes of a RAM page, the unit of transfer
	// and of dirty tracking. Pages is the number of RAM pages.
	PageSize() int
	Pages() int
	// ReadPage copies RAM page i into p (len(p) == PageSize()).
	ReadPage(i int, p []byte) error
	// TrackDirty starts a dirty log for one consumer. Each log sees every
	// page written after it started, whatever other logs (or the
	// engine's digest) collect in between.
	TrackDirty() DirtyLog
	// SaveState writes the engine's state without RAM and without disk
	// contents, for a restore that takes both from elsewhere. It must be
	// called between Run calls.
	SaveState(w io.Writer) error
}

// DirtyLog is one consumer's record of the RAM pages written by the guest
// or by device DMA.
type DirtyLog interface {
	// Collect returns (in dst, reused when large enough) a bitmap of the
	// pages written since the log started or since the previous Collect:
	// bit i%64 of word i/64 is page i. The log then starts afresh. It must
	// be called between Run calls.
	Collect(dst []uint64) []uint64
	// Stop ends the log; the engine no longer keeps bits for it.
	Stop()
}

// Syncable is a Migratable engine that another replica's state can be
// applied to while it exists, keeping everything else: the state
// synchronisation of checkpointing and comparing replicas (a backup
// applying a primary's checkpoints, a secondary taking the pages in which
// it diverged, a replica repairing a corrupted page from a good one) writes
// RAM pages and loads processor and device state into it in place, where a
// live state transfer builds a new engine.
//
// Both must be called between Run calls. A page written here counts as
// written for the engine's digest and for every dirty log, like a write of
// device DMA: the next digest hashes it again, and a dirty log of the
// replica reports it.
type Syncable interface {
	Migratable
	// WritePage overwrites RAM page i with p (len(p) == PageSize()).
	WritePage(i int, p []byte) error
	// LoadState replaces the engine's processor, device and clock state
	// (everything SaveState writes) with the one read from r, written by
	// SaveState of an engine of the same configuration (memory size,
	// devices). RAM and disk are kept as they are. The state is untrusted
	// input and validated like a snapshot being restored; on error the
	// engine is unchanged. The devices do not look at their queues again
	// (unlike a restore into a new engine): the state was taken between
	// Run calls, where its engine had handled every notification, and the
	// replica continues exactly as that engine would have.
	LoadState(r io.Reader) error
}
