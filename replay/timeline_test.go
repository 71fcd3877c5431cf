package replay

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"ftvm/internal/testsupport"
	"ftvm/machine"
	"ftvm/replay/eventlog"
	"ftvm/vm"
)

// recordWithOutputs records the console script of drive with output
// hashes logged.
func recordWithOutputs(t *testing.T) (log []byte, console string, final vm.Digest) {
	var con bytes.Buffer
	out := NewOutputs()
	k, i := testsupport.DefaultGuest(t)
	m, err := machine.New(machine.Config{Kernel: k, Initrd: i, Cmdline: "console=ttyS0",
		Outputs: machine.Outputs{Console: func(_ uint64, b []byte) { con.Write(b); out.Console(b) }}})
	if err != nil {
		t.Fatal(err)
	}
	m.SetIdleSkip(false)
	var buf bytes.Buffer
	w, err := eventlog.NewWriter(&buf, eventlog.Header{Engine: "test"})
	if err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder(m, w, 20e6)
	rec.SetOutputs(out)
	if err := rec.Close(drive(t, rec)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), con.String(), m.Digest()
}

// newPlayer boots a machine for log and returns a player on it whose
// console output goes to con, once (not again when re-executing).
func newPlayer(t *testing.T, log []byte, every uint64, con *bytes.Buffer) (*Timeline, *machine.Machine) {
	t.Helper()
	out := NewOutputs()
	var p *Timeline
	k, i := testsupport.DefaultGuest(t)
	m, err := machine.New(machine.Config{Kernel: k, Initrd: i, Cmdline: "console=ttyS0",
		Outputs: machine.Outputs{Console: func(_ uint64, b []byte) {
			out.Console(b)
			if !p.Replaying() {
				con.Write(b)
			}
		}}})
	if err != nil {
		t.Fatal(err)
	}
	rd, err := eventlog.NewReader(bytes.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if p, err = NewTimeline(m, rd, TimelineOptions{CheckpointEvery: every, MaxCheckpoints: 6, Outputs: out}); err != nil {
		t.Fatal(err)
	}
	return p, m
}

// TestTimelineBackAndForth replays a recorded console session forward,
// noting digests along the way, then goes back to those counts in a
// scrambled order (and steps back one instruction at a time): every
// state must be the one the forward replay had there. Going forward to
// the end afterwards still checks every digest and output hash of the
// log, and the console shows each line once.
func TestTimelineBackAndForth(t *testing.T) {
	log, console, final := recordWithOutputs(t)
	var con bytes.Buffer
	p, m := newPlayer(t, log, 8e6, &con)
	marks := []uint64{1, 9_999_999, 23_456_789, 40e6, 61_000_003, 77_777_777, 90e6 + 5}
	digests := map[uint64][32]byte{}
	for _, n := range marks {
		for _, at := range []uint64{n - 1, n} {
			if err := p.Seek(at); err != nil || m.Instret() != at {
				t.Fatalf("seek forward to %d: %v (at %d)", at, err, m.Instret())
			}
			digests[at] = m.Digest().Sum
		}
	}
	if p.Checkpoints() > 6+maxNear {
		t.Errorf("%d checkpoints kept, want at most %d", p.Checkpoints(), 6+maxNear)
	}
	for _, i := range []int{4, 1, 6, 0, 5, 2, 3, 3} {
		n := marks[i]
		if err := p.Seek(n); err != nil || m.Instret() != n {
			t.Fatalf("seek to %d: %v (at %d)", n, err, m.Instret())
		}
		if m.Digest().Sum != digests[n] {
			t.Fatalf("state at %d after going back differs from the forward replay's", n)
		}
		if ok, err := p.StepBack(); !ok || err != nil || m.Instret() != n-1 || m.Digest().Sum != digests[n-1] {
			t.Fatalf("step back from %d: %v %v, at %d, digest equal %v", n, ok, err, m.Instret(), m.Digest().Sum == digests[n-1])
		}
	}
	if r := p.Run(^uint64(0)); r != vm.StopPowerOff || !p.Ended() || p.Err() != nil {
		t.Fatalf("run to the end: %v, ended %v, err %v", r, p.Ended(), p.Err())
	}
	res := p.Result()
	if m.Digest().Sum != final.Sum || res.Reason != "poweroff" || res.Digests < 5 {
		t.Errorf("end of replay: %+v, digest equal %v", res, m.Digest().Sum == final.Sum)
	}
	if con.String() != console {
		t.Errorf("console output of the replay (with going back) differs from the recording:\n%q\nwant\n%q", con.String(), console)
	}
	// At the end the history is still there.
	if err := p.Seek(marks[2]); err != nil || m.Digest().Sum != digests[marks[2]] {
		t.Errorf("seek back from the end to %d: %v", marks[2], err)
	}
}

// TestTimelineRunBack runs back to the latest earlier point where a
// condition on the state held, across checkpoint intervals, and to the
// start when there is none.
func TestTimelineRunBack(t *testing.T) {
	log, _, _ := recordWithOutputs(t)
	var con bytes.Buffer
	p, m := newPlayer(t, log, 4e6, &con)
	const period = 7_000_003
	stop := func() bool { n := m.Instret(); return n >= period && n%period == 0 && n < 30e6 }
	p.Seek(41e6)
	for _, want := range []uint64{4 * period, 3 * period, 2 * period, period} {
		ok, err := p.RunBack(stop, nil)
		if !ok || err != nil || m.Instret() != want {
			t.Fatalf("run back: %v %v, at %d, want %d", ok, err, m.Instret(), want)
		}
	}
	if ok, err := p.RunBack(stop, nil); ok || err != nil || m.Instret() != p.Start() {
		t.Fatalf("run back past the first hit: %v %v, at %d, want the start", ok, err, m.Instret())
	}
	if ok, _ := p.StepBack(); ok {
		t.Errorf("stepped back from the start")
	}
}

// TestTimelineOutputMismatch: a replay whose console output differs from
// the recording's is caught by the logged output hashes even though the
// machine state is the same.
func TestTimelineOutputMismatch(t *testing.T) {
	log, _, _ := recordWithOutputs(t)
	out := NewOutputs()
	k, i := testsupport.DefaultGuest(t)
	m, _ := machine.New(machine.Config{Kernel: k, Initrd: i, Cmdline: "console=ttyS0",
		Outputs: machine.Outputs{Console: func(at uint64, b []byte) {
			if at > 30e6 {
				b = bytes.ToUpper(b) // what the host saw is not what the guest wrote
			}
			out.Console(b)
		}}})
	rd, _ := eventlog.NewReader(bytes.NewReader(log))
	p, err := NewTimeline(m, rd, TimelineOptions{Outputs: out})
	if err != nil {
		t.Fatal(err)
	}
	p.Run(^uint64(0))
	var d *Divergence
	if !errors.As(p.Err(), &d) || d.What != "output mismatch" || !strings.Contains(d.Parts[0], "console") {
		t.Fatalf("err = %v, want an output mismatch naming the console", p.Err())
	}
	t.Log(d)
}

// TestTimelineCutLog: a log cut anywhere (its recorder killed) replays up
// to its last complete record, checking everything before it, and says it
// ended early; the state there is the one the whole log's replay has at
// that count, and going back still works.
func TestTimelineCutLog(t *testing.T) {
	log, console, _ := recordWithOutputs(t)
	var con bytes.Buffer
	whole, wm := newPlayer(t, log, 8e6, &con)
	for _, frac := range []int{70} {
		cut := log[:len(log)*frac/100]
		// The last complete record, read directly.
		rd, err := eventlog.NewReader(bytes.NewReader(cut))
		if err != nil {
			t.Fatal(err)
		}
		var last uint64
		for {
			rec, err := rd.Next()
			if err != nil {
				if !errors.Is(err, eventlog.ErrTruncated) {
					t.Fatalf("cut at %d%%: reading: %v, want a truncation", frac, err)
				}
				break
			}
			last = rec.Instret
		}
		var cc bytes.Buffer
		p, m := newPlayer(t, cut, 8e6, &cc)
		if r := p.Run(^uint64(0)); r != vm.StopLimit || p.Err() != nil || !p.Ended() || p.Cut() == nil || !errors.Is(p.Cut(), eventlog.ErrTruncated) {
			t.Fatalf("cut at %d%%: Run = %v, Err %v, Ended %v, Cut %v; want the end of a cut log", frac, r, p.Err(), p.Ended(), p.Cut())
		}
		if m.Instret() != last {
			t.Fatalf("cut at %d%%: replay ended at %d, the last complete record is at %d", frac, m.Instret(), last)
		}
		if !strings.HasPrefix(console, cc.String()) {
			t.Fatalf("cut at %d%%: console %q is not a prefix of the recording's", frac, cc.String())
		}
		if err := whole.Seek(last); err != nil {
			t.Fatal(err)
		}
		if m.Digest().Sum != wm.Digest().Sum {
			t.Fatalf("cut at %d%%: the state at %d differs from the whole log's replay", frac, last)
		}
		if err := p.Seek(last / 2); err != nil || m.Instret() != max(last/2, p.Start()) {
			t.Fatalf("cut at %d%%: going back to %d: %v (at %d)", frac, last/2, err, m.Instret())
		}
		if r := p.Run(^uint64(0)); r != vm.StopLimit || p.Err() != nil || m.Instret() != last {
			t.Fatalf("cut at %d%%: forward again: %v, %v, at %d", frac, r, p.Err(), m.Instret())
		}
	}
}
