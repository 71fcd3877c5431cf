// Command ftvm is the fault-tolerant virtual machine monitor.
//
//	ftvm run [flags] [PROGRAM.elf]   boot the default guest, a kernel, or a bare-metal program
//	ftvm bench [flags]               measure ftvm against QEMU
package main

import (
	"fmt"
	"os"
)

var commands = map[string]struct {
	run  func(args []string) error
	help string
}{
	"run":     {cmdRun, "boot a guest (the default guest, -kernel, or a bare-metal ELF)"},
	"bench":   {cmdBench, "benchmark ftvm against QEMU on the same kernel and initramfs"},
	"record":  {cmdRecord, "run a guest and log its inputs for an exact replay"},
	"replay":  {cmdReplay, "re-execute a recorded run from its log and check it"},
	"primary": {cmdPrimary, "run a guest as the primary of a fault-tolerant pair"},
	"backup":  {cmdBackup, "protect a primary: follow its log, take over if it dies"},
	"witness": {cmdWitness, "take part in a PLOVER group's consensus (no guest)"},
	"keys":    {cmdKeys, "make the TLS keys of a replica cluster"},
	"status":  {cmdStatus, "show the role, lag and heartbeat of replicas"},
	"demo":    {cmdDemo, "run a replicated guest, kill its primary under load, report"},
	"switch":  {cmdSwitch, "run a virtual Ethernet switch (with port forwards) for guests on -net switch:"},
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: ftvm COMMAND [flags]\n\ncommands:")
	for _, name := range []string{"run", "record", "replay", "primary", "backup", "witness", "keys", "status", "switch", "demo", "bench"} {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", name, commands[name].help)
	}
	fmt.Fprintln(os.Stderr, "\n'ftvm COMMAND -h' shows a command's flags.")
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		if os.Args[1] != "-h" && os.Args[1] != "help" && os.Args[1] != "--help" {
			fmt.Fprintf(os.Stderr, "ftvm: unknown command %q\n\n", os.Args[1])
		}
		usage()
		os.Exit(2)
	}
	if err := c.run(os.Args[2:]); err != nil {
		if e, ok := err.(exitError); ok {
			os.Exit(int(e))
		}
		fmt.Fprintln(os.Stderr, "ftvm:", err)
		os.Exit(1)
	}
}

// exitError ends the process with a status and no message (the guest's
// own exit status, for bare-metal programs).
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
