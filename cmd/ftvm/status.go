package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"ftvm/monitor"
	"ftvm/replication"
)

// cmdStatus prints the status of one or more replicas from their -http
// endpoints.
func cmdStatus(args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	watch := fs.Duration("watch", 0, "refresh every `interval` until interrupted (0: print once)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ftvm status [-watch 1s] ADDR...\n\nShows the role, view, lag, log rate and heartbeat of each replica, read from\nits -http address.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("status needs the -http address of at least one replica")
	}
	for {
		var sts []replication.Status
		var errs []string
		for _, a := range fs.Args() {
			st, err := monitor.FetchStatus(a)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", a, err))
				continue
			}
			sts = append(sts, st)
		}
		if *watch > 0 {
			fmt.Print("\033[H\033[2J")
		}
		monitor.PrintStatus(os.Stdout, sts)
		for _, e := range errs {
			fmt.Fprintln(os.Stdout, "unreachable:", e)
		}
		if *watch == 0 {
			if len(sts) == 0 {
				return errors.New("no replica answered")
			}
			return nil
		}
		time.Sleep(*watch)
	}
}
