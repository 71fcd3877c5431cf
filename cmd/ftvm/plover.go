package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"time"

	"ftvm/machine"
	"ftvm/replication"
	"ftvm/vm"
)

// PLOVER mode's wiring: 'ftvm primary -mode plover' and 'ftvm backup -mode
// plover' run a replica of a consensus group, 'ftvm witness' its third
// member. The protocol is package replication's (Plover) and its core's
// (package replication/plover).

type ploverFlags struct {
	mode       string
	maxPeriod  time.Duration
	idleChecks int
	advertise  string
}

func (f *ploverFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.mode, "mode", "replay", "replication `mode`: replay (a backup replays the primary's logged inputs; an arbiter settles failures) or plover (a consensus group of primary, backup and witness orders the inputs, both replicas execute, syncs at idle points)")
	fs.DurationVar(&f.maxPeriod, "max-period", 0, "plover: the longest the primary goes without a sync while there is something to synchronise (default 50ms)")
	fs.IntVar(&f.idleChecks, "idle-checks", 0, "plover: consecutive looks at an idle, quiet guest that start a sync (default 3)")
	fs.StringVar(&f.advertise, "advertise", "", "plover: the `addr`ess the other members dial to reach this one (default: -listen)")
}

func (f *ploverFlags) on() bool { return f.mode == "plover" }

func (f *ploverFlags) check() error {
	switch f.mode {
	case "replay", "plover":
		return nil
	}
	return fmt.Errorf("-mode %q: want replay or plover", f.mode)
}

func (f *ploverFlags) config(rc replication.Config) replication.PloverConfig {
	return replication.PloverConfig{Config: rc, MaxPeriod: f.maxPeriod, IdleChecks: f.idleChecks, Advertise: f.advertise}
}

// ploverPrimary boots the guest as the primary of a new PLOVER group.
func ploverPrimary(rf *replicaFlags, rc replication.Config, cfg machine.Config) error {
	p, err := replication.NewPlover(rf.plover.config(rc))
	if err != nil {
		return err
	}
	rf.flips.inject = p.InjectBitFlip
	cfg.Outputs = p.Outputs()
	m, err := machine.New(cfg)
	if err != nil {
		return err
	}
	return serveReplica(rf, p.Replica(), func(ctx context.Context, ln net.Listener) (vm.StopReason, error) {
		return p.RunPrimary(ctx, m, ln)
	})
}

// ploverBackup joins a PLOVER group as its backup.
func ploverBackup(rf *replicaFlags, rc replication.Config, join string) error {
	p, err := replication.NewPlover(rf.plover.config(rc))
	if err != nil {
		return err
	}
	rf.flips.inject = p.InjectBitFlip
	return serveReplica(rf, p.Replica(), func(ctx context.Context, ln net.Listener) (vm.StopReason, error) {
		return p.RunBackup(ctx, join, ln)
	})
}

func cmdWitness(args []string) error {
	fs := flag.NewFlagSet("witness", flag.ContinueOnError)
	var rf replicaFlags
	join := fs.String("join", "", "`addr`ess of the group's primary (its -listen); required")
	fs.StringVar(&rf.id, "id", "", "this member's `id` (its certificate's name in -keys); required")
	fs.StringVar(&rf.cluster, "cluster", "ftvm", "the group's `name`")
	fs.StringVar(&rf.keys, "keys", "", "`dir`ectory of the cluster's TLS keys (made by 'ftvm keys'); required")
	fs.StringVar(&rf.listen, "listen", "127.0.0.1:7400", "`addr`ess where the other members reach this one")
	fs.StringVar(&rf.plover.advertise, "advertise", "", "the `addr`ess the other members dial (default: -listen)")
	fs.StringVar(&rf.httpAddr, "http", "", "serve /status (JSON) and /metrics (Prometheus) on `addr`")
	fs.StringVar(&rf.logFormat, "log", "text", "log `format` on stderr: text or json")
	fs.DurationVar(&rf.heartbeat, "heartbeat", 0, "heartbeat interval (default 20ms)")
	fs.DurationVar(&rf.timeout, "timeout", 0, "election timeout: the silence after which the group elects a new leader (default 300ms)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ftvm witness -id ID -keys DIR -join ADDR [flags]\n\nJoins a PLOVER group (ftvm primary -mode plover) as its witness: it takes part\nin the consensus on the guest's inputs and keeps the page hashes of the last\nsync, runs no guest and never becomes the primary. With it the group survives\nthe loss of any one member.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *join == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("witness needs -join and takes no arguments")
	}
	rf.plover.mode = "plover"
	rc, err := rf.replicaConfig()
	if err != nil {
		return err
	}
	p, err := replication.NewPlover(rf.plover.config(rc))
	if err != nil {
		return err
	}
	return serveReplica(&rf, p.Replica(), func(ctx context.Context, ln net.Listener) (vm.StopReason, error) {
		return vm.StopLimit, p.RunWitness(ctx, *join, ln)
	})
}
