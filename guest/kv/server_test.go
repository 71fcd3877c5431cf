package kv

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// roundTrip sends raw protocol bytes on a fresh connection to s and reads
// back exactly the given number of reply lines.
func roundTrip(t *testing.T, s *Server, req string, lines int) string {
	t.Helper()
	client, server := net.Pipe()
	go s.ServeConn(server)
	defer client.Close()
	go client.Write([]byte(req))
	r := bufio.NewReader(client)
	var b strings.Builder
	for range lines {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", b.String(), err)
		}
		b.WriteString(line)
	}
	return b.String()
}

func TestCommands(t *testing.T) {
	s := NewServer()
	for _, tc := range []struct{ req, want string }{
		{"PING\r\n", "+PONG\r\n"},
		{"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n", "$2\r\nhi\r\n"},
		{"GET nope\r\n", "$-1\r\n"},
		{"SET k v\r\n", "+OK\r\n"},
		{"SET k v EX 10\r\n", "-ERR SET options are not supported\r\n"},
		{"GET k\r\n", "$1\r\nv\r\n"},
		{"*3\r\n$3\r\nSET\r\n$1\r\ne\r\n$0\r\n\r\n", "+OK\r\n"},
		{"GET e\r\n", "$0\r\n\r\n"},
		{"INCR n\r\n", ":1\r\n"},
		{"INCRBY n 41\r\n", ":42\r\n"},
		{"DECRBY n 2\r\n", ":40\r\n"},
		{"INCR k\r\n", "-ERR value is not an integer or out of range\r\n"},
		{"SET big 9223372036854775807\r\n", "+OK\r\n"},
		{"INCR big\r\n", "-ERR increment or decrement would overflow\r\n"},
		{"MSET a 1 b 2\r\n", "+OK\r\n"},
		{"MSET a\r\n", "-ERR wrong number of arguments for 'mset' command\r\n"},
		{"EXISTS a b c\r\n", ":2\r\n"},
		{"DEL a c\r\n", ":1\r\n"},
		{"DBSIZE\r\n", ":5\r\n"},
		{"COMMAND DOCS\r\n", "*0\r\n"},
		{"CONFIG GET save\r\n", "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"},
		{"NOSUCH x\r\n", "-ERR unknown command '\"NOSUCH\"'\r\n"},
		{"FLUSHALL\r\n", "+OK\r\n"},
		{"DBSIZE\r\n", ":0\r\n"},
		{"*1\r\n$-9\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
	} {
		got := roundTrip(t, s, tc.req, strings.Count(tc.want, "\n"))
		if got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.req, got, tc.want)
		}
	}
	got := roundTrip(t, s, "MSET x 1 y 2\r\nMGET x nope y\r\n", 7)
	if want := "+OK\r\n*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n"; got != want {
		t.Errorf("MGET: got %q, want %q", got, want)
	}
}

// TestPipelineDurable checks that a pipeline of writes is committed with a
// single flush before any reply goes out, and that replay restores it.
func TestPipelineDurable(t *testing.T) {
	d := &memDev{buf: make([]byte, 1<<16)}
	s := NewServer()
	if err := s.AttachLog(d, int64(len(d.buf))); err != nil {
		t.Fatal(err)
	}
	var req strings.Builder
	for i := range 50 {
		req.WriteString("*3\r\n$3\r\nSET\r\n$2\r\nk" + string(rune('A'+i%26)) + "\r\n$1\r\nv\r\n")
	}
	req.WriteString("INCR c\r\nINCR c\r\nGET kA\r\n")
	got := roundTrip(t, s, req.String(), 50+2+2)
	if !strings.HasSuffix(got, ":1\r\n:2\r\n$1\r\nv\r\n") {
		t.Fatalf("pipeline replies end %q", got[len(got)-20:])
	}
	if d.syncs != 1 {
		t.Errorf("pipeline of 52 writes used %d flushes, want 1", d.syncs)
	}
	// Reads and failed writes are not logged.
	roundTrip(t, s, "GET c\r\nDEL nope\r\nINCR kA\r\n", 3)
	if d.syncs != 1 {
		t.Errorf("non-mutating commands flushed the log (%d syncs)", d.syncs)
	}

	s2 := NewServer()
	if err := s2.AttachLog(d, int64(len(d.buf))); err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, s2, "DBSIZE\r\nGET c\r\n", 3); got != ":27\r\n$1\r\n2\r\n" {
		t.Errorf("after replay: got %q", got)
	}
	if rec, _, _ := s2.LogStats(); rec != 52 {
		t.Errorf("replayed %d records, want 52", rec)
	}
}

// slowDev delays every flush, like a real disk, so concurrent clients pile
// up behind it.
type slowDev struct{ memDev }

func (d *slowDev) Sync() error {
	time.Sleep(2 * time.Millisecond)
	return d.memDev.Sync()
}

// TestGroupCommit checks that writes from concurrent clients share flushes
// and that every acknowledged write survives a replay.
func TestGroupCommit(t *testing.T) {
	d := &slowDev{memDev{buf: make([]byte, 1<<20)}}
	s := NewServer()
	if err := s.AttachLog(d, int64(len(d.buf))); err != nil {
		t.Fatal(err)
	}
	const clients, writes = 8, 25
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client, server := net.Pipe()
			go s.ServeConn(server)
			defer client.Close()
			r := bufio.NewReader(client)
			for j := range writes {
				fmt.Fprintf(client, "SET c%d-%d v\r\n", i, j)
				if line, err := r.ReadString('\n'); err != nil || line != "+OK\r\n" {
					t.Errorf("client %d write %d: %q %v", i, j, line, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if d.syncs >= clients*writes {
		t.Errorf("%d writes took %d flushes: no group commit", clients*writes, d.syncs)
	}
	t.Logf("%d writes, %d flushes", clients*writes, d.syncs)
	s2 := NewServer()
	if err := s2.AttachLog(&d.memDev, int64(len(d.buf))); err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, s2, "DBSIZE\r\n", 1); got != fmt.Sprintf(":%d\r\n", clients*writes) {
		t.Errorf("after replay DBSIZE = %q", got)
	}
}
