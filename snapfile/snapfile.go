// Package snapfile keeps machine snapshots in files on the host: saved
// atomically (a reader never sees half a snapshot), named by instruction
// count in a directory (a recording's periodic snapshots), restored, and
// saved on a signal while a run loop drives the machine. The format is
// package snapshot's, written by machine.Save.
package snapfile

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"

	"ftvm/machine"
	"ftvm/replay/eventlog"
)

// Save writes m's snapshot to path, replacing it atomically. m must be
// between two Run calls.
func Save(m *machine.Machine, path string) error {
	_, err := save(m, path)
	return err
}

// save writes m to path through a temporary file and returns the
// snapshot's SHA-256.
func save(m *machine.Machine, path string) ([32]byte, error) {
	var sum [32]byte
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return sum, err
	}
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	err = m.Save(w)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return sum, err
	}
	h.Sum(sum[:0])
	return sum, nil
}

// Name is the file name of the snapshot taken at instruction n in a
// directory of snapshots.
func Name(n uint64) string { return fmt.Sprintf("ftvm-%012d.snap", n) }

// SaveIn saves m in dir under Name(its instruction count) and returns what
// an event log records of it.
func SaveIn(m *machine.Machine, dir string) (eventlog.SnapshotInfo, error) {
	info := eventlog.SnapshotInfo{Name: Name(m.Instret())}
	sum, err := save(m, filepath.Join(dir, info.Name))
	info.SHA256 = sum
	return info, err
}

// Restore starts a machine from the snapshot in path. opts.Disk, when
// set, receives the snapshot's disk contents (it is overwritten).
func Restore(path string, opts machine.RestoreOptions) (*machine.Machine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := machine.Restore(bufio.NewReaderSize(f, 1<<20), opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// OnSignal makes each sig save the machine m returns to path. It returns
// a run loop's Wake and Tick hooks (the loop saves between two slices, so
// the snapshot is of a machine between instructions, with every frame it
// transmitted already sent and none half-delivered) and a function that
// stops listening. report is told of each snapshot taken or failed; a
// failure does not end the run.
func OnSignal(m func() *machine.Machine, path string, sig os.Signal, report func(instret uint64, err error)) (wake <-chan struct{}, tick func() error, stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, sig)
	w := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-c:
				select {
				case w <- struct{}{}:
				default:
				}
			case <-done:
				return
			}
		}
	}()
	tick = func() error {
		mm := m()
		report(mm.Instret(), Save(mm, path))
		return nil
	}
	return w, tick, func() {
		signal.Stop(c)
		close(done)
	}
}
