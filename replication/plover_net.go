package replication

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"ftvm/replication/plover"
)

// The member protocol of PLOVER mode, on the replicas' mutual-TLS channel.
// Every member listens; to send to another member it dials it once and
// keeps the connection, so each ordered pair of members has a connection
// of its own, written by the sender and read by the receiver:
//
//	member -> member: memberHello, then any of raft, sync, hashes,
//	                  hashQuery, hashAnswer, until the connection ends
//
// A member that wants in dials the primary:
//
//	joiner  -> primary: join (its Member)
//	primary -> joiner:  ploverWelcome (the directory), or refuse
//	primary -> joiner:  (a backup) the state transfer, then raftStart
//
// Messages are framed as in wire.go, with payloads up to maxPloverMessage.
// The receiver takes the sender's name from its certificate: the core
// refuses a consensus message whose raft id is not that member's, the sync
// and the witness refuse messages from anyone but the member they expect.
const (
	msgMemberHello   msgType = 32 + iota // JSON memberHello
	msgJoin                              // JSON joinHello
	msgPloverWelcome                     // JSON ploverWelcome
	msgRaftStart                         // raft snapshot metadata: where the backup's log starts
	msgRaft                              // a raft message
	msgSync                              // a statesync message
	msgHashes                            // the primary's page hashes after a sync, for the witness
	msgHashQuery                         // the primary asks the witness for the hashes of pages
	msgHashAnswer                        // the witness's answer
)

// maxPloverMessage bounds a member message (statesync's are at most 1 MiB
// and a bit, raft's at most MaxSizePerMsg plus one entry).
const maxPloverMessage = 8 << 20

type memberHello struct {
	Version int    `json:"version"`
	Cluster string `json:"cluster"`
	ID      string `json:"id"`
}

type joinHello struct {
	Version int           `json:"version"`
	Cluster string        `json:"cluster"`
	Member  plover.Member `json:"member"`
}

type ploverWelcome struct {
	Primary   string          `json:"primary"`
	Transfer  bool            `json:"transfer"`
	Directory []plover.Member `json:"directory"`
}

// inbound is a message from a member, named by its certificate.
type inbound struct {
	from string
	t    msgType
	p    []byte
}

// memberNet is a member's connections to the others.
type memberNet struct {
	id, cluster string
	tls         *tls.Config
	timeout     time.Duration
	// deliver takes every message read from a member connection (on the
	// connection's reader goroutine); down is told when one ends.
	deliver func(inbound)
	down    func(from string)
	// join takes a join request's connection (nil: refused).
	join func(c *tls.Conn, br *bufio.Reader, h joinHello)
	warn func(msg string, args ...any)

	sent atomic.Int64 // bytes written to other members

	mu    sync.Mutex
	peers map[string]*peerLink // by member id
	in    map[*tls.Conn]bool
	done  bool
}

func newMemberNet(id, cluster string, tc *tls.Config, timeout time.Duration) *memberNet {
	return &memberNet{id: id, cluster: cluster, tls: tc, timeout: timeout, peers: map[string]*peerLink{}, in: map[*tls.Conn]bool{}}
}

// peerLink is the connection this member writes to another.
type peerLink struct {
	n    *memberNet
	m    plover.Member
	mu   sync.Mutex
	cond *sync.Cond
	q    [][]byte
	size int
	dead bool
	// unreachable is called when a write or a dial fails (the queued
	// messages are dropped: raft sends again, a sync gives up).
	unreachable func()
}

// maxQueue bounds what waits for one peer; beyond it, consensus messages
// are dropped (raft sends again) and sync messages wait.
const maxQueue = 64 << 20

// send queues a message for member m. A message that must arrive (a
// sync's) waits for room; others are dropped when the queue is full.
func (n *memberNet) send(m plover.Member, t msgType, p []byte, must bool, unreachable func()) {
	n.mu.Lock()
	if n.done {
		n.mu.Unlock()
		return
	}
	l := n.peers[m.ID]
	if l == nil || l.m != m {
		if l != nil {
			l.close()
		}
		l = &peerLink{n: n, m: m, unreachable: unreachable}
		l.cond = sync.NewCond(&l.mu)
		n.peers[m.ID] = l
		go l.run()
	}
	n.mu.Unlock()
	msg := appendMessage(nil, t, p)
	l.mu.Lock()
	for must && l.size+len(msg) > maxQueue && !l.dead {
		l.cond.Wait()
	}
	if !l.dead && l.size+len(msg) <= maxQueue {
		l.q = append(l.q, msg)
		l.size += len(msg)
		l.cond.Broadcast()
	}
	l.mu.Unlock()
}

func (l *peerLink) close() {
	l.mu.Lock()
	l.dead = true
	l.mu.Unlock()
	l.cond.Broadcast()
}

// run dials the peer and writes what is queued; when the connection fails
// it drops what is queued and dials again for the next message.
func (l *peerLink) run() {
	var c *tls.Conn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for {
		l.mu.Lock()
		for len(l.q) == 0 && !l.dead {
			l.cond.Wait()
		}
		if l.dead {
			l.mu.Unlock()
			return
		}
		var b []byte
		for len(l.q) > 0 && len(b) < 1<<20 {
			b = append(b, l.q[0]...)
			l.size -= len(l.q[0])
			l.q = l.q[1:]
		}
		l.cond.Broadcast()
		l.mu.Unlock()
		if c == nil {
			var err error
			if c, err = l.n.dial(l.m); err != nil {
				l.fail(err)
				time.Sleep(20 * time.Millisecond)
				continue
			}
		}
		c.SetWriteDeadline(time.Now().Add(l.n.timeout))
		n, err := c.Write(b)
		l.n.sent.Add(int64(n))
		if err != nil {
			c.Close()
			c = nil
			l.fail(err)
		}
	}
}

func (l *peerLink) fail(err error) {
	l.mu.Lock()
	l.q, l.size = nil, 0
	l.mu.Unlock()
	l.cond.Broadcast()
	if l.unreachable != nil {
		l.unreachable()
	}
}

// dial opens a member connection to m and says who this member is.
func (n *memberNet) dial(m plover.Member) (*tls.Conn, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: n.timeout}, Config: n.tls}
	c, err := d.Dial("tcp", m.Addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*tls.Conn)
	if id, err := peerID(tc); err != nil || id != m.ID {
		tc.Close()
		return nil, fmt.Errorf("member %s at %s presented the certificate of %q", m.ID, m.Addr, id)
	}
	tc.SetWriteDeadline(time.Now().Add(n.timeout))
	if err := writeJSON(tc, msgMemberHello, memberHello{Version: plover.ProtocolVersion, Cluster: n.cluster, ID: n.id}); err != nil {
		tc.Close()
		return nil, err
	}
	return tc, nil
}

// accept takes connections until ctx ends.
func (n *memberNet) accept(ctx context.Context, ln net.Listener) {
	acceptLoop(ctx, ln, nil, func(c net.Conn) { n.serve(ctx, c) })
}

// serve authenticates a connection and reads it: a member's messages, or
// a join request.
func (n *memberNet) serve(ctx context.Context, c net.Conn) {
	tc := tls.Server(c, n.tls)
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		n.warn("rejected a connection", "from", c.RemoteAddr().String(), "err", err.Error())
		c.Close()
		return
	}
	id, _ := peerID(tc)
	br := bufio.NewReaderSize(tc, 256<<10)
	t, p, err := readMessageMax(br, maxPloverMessage)
	if err != nil {
		n.warn("rejected a connection", "from", c.RemoteAddr().String(), "id", id, "err", err.Error())
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	switch t {
	case msgMemberHello:
		var h memberHello
		if err := readJSONPayload(p, &h); err != nil || h.ID != id || h.Cluster != n.cluster || h.Version != plover.ProtocolVersion {
			n.warn("refused a member connection", "from", c.RemoteAddr().String(), "id", id, "hello", fmt.Sprintf("%+v", h))
			tc.Close()
			return
		}
		if !n.track(tc) {
			return
		}
		defer n.untrack(tc)
		for {
			t, p, err := readMessageMax(br, maxPloverMessage)
			if err != nil {
				if n.down != nil {
					n.down(id)
				}
				return
			}
			n.deliver(inbound{from: id, t: t, p: p})
		}
	case msgJoin:
		var h joinHello
		if err := readJSONPayload(p, &h); err != nil || n.join == nil {
			tc.Close()
			return
		}
		n.join(tc, br, h)
	default:
		n.warn("refused a connection", "from", c.RemoteAddr().String(), "id", id, "first", t.String())
		tc.Close()
	}
}

func (n *memberNet) track(c *tls.Conn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.done {
		c.Close()
		return false
	}
	n.in[c] = true
	return true
}

func (n *memberNet) untrack(c *tls.Conn) {
	n.mu.Lock()
	delete(n.in, c)
	n.mu.Unlock()
	c.Close()
}

// close ends every connection.
func (n *memberNet) close() {
	n.mu.Lock()
	n.done = true
	peers, in := n.peers, n.in
	n.peers, n.in = map[string]*peerLink{}, map[*tls.Conn]bool{}
	n.mu.Unlock()
	for _, l := range peers {
		l.close()
	}
	for c := range in {
		c.Close()
	}
}

// dialJoin asks the primary at addr to take member me, and returns the
// connection (for the state transfer) and the welcome.
func dialJoin(ctx context.Context, tc *tls.Config, addr, cluster string, me plover.Member) (*tls.Conn, *bufio.Reader, ploverWelcome, error) {
	var w ploverWelcome
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: handshakeTimeout}, Config: tc}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, w, fmt.Errorf("joining the primary at %s: %w", addr, err)
	}
	conn := c.(*tls.Conn)
	primary, _ := peerID(conn)
	br := bufio.NewReaderSize(conn, 256<<10)
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	fail := func(err error) (*tls.Conn, *bufio.Reader, ploverWelcome, error) {
		conn.Close()
		return nil, nil, w, fmt.Errorf("joining the primary at %s: %w", addr, err)
	}
	if err := writeJSON(conn, msgJoin, joinHello{Version: plover.ProtocolVersion, Cluster: cluster, Member: me}); err != nil {
		return fail(err)
	}
	t, p, err := readMessageMax(br, maxPloverMessage)
	switch {
	case err != nil:
		return fail(err)
	case t == msgRefuse:
		var rf refuse
		json.Unmarshal(p, &rf)
		return fail(&RefusedError{Reason: rf.Error})
	case t != msgPloverWelcome:
		return fail(fmt.Errorf("%w: got %v, want a welcome", errProtocol, t))
	}
	if err := readJSONPayload(p, &w); err != nil {
		return fail(err)
	}
	if w.Primary != primary {
		return fail(fmt.Errorf("the welcome names %q but the certificate is %q's", w.Primary, primary))
	}
	if _, err := plover.DecodeDirectory(plover.EncodeDirectory(w.Directory)); err != nil {
		return fail(fmt.Errorf("%w: %v", errProtocol, err))
	}
	conn.SetDeadline(time.Time{})
	return conn, br, w, nil
}

// readRaftStart reads where a joined backup's log starts.
func readRaftStart(br *bufio.Reader) ([]byte, error) {
	t, p, err := readMessageMax(br, maxPloverMessage)
	if err != nil {
		return nil, err
	}
	if t != msgRaftStart {
		return nil, fmt.Errorf("%w: got %v, want the log's start", errProtocol, t)
	}
	return p, nil
}

var _ io.Writer = (*tls.Conn)(nil)
