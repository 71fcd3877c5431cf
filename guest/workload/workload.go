// Package workload holds the guest's benchmark workloads, shared by the
// workload command and by init's cpubench mode.
package workload

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"time"
)

// Sizes of one CPU round: hash blockWords*4 bytes into existence, sort them
// as 32-bit words, then hash the sorted words into the running state.
const blockWords = 16 << 10

// CPUResult is the outcome of CPU. Sum depends only on Rounds, so it checks
// that an emulator computed the right thing, not just something.
type CPUResult struct {
	Rounds      int
	BytesHashed int64
	WordsSorted int64
	Sum         [sha256.Size]byte
	Elapsed     time.Duration
}

// String is the one-line result the guest prints.
func (r CPUResult) String() string {
	return fmt.Sprintf("rounds=%d hashed=%dB sorted=%d checksum=%s elapsed=%.3fs",
		r.Rounds, r.BytesHashed, r.WordsSorted, hex.EncodeToString(r.Sum[:8]), r.Elapsed.Seconds())
}

// CPU runs a deterministic CPU- and memory-bound workload of n rounds: per
// round it expands the running SHA-256 state into 64 KiB (2048 hashes),
// sorts that as 16 Ki words and hashes the sorted block back into the state.
// It mixes integer, branchy (sort) and load/store-heavy code, the kind of
// work the guest CPU emulation must be fast at. No floating point, no
// allocation per round, no system calls.
func CPU(n int) CPUResult {
	start := time.Now()
	res := cpuChain("ftvm cpu workload", n)
	res.Elapsed = time.Since(start)
	return res
}

// cpuChain is CPU's computation from the state SHA-256(seed).
func cpuChain(seed0 string, n int) CPUResult {
	var res CPUResult
	state := sha256.Sum256([]byte(seed0))
	words := make([]uint32, blockWords)
	block := make([]byte, blockWords*4)
	var seed [sha256.Size + 8]byte
	for round := range n {
		// Expand: word i*8..i*8+7 come from SHA-256(state || i).
		copy(seed[:], state[:])
		for i := 0; i < blockWords/8; i++ {
			binary.LittleEndian.PutUint64(seed[sha256.Size:], uint64(i))
			h := sha256.Sum256(seed[:])
			for j := range 8 {
				words[i*8+j] = binary.LittleEndian.Uint32(h[j*4:])
			}
		}
		slices.Sort(words)
		for i, w := range words {
			binary.LittleEndian.PutUint32(block[i*4:], w)
		}
		d := sha256.New()
		d.Write(state[:])
		d.Write(block)
		binary.LittleEndian.PutUint64(seed[:8], uint64(round))
		d.Write(seed[:8])
		d.Sum(state[:0])
		res.BytesHashed += int64(blockWords/8*len(seed) + sha256.Size + len(block) + 8)
		res.WordsSorted += blockWords
	}
	res.Rounds = n
	res.Sum = state
	return res
}

// KVResult is the outcome of KV.
type KVResult struct {
	Ops     int
	Elapsed time.Duration
}

func (r KVResult) String() string {
	return fmt.Sprintf("ops=%d elapsed=%.3fs rate=%.0f/s", r.Ops, r.Elapsed.Seconds(),
		float64(r.Ops)/r.Elapsed.Seconds())
}

// KV connects to a Redis-protocol server at addr and issues n SET/GET pairs
// on keys of its own (prefix "wl:"), checking every reply.
func KV(addr string, n int) (KVResult, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return KVResult{}, err
	}
	defer c.Close()
	cl := NewClient(c)
	for i := range n {
		key := "wl:" + strconv.Itoa(i%1000)
		val := "v" + strconv.Itoa(i)
		if got, err := cl.Do("SET", key, val); err != nil || got != "OK" {
			return KVResult{}, fmt.Errorf("SET %s: reply %q, err %v", key, got, err)
		}
		if got, err := cl.Do("GET", key); err != nil || got != val {
			return KVResult{}, fmt.Errorf("GET %s: reply %q (want %q), err %v", key, got, val, err)
		}
	}
	return KVResult{Ops: 2 * n, Elapsed: time.Since(start)}, nil
}

// ErrNil is the error for a null reply (a GET of a missing key).
var ErrNil = errors.New("null reply")

// Client is a minimal Redis-protocol client on one connection, one request
// at a time.
type Client struct {
	r *bufio.Reader
	w *bufio.Writer
}

// NewClient speaks RESP on c.
func NewClient(c io.ReadWriter) *Client {
	return &Client{r: bufio.NewReader(c), w: bufio.NewWriter(c)}
}

// Do sends one command and returns its reply (a status, integer or bulk
// string; a server error or a null reply is an error).
func (c *Client) Do(args ...string) (string, error) {
	fmt.Fprintf(c.w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(c.w, "$%d\r\n%s\r\n", len(a), a)
	}
	if err := c.w.Flush(); err != nil {
		return "", err
	}
	return readReply(c.r)
}

// readReply reads a status, error, integer or bulk reply as a string.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return "", fmt.Errorf("malformed reply %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+', ':':
		return body, nil
	case '-':
		return "", fmt.Errorf("server error: %s", body)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return "", fmt.Errorf("bad bulk length %q", body)
		}
		if n == -1 {
			return "", ErrNil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}
