package machinelog

import (
	"fmt"
	"os"
	"time"

	"ftvm/replay"
	"ftvm/replay/eventlog"
	"ftvm/vm"
)

// FlushEvery bounds how long a logged record waits in memory while the
// guest computes with no input. ShowEvery bounds how long what a computing
// guest prints is held before it is shown (an idle guest's, or one that
// just took an input, is shown at once).
const (
	FlushEvery = 100 * time.Millisecond
	ShowEvery  = 50 * time.Millisecond
)

// File is a recording written to a file as the run goes (ftvm record), so
// that it survives its recorder. After every slice that carried an input
// (console bytes, a frame, a time advance) or ended idle, and otherwise at
// least every FlushEvery, the file receives what was logged. What the
// guest printed is shown only after the file has received a Reached
// record at the count it was printed by (the output rule, for a
// recording): a recorder killed with SIGKILL leaves a log that replays at
// least as far as what its user saw. The run loop runs Engine and calls
// After after every slice.
type File struct {
	f   *os.File
	w   *eventlog.Writer
	rec *replay.Recorder
	eng noting

	syncedFrames int64  // frames in the file
	syncedAt     uint64 // the count of the last Reached record
	syncedTime   time.Time
	shownTime    time.Time
	showEvery    time.Duration
}

// noting is the recorder as the run loop sees it: it notes that an input
// (console bytes, a frame, a time advance) was logged.
type noting struct {
	*replay.Recorder
	delivered *bool
}

func (n noting) Deliver(e vm.Event) (int, error) {
	*n.delivered = true
	return n.Recorder.Deliver(e)
}

// Create starts a recording of e in a new file at path, with header hdr
// and a state digest every digestEvery instructions (0: only at the end).
func Create(path string, hdr eventlog.Header, e vm.Engine, digestEvery uint64) (*File, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	w, err := eventlog.NewWriter(f, hdr)
	if err != nil {
		f.Close()
		return nil, err
	}
	lf := &File{f: f, w: w, rec: replay.NewRecorder(e, w, digestEvery), syncedAt: e.Instret(), showEvery: ShowEvery}
	lf.eng = noting{lf.rec, new(bool)}
	// The header and the first digest go out at once: a recorder that
	// dies before its first slice still leaves a log naming its machine.
	if err := lf.sync(false); err != nil {
		f.Close()
		return nil, err
	}
	return lf, nil
}

// Recorder is the recorder writing the log (to set output hashes and
// snapshots on).
func (f *File) Recorder() *replay.Recorder { return f.rec }

// Engine is what the run loop runs: the recorder.
func (f *File) Engine() vm.Engine { return f.eng }

// After is the flush policy, for the run loop's After hook: r is how the
// slice ended, printed says the guest printed something not shown yet. It
// reports whether that may be shown now: at once when the guest idles or
// took an input (typing and its echo stay interactive), otherwise at most
// every ShowEvery, so that a guest printing in every slice does not cost
// a Reached record and a write per slice.
func (f *File) After(r vm.StopReason, printed bool) (show bool, err error) {
	if err := f.rec.Err(); err != nil {
		return false, fmt.Errorf("writing the log: %w", err)
	}
	now := time.Now()
	show = printed && (r == vm.StopIdle || *f.eng.delivered || now.Sub(f.shownTime) >= f.showEvery)
	logged := f.w.Frames() != f.syncedFrames
	if show || logged && (*f.eng.delivered || r == vm.StopIdle || now.Sub(f.syncedTime) >= FlushEvery) {
		if err := f.sync(show); err != nil {
			return false, err
		}
	}
	if show {
		f.shownTime = now
	}
	return show, nil
}

// sync hands the log to the file, after a Reached record at the current
// count when reached is set.
func (f *File) sync(reached bool) error {
	if n := f.rec.Instret(); reached && n != f.syncedAt {
		if err := f.w.Append(eventlog.ReachedAt(n)); err != nil {
			return fmt.Errorf("writing the log: %w", err)
		}
		f.syncedAt = n
	}
	if err := f.w.Flush(); err != nil {
		return fmt.Errorf("writing the log: %w", err)
	}
	*f.eng.delivered = false
	f.syncedFrames, f.syncedTime = f.w.Frames(), time.Now()
	return nil
}

// Close ends the log with an End record for reason (and the final digest
// and output hashes) and closes the file.
func (f *File) Close(reason vm.StopReason) error {
	err := f.rec.Close(reason)
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing the log: %w", err)
	}
	return nil
}

// Frames and Bytes are the size of the log so far.
func (f *File) Frames() int64 { return f.w.Frames() }
func (f *File) Bytes() int64  { return f.w.Offset() }
