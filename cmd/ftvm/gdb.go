package main

import "flag"

// gdbFlag is -gdb ADDR on ftvm run and ftvm replay (package gdbtarget).
func gdbFlag(fs *flag.FlagSet) *string {
	return fs.String("gdb", "", "wait for GDB on `addr` (e.g. :1234, loopback unless a host is given) and run under its control")
}
