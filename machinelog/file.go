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
// guest computes with no input and prints nothing.
const FlushEvery = 100 * time.Millisecond

// File is a recording written to a file as the run goes (ftvm record), so
// that it survives its recorder. After every slice that carried an input
// (console bytes, a frame, a time advance), ended idle, or printed
// something, and otherwise at least every FlushEvery, the file receives
// what was logged and a Reached record at the current count; what the
// guest printed is shown only after that (the output rule, for a
// recording). A recorder killed with SIGKILL thus leaves a log that
// replays at least as far as what its user saw. The run loop runs Engine
// and calls After after every slice.
type File struct {
	f   *os.File
	w   *eventlog.Writer
	rec *replay.Recorder
	eng noting

	syncedFrames int64  // frames in the file
	syncedAt     uint64 // the count of the last Reached record
	syncedTime   time.Time
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
	lf := &File{f: f, w: w, rec: replay.NewRecorder(e, w, digestEvery), syncedAt: e.Instret()}
	lf.eng = noting{lf.rec, new(bool)}
	// The header and the first digest go out at once: a recorder that
	// dies before its first slice still leaves a log naming its machine.
	if err := lf.sync(); err != nil {
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
// slice ended, show says the caller is about to show what the guest
// printed in it.
func (f *File) After(r vm.StopReason, show bool) error {
	if err := f.rec.Err(); err != nil {
		return fmt.Errorf("writing the log: %w", err)
	}
	logged := f.w.Frames() != f.syncedFrames
	if show || logged && (*f.eng.delivered || r == vm.StopIdle || time.Since(f.syncedTime) >= FlushEvery) {
		return f.sync()
	}
	return nil
}

// sync marks how far the run got and hands the log to the file.
func (f *File) sync() error {
	if n := f.rec.Instret(); n != f.syncedAt {
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
