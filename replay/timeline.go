package replay

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"ftvm/replay/eventlog"
	"ftvm/vm"
)

// Timeline replays a log with random access in time: besides running
// forward (Run, as an engine would, with the log's events delivered at
// their counts and its digests and output hashes checked), it can go back
// to any earlier instruction count (Seek, StepBack) and run backwards to
// the last point where a condition held (RunBack). This is how QEMU does
// reverse debugging: in-memory checkpoints taken as the replay goes, and
// re-execution from the nearest earlier one. Re-execution is replay too:
// every digest it crosses is checked again.
//
// A position is an instruction count n, and the state there is the one
// after every record logged at n has been applied (events delivered,
// digests checked): stepping forward from n executes one instruction and
// applies the records at n+1.
//
// Checkpoints need an engine that implements vm.Checkpointer. Memory stays
// bounded: there are at most MaxCheckpoints periodic ones, and when the
// run grows past that every other one is dropped and the interval doubles,
// so they stay evenly spaced over the whole history. A few more are kept
// just behind the position the debugger last went back to, so repeated
// steps back re-execute only a little.
type Timeline struct {
	vm.Engine
	ckr vm.Checkpointer // nil: no going back
	rd  *eventlog.Reader
	out *Outputs

	recs     []eventlog.Record // every record read, kept for re-execution
	idx      int               // the next record to apply
	start    uint64
	frontier uint64 // the furthest count reached
	ended    bool
	end      vm.StopReason
	cut      error // the log ends early: where (an eventlog.ErrTruncated)
	err      error
	pl       *Player // applies records

	every, nextCk uint64
	max           int
	cks           []checkpoint // periodic, by count
	near          []checkpoint // behind recent backward seeks
}

type checkpoint struct {
	c     vm.Checkpoint
	idx   int
	out   outputsState
	res   Result
	ended bool
}

func (c *checkpoint) instret() uint64 { return c.c.Instret() }

// TimelineOptions configure a Timeline.
type TimelineOptions struct {
	// CheckpointEvery is the initial number of instructions between
	// checkpoints; 0 keeps none (the player only goes forward).
	CheckpointEvery uint64
	// MaxCheckpoints bounds the periodic checkpoints (default 16).
	MaxCheckpoints int
	// Outputs, when not nil, is fed by the caller with the engine's
	// outputs; the player checks it against the log's Outputs records and
	// takes it back in time with the engine.
	Outputs *Outputs
	// FromSnapshot says the engine was restored from the snapshot with
	// this hash, which the log names in a Snapshot record: the player
	// starts after that record.
	FromSnapshot *eventlog.Hash
}

// nearGap is how far behind a backward seek's target a checkpoint is left,
// so that the next steps back re-execute at most this many instructions.
const nearGap = 1 << 16

const maxNear = 4

// NewTimeline prepares to replay rd on e, which must be in the state the log
// (or, with FromSnapshot, the snapshot) starts from.
func NewTimeline(e vm.Engine, rd *eventlog.Reader, o TimelineOptions) (*Timeline, error) {
	p := &Timeline{Engine: e, rd: rd, out: o.Outputs, start: rd.Header().StartInstret, max: o.MaxCheckpoints, pl: NewPlayer(e)}
	p.pl.SetOutputs(o.Outputs)
	if p.max <= 0 {
		p.max = 16
	}
	if o.FromSnapshot != nil {
		if err := p.skipToSnapshot(*o.FromSnapshot); err != nil {
			return nil, err
		}
	}
	if e.Instret() != p.start {
		return nil, fmt.Errorf("replay: the machine is at instruction %d, the log starts at %d", e.Instret(), p.start)
	}
	p.frontier = p.start
	if ck, ok := e.(vm.Checkpointer); ok && o.CheckpointEvery > 0 {
		p.ckr, p.every, p.nextCk = ck, o.CheckpointEvery, p.start
	}
	// The first position: the records logged at the start applied, and
	// the first checkpoint taken.
	p.Run(p.start)
	return p, p.err
}

// skipToSnapshot reads the log up to the Snapshot record naming sum.
func (p *Timeline) skipToSnapshot(sum eventlog.Hash) error {
	var outs []eventlog.OutputSum
	for {
		rec, err := p.rd.Next()
		if err == io.EOF {
			return fmt.Errorf("replay: the log names no snapshot with hash %x", sum[:8])
		}
		if err != nil {
			return err
		}
		switch rec.Kind {
		case eventlog.KindOutputs:
			if outs, err = eventlog.DecodeOutputs(rec.Data); err != nil {
				return fmt.Errorf("replay: frame %d: %w", p.rd.Frame(), err)
			}
		case eventlog.KindSnapshot:
			info, err := eventlog.DecodeSnapshot(rec.Data)
			if err != nil {
				return fmt.Errorf("replay: frame %d: %w", p.rd.Frame(), err)
			}
			if info.SHA256 == sum {
				p.start = rec.Instret
				if p.out != nil && outs != nil {
					p.out.resume(outs)
				}
				return nil
			}
		}
		if rec.Kind != eventlog.KindOutputs {
			outs = nil // only the Outputs record logged with the snapshot counts
		}
	}
}

// Err returns why the replay cannot go on: a *Divergence, or the log's
// own error. Going back clears it (re-executing to the same point will
// find it again).
func (p *Timeline) Err() error { return p.err }

// Ended reports whether the position is the end of the log.
func (p *Timeline) Ended() bool { return p.ended }

// Cut reports a log that ends early, without its End record (a recorder
// killed, a copy cut short): the error says where. The replay then ends
// at the last complete record, having checked everything before it;
// how the recorded run went on and ended is unknown.
func (p *Timeline) Cut() error { return p.cut }

// Start is the first position (the count the log or snapshot starts at).
func (p *Timeline) Start() uint64 { return p.start }

// Result summarises the replay up to the position.
func (p *Timeline) Result() Result { return p.pl.res }

// Replaying reports whether the engine is re-executing what it has
// executed before (after going back): its outputs were seen already.
func (p *Timeline) Replaying() bool { return p.Engine.Instret() < p.frontier }

// Checkpoints returns how many checkpoints are kept.
func (p *Timeline) Checkpoints() int { return len(p.cks) + len(p.near) }

// peek returns the next record to apply, reading it from the log if
// needed; ok is false at the end of the log or on an error (in p.err).
func (p *Timeline) peek() (eventlog.Record, bool) {
	if p.idx < len(p.recs) {
		return p.recs[p.idx], true
	}
	if p.err != nil || p.ended {
		return eventlog.Record{}, false
	}
	rec, err := p.rd.Next()
	if errors.Is(err, eventlog.ErrTruncated) {
		// The recorder died (or the copy is short): every complete
		// frame is here, how the run ended is not. The history ends
		// at the last complete record.
		p.ended, p.end, p.cut = true, vm.StopLimit, err
		return eventlog.Record{}, false
	}
	if err != nil {
		if err == io.EOF {
			err = errors.New("replay: the log ends without an End record")
		}
		p.err = err
		return eventlog.Record{}, false
	}
	p.recs = append(p.recs, rec)
	return rec, true
}

// apply applies the records logged at the current count.
func (p *Timeline) apply() {
	n := p.Engine.Instret()
	for p.err == nil && !p.ended {
		rec, ok := p.peek()
		if !ok || rec.Instret > n {
			return
		}
		if rec.Instret < n {
			p.err = &Divergence{Instret: n, What: fmt.Sprintf("the guest ran past instruction %d", rec.Instret)}
			return
		}
		p.idx++
		if err := p.applyRecord(rec); err != nil {
			p.err = err
		}
	}
}

func (p *Timeline) applyRecord(rec eventlog.Record) error {
	switch {
	case rec.Kind == eventlog.KindOutputs:
		return p.pl.Apply(rec)
	case rec.Kind.Ancillary():
	default:
		// The engine is at the record's count: Apply only applies it.
		if err := p.pl.Apply(rec); err != nil {
			return err
		}
		if rec.Kind == eventlog.KindEnd {
			p.ended, p.end = true, vm.ParseStopReason(rec.Reason)
		}
	}
	return nil
}

// Run replays forward until the instruction count reaches until
// (StopLimit), the log ends (the recorded stop reason, or StopLimit for a
// log cut short: see Ended and Cut) or the
// replay cannot go on (Err is set; the reason is then StopLockup).
func (p *Timeline) Run(until uint64) vm.StopReason {
	for {
		p.apply()
		n := p.Engine.Instret()
		p.frontier = max(p.frontier, n)
		switch {
		case p.err != nil:
			return vm.StopLockup
		case p.ended:
			return p.end
		}
		p.checkpoint(n)
		if n >= until {
			return vm.StopLimit
		}
		next := until
		if rec, ok := p.peek(); ok {
			next = min(next, rec.Instret)
		} else if p.err != nil {
			continue
		}
		if p.ckr != nil && p.nextCk > n {
			next = min(next, p.nextCk)
		}
		if err := RunTo(p.Engine, next); err != nil {
			p.err = err
		}
	}
}

// checkpoint takes a periodic checkpoint when one is due at n: on new
// ground only (re-executed history already has its own).
func (p *Timeline) checkpoint(n uint64) {
	if p.ckr == nil || n < p.nextCk {
		return
	}
	if len(p.cks) > 0 && n <= p.cks[len(p.cks)-1].instret() {
		return
	}
	c, ok := p.take()
	if !ok {
		return
	}
	p.cks = append(p.cks, c)
	p.nextCk = n + p.every
	if len(p.cks) > p.max {
		// Keep the first (the start), every other one, and the last.
		kept := p.cks[:0:0]
		for i, c := range p.cks {
			if i%2 == 0 || i == len(p.cks)-1 {
				kept = append(kept, c)
			}
		}
		p.cks = kept
		p.every *= 2
	}
}

func (p *Timeline) take() (checkpoint, bool) {
	c, err := p.ckr.Checkpoint()
	if err != nil {
		p.ckr = nil // cannot checkpoint: the replay goes on, forward only
		return checkpoint{}, false
	}
	ck := checkpoint{c: c, idx: p.idx, res: p.pl.res, ended: p.ended}
	if p.out != nil {
		ck.out = p.out.save()
	}
	return ck, true
}

// latest returns the latest checkpoint taken at a count <= n (< n when
// strict).
func (p *Timeline) latest(n uint64, strict bool) (checkpoint, bool) {
	var best checkpoint
	found := false
	for _, c := range slices.Concat(p.cks, p.near) {
		at := c.instret()
		if (at < n || !strict && at == n) && (!found || at > best.instret()) {
			best, found = c, true
		}
	}
	return best, found
}

func (p *Timeline) rewind(c checkpoint) error {
	if err := p.ckr.Rewind(c.c); err != nil {
		return err
	}
	p.idx, p.pl.res, p.ended, p.err = c.idx, c.res, c.ended, nil
	if p.out != nil {
		p.out.load(c.out)
	}
	return nil
}

// ErrNoHistory is returned when going back is impossible: the engine keeps
// no checkpoints.
var ErrNoHistory = errors.New("replay: no checkpoints to go back to (the engine does not support them)")

// Seek moves to instruction count n: forward by replaying, backward by
// rewinding to the nearest earlier checkpoint and replaying from there.
// A count before the start goes to the start.
func (p *Timeline) Seek(n uint64) error {
	n = max(n, p.start)
	cur := p.Engine.Instret()
	if n >= cur {
		p.Run(n)
		return p.err
	}
	if p.ckr == nil {
		return ErrNoHistory
	}
	c, ok := p.latest(n, false)
	if !ok {
		return ErrNoHistory
	}
	if err := p.rewind(c); err != nil {
		return err
	}
	if n-c.instret() > nearGap {
		p.Run(n - nearGap)
		if p.err == nil && p.Engine.Instret() == n-nearGap {
			p.addNear(n)
		}
	}
	p.Run(n)
	return p.err
}

// addNear keeps a checkpoint at the current count for seeks around n,
// dropping the one farthest from n if there are too many.
func (p *Timeline) addNear(n uint64) {
	c, ok := p.take()
	if !ok {
		return
	}
	p.near = append(p.near, c)
	if len(p.near) > maxNear {
		dist := func(c checkpoint) uint64 {
			if at := c.instret(); at > n {
				return at - n
			} else {
				return n - at
			}
		}
		far := 0
		for i, c := range p.near {
			if dist(c) > dist(p.near[far]) {
				far = i
			}
		}
		p.near = slices.Delete(p.near, far, far+1)
	}
}

// StepBack moves back one instruction. It returns false at the start.
func (p *Timeline) StepBack() (bool, error) {
	n := p.Engine.Instret()
	if n <= p.start {
		return false, nil
	}
	return true, p.Seek(n - 1)
}

// RunBack moves back to the latest count before the current one at which
// stop returns true (stop looks at the engine's state there, e.g. its PC
// against breakpoints), and returns true; or, when there is none, to the
// start, and returns false. interrupted (may be nil) is polled as it
// goes; when it returns true RunBack stops where it is and returns true.
//
// It scans the history backwards one checkpoint interval at a time,
// re-executing each interval instruction by instruction.
func (p *Timeline) RunBack(stop, interrupted func() bool) (bool, error) {
	if p.ckr == nil {
		return false, ErrNoHistory
	}
	end := p.Engine.Instret()
	for end > p.start {
		c, ok := p.latest(end, true)
		if !ok {
			return false, ErrNoHistory
		}
		if err := p.rewind(c); err != nil {
			return false, err
		}
		hit, found := uint64(0), false
		for n := c.instret(); n < end; n++ {
			if p.Engine.Instret() != n {
				break // the replay stopped (an error, or the end) where it did before
			}
			if stop() {
				hit, found = n, true
			}
			if interrupted != nil && n&0xfff == 0 && interrupted() {
				return true, nil
			}
			p.Run(n + 1)
		}
		if found {
			return true, p.Seek(hit)
		}
		end = c.instret()
	}
	return false, p.Seek(p.start)
}

// Forget drops what the timeline knows of the future: the checkpoints
// after the current count. Call it before changing the engine's state
// from outside (a debugger writing a register): from here on the run is
// not the recorded one, and the digests will say so.
func (p *Timeline) Forget() {
	n := p.Engine.Instret()
	keep := func(cs []checkpoint) []checkpoint {
		return slices.DeleteFunc(cs, func(c checkpoint) bool { return c.instret() > n })
	}
	p.cks, p.near = keep(p.cks), keep(p.near)
	p.frontier = n
	p.nextCk = min(p.nextCk, n+p.every)
}
