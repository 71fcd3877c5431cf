package vswitch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ftvm/host/netstack"
)

// Forward is a TCP port forward: clients connecting to Host (a host
// address, "127.0.0.1:16379") are connected to Guest (an address on the
// virtual LAN, 10.0.2.15:6379).
type Forward struct {
	Host  string
	Guest netip.AddrPort
}

func (f Forward) String() string { return f.Host + "=" + f.Guest.String() }

// ParseForward parses "HOSTADDR=GUESTIP:PORT", as in
// "127.0.0.1:16379=10.0.2.15:6379".
func ParseForward(s string) (Forward, error) {
	h, g, ok := strings.Cut(s, "=")
	if !ok {
		return Forward{}, fmt.Errorf("forward %q: want HOSTADDR=GUESTIP:PORT, e.g. 127.0.0.1:16379=10.0.2.15:6379", s)
	}
	if _, _, err := net.SplitHostPort(h); err != nil {
		return Forward{}, fmt.Errorf("forward %q: host address %q: %v", s, h, err)
	}
	ga, err := netip.ParseAddrPort(g)
	if err != nil || !ga.Addr().Is4() || ga.Port() == 0 {
		return Forward{}, fmt.Errorf("forward %q: guest address %q: want an IPv4 address and a port, e.g. 10.0.2.15:6379", s, g)
	}
	return Forward{Host: h, Guest: ga}, nil
}

// ForwardStats are one forward's counters.
type ForwardStats struct {
	Forward    Forward
	Listen     string // the address actually listened on
	Accepted   uint64 // client connections accepted
	Active     int64  // client connections open now
	DialErrors uint64 // clients dropped because the guest could not be reached
	ToGuest    uint64 // bytes from clients to the guest
	FromGuest  uint64 // bytes from the guest to clients
}

type forwarder struct {
	f Forward
	l net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // open connections, both sides, closed at shutdown
	closed bool

	accepted, dialErrors, toGuest, fromGuest atomic.Uint64
	active                                   atomic.Int64
}

func (fw *forwarder) close() {
	fw.l.Close()
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.closed = true
	for c := range fw.conns {
		c.Close()
	}
}

func (fw *forwarder) track(c net.Conn, on bool) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if on {
		if fw.closed {
			// Shutting down: a connection made meanwhile ends at once,
			// so its splice cannot outlive the switch.
			c.Close()
			return
		}
		fw.conns[c] = struct{}{}
	} else {
		delete(fw.conns, c)
	}
}

func (fw *forwarder) stats() ForwardStats {
	return ForwardStats{
		Forward: fw.f, Listen: fw.l.Addr().String(),
		Accepted: fw.accepted.Load(), Active: fw.active.Load(), DialErrors: fw.dialErrors.Load(),
		ToGuest: fw.toGuest.Load(), FromGuest: fw.fromGuest.Load(),
	}
}

// dialTimeout bounds the connection to the guest for a new client (the
// SYN is retransmitted meanwhile, so a guest in failover is waited for).
const dialTimeout = 30 * time.Second

// serve accepts clients until ctx is done (the switch closes the listener)
// and waits for their connections to end.
func (fw *forwarder) serve(ctx context.Context, nic *netstack.Stack, log *slog.Logger) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := fw.l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// E.g. EMFILE: back off rather than spin.
			log.Warn("forward accept", "forward", fw.f.String(), "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		fw.accepted.Add(1)
		wg.Go(func() { fw.handle(ctx, c, nic, log) })
	}
}

func (fw *forwarder) handle(ctx context.Context, client net.Conn, nic *netstack.Stack, log *slog.Logger) {
	fw.active.Add(1)
	defer fw.active.Add(-1)
	fw.track(client, true)
	defer fw.track(client, false)
	defer client.Close()
	lg := log.With("forward", fw.f.String(), "client", client.RemoteAddr().String())
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	guest, err := nic.Dial(dctx, fw.f.Guest)
	cancel()
	if err != nil {
		fw.dialErrors.Add(1)
		lg.Warn("guest unreachable", "guest", fw.f.Guest.String(), "err", err)
		return
	}
	fw.track(guest, true)
	defer fw.track(guest, false)
	defer guest.Close()
	lg.Info("connection open")
	// A TCP listener's connections are *net.TCPConn, which half-closes.
	toGuest, fromGuest, err := splice(client.(halfCloser), guest, &fw.toGuest, &fw.fromGuest)
	lg.Info("connection closed", "to_guest", toGuest, "from_guest", fromGuest, "err", err)
}

// halfCloser is a connection whose sending side can be shut down alone
// (both *net.TCPConn and gonet's TCPConn are).
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// splice copies both ways between a and b until both directions have
// ended. An end of stream in one direction is passed on as a half-close
// (the other direction keeps flowing: a client may shut down its sending
// side and still read the replies). An error in either direction (a reset,
// a guest that timed out) aborts both.
func splice(a, b halfCloser, aToB, bToA *atomic.Uint64) (sentAB, sentBA int64, err error) {
	type result struct {
		n   int64
		err error
		ab  bool
	}
	done := make(chan result, 2)
	pipe := func(dst, src halfCloser, count *atomic.Uint64, ab bool) {
		n, err := io.Copy(counter{dst, count}, src)
		if err == nil {
			err = dst.CloseWrite()
		}
		done <- result{n, err, ab}
	}
	go pipe(b, a, aToB, true)
	go pipe(a, b, bToA, false)
	for range 2 {
		r := <-done
		if r.ab {
			sentAB = r.n
		} else {
			sentBA = r.n
		}
		if r.err != nil && err == nil {
			err = r.err
			// Pass the failure on as a reset, and unblock the other
			// direction.
			for _, c := range []halfCloser{a, b} {
				if l, ok := c.(interface{ SetLinger(int) error }); ok {
					l.SetLinger(0)
				}
			}
			a.Close()
			b.Close()
		}
	}
	return sentAB, sentBA, err
}

// counter counts the bytes written through it.
type counter struct {
	w io.Writer
	n *atomic.Uint64
}

func (c counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(uint64(n))
	return n, err
}
