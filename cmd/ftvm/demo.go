package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"ftvm/demo"
	"ftvm/host"
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
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ftvm demo [flags]\n\nRuns a replicated default guest on this machine, kills its primary while a\nclient writes, and reports what the client saw.")
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
	if _, err := os.Stat(filepath.Join(host.GuestDir(), "Image")); err != nil {
		return fmt.Errorf("the default guest is not built (%s): run scripts/setup.sh, or make demo", host.GuestDir())
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
	return demo.Run(demo.Options{Dir: *dir, Ftvm: ftvm, Before: *before, After: *after, Fault: *fault, Timeout: *timeout, Out: os.Stdout})
}
