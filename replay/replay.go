// Package replay records the nondeterministic inputs of a run and replays
// them: the deterministic replay of Bressoud & Schneider's hypervisor and of
// VMware FT, on any vm.Engine.
//
// Recording wraps an engine: every event delivered to it is appended to an
// event log with the instruction count at which it took effect, and every
// DigestEvery instructions a digest of the machine state is logged too.
// Replaying re-executes from the same start, runs to each logged
// instruction count, delivers the logged event there, and checks each
// digest: the first mismatch is reported with its instruction count and the
// parts of the state that differ.
package replay

import (
	"errors"
	"fmt"
	"io"

	"ftvm/replay/eventlog"
	"ftvm/vm"
)

// Log is where a Recorder appends its records: an *eventlog.Writer, or a
// replication core that owns the writer of a log streaming to a backup.
type Log interface {
	Append(eventlog.Record) error
	Flush() error
}

var _ Log = (*eventlog.Writer)(nil)

// Recorder is a vm.Engine that logs what goes through it.
type Recorder struct {
	vm.Engine
	w     Log
	every uint64
	next  uint64
	err   error

	out       *Outputs // nil: output hashes are not logged
	snapEvery uint64
	nextSnap  uint64
	save      func(instret uint64) (eventlog.SnapshotInfo, error)
}

// NewRecorder records e's inputs to w, with a state digest every
// digestEvery instructions (0: none but the final one).
func NewRecorder(e vm.Engine, w Log, digestEvery uint64) *Recorder {
	r := &Recorder{Engine: e, w: w, every: digestEvery, next: ^uint64(0), nextSnap: ^uint64(0)}
	if digestEvery > 0 {
		// A digest of the starting state: a replay from the wrong images
		// is caught before it runs, and the engine's first digest, which
		// may cost a pass over all of memory, is taken before the guest
		// runs rather than in the middle of its work.
		r.append(eventlog.DigestAt(e.Instret(), logDigest(e.Digest())))
		r.next = e.Instret() + digestEvery
	}
	return r
}

// Err returns the first error writing the log.
func (r *Recorder) Err() error { return r.err }

func (r *Recorder) append(rec eventlog.Record) {
	if r.err == nil {
		r.err = r.w.Append(rec)
	}
}

// SetOutputs makes the recorder log the running hashes of o (which the
// caller feeds from the engine's outputs) with every digest, every
// snapshot and at the end, so a replay can check the outputs too.
func (r *Recorder) SetOutputs(o *Outputs) { r.out = o }

// SetSnapshots makes the recorder call save every `every` instructions
// (between Run calls of the engine) and log what it wrote, so a replay can
// start from any of those snapshots. save writes the snapshot and names
// it; an error stops the snapshots and is returned by Err.
func (r *Recorder) SetSnapshots(every uint64, save func(instret uint64) (eventlog.SnapshotInfo, error)) {
	r.snapEvery, r.save, r.nextSnap = every, save, ^uint64(0)
	if every > 0 && save != nil {
		r.nextSnap = r.Engine.Instret() + every
	}
}

func (r *Recorder) logOutputs(n uint64) {
	if r.out != nil {
		r.append(eventlog.OutputsAt(n, r.out.seal()))
	}
}

// Run runs the engine, stopping at each digest point to log a digest (and
// at each snapshot point to write one).
func (r *Recorder) Run(until uint64) vm.StopReason {
	for {
		target := min(until, r.next, r.nextSnap)
		reason := r.Engine.Run(target)
		n := r.Engine.Instret()
		if n == r.next {
			r.append(eventlog.DigestAt(n, logDigest(r.Engine.Digest())))
			r.logOutputs(n)
			r.next += r.every
		}
		if n == r.nextSnap {
			r.nextSnap += r.snapEvery
			if info, err := r.save(n); err != nil {
				if r.err == nil {
					r.err = fmt.Errorf("snapshot at instruction %d: %w", n, err)
				}
				r.nextSnap = ^uint64(0)
			} else {
				r.logOutputs(n)
				r.append(eventlog.SnapshotAt(n, info))
			}
		}
		// A Run that stopped short of its target was paused (vm.Pauser):
		// the caller wanted control back now.
		if reason != vm.StopLimit || n >= until || n < target {
			return reason
		}
	}
}

// Deliver delivers ev and logs what the engine took of it.
func (r *Recorder) Deliver(ev vm.Event) (int, error) {
	n, err := r.Engine.Deliver(ev)
	if err != nil {
		return n, err
	}
	at := r.Engine.Instret()
	switch e := ev.(type) {
	case vm.ConsoleInput:
		if n > 0 {
			r.append(eventlog.ConsoleInputAt(at, append([]byte(nil), e.Data[:n]...)))
		}
	case vm.NetReceive:
		// Logged even when the NIC dropped it: replay drops it the same way.
		r.append(eventlog.NetReceiveAt(at, append([]byte(nil), e.Frame...)))
	case vm.AdvanceTime:
		r.append(eventlog.AdvanceTimeAt(at, e.To))
	default:
		r.err = fmt.Errorf("replay: cannot record %T", ev)
	}
	return n, nil
}

// Close logs the end of the run (reason and final digest) and flushes.
func (r *Recorder) Close(reason vm.StopReason) error {
	r.logOutputs(r.Engine.Instret())
	r.append(eventlog.EndAt(r.Engine.Instret(), reason.String(), logDigest(r.Engine.Digest())))
	if r.err == nil {
		r.err = r.w.Flush()
	}
	return r.err
}

func logDigest(d vm.Digest) eventlog.Digest {
	out := eventlog.Digest{Sum: d.Sum}
	for _, p := range d.Parts {
		out.Components = append(out.Components, eventlog.Component{Name: p.Name, Sum: p.Sum})
	}
	return out
}

// Divergence is a replay that did not reproduce the recording.
type Divergence struct {
	Instret uint64   // where it was detected
	What    string   // what differed
	Parts   []string // for a digest mismatch: the state components that differ
}

func (d *Divergence) Error() string {
	s := fmt.Sprintf("replay diverged at instruction %d: %s", d.Instret, d.What)
	if len(d.Parts) > 0 {
		s += fmt.Sprintf(" (differing state: %v)", d.Parts)
	}
	return s
}

// Result summarises a successful replay.
type Result struct {
	Instret uint64
	Reason  string
	Events  int
	Digests int
}

// Replay re-executes e, which must be in the state the log started from,
// feeding it the log's events. It returns a *Divergence if the run departs
// from the log, or the log's own error if it is damaged.
func Replay(e vm.Engine, rd *eventlog.Reader) (Result, error) {
	p := NewPlayer(e)
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			return p.Result(), nil
		}
		if err != nil {
			return p.Result(), err
		}
		if err := p.Apply(rec); err != nil {
			return p.Result(), err
		}
	}
}

// Player applies a log to an engine one record at a time, for callers that
// receive the log as it is written (a backup replica) rather than from a
// file.
type Player struct {
	e   vm.Engine
	res Result
	out *Outputs // nil: logged output hashes are not checked
}

// NewPlayer starts applying a log to e, which must be in the state the log
// started from. Time then moves only by logged AdvanceTime events.
func NewPlayer(e vm.Engine) *Player {
	e.SetIdleSkip(false)
	return &Player{e: e}
}

// SetOutputs makes the player check the log's output hashes against o,
// which the caller feeds from the engine's outputs.
func (p *Player) SetOutputs(o *Outputs) { p.out = o }

// Result summarises what has been applied so far.
func (p *Player) Result() Result { return p.res }

// Apply runs the engine to rec's instruction count and applies it: delivers
// an event, checks a digest. Ancillary records are skipped (callers that
// give them a meaning handle them before). A *Divergence is returned when
// the engine departs from the log.
func (p *Player) Apply(rec eventlog.Record) error {
	if rec.Kind == eventlog.KindOutputs && p.out != nil {
		return p.checkOutputs(rec)
	}
	if rec.Kind.Ancillary() {
		return nil
	}
	e, res := p.e, &p.res
	if err := RunTo(e, rec.Instret); err != nil {
		return err
	}
	switch rec.Kind {
	case eventlog.KindConsoleInput:
		n, err := e.Deliver(vm.ConsoleInput{Data: rec.Data})
		if err != nil {
			return err
		}
		if n != len(rec.Data) {
			return &Divergence{Instret: rec.Instret, What: fmt.Sprintf("the console accepted %d of %d logged bytes", n, len(rec.Data))}
		}
		res.Events++
	case eventlog.KindNetReceive:
		if _, err := e.Deliver(vm.NetReceive{Frame: rec.Data}); err != nil {
			return err
		}
		res.Events++
	case eventlog.KindAdvanceTime:
		if _, err := e.Deliver(vm.AdvanceTime{To: rec.Time}); err != nil {
			return err
		}
		res.Events++
	case eventlog.KindDigest:
		if parts := rec.Digest.Mismatch(logDigest(e.Digest())); parts != nil {
			return &Divergence{Instret: rec.Instret, What: "state digest mismatch", Parts: parts}
		}
		res.Digests++
	case eventlog.KindEnd:
		res.Instret, res.Reason = rec.Instret, rec.Reason
		if vm.ParseStopReason(rec.Reason) == vm.StopLockup {
			// A guest locks up after its last instruction: its trap
			// loop changes the hart without retiring anything. Let it
			// get there too (it must not retire anything either).
			if r := e.Run(rec.Instret + 1); r != vm.StopLockup || e.Instret() != rec.Instret {
				return &Divergence{Instret: e.Instret(), What: fmt.Sprintf("the guest did not lock up at instruction %d (%v)", rec.Instret, r)}
			}
		}
		if parts := rec.Digest.Mismatch(logDigest(e.Digest())); parts != nil {
			return &Divergence{Instret: rec.Instret, What: "final state digest mismatch", Parts: parts}
		}
	default:
		return fmt.Errorf("replay: unexpected record %v", rec.Kind)
	}
	return nil
}

// checkOutputs compares the outputs emitted up to rec's count with the
// hashes rec logs.
func (p *Player) checkOutputs(rec eventlog.Record) error {
	if err := RunTo(p.e, rec.Instret); err != nil {
		return err
	}
	sums, err := eventlog.DecodeOutputs(rec.Data)
	if err != nil {
		return fmt.Errorf("replay: record at %d: %w", rec.Instret, err)
	}
	if bad := p.out.check(sums); bad != nil {
		return &Divergence{Instret: rec.Instret, What: "output mismatch", Parts: bad}
	}
	return nil
}

// RunTo runs e to exactly instret, or returns a *Divergence saying why it
// could not.
func RunTo(e vm.Engine, instret uint64) error {
	for e.Instret() < instret {
		before := e.Instret()
		reason := e.Run(instret)
		if reason == vm.StopLimit {
			continue
		}
		if e.Instret() < instret {
			return &Divergence{Instret: e.Instret(), What: fmt.Sprintf("the guest stopped (%v) before instruction %d, where the log continues", reason, instret)}
		}
		if e.Instret() == before && reason == vm.StopIdle {
			return &Divergence{Instret: before, What: "the guest is idle where the log says it ran"}
		}
	}
	if e.Instret() > instret {
		return &Divergence{Instret: e.Instret(), What: fmt.Sprintf("the guest ran past instruction %d", instret)}
	}
	return nil
}

// ErrNotReplayable is returned when the log's header does not match the
// machine about to replay it.
var ErrNotReplayable = errors.New("log does not match this machine")
