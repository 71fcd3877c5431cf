// Command workload runs the guest's benchmark workloads:
//
//	workload cpu -n N               CPU-bound hashing and sorting, N rounds
//	workload kv -addr host:port -n N   N SET/GET pairs against a Redis-protocol server
//
// Each prints one result line; the checksum of "cpu" depends only on N.
package main

import (
	"flag"
	"fmt"
	"os"

	"ftvm/guest/workload"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	switch os.Args[1] {
	case "cpu":
		n := fs.Int("n", 100, "rounds (each hashes about 170 KB and sorts 16 Ki words)")
		fs.Parse(os.Args[2:])
		fmt.Printf("workload cpu: %v\n", workload.CPU(*n))
	case "kv":
		addr := fs.String("addr", "127.0.0.1:6379", "server address")
		n := fs.Int("n", 1000, "SET/GET pairs")
		fs.Parse(os.Args[2:])
		res, err := workload.KV(*addr, *n)
		if err != nil {
			fmt.Fprintf(os.Stderr, "workload kv: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("workload kv: %v\n", res)
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: workload cpu [-n rounds] | workload kv [-addr host:port] [-n pairs]")
	os.Exit(2)
}
