package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"ftvm/demo"
	"ftvm/host/guests"
)

// cmdDemo runs package demo: the fault tolerance shown on one machine
// without root.
func cmdDemo(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dir := fs.String("dir", "", "working `dir`ectory for keys, disks and logs (default: a new temporary one, removed at the end)")
	before := fs.Duration("before", 3*time.Second, "how long the client writes before the primary is killed")
	after := fs.Duration("after", 3*time.Second, "how long the client writes after the failover")
	fault := fs.String("fault", "kill", "how the primary dies: kill (SIGKILL: the process dies and its kernel closes its connections) or freeze (SIGSTOP: a hung host, detected by the heartbeat timeout)")
	timeout := fs.Duration("timeout", 300*time.Millisecond, "the replicas' heartbeat timeout")
	guest := fs.String("guest", "redis", "the guest: redis (Debian's Redis, with appendonly and appendfsync always) or kv (our key-value server, faster to boot)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ftvm demo [flags]\n\nRuns a replicated guest (Debian's Redis by default) on this machine, kills its\nprimary while a client writes, and reports what the client saw.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("demo takes no arguments (got %q)", fs.Args())
	}
	if *fault != "kill" && *fault != "freeze" {
		return fmt.Errorf("-fault %q: want kill or freeze", *fault)
	}
	g, err := guests.Lookup(*guest)
	if err != nil {
		return err
	}
	if err := g.Check(); err != nil {
		return fmt.Errorf("%w (or make demo)", err)
	}
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "ftvm-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		*dir = tmp
	} else if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	ftvm, err := os.Executable()
	if err != nil {
		return err
	}
	return demo.Run(demo.Options{Dir: *dir, Ftvm: ftvm, Before: *before, After: *after, Fault: *fault, Timeout: *timeout, Out: os.Stdout, Guest: g.Name})
}
