package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"ftvm/host/guests"
	"ftvm/machine"
)

// guestFlags selects a guest by name (-guest) and sets its real-time clock
// (-rtc). The Debian guests bring a read-only root disk, shared as it is,
// and a data disk of their own.
type guestFlags struct {
	guest string
	rtc   string
	// replica names this process's data disk when none is given (each
	// replica of a pair needs its own copy).
	replica string
}

func (f *guestFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.guest, "guest", guests.Default, "the guest to boot: "+strings.Join(guests.Names(), ", ")+
		" (the Debian guests keep their data disk in the cache unless -disk names one)")
	fs.StringVar(&f.rtc, "rtc", "", "the real-time clock's time at boot: now, 0 (1970) or an RFC 3339 time (default: now for the Debian guests, 0 for the others, so their runs are reproducible)")
}

func (f *guestFlags) lookup() (guests.Guest, error) { return guests.Lookup(f.guest) }

// wallClock is the RTC's origin for a guest.
func (f *guestFlags) wallClock(g guests.Guest) (uint64, error) {
	v := f.rtc
	if v == "" {
		v = "0"
		if g.Debian() {
			v = "now"
		}
	}
	switch v {
	case "now":
		return uint64(time.Now().UnixNano()), nil
	case "0":
		return 0, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil || t.Before(time.Unix(0, 0)) {
		return 0, fmt.Errorf("-rtc %q: want now, 0 or an RFC 3339 time after 1970", v)
	}
	return uint64(t.UnixNano()), nil
}

// dataDisk returns the data disk a Debian guest runs on: disk, or the one
// kept in the cache, made from the template when missing.
func (f *guestFlags) dataDisk(g guests.Guest, disk string) (string, error) {
	if disk == "" && f.replica != "" {
		disk = strings.TrimSuffix(g.DefaultDataDisk(), ".img") + "-" + f.replica + ".img"
	}
	path, made, err := g.DataDisk(disk)
	if err != nil {
		return "", err
	}
	if err := guests.Lock(path); err != nil {
		return "", err
	}
	if made {
		fmt.Fprintf(os.Stderr, "ftvm: new data disk %s (from the %s guest's template)\n", path, g.Name)
	}
	return path, nil
}

// sharedDisk attaches a Debian guest's read-only root to cfg.
func sharedDisk(g guests.Guest, cfg *machine.Config) error {
	if !g.Debian() {
		return nil
	}
	d, id, err := guests.OpenRoot()
	if err != nil {
		return fmt.Errorf("the Debian root: %w", err)
	}
	cfg.SharedDisk, cfg.SharedDiskID = d, id
	return nil
}

// restoreShared fills in what a restored machine of a Debian guest needs.
func (f *guestFlags) restoreShared(opts *machine.RestoreOptions) error {
	g, err := f.lookup()
	if err != nil {
		return err
	}
	var cfg machine.Config
	if err := sharedDisk(g, &cfg); err != nil {
		return err
	}
	opts.SharedDisk, opts.SharedDiskID = cfg.SharedDisk, cfg.SharedDiskID
	return nil
}
