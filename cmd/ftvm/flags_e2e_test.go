package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ftvm/internal/testsupport"
)

// TestFlagsRefused: a flag that does not apply to the chosen mode is
// refused with a message naming it, before anything is read or run (the
// paths given do not exist). Each used to be ignored without a word.
func TestFlagsRefused(t *testing.T) {
	ftvm, _ := buildBinaries(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "-m", "0"}, "-m 0"},
		{[]string{"run", "-m", "-5"}, "-m -5"},
		{[]string{"run", "-disk", "/nonexistent.img", "/nonexistent.elf"}, "-disk does not apply"},
		{[]string{"run", "-initrd", "/nonexistent.cpio", "/nonexistent.elf"}, "-initrd does not apply"},
		{[]string{"run", "-append", "console=ttyS0", "/nonexistent.elf"}, "-append does not apply"},
		{[]string{"run", "-kernel", "/nonexistent", "/nonexistent.elf"}, "-kernel does not apply"},
		{[]string{"run", "-dtb", "/nonexistent.dtb", "/nonexistent.elf"}, "-dtb does not apply"},
		{[]string{"run", "-no-reboot", "/nonexistent.elf"}, "-no-reboot does not apply"},
		{[]string{"run", "-dump-dtb", "/nonexistent.dtb", "/nonexistent.elf"}, "-dump-dtb does not apply"},
		{[]string{"run", "-restore", "/nonexistent.snap", "-m", "512"}, "-m does not apply"},
		{[]string{"run", "-restore", "/nonexistent.snap", "-append", "console=ttyS0"}, "-append does not apply"},
		{[]string{"run", "-restore", "/nonexistent.snap", "-kernel", "/nonexistent"}, "-kernel does not apply"},
		{[]string{"run", "-restore", "/nonexistent.snap", "-disk", "/nonexistent.img", "-disk-ro"}, "-disk-ro does not apply"},
		{[]string{"run", "-restore", "/nonexistent.snap", "/nonexistent.elf"}, "not both"},
		{[]string{"run", "-mac", "02:00:00:00:00:01"}, "-mac does not apply"},
		{[]string{"run", "-disk-ro"}, "-disk-ro does not apply"},
		{[]string{"record", "-m", "0"}, "-m 0"},
		{[]string{"record", "-disk", "/nonexistent.img", "/nonexistent.elf"}, "-disk does not apply"},
		{[]string{"record", "-restore", "/nonexistent.snap", "-m", "512"}, "-m does not apply"},
		{[]string{"record", "-restore", "/nonexistent.snap", "-disk", "/nonexistent.img", "-disk-ro"}, "-disk-ro does not apply"},
		{[]string{"replay", "-checkpoint-every", "1000", "/nonexistent.log"}, "-checkpoint-every does not apply"},
		{[]string{"primary", "-m", "0", "-id", "a", "-keys", "/nonexistent"}, "-m 0"},
		{[]string{"primary", "-mac", "02:00:00:00:00:01", "-id", "a", "-keys", "/nonexistent"}, "-mac does not apply"},
		{[]string{"backup", "-mac", "02:00:00:00:00:01", "-join", "127.0.0.1:1", "-id", "b", "-keys", "/nonexistent"}, "-mac does not apply"},
		{[]string{"bench", "-ft", "-runs", "5"}, "-runs does not apply"},
		{[]string{"bench", "-ft", "-kernel", "/nonexistent"}, "-kernel does not apply"},
		{[]string{"bench", "-ft-rounds", "3"}, "-ft-rounds does not apply"},
		{[]string{"bench", "-compare-guests", "redis"}, "-compare-guests does not apply"},
		{[]string{"bench", "-modes", "-compare-guests", "kv"}, "-compare-guests does not apply"},
		{[]string{"bench", "-compare", "-compare-guests", "nginx"}, "unknown guest \"nginx\""},
		{[]string{"bench", "-compare", "-compare-guests", "kv,"}, "unknown guest \"\""},
		{[]string{"bench", "-compare", "-modes-guest", "redis"}, "-modes-guest does not apply"},
		{[]string{"bench", "-compare", "-compare-modes", "remus50"}, "unknown mode \"remus50\""},
		{[]string{"bench", "-compare", "-runs", "0"}, "-runs 0"},
		{[]string{"bench", "-compare", "-compare-exec", "qemu"}, "-compare-exec \"qemu\""},
		{[]string{"bench", "-compare-exec", "interp"}, "-compare-exec does not apply"},
		{[]string{"bench", "extra"}, "no arguments"},
		{[]string{"demo", "extra"}, "no arguments"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, ftvm, c.args...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("ftvm %s: %v, want a refusal with %q; output:\n%s", strings.Join(c.args, " "), err, c.want, out)
		}
	}
}

// TestRestoreDiskReadOnly: -restore with -disk-ro is refused and the disk
// file stays as it was (it used to be overwritten with the snapshot's
// disk); a replay of a recording that starts from a snapshot refuses the
// images a snapshot replaces.
func TestRestoreDiskReadOnly(t *testing.T) {
	testsupport.GuestFiles(t)
	ftvm, _ := buildBinaries(t)
	dir := t.TempDir()
	snap, disk, other := filepath.Join(dir, "s.snap"), filepath.Join(dir, "disk.img"), filepath.Join(dir, "other.img")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ftvm, "run", "-disk", disk, "-snapshot-at", "1000000", "-snapshot", snap, "-max-instructions", "1000000").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	keep := bytes.Repeat([]byte("read-only "), 1<<20/10)
	keep = append(keep, make([]byte, 1<<20-len(keep))...)
	if err := os.WriteFile(other, keep, 0o444); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"run", "record"} {
		args := []string{cmd, "-restore", snap, "-disk", other, "-disk-ro", "-max-instructions", "2000000"}
		if cmd == "record" {
			args = append(args, "-o", filepath.Join(dir, "r.log"))
		}
		out, err := exec.Command(ftvm, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "-disk-ro does not apply") {
			t.Errorf("ftvm %s -restore -disk-ro: %v, want a refusal; output:\n%s", cmd, err, out)
		}
		if b, err := os.ReadFile(other); err != nil || !bytes.Equal(b, keep) {
			t.Fatalf("ftvm %s -restore -disk-ro changed the read-only disk file (%v)", cmd, err)
		}
	}

	log := filepath.Join(dir, "run.log")
	if out, err := exec.Command(ftvm, "record", "-restore", snap, "-max-instructions", "2000000", "-o", log).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, extra := range [][]string{{"-kernel", "/nonexistent"}, {"-disk", disk}} {
		args := append(append([]string{"replay", "-restore", snap}, extra...), log)
		out, err := exec.Command(ftvm, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "does not apply") {
			t.Errorf("ftvm %s: %v, want a refusal; output:\n%s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := exec.Command(ftvm, "replay", "-restore", snap, log).CombinedOutput(); err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
}

// TestRestoredCountsRefused: instruction counts count from the boot, so a
// -max-instructions or -snapshot-at that a restored machine has passed
// already is refused (run stopped at once, or complained that the guest
// stopped "before" a count it had passed long ago).
func TestRestoredCountsRefused(t *testing.T) {
	testsupport.GuestFiles(t)
	ftvm, _ := buildBinaries(t)
	dir := t.TempDir()
	snap := filepath.Join(dir, "s.snap")
	if out, err := exec.Command(ftvm, "run", "-snapshot-at", "1000000", "-snapshot", snap, "-max-instructions", "1000000").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, args := range [][]string{
		{"run", "-restore", snap, "-max-instructions", "1000"},
		{"run", "-restore", snap, "-max-instructions", "1000000"},
		{"run", "-restore", snap, "-snapshot-at", "500", "-snapshot", filepath.Join(dir, "t.snap")},
		{"record", "-restore", snap, "-max-instructions", "1000", "-o", filepath.Join(dir, "r.log")},
	} {
		out, err := exec.Command(ftvm, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "at instruction 1000000 already") {
			t.Errorf("ftvm %s: %v, want a refusal; output:\n%s", strings.Join(args, " "), err, out)
		}
	}
	out, err := exec.Command(ftvm, "run", "-restore", snap, "-max-instructions", "1000001").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "limit after 1000001 instructions") {
		t.Errorf("ftvm run -restore -max-instructions 1000001: %v\n%s", err, out)
	}
}
