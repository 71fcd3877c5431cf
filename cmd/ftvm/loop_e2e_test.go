package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ftvm/internal/testsupport"
)

// crossCompile assembles a bare-metal program from machine/testdata.
func crossCompile(t *testing.T, src string, defs ...string) string {
	t.Helper()
	var flags []string
	for _, d := range defs {
		flags = append(flags, "-D"+d)
	}
	return testsupport.BareMetal(t, "../../machine/testdata/"+src, flags...)
}

// runEnds runs ftvm with argv and waits for it to exit on its own within
// limit; stdin stays open (as a terminal would) unless closeStdin. It
// returns the exit status and the output.
func runEnds(t *testing.T, limit time.Duration, closeStdin bool, argv ...string) (int, string) {
	t.Helper()
	c := startVM(t, argv...)
	if closeStdin {
		c.stdin.Close()
	}
	select {
	case <-c.done:
	case <-time.After(limit):
		t.Fatalf("%v did not end within %v (spinning or waiting forever); output:\n%s", argv[1:], limit, c.output())
	}
	return c.cmd.ProcessState.ExitCode(), c.output()
}

// TestRunEndsLoudly: a guest that can never run again ends the run with a
// message and a non-zero exit status, whether or not the console is open:
// a program whose trap vector faults (it used to spin at 100% CPU), one
// waiting for an interrupt with every interrupt disabled, one waiting for
// an external interrupt nothing can raise, and a kernel cut to 100 KB
// (which used to idle and exit 0 without a word, or wait forever on a
// terminal).
func TestRunEndsLoudly(t *testing.T) {
	ftvm, _ := buildBinaries(t)
	lockup := "the guest locked up"
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"trap loop", []string{crossCompile(t, "lockup.S")}, lockup},
		{"wfi, interrupts disabled", []string{crossCompile(t, "wfi.S")}, lockup},
		{"wfi, nothing to raise the interrupt", []string{crossCompile(t, "wfi.S", "MIE=0x800")}, "nothing can raise"},
		{"wfi, the timer due but masked", []string{crossCompile(t, "wfi_masked.S")}, "nothing can raise"},
	}
	kernel, _ := testsupport.GuestFiles(t)
	k, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.Image")
	if err := os.WriteFile(cut, k[:100<<10], 0o644); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, struct {
		name string
		args []string
		want string
	}{"kernel cut to 100 KB", []string{"-kernel", cut}, lockup})
	for _, c := range cases {
		for _, closed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stdin closed %v", c.name, closed), func(t *testing.T) {
				code, out := runEnds(t, 30*time.Second, closed, append([]string{ftvm, "run"}, c.args...)...)
				if code == 0 || !strings.Contains(out, c.want) {
					t.Fatalf("exit status %d, want non-zero with %q; output:\n%s", code, c.want, out)
				}
			})
		}
		// ftvm record runs the same loop, and its log replays to the
		// same end.
		t.Run(c.name+"/record", func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "run.log")
			code, out := runEnds(t, 30*time.Second, true, append([]string{ftvm, "record", "-o", log}, c.args...)...)
			if code == 0 || !strings.Contains(out, c.want) {
				t.Fatalf("record: exit status %d, want non-zero with %q; output:\n%s", code, c.want, out)
			}
			args := []string{"replay", log}
			if c.args[0] == "-kernel" {
				args = []string{"replay", "-kernel", c.args[1], log}
			} else {
				args = []string{"replay", "-elf", c.args[0], log}
			}
			rep, err := exec.Command(ftvm, args...).CombinedOutput()
			if err != nil || !strings.Contains(string(rep), "matches the recording") || grab(string(rep), "state digest ") != grab(out, "state digest ") {
				t.Fatalf("replay of the recording: %v\n%s\nrecording:\n%s", err, rep, out)
			}
		})
	}
}
