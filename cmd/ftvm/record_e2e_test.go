package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftvm/internal/testsupport"
)

// TestRecordSignals: SIGINT and SIGTERM end a real `ftvm record` cleanly:
// exit status 0, and a complete log whose replay reproduces the console
// and the final digest.
func TestRecordSignals(t *testing.T) {
	testsupport.GuestFiles(t)
	ftvm, _ := buildBinaries(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "run.log")
			vm := startVM(t, ftvm, "record", "-o", log)
			vm.waitFor(t, "console ready", 60*time.Second)
			fmt.Fprintln(vm.stdin, "echo before-the-signal")
			vm.waitFor(t, "= before-the-signal", 30*time.Second)
			vm.cmd.Process.Signal(sig)
			vm.wait(t, 30*time.Second)
			out := vm.output()
			if code := vm.cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(out, "stopped by a signal; the log is complete") {
				t.Fatalf("exit status %d after %v; output:\n%s", code, sig, out)
			}
			digest := grab(out, "state digest ")
			rep, err := exec.Command(ftvm, "replay", log).CombinedOutput()
			if err != nil || !strings.Contains(string(rep), "matches the recording") || grab(string(rep), "state digest ") != digest ||
				!strings.Contains(string(rep), "= before-the-signal") {
				t.Fatalf("replay of the log of a recording stopped by %v: %v (want digest %s)\n%s", sig, err, digest, rep)
			}
		})
	}
}

// TestRecordKilled: the log of a real `ftvm record` killed with SIGKILL
// replays up to its last complete record, the input typed before the kill
// and the guest's answer to it included, and says it ended early.
func TestRecordKilled(t *testing.T) {
	testsupport.GuestFiles(t)
	ftvm, _ := buildBinaries(t)
	log := filepath.Join(t.TempDir(), "run.log")
	vm := startVM(t, ftvm, "record", "-o", log)
	vm.waitFor(t, "console ready", 60*time.Second)
	fmt.Fprintln(vm.stdin, "echo before-the-kill")
	vm.waitFor(t, "= before-the-kill", 30*time.Second)
	vm.cmd.Process.Kill()
	vm.wait(t, 30*time.Second)
	rep, err := exec.Command(ftvm, "replay", log).CombinedOutput()
	if err != nil || !strings.Contains(string(rep), "the log ends early") || !strings.Contains(string(rep), "= before-the-kill") {
		t.Fatalf("replay of a killed recorder's log: %v\n%s", err, rep)
	}
}
