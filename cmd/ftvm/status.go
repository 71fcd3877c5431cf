package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

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
			st, err := fetchStatus(a)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", a, err))
				continue
			}
			sts = append(sts, st)
		}
		if *watch > 0 {
			fmt.Print("\033[H\033[2J")
		}
		printStatus(os.Stdout, sts)
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

func fetchStatus(addr string) (replication.Status, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(strings.TrimSuffix(addr, "/") + "/status")
	if err != nil {
		return replication.Status{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return replication.Status{}, fmt.Errorf("HTTP %s", resp.Status)
	}
	var st replication.Status
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st)
	return st, err
}

func printStatus(w io.Writer, sts []replication.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLICA\tROLE\tPEER\tVIEW\tINSTRUCTIONS\tLAG (insns)\tLAG (bytes)\tLOG RATE\tHELD\tLAST HEARD\tFAILOVERS")
	for _, s := range sts {
		heard := "-"
		if !s.LastHeartbeat.IsZero() {
			heard = time.Since(s.LastHeartbeat).Round(time.Millisecond).String() + " ago"
		}
		peer := s.Peer
		if peer == "" {
			peer = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%d\t%s\t%d\n", s.ID, s.Role, peer, s.View.Generation,
			s.Instret, s.LagInsns, s.LagBytes, rate(s.LogRate), s.HeldOutputs, heard, s.Failovers)
		if s.Error != "" {
			fmt.Fprintf(tw, "\t  error: %s\n", s.Error)
		}
	}
	tw.Flush()
}

func rate(bytesPerSec float64) string {
	bits := bytesPerSec * 8
	switch {
	case bits >= 1e6:
		return fmt.Sprintf("%.2f Mbit/s", bits/1e6)
	case bits >= 1e3:
		return fmt.Sprintf("%.1f kbit/s", bits/1e3)
	}
	return fmt.Sprintf("%.0f bit/s", bits)
}
