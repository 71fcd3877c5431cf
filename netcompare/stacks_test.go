package netcompare

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"ftvm/host/netstack"
)

// These tests run real TCP stacks (gVisor's netstack) as the two replicas'
// guests and as the client, wired the way the package documentation tells
// a COLO driver to: client frames go to the primary as they are and to the
// secondary through the Rewriter; the primary's output reaches the client
// only through the Comparator; the secondary's never does, until a
// failover. The two guest stacks choose their own initial sequence numbers
// and timestamp offsets (each has its own secret), and segment their
// output as their own timing dictates.

// fabric carries the frames between the three stacks.
type fabric struct {
	start time.Time

	mu         sync.Mutex
	cmp        *Comparator
	rw         *Rewriter
	failedOver bool
	noMapping  bool // after the failover, send the secondary's frames as they are
	pFrames    int
	sFrames    int
	toSec      int // frames ToSecondary changed
	fromSec    int // frames FromSecondary changed
	// Loss: every lossToSec-th client frame with data does not reach
	// the secondary, every lossToClient-th released frame not the client
	// (0: none).
	lossToSec, lossToClient int
	nToSec, nToClient       int
	lostToSec, lostToClient int
	firstWanted             *Trigger

	client, pri, sec *netstack.Stack
}

var (
	stackGuestIP  = netip.MustParsePrefix("10.0.2.15/24")
	stackClientIP = netip.MustParsePrefix("10.0.2.2/24")
)

// replyTo is the guests' service: a request is a decimal length n, the
// reply n deterministic bytes and a newline.
func replyTo(n int) []byte {
	b := make([]byte, n+1)
	for i := range n {
		b[i] = 'a' + byte((i*7+n)%26)
	}
	b[n] = '\n'
	return b
}

// serve answers requests on l; mutate, if set, may change a reply (the
// k-th on its connection) before it is sent.
func serve(l net.Listener, mutate func(k int, reply []byte)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for k := 0; ; k++ {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				n, err := strconv.Atoi(line[:len(line)-1])
				if err != nil || n < 0 || n > 1<<20 {
					return
				}
				reply := replyTo(n)
				if mutate != nil {
					mutate(k, reply)
				}
				if _, err := c.Write(reply); err != nil {
					return
				}
			}
		}()
	}
}

func newFabric(t *testing.T, cfg Config, mutate func(k int, reply []byte)) (*fabric, context.Context) {
	t.Helper()
	guestMAC := [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	clientMAC := [6]byte{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc}
	f := &fabric{start: time.Now(), rw: NewRewriter(0, 0)}
	f.cmp = New(cfg, 0)
	var err error
	if f.client, err = netstack.New(clientMAC, stackClientIP, 1024, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if f.pri, err = netstack.New(guestMAC, stackGuestIP, 1024, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if f.sec, err = netstack.New(guestMAC, stackGuestIP, 1024, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		f.client.Close()
		f.pri.Close()
		f.sec.Close()
	})
	for _, g := range []struct {
		st     *netstack.Stack
		mutate func(int, []byte)
	}{{f.pri, nil}, {f.sec, mutate}} {
		l, err := g.st.Listen(6379)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go serve(l, g.mutate)
	}
	run := func(st *netstack.Stack, transmit func([]byte)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.Run(ctx, transmit)
		}()
	}
	run(f.client, f.fromClient)
	run(f.pri, f.fromPrimary)
	run(f.sec, f.fromSecondary)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				f.mu.Lock()
				f.cmp.Tick(f.now())
				f.flush()
				f.mu.Unlock()
			}
		}
	}()
	return f, ctx
}

func (f *fabric) now() time.Duration { return time.Since(f.start) }

// fromClient mirrors a client frame to both guests.
func (f *fabric) fromClient(fr []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.failedOver {
		f.pri.Deliver(fr)
	}
	c := bytes.Clone(fr)
	if (!f.failedOver || !f.noMapping) && f.rw.ToSecondary(c, f.now()) {
		f.toSec++
	}
	var p packet
	if parse(c, false, &p); p.kind == kindTCP && len(p.tcp.payload) > 0 {
		// Only frames with data are lost on this path: a lost pure
		// acknowledgement can leave the secondary waiting until a
		// checkpoint (see the package documentation), and these tests
		// take none.
		f.nToSec++
		if f.lossToSec > 0 && f.nToSec%f.lossToSec == 0 {
			f.lostToSec++
			return
		}
	}
	f.sec.Deliver(c)
}

func (f *fabric) fromPrimary(fr []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failedOver {
		return // the primary is dead
	}
	f.pFrames++
	f.cmp.Primary(bytes.Clone(fr), f.now()) // the stack reuses its buffer
	f.flush()
}

func (f *fabric) fromSecondary(fr []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failedOver {
		c := bytes.Clone(fr)
		if !f.noMapping && f.rw.FromSecondary(c, f.now()) {
			f.fromSec++
		}
		f.client.Deliver(c)
		return
	}
	f.sFrames++
	f.rw.Observe(fr, f.now())
	f.cmp.Secondary(fr, f.now())
	f.flush()
}

// flush sends what the comparator released. Called with mu held.
func (f *fabric) flush() {
	for _, r := range f.cmp.Released(nil) {
		f.nToClient++
		if f.lossToClient > 0 && f.nToClient%f.lossToClient == 0 {
			f.lostToClient++
			continue
		}
		f.client.Deliver(r)
	}
	if tr, ok := f.cmp.Want(); ok && f.firstWanted == nil {
		f.firstWanted = &tr
	}
}

// failover kills the primary: the secondary's guest takes over, its
// frames mapped into the sequence space the client knows.
func (f *fabric) failover() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failedOver = true
	f.rw.Failover()
}

func (f *fabric) wanted() *Trigger {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.firstWanted
}

// request sends a request for n bytes and reads the whole reply.
func request(c net.Conn, n int) ([]byte, error) {
	if _, err := fmt.Fprintf(c, "%d\n", n); err != nil {
		return nil, err
	}
	b := make([]byte, n+1)
	_, err := io.ReadFull(c, b)
	return b, err
}

var stackSizes = []int{1, 10, 1000, 1460, 1461, 5000, 20000, 3, 65536, 7}

// stackConfig: the tests never take a checkpoint (netstack's state cannot
// be copied), so the comparator must not ask for one for lack of time on
// a loaded machine: the hold timeout and period are far away.
var stackConfig = Config{HoldTimeout: time.Hour, MaxPeriod: -1}

func TestStacksMatch(t *testing.T) {
	f, ctx := newFabric(t, stackConfig, nil)
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var conns []net.Conn
	for range 3 {
		c, err := f.client.Dial(dctx, netip.AddrPortFrom(stackGuestIP.Addr(), 6379))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		conns = append(conns, c)
	}
	total := 0
	for round := range 3 {
		for i, c := range conns {
			for _, n := range stackSizes {
				got, err := request(c, n+round+i)
				if err != nil {
					t.Fatalf("connection %d, request %d: %v", i, n, err)
				}
				if !bytes.Equal(got, replyTo(n+round+i)) {
					t.Fatalf("connection %d: wrong reply to %d", i, n)
				}
				total += len(got)
			}
		}
	}
	f.mu.Lock()
	st := f.cmp.Stats()
	pFrames, sFrames := f.pFrames, f.sFrames
	f.mu.Unlock()
	if st.Mismatches != 0 {
		t.Fatalf("%d mismatches between identical services: %v", st.Mismatches, f.wanted())
	}
	if st.MatchedBytes < uint64(total) {
		t.Fatalf("%d bytes matched, the client received %d", st.MatchedBytes, total)
	}
	t.Logf("%d reply bytes on 3 connections; primary sent %d frames, secondary %d; %d bytes matched, %d frames released",
		total, pFrames, sFrames, st.MatchedBytes, st.Released)
}

// TestStacksLossy loses frames: client data on its way to the secondary
// only (the primary acknowledges what the secondary lacks; the comparator
// holds that acknowledgement until the client's retransmission reaches the
// secondary), and released frames on their way to the client (the primary
// retransmits bytes already compared, which leave at once, cut short
// where they run past what the secondary has matched).
func TestStacksLossy(t *testing.T) {
	f, ctx := newFabric(t, stackConfig, nil)
	f.mu.Lock()
	f.lossToSec, f.lossToClient = 7, 11
	f.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := f.client.Dial(dctx, netip.AddrPortFrom(stackGuestIP.Addr(), 6379))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(120 * time.Second))
	total := 0
	for round := range 2 {
		for _, n := range stackSizes {
			got, err := request(c, n+round)
			if err != nil || !bytes.Equal(got, replyTo(n+round)) {
				f.mu.Lock()
				t.Logf("stats %+v want %v", f.cmp.Stats(), f.firstWanted)
				for _, cn := range f.cmp.conns {
					t.Logf("conn %v matched %d ahead %d pend %d fronts %d %d gaps %d %d acks %d/%v %d/%v held %d diverged %v",
						cn.key.flow(), cn.matched, cn.ahead, len(cn.pend)-cn.pendOff, cn.s[0].front, cn.s[1].front,
						len(cn.s[0].gaps), len(cn.s[1].gaps), cn.s[0].ack, cn.s[0].ackSeen, cn.s[1].ack, cn.s[1].ackSeen,
						cn.data.len()+cn.acks.len(), cn.diverged)
					for _, h := range append(cn.data.items(), cn.acks.items()...) {
						t.Logf("  held end %d syn %v rst %v ack %d/%v", h.end, h.syn, h.rst, h.ack, h.hasAck)
					}
				}
				f.mu.Unlock()
				t.Fatalf("request %d: %v", n, err)
			}
			total += len(got)
		}
	}
	f.mu.Lock()
	st := f.cmp.Stats()
	lostToSec, lostToClient := f.lostToSec, f.lostToClient
	f.mu.Unlock()
	if st.Mismatches != 0 {
		t.Fatalf("%d mismatches", st.Mismatches)
	}
	if lostToSec == 0 || lostToClient == 0 {
		t.Fatalf("lost %d frames to the secondary, %d to the client: the test lost nothing", lostToSec, lostToClient)
	}
	retrans, _ := f.client.TCPCounters()
	t.Logf("%d reply bytes; lost %d client frames to the secondary and %d released frames to the client; client retransmissions %d; primary retransmissions dropped %d, cut short %d",
		total, lostToSec, lostToClient, retrans, st.Dropped, st.Trimmed)
}

func TestStacksMismatch(t *testing.T) {
	const k, flip = 5, 700 // the secondary's 6th reply differs at byte 700
	f, ctx := newFabric(t, stackConfig, func(i int, reply []byte) {
		if i == k {
			reply[flip] ^= 0x01
		}
	})
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := f.client.Dial(dctx, netip.AddrPortFrom(stackGuestIP.Addr(), 6379))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	offset := 0
	for i := range k {
		got, err := request(c, 1000+i)
		if err != nil || !bytes.Equal(got, replyTo(1000+i)) {
			t.Fatalf("request %d: %v", i, err)
		}
		offset += len(got)
	}
	if tr := f.wanted(); tr != nil {
		t.Fatalf("checkpoint asked for before the difference: %v", tr)
	}
	if _, err := fmt.Fprintf(c, "%d\n", 5000); err != nil {
		t.Fatal(err)
	}
	// Wait for the comparator to see the difference.
	deadline := time.Now().Add(30 * time.Second)
	var tr *Trigger
	for tr = f.wanted(); tr == nil && time.Now().Before(deadline); tr = f.wanted() {
		time.Sleep(5 * time.Millisecond)
	}
	if tr == nil || tr.Reason != Mismatch {
		t.Fatalf("trigger %v, want a mismatch", tr)
	}
	if tr.Offset != int64(offset+flip) || tr.Flow.Guest.Port() != 6379 {
		t.Fatalf("mismatch %v, want at offset %d", tr, offset+flip)
	}
	// The client gets at most the bytes before the difference: the
	// frames holding the rest are held for good (no checkpoint here).
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	got, err := io.ReadAll(c)
	if ne := net.Error(nil); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read: %v", err)
	}
	if len(got) > flip || !bytes.Equal(got, replyTo(5000)[:len(got)]) {
		t.Fatalf("the client received %d bytes of the differing reply (difference at %d)", len(got), flip)
	}
	t.Logf("%v; the client received %d bytes of the reply before it", tr, len(got))
}

func TestStacksFailover(t *testing.T) {
	for _, mapped := range []bool{true, false} {
		t.Run(fmt.Sprint("mapped=", mapped), func(t *testing.T) {
			stacksFailover(t, mapped)
		})
	}
}

// stacksFailover kills the primary in the middle of a request; with the
// sequence numbers mapped, the client's connection carries on with the
// secondary; without (the control), it cannot.
func stacksFailover(t *testing.T, mapped bool) {
	f, ctx := newFabric(t, stackConfig, nil)
	f.noMapping = !mapped
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := f.client.Dial(dctx, netip.AddrPortFrom(stackGuestIP.Addr(), 6379))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	for i, n := range stackSizes {
		got, err := request(c, n)
		if err != nil || !bytes.Equal(got, replyTo(n)) {
			t.Fatalf("before the failover, request %d: %v", i, err)
		}
	}
	// Kill the primary with a request in flight.
	if _, err := fmt.Fprintf(c, "%d\n", 30000); err != nil {
		t.Fatal(err)
	}
	f.failover()
	if !mapped {
		// The client sees sequence numbers it never agreed to: nothing
		// of the reply arrives.
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 30001)
		n, err := io.ReadFull(c, b)
		if ne := net.Error(nil); !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("without the mapping: read %d bytes, %v; want a stall", n, err)
		}
		t.Logf("without the mapping the client received %d bytes of 30001 in 2 s", n)
		return
	}
	b := make([]byte, 30001)
	if _, err := io.ReadFull(c, b); err != nil || !bytes.Equal(b, replyTo(30000)) {
		t.Fatalf("the request in flight at the failover: %v", err)
	}
	for i, n := range stackSizes {
		got, err := request(c, n+1)
		if err != nil || !bytes.Equal(got, replyTo(n+1)) {
			t.Fatalf("after the failover, request %d: %v", i, err)
		}
	}
	f.mu.Lock()
	st := f.cmp.Stats()
	toSec, fromSec := f.toSec, f.fromSec
	f.mu.Unlock()
	if st.Mismatches != 0 {
		t.Fatalf("%d mismatches", st.Mismatches)
	}
	if toSec == 0 || fromSec == 0 {
		t.Fatalf("frames rewritten: %d to the secondary, %d from it; the test did not exercise the mapping", toSec, fromSec)
	}
	retrans, _ := f.client.TCPCounters()
	t.Logf("the connection survived the failover: %d frames rewritten for the secondary, %d from it after the failover; client retransmissions %d",
		toSec, fromSec, retrans)
}
