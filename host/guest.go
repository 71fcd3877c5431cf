package host

import "ftvm/guest"

// GuestDir is where scripts/build-guest.sh leaves the default guest
// (guest.Dir).
func GuestDir() string { return guest.Dir() }
