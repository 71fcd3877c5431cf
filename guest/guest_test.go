// Package guest_test boots the default guest on QEMU, as a check that the
// kernel and initramfs built by scripts/build-guest.sh work together.
package guest_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"ftvm/internal/testsupport"
)

const cmdline = "console=ttyS0 earlycon=sbi ftvm.mode=poweroff"

func TestQEMUBootPoweroff(t *testing.T) {
	image, initrd := testsupport.GuestFiles(t)
	qemu := testsupport.Tool(t, "qemu-system-riscv64", "qemu-system-misc")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, qemu, "-M", "virt", "-smp", "1", "-m", "256M",
		"-nographic", "-bios", "default", "-kernel", image, "-initrd", initrd,
		"-append", cmdline)
	out, err := cmd.CombinedOutput()
	console := string(out)
	if ctx.Err() != nil {
		t.Fatalf("QEMU did not power off within 10s; console tail:\n%s", tail(console))
	}
	if err != nil {
		t.Fatalf("QEMU: %v; console tail:\n%s", err, tail(console))
	}
	for _, want := range []string{"ftvm-init: started", "ftvm-init: mode poweroff", "reboot: Power down"} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q; tail:\n%s", want, tail(console))
		}
	}
	t.Logf("booted and powered off in %v", time.Since(start).Round(time.Millisecond))
}

func tail(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > 25 {
		lines = lines[len(lines)-25:]
	}
	return strings.Join(lines, "\n")
}
