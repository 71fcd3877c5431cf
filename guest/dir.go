// Package guest is the default guest: its kernel configuration (kernel/),
// its programs (cmd/) and their packages, built by scripts/build-guest.sh.
package guest

import (
	"os"
	"path/filepath"
)

// Dir is where scripts/build-guest.sh leaves the default guest (Image and
// initramfs.cpio): $FTVM_CACHE/guest, else $XDG_CACHE_HOME/ftvm/guest,
// else ~/.cache/ftvm/guest.
func Dir() string {
	if d := os.Getenv("FTVM_CACHE"); d != "" {
		return filepath.Join(d, "guest")
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "ftvm", "guest")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "ftvm", "guest")
}
