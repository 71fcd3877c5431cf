package workload

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Workloads for a guest with several CPUs.

// ParallelResult is the outcome of Parallel. Sum depends only on Chains and
// Rounds, never on Workers.
type ParallelResult struct {
	Workers, Chains, Rounds int
	Sum                     [sha256.Size]byte
	Elapsed                 time.Duration
}

func (r ParallelResult) String() string {
	return fmt.Sprintf("workers=%d chains=%d rounds=%d checksum=%s elapsed=%.3fs",
		r.Workers, r.Chains, r.Rounds, hex.EncodeToString(r.Sum[:8]), r.Elapsed.Seconds())
}

// Parallel runs chains independent CPU chains (CPU's computation, each from
// its own seed) of rounds rounds each, on workers goroutines (0: one per
// CPU) that take chains in turn, and hashes the chains' checksums in chain
// order. The same chains and rounds give the same checksum whatever the
// number of workers or CPUs, so a guest with several CPUs can be checked
// against a host computing it with one.
func Parallel(workers, chains, rounds int) ParallelResult {
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	start := time.Now()
	sums := make([][sha256.Size]byte, chains)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				sums[i] = cpuChain(fmt.Sprintf("ftvm cpu workload chain %d", i), rounds).Sum
			}
		}()
	}
	for i := range chains {
		next <- i
	}
	close(next)
	wg.Wait()
	d := sha256.New()
	for _, s := range sums {
		d.Write(s[:])
	}
	res := ParallelResult{Workers: workers, Chains: chains, Rounds: rounds, Elapsed: time.Since(start)}
	d.Sum(res.Sum[:0])
	return res
}

// LockResult is the outcome of Lock.
type LockResult struct {
	Threads, Iterations int
	Count               int64
	Elapsed             time.Duration
}

func (r LockResult) String() string {
	return fmt.Sprintf("threads=%d iterations=%d count=%d elapsed=%.3fs", r.Threads, r.Iterations, r.Count, r.Elapsed.Seconds())
}

// Lock has threads OS threads (0: two per CPU) each add 1 to a shared
// counter n times under one mutex, with a little work outside the lock:
// lock contention between CPUs. Count must be threads*n.
func Lock(threads, n int) LockResult {
	if threads <= 0 {
		threads = 2 * runtime.NumCPU()
	}
	start := time.Now()
	var mu sync.Mutex
	var count int64
	var wg sync.WaitGroup
	for t := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			x := uint64(t)
			for range n {
				for range 16 { // work outside the lock
					x = x*6364136223846793005 + 1442695040888963407
				}
				mu.Lock()
				count += int64(x>>63) | 1
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return LockResult{Threads: threads, Iterations: n, Count: count, Elapsed: time.Since(start)}
}

// PingPongResult is the outcome of PingPong.
type PingPongResult struct {
	Exchanges int
	Elapsed   time.Duration
}

func (r PingPongResult) String() string {
	return fmt.Sprintf("exchanges=%d elapsed=%.3fs", r.Exchanges, r.Elapsed.Seconds())
}

// PingPong has two OS threads pass a byte back and forth n times through a
// pair of blocking pipes (lmbench's lat_pipe): every exchange is a wake-up
// of the other thread, on another CPU when there is one.
func PingPong(n int) (PingPongResult, error) {
	var a, b [2]int
	if err := unix.Pipe2(a[:], unix.O_CLOEXEC); err != nil {
		return PingPongResult{}, err
	}
	if err := unix.Pipe2(b[:], unix.O_CLOEXEC); err != nil {
		return PingPongResult{}, err
	}
	defer func() {
		for _, fd := range []int{a[0], a[1], b[0], b[1]} {
			unix.Close(fd)
		}
	}()
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		buf := make([]byte, 1)
		for range n {
			if _, err := unix.Read(a[0], buf); err != nil {
				errc <- err
				return
			}
			buf[0]++
			if _, err := unix.Write(b[1], buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := []byte{0}
	for i := range n {
		if _, err := unix.Write(a[1], buf); err != nil {
			return PingPongResult{}, err
		}
		if _, err := unix.Read(b[0], buf); err != nil {
			return PingPongResult{}, err
		}
		if buf[0] != byte(2*i+1) {
			return PingPongResult{}, fmt.Errorf("exchange %d: got %d", i, buf[0])
		}
		buf[0]++
	}
	if err := <-errc; err != nil {
		return PingPongResult{}, err
	}
	return PingPongResult{Exchanges: n, Elapsed: time.Since(start)}, nil
}
