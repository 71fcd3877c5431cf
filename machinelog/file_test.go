package machinelog

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"ftvm/internal/fakevm"
	"ftvm/replay/eventlog"
	"ftvm/vm"
)

// onDisk reads the records the file holds now (the log is not closed: it
// ends early).
func onDisk(t *testing.T, path string) []eventlog.Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := eventlog.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the file's header: %v", err)
	}
	var recs []eventlog.Record
	for {
		rec, err := rd.Next()
		if err != nil {
			if !errors.Is(err, eventlog.ErrTruncated) {
				t.Fatalf("reading the file: %v, want it to end early", err)
			}
			return recs
		}
		recs = append(recs, rec)
	}
}

// TestFileFlushPolicy: the header is in the file at once; an input is in
// it after the slice that took it; before output is shown, a Reached
// record marks how far the run got; Close completes the log.
func TestFileFlushPolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.log")
	e := fakevm.New(4, nil, vm.Outputs{})
	f, err := Create(path, eventlog.Header{Engine: "fake"}, e, 0)
	if err != nil {
		t.Fatal(err)
	}
	if recs := onDisk(t, path); len(recs) != 0 {
		t.Fatalf("a new log holds %d records", len(recs))
	}

	eng := f.Engine()
	eng.Run(1000)
	if _, err := eng.Deliver(vm.ConsoleInput{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	r := eng.Run(2000)
	if show, err := f.After(r, false); err != nil || show {
		t.Fatal(show, err)
	}
	recs := onDisk(t, path)
	if len(recs) != 1 || recs[0].Kind != eventlog.KindConsoleInput || recs[0].Instret != 1000 {
		t.Fatalf("after the slice that took an input the file holds %+v, want that input", recs)
	}

	// Output after an input is shown at once, behind a Reached record.
	if _, err := eng.Deliver(vm.ConsoleInput{Data: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	r = eng.Run(5000)
	if show, err := f.After(r, true); err != nil || !show {
		t.Fatalf("output after an input: show %v, %v", show, err)
	}
	recs = onDisk(t, path)
	if last := recs[len(recs)-1]; last.Kind != eventlog.KindReached || last.Instret != 5000 {
		t.Fatalf("before output is shown the file ends with %+v, want Reached at 5000", last)
	}

	// More output from a computing guest soon after: held.
	f.showEvery = time.Hour
	r = eng.Run(6000)
	if show, err := f.After(r, true); err != nil || show {
		t.Fatalf("output of a computing guest soon after the last shown: show %v, %v", show, err)
	}
	f.showEvery = 0
	r = eng.Run(7000)
	if show, err := f.After(r, true); err != nil || !show {
		t.Fatalf("output held for %v: show %v, %v", ShowEvery, show, err)
	}
	recs = onDisk(t, path)
	if last := recs[len(recs)-1]; last.Kind != eventlog.KindReached || last.Instret != 7000 {
		t.Fatalf("before output is shown the file ends with %+v, want Reached at 7000", last)
	}

	if err := f.Close(vm.StopPowerOff); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	rd, _ := eventlog.NewReader(bytes.NewReader(b))
	var end eventlog.Record
	for {
		rec, err := rd.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("the closed log: %v", err)
			}
			break
		}
		end = rec
	}
	if end.Kind != eventlog.KindEnd || end.Reason != "poweroff" {
		t.Fatalf("the closed log ends with %+v", end)
	}
}
