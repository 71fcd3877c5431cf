package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"ftvm/internal/testsupport"
)

// waitOutput waits until b contains s.
func waitOutput(t *testing.T, b *syncBuffer, s string, timeout time.Duration, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(b.String(), s) {
		select {
		case err := <-done:
			t.Fatalf("ftvm exited (%v) before printing %q:\n%s", err, s, b.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %v:\n%s", s, timeout, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// outputLines returns ftvm's "output NAME COUNT HASH" lines, sorted.
func outputLines(s string) []string {
	l := regexp.MustCompile(`ftvm: output \w+ \d+ [0-9a-f]+`).FindAllString(s, -1)
	sort.Strings(l)
	return l
}

// TestRecordReplayUnderLoad records the real Linux guest, with two harts,
// serving the key-value workload from a client on the host side of a TAP
// (in a private network namespace), with console commands and its disk log
// being written, while snapshots are written every 20 M instructions.
// Then it replays the log from the start, from the first snapshot and from
// a middle one: each replay must show the same console output (a suffix,
// from a snapshot), leave the same disk, transmit the same frames (the
// logged output hashes, which the replay checks itself and prints) and
// end at the same instruction count with the same state digest.
func TestRecordReplayUnderLoad(t *testing.T) {
	testsupport.GuestFiles(t)
	ns := netns(t)
	ftvm, workload := buildBinaries(t)
	dir := t.TempDir()
	orig, disk, log, snaps := filepath.Join(dir, "orig.img"), filepath.Join(dir, "disk.img"), filepath.Join(dir, "run.log"), filepath.Join(dir, "snaps")
	os.WriteFile(orig, make([]byte, 8<<20), 0o644)
	os.WriteFile(disk, make([]byte, 8<<20), 0o644)

	var console, msgs syncBuffer
	rec := exec.Command("ip", "netns", "exec", ns, ftvm, "record", "-smp", "2", "-o", log, "-net", "tap:tap0", "-disk", disk,
		"-digest-every", "10000000", "-snapshot-every", "20000000", "-snapshot-dir", snaps)
	rec.Stdout, rec.Stderr = &console, &msgs
	stdin, _ := rec.StdinPipe()
	if err := rec.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rec.Wait() }()
	t.Cleanup(func() { rec.Process.Kill() })
	waitOutput(t, &console, "listening on", 60*time.Second, done)
	kv := exec.Command("ip", "netns", "exec", ns, workload, "kv", "-addr", "10.0.2.15:6379", "-n", "300")
	if b, err := kv.CombinedOutput(); err != nil {
		t.Fatalf("workload kv: %v\n%s", err, b)
	} else {
		t.Logf("client: %s", strings.TrimSpace(string(b)))
	}
	fmt.Fprintln(stdin, "echo after-the-load")
	waitOutput(t, &console, "= after-the-load", 30*time.Second, done)
	fmt.Fprintln(stdin, "kv-stats")
	fmt.Fprintln(stdin, "cpus")
	fmt.Fprintln(stdin, "poweroff")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("record: %v\n%s", err, msgs.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("the recording did not end:\n%s", msgs.String())
	}
	if !strings.Contains(console.String(), "= 2 online") {
		t.Errorf("the guest does not report two CPUs:\n%s", console.String())
	}
	recMsgs := msgs.String()
	digest, count := grab(recMsgs, "state digest "), grab(recMsgs, "poweroff after ")
	outs := outputLines(recMsgs)
	t.Logf("recording: %s instructions, %s", count, strings.Join(outs, "; "))
	for _, o := range outs {
		if f := strings.Fields(o); f[3] == "0" {
			t.Errorf("nothing on output %s during the recording", f[2])
		}
	}
	recDisk, _ := os.ReadFile(disk)
	if bytes.Equal(recDisk, make([]byte, 8<<20)) {
		t.Fatal("the guest wrote nothing to its disk")
	}
	files, _ := filepath.Glob(filepath.Join(snaps, "*.snap"))
	sort.Strings(files)
	if len(files) < 3 {
		t.Fatalf("%d snapshots written, want at least 3:\n%s", len(files), recMsgs)
	}

	replayed := func(name string, args ...string) {
		t.Helper()
		out := filepath.Join(dir, name+".img")
		var stdout, stderr bytes.Buffer
		c := exec.Command(ftvm, append(append([]string{"replay", "-disk-out", out}, args...), log)...)
		c.Stdout, c.Stderr = &stdout, &stderr
		if err := c.Run(); err != nil {
			t.Fatalf("replay %s: %v\n%s", name, err, stderr.String())
		}
		msg := stderr.String()
		if grab(msg, "state digest ") != digest || grab(msg, "to instruction ") != count {
			t.Errorf("replay %s ended at %s with digest %s, want %s and %s:\n%s", name, grab(msg, "to instruction "), grab(msg, "state digest "), count, digest, msg)
		}
		if got := outputLines(msg); strings.Join(got, "\n") != strings.Join(outs, "\n") {
			t.Errorf("replay %s outputs:\n%s\nwant\n%s", name, strings.Join(got, "\n"), strings.Join(outs, "\n"))
		}
		if !strings.HasSuffix(console.String(), stdout.String()) || stdout.Len() == 0 {
			t.Errorf("replay %s console output is not the recording's (or its end):\n%s", name, stdout.String())
		}
		if name == "start" && stdout.String() != console.String() {
			t.Errorf("replay from the start: console output differs from the recording's")
		}
		if name != "start" && stdout.Len() >= len(console.String()) {
			t.Errorf("replay %s did not start in the middle: it printed the whole console", name)
		}
		if b, _ := os.ReadFile(out); !bytes.Equal(b, recDisk) {
			t.Errorf("replay %s left a disk different from the recording's", name)
		}
	}
	replayed("start", "-disk", orig)
	replayed("first-snapshot", "-restore", files[0])
	replayed("middle-snapshot", "-restore", files[len(files)/2])
}
