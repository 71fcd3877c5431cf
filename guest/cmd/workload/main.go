// Command workload runs the guest's benchmark workloads:
//
//	workload cpu -n N               CPU-bound hashing and sorting, N rounds
//	workload par -chains C -n N     C independent cpu chains of N rounds, one worker per CPU
//	workload lock -threads T -n N   T threads adding to a counter under one lock, N times each
//	workload pingpong -n N          two threads passing a byte through pipes, N exchanges
//	workload kv -addr host:port -n N   N SET/GET pairs against a Redis-protocol server
//
// Each prints one result line; the checksum of "cpu" depends only on N, that
// of "par" only on C and N (not on the number of CPUs).
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
	case "par":
		chains := fs.Int("chains", 8, "independent chains")
		n := fs.Int("n", 10, "rounds per chain")
		workers := fs.Int("workers", 0, "workers (0: one per CPU)")
		fs.Parse(os.Args[2:])
		fmt.Printf("workload par: %v\n", workload.Parallel(*workers, *chains, *n))
	case "lock":
		threads := fs.Int("threads", 0, "threads (0: two per CPU)")
		n := fs.Int("n", 10000, "increments per thread")
		fs.Parse(os.Args[2:])
		fmt.Printf("workload lock: %v\n", workload.Lock(*threads, *n))
	case "pingpong":
		n := fs.Int("n", 10000, "exchanges")
		fs.Parse(os.Args[2:])
		res, err := workload.PingPong(*n)
		if err != nil {
			fmt.Fprintf(os.Stderr, "workload pingpong: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("workload pingpong: %v\n", res)
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
	fmt.Fprintln(os.Stderr, "usage: workload cpu [-n rounds] | par [-chains c] [-n rounds] [-workers w] | lock [-threads t] [-n n] | pingpong [-n n] | kv [-addr host:port] [-n pairs]")
	os.Exit(2)
}
