package replay

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"ftvm/internal/testsupport"
	"ftvm/machine"
	"ftvm/replay/eventlog"
	"ftvm/vm"
)

// newMachine boots the default guest in serve mode, collecting its console.
func newMachine(t *testing.T, console *bytes.Buffer) *machine.Machine {
	return newMachineExec(t, console, "", 1)
}

// newMachineExec is newMachine on a given execution engine with harts
// harts (interleaved).
func newMachineExec(t *testing.T, console *bytes.Buffer, exec string, harts int) *machine.Machine {
	k, i := testsupport.DefaultGuest(t)
	m, err := machine.New(machine.Config{Kernel: k, Initrd: i, Cmdline: "console=ttyS0", Exec: exec, Harts: harts,
		Outputs: machine.Outputs{Console: func(_ uint64, b []byte) { console.Write(b) }}})
	if err != nil {
		t.Fatal(err)
	}
	m.SetIdleSkip(false)
	return m
}

// drive plays a fixed script of host inputs against e, the way the run
// loop would: each console command goes in when the guest has run past a
// given instruction count or waits for input, and guest time jumps to the
// guest's timer whenever it idles with one armed.
func drive(t *testing.T, e vm.Engine) vm.StopReason {
	script := []struct {
		at    uint64
		input string
	}{{60e6, "echo first\n"}, {70e6, "uptime\n"}, {90e6, "echo second\n"}, {120e6, "poweroff\n"}}
	// runUntil runs to instret at, or until the guest waits with no timer.
	runUntil := func(at uint64) vm.StopReason {
		for e.Instret() < at {
			r := e.Run(at)
			if r == vm.StopIdle {
				if e.Deadline() == ^uint64(0) {
					return r
				}
				e.Deliver(vm.AdvanceTime{To: e.Deadline()})
				continue
			}
			if r != vm.StopLimit {
				return r
			}
		}
		return vm.StopLimit
	}
	for _, s := range script {
		if r := runUntil(s.at); r != vm.StopLimit && r != vm.StopIdle {
			t.Fatalf("guest stopped early: %v", r)
		}
		if n, _ := e.Deliver(vm.ConsoleInput{Data: []byte(s.input)}); n != len(s.input) {
			t.Fatalf("console took %d of %d bytes", n, len(s.input))
		}
	}
	r := runUntil(e.Instret() + 1e9)
	if r != vm.StopPowerOff {
		t.Fatalf("the guest did not power off: %v", r)
	}
	return r
}

func record(t *testing.T) (log []byte, console string, final vm.Digest) {
	return recordExec(t, "", 1)
}

// recordExec records the scripted run on the given execution engine with
// harts harts.
func recordExec(t *testing.T, exec string, harts int) (log []byte, console string, final vm.Digest) {
	var con bytes.Buffer
	m := newMachineExec(t, &con, exec, harts)
	var buf bytes.Buffer
	w, err := eventlog.NewWriter(&buf, eventlog.Header{Engine: "test"})
	if err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder(m, w, 20e6)
	reason := drive(t, rec)
	if err := rec.Close(reason); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(con.Bytes(), []byte("= second")) {
		t.Fatalf("the console commands did not run:\n%s", con.String())
	}
	return buf.Bytes(), con.String(), m.Digest()
}

func TestRecordReplay(t *testing.T) {
	log, console, final := record(t)
	var con bytes.Buffer
	m := newMachine(t, &con)
	rd, err := eventlog.NewReader(bytes.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Replay(m, rd)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reason != "poweroff" || res.Digests < 3 || res.Events < 4 {
		t.Errorf("replay result %+v: want poweroff, several digests and events", res)
	}
	if con.String() != console {
		t.Errorf("replayed console output differs from the recording")
	}
	if m.Digest().Sum != final.Sum {
		t.Errorf("final digest differs")
	}
	t.Logf("%d bytes of log for %d instructions: %+v", len(log), res.Instret, res)
}

// TestRecordReplayAcrossEngines records the scripted run with one execution
// engine and replays it with the other, both ways, on one hart and on two
// interleaved ones: every digest in the log, the console and the final
// digest must match, since the engines differ in speed only.
func TestRecordReplayAcrossEngines(t *testing.T) {
	if machine.DefaultExec() != machine.ExecJIT {
		t.Skip("the translator needs linux on amd64")
	}
	for _, harts := range []int{1, 2} {
		for _, c := range []struct{ rec, rep string }{{machine.ExecInterp, machine.ExecJIT}, {machine.ExecJIT, machine.ExecInterp}} {
			t.Run(fmt.Sprintf("harts=%d/%s-to-%s", harts, c.rec, c.rep), func(t *testing.T) {
				log, console, final := recordExec(t, c.rec, harts)
				var con bytes.Buffer
				m := newMachineExec(t, &con, c.rep, harts)
				rd, err := eventlog.NewReader(bytes.NewReader(log))
				if err != nil {
					t.Fatal(err)
				}
				res, err := Replay(m, rd)
				if err != nil {
					t.Fatal(err)
				}
				if res.Reason != "poweroff" || res.Digests < 3 {
					t.Errorf("replay result %+v: want poweroff and several digests", res)
				}
				if con.String() != console {
					t.Errorf("replayed console output differs from the recording")
				}
				if m.Digest().Sum != final.Sum {
					t.Errorf("final digest differs")
				}
				if want := fmt.Sprintf("smp: Brought up 1 node, %d CPU", harts); !strings.Contains(console, want) {
					t.Errorf("console lacks %q", want)
				}
				t.Logf("recorded with %s, replayed with %s: %d instructions, %d digests checked", c.rec, c.rep, res.Instret, res.Digests)
			})
		}
	}
}

// perturbed injects one input the log does not have: the nondeterminism a
// replay must detect.
type perturbed struct {
	vm.Engine
	at   uint64
	done bool
}

func (p *perturbed) Run(until uint64) vm.StopReason {
	if !p.done && until > p.at {
		if r := p.Engine.Run(p.at); r != vm.StopLimit {
			return r
		}
		p.Engine.Deliver(vm.ConsoleInput{Data: []byte("x")})
		p.done = true
	}
	return p.Engine.Run(until)
}

func TestDivergenceDetected(t *testing.T) {
	log, _, _ := record(t)
	var con bytes.Buffer
	m := newMachine(t, &con)
	rd, _ := eventlog.NewReader(bytes.NewReader(log))
	_, err := Replay(&perturbed{Engine: m, at: 65e6}, rd)
	var d *Divergence
	if !errors.As(err, &d) {
		t.Fatalf("replay with an injected input: err = %v, want a divergence", err)
	}
	// The byte lands in the UART at 65 M. The replay must notice by the
	// first digest after it (80 M) at the latest: either that digest
	// differs, or the guest's path differs first (it idles, or stops, where
	// the log says otherwise).
	if d.Instret < 65e6 || d.Instret > 80e6 {
		t.Errorf("divergence %v: want it between the injection and the next digest", d)
	}
	if d.Instret == 80e6 && !slices.Contains(d.Parts, "devices") && !slices.Contains(d.Parts, "ram") {
		t.Errorf("digest mismatch %v does not name the state that differs", d)
	}
	t.Log(d)
}

func TestDamagedLog(t *testing.T) {
	log, _, _ := record(t)
	damaged := append([]byte(nil), log...)
	damaged[len(damaged)/2] ^= 0x40
	var con bytes.Buffer
	m := newMachine(t, &con)
	rd, err := eventlog.NewReader(bytes.NewReader(damaged))
	if err == nil {
		_, err = Replay(m, rd)
	}
	var fe *eventlog.FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("damaged log: err = %v, want a format error naming the frame", err)
	}
	t.Log(err)
}

// TestDigestNamesDivergentState injects an input just before a digest
// point, so the guest's path has no time to part from the log's: the
// digest itself must catch it and say which state differs.
func TestDigestNamesDivergentState(t *testing.T) {
	log, _, _ := record(t)
	var con bytes.Buffer
	m := newMachine(t, &con)
	rd, _ := eventlog.NewReader(bytes.NewReader(log))
	_, err := Replay(&perturbed{Engine: m, at: 80e6 - 500}, rd)
	var d *Divergence
	if !errors.As(err, &d) {
		t.Fatalf("err = %v, want a divergence", err)
	}
	if d.Instret != 80e6 || len(d.Parts) < 2 {
		t.Fatalf("divergence %v: want a digest mismatch at 80000000 naming the differing state", d)
	}
	t.Log(d)
}
