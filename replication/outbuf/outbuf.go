// Package outbuf holds what a replica's guest emits (console bytes,
// network frames) until the output rule lets it leave:
//
//   - Solo (a primary with no backup, or a backup that went live): out at
//     once;
//   - Held (a primary with a backup): collected during the epoch, held
//     behind the log frame that ends the epoch (Hold), and released once
//     the backup holds that frame (Release);
//   - Uncertain (a backup): kept while the primary may not have released
//     them yet, forgotten once a Sync record says it did (Settle), emitted
//     again at go-live (Reissue): the papers' re-issue of uncertain I/O (a
//     duplicate frame is harmless to TCP; a lost one would not be);
//   - Discard (a deposed or stopping replica): nothing leaves.
//
// The buffer decides nothing: the replication core says when to hold,
// release or drop (package core's actions), and the buffer carries it out.
// It is safe for concurrent use: the engine adds outputs from its goroutine
// while acknowledgements release them from another; emission is in the
// order the outputs were made, and never under a lock the engine's
// goroutine waits for, so a slow console or NIC does not stall the guest.
package outbuf

import "sync"

// Mode says what happens to an output as the guest emits it.
type Mode int

const (
	Solo      Mode = iota // emitted at once
	Held                  // collected for the epoch's Hold
	Uncertain             // kept until settled or re-issued
	Discard               // dropped
)

func (m Mode) String() string {
	switch m {
	case Solo:
		return "solo"
	case Held:
		return "held"
	case Uncertain:
		return "uncertain"
	case Discard:
		return "discard"
	}
	return "unknown"
}

// Output is one console write or one frame, with the instruction count at
// which the guest emitted it.
type Output struct {
	Net     bool
	Instret uint64
	Data    []byte
}

// Buffer is one replica's outputs.
type Buffer struct {
	emit func(Output)

	mu        sync.Mutex
	mode      Mode
	epoch     []Output // collected since the last Hold (Held, Discard)
	held      []group  // behind log frames, oldest first
	uncertain []Output // a backup's
	ready     []Output // released, to be emitted in this order
	pause     func()

	emitMu sync.Mutex // held while emitting, so outputs leave in order
}

type group struct {
	frame int64
	outs  []Output
}

// New returns a buffer in mode m whose outputs leave through emit (called
// from one goroutine at a time, in order).
func New(m Mode, emit func(Output)) *Buffer {
	return &Buffer{mode: m, emit: emit}
}

// SetPause sets a function called (on the engine's goroutine) when a
// frame is added in Held mode: a primary ends the epoch there, so the
// frame waits for the backup's acknowledgement and not for the rest of
// the epoch. Console bytes do not pause: the UART emits them one by one
// and nobody waits on them.
func (b *Buffer) SetPause(f func()) {
	b.mu.Lock()
	b.pause = f
	b.mu.Unlock()
}

// Add takes an output the guest emitted (data is copied). Console bytes
// are merged into the previous console output.
func (b *Buffer) Add(net bool, instret uint64, data []byte) {
	b.mu.Lock()
	var pause func()
	switch b.mode {
	case Solo:
		b.ready = appendOutput(b.ready, net, instret, data)
	case Held:
		b.epoch = appendOutput(b.epoch, net, instret, data)
		if net {
			pause = b.pause
		}
	case Uncertain:
		// Not merged: Settle forgets outputs by the count at which they
		// were made, and a merged run of console bytes could straddle the
		// end of an epoch the primary released.
		b.uncertain = append(b.uncertain, Output{net, instret, append([]byte(nil), data...)})
	}
	solo := b.mode == Solo
	b.mu.Unlock()
	if pause != nil {
		pause()
	}
	if solo {
		b.Flush()
	}
}

func appendOutput(l []Output, net bool, instret uint64, b []byte) []Output {
	if !net && len(l) > 0 && !l[len(l)-1].Net {
		last := &l[len(l)-1]
		last.Data, last.Instret = append(last.Data, b...), instret
		return l
	}
	return append(l, Output{net, instret, append([]byte(nil), b...)})
}

// SetMode changes the mode without releasing or dropping anything (a
// primary whose backup joined: Solo to Held).
func (b *Buffer) SetMode(m Mode) {
	b.mu.Lock()
	b.mode = m
	b.mu.Unlock()
}

// Mode returns the current mode.
func (b *Buffer) Mode() Mode {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mode
}

// Pending reports outputs collected since the last Hold.
func (b *Buffer) Pending() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.epoch) > 0
}

// Hold puts the outputs collected since the last Hold behind log frame f.
func (b *Buffer) Hold(f int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.epoch) > 0 {
		b.held = append(b.held, group{f, b.epoch})
		b.epoch = nil
	}
}

// Release makes the outputs held behind frames up to f leave. Call Flush
// (outside any lock the engine's goroutine may wait for) to emit them.
func (b *Buffer) Release(f int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := 0
	for ; i < len(b.held) && b.held[i].frame <= f; i++ {
		b.ready = append(b.ready, b.held[i].outs...)
	}
	b.held = b.held[i:]
}

// ReleaseAll makes everything held and collected leave, and goes Solo.
func (b *Buffer) ReleaseAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, g := range b.held {
		b.ready = append(b.ready, g.outs...)
	}
	b.ready = append(b.ready, b.epoch...)
	b.held, b.epoch = nil, nil
	b.mode = Solo
}

// DropAll discards everything not yet emitted and goes Discard: the
// replica lost the arbitration and its outputs must never be seen.
func (b *Buffer) DropAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held, b.epoch, b.uncertain, b.ready = nil, nil, nil, nil
	b.mode = Discard
}

// Settle forgets the uncertain outputs emitted at or before instruction
// through: the primary released them.
func (b *Buffer) Settle(through uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := 0
	for i < len(b.uncertain) && b.uncertain[i].Instret <= through {
		i++
	}
	b.uncertain = b.uncertain[i:]
}

// Reissue makes the uncertain outputs leave again and goes Solo. It
// returns how many there were.
func (b *Buffer) Reissue() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.uncertain)
	b.ready = append(b.ready, b.uncertain...)
	b.uncertain = nil
	b.mode = Solo
	return n
}

// Held returns the number of outputs waiting for the output rule.
func (b *Buffer) Held() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.epoch)
	for _, g := range b.held {
		n += len(g.outs)
	}
	return n
}

// Uncertain returns the number of a backup's unsettled outputs.
func (b *Buffer) Uncertain() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.uncertain)
}

// Flush emits what has been released, in order. Outputs released by
// another goroutine meanwhile are emitted by whichever Flush gets to them
// first, never out of order.
func (b *Buffer) Flush() {
	b.emitMu.Lock()
	defer b.emitMu.Unlock()
	for {
		b.mu.Lock()
		r := b.ready
		b.ready = nil
		b.mu.Unlock()
		if len(r) == 0 {
			return
		}
		for _, o := range r {
			b.emit(o)
		}
	}
}
