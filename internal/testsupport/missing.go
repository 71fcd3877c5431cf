package testsupport

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"ftvm/guest"
)

// RequireAll reports whether FTVM_REQUIRE_ALL is set (to anything but
// "0"): then nothing a test needs may be missing. make test and CI set it.
func RequireAll() bool {
	v := os.Getenv("FTVM_REQUIRE_ALL")
	return v != "" && v != "0"
}

// Missing reports that something the test needs (a tool, the default
// guest, root, a kernel feature) is not on this machine: the test is
// skipped, or fails when RequireAll, so that a broken install step cannot
// hide behind a green run. what says what is missing and how to get it.
func Missing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	what := fmt.Sprintf(format, args...)
	if RequireAll() {
		tb.Fatalf("missing %s (FTVM_REQUIRE_ALL is set)", what)
	}
	tb.Skipf("missing %s", what)
}

// Tool returns the path of the program name, or calls Missing naming the
// Debian package that has it.
func Tool(tb testing.TB, name, debianPackage string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(tb, "%s (Debian package %s; scripts/setup.sh installs it)", name, debianPackage)
	}
	return p
}

// Root calls Missing unless the test runs as root (network namespaces,
// TAP devices).
func Root(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Missing(tb, "root (%s)", why)
	}
}

// GuestFiles returns the paths of the default guest's kernel and
// initramfs, or calls Missing.
func GuestFiles(tb testing.TB) (kernel, initrd string) {
	tb.Helper()
	dir := guest.Dir()
	kernel, initrd = filepath.Join(dir, "Image"), filepath.Join(dir, "initramfs.cpio")
	for _, f := range []string{kernel, initrd} {
		if _, err := os.Stat(f); err != nil {
			Missing(tb, "the default guest (%v; build it with scripts/build-guest.sh)", err)
		}
	}
	return kernel, initrd
}

// DefaultGuest loads the default guest's kernel and initramfs, or calls
// Missing.
func DefaultGuest(tb testing.TB) (kernel, initrd []byte) {
	tb.Helper()
	kp, ip := GuestFiles(tb)
	k, err := os.ReadFile(kp)
	if err != nil {
		tb.Fatal(err)
	}
	i, err := os.ReadFile(ip)
	if err != nil {
		tb.Fatal(err)
	}
	return k, i
}
