package netcompare

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"time"
)

// Config bounds what the comparator holds. Zero fields take the defaults
// below; a negative MaxPeriod turns the periodic trigger off.
type Config struct {
	// HoldTimeout is how long a primary frame may wait for the secondary
	// to match it before the comparator asks for a checkpoint (default
	// 500 ms).
	HoldTimeout time.Duration
	// MaxHeldBytes: the comparator asks for a checkpoint when the primary
	// frames it holds reach this many bytes (default 4 MiB). Beyond twice
	// that it drops primary frames (still comparing their payload); TCP
	// retransmits them after the checkpoint.
	MaxHeldBytes int
	// MaxBufferedBytes bounds the unmatched stream bytes and datagrams
	// kept for comparison, both replicas together (default 4 MiB). A flow
	// that would exceed it stops being compared until the next checkpoint,
	// which the comparator asks for.
	MaxBufferedBytes int
	// MaxConnections bounds the flow table (default 16384). Closed
	// connections go first, then the least recently active ones; losing
	// one that still mattered asks for a checkpoint.
	MaxConnections int
	// MaxPeriod asks for a checkpoint when this long has passed since the
	// last one (default 10 s; negative: never).
	MaxPeriod time.Duration
	// Linger keeps a closed connection's mapping this long after its last
	// frame, for the client's last acknowledgements and retransmissions
	// (default 60 s, Linux's TIME_WAIT).
	Linger time.Duration
}

const (
	defaultHoldTimeout = 500 * time.Millisecond
	defaultMaxHeld     = 4 << 20
	defaultMaxBuffered = 4 << 20
	defaultMaxConns    = 16384
	defaultMaxPeriod   = 10 * time.Second
	defaultLinger      = 60 * time.Second

	// maxGaps bounds the out-of-order segments kept per replica and
	// connection. A guest's stack sends in order but for retransmissions,
	// which fall below what was already seen.
	maxGaps = 32
)

func (c *Config) defaults() {
	if c.HoldTimeout <= 0 {
		c.HoldTimeout = defaultHoldTimeout
	}
	if c.MaxHeldBytes <= 0 {
		c.MaxHeldBytes = defaultMaxHeld
	}
	if c.MaxBufferedBytes <= 0 {
		c.MaxBufferedBytes = defaultMaxBuffered
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = defaultMaxConns
	}
	if c.MaxPeriod == 0 {
		c.MaxPeriod = defaultMaxPeriod
	}
	if c.Linger <= 0 {
		c.Linger = defaultLinger
	}
}

// Reason is why the comparator asks for a checkpoint.
type Reason int

const (
	// Mismatch: the replicas sent different output on a flow.
	Mismatch Reason = iota + 1
	// HoldTimeout: a primary frame waited Config.HoldTimeout unmatched.
	HoldTimeout
	// HeldBytes: the held primary frames reached Config.MaxHeldBytes.
	HeldBytes
	// BufferFull: a flow's unmatched bytes outgrew Config.MaxBufferedBytes
	// (one replica far ahead of the other) or its out-of-order segments
	// their bound.
	BufferFull
	// TableFull: the flow table overflowed and a flow whose state
	// mattered (held frames, a sequence offset, bytes to compare) was
	// forgotten.
	TableFull
	// Period: Config.MaxPeriod passed since the last checkpoint.
	Period
)

func (r Reason) String() string {
	switch r {
	case Mismatch:
		return "mismatch"
	case HoldTimeout:
		return "hold timeout"
	case HeldBytes:
		return "held bytes"
	case BufferFull:
		return "comparison buffer full"
	case TableFull:
		return "flow table full"
	case Period:
		return "period"
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// Trigger is a request for a checkpoint and what caused it.
type Trigger struct {
	Reason Reason
	// Flow is the flow concerned (Mismatch, BufferFull, TableFull).
	Flow Flow
	// Offset, for a TCP mismatch, is the byte offset in the guest's
	// stream where the replicas first differ: 0 is the first byte after
	// the SYN, -1 the SYN itself (their options differ); on a connection
	// whose SYN the comparator did not see, it counts from the first
	// position it saw. For a datagram flow it is the offset in the
	// datagram.
	Offset int64
	// Seq, for a TCP mismatch, is the primary's sequence number of Offset.
	Seq uint32
	// Age, for HoldTimeout, is the age of the oldest held frame.
	Age time.Duration
	// Bytes, for HeldBytes and BufferFull, is the byte count reached.
	Bytes int
	// At is the time of the event.
	At time.Duration
}

func (t Trigger) String() string {
	switch t.Reason {
	case Mismatch:
		if t.Flow.Proto == protoTCP {
			return fmt.Sprintf("mismatch on %v at offset %d (primary seq %d)", t.Flow, t.Offset, t.Seq)
		}
		return fmt.Sprintf("mismatch on %v at offset %d of a datagram", t.Flow, t.Offset)
	case HoldTimeout:
		return fmt.Sprintf("a primary frame waited %v unmatched", t.Age)
	case HeldBytes:
		return fmt.Sprintf("%d bytes of primary frames held", t.Bytes)
	case BufferFull:
		return fmt.Sprintf("comparison buffers full (%d bytes) on %v", t.Bytes, t.Flow)
	case TableFull:
		return fmt.Sprintf("flow table full: forgot %v", t.Flow)
	}
	return t.Reason.String()
}

// Stats are the comparator's counters.
type Stats struct {
	PrimaryFrames   uint64 // frames fed by Primary
	SecondaryFrames uint64 // frames fed by Secondary
	Released        uint64 // primary frames released after matching (or at once)
	// Dropped counts primary frames dropped: beyond twice MaxHeldBytes,
	// and retransmissions of bytes still to be compared (their first copy
	// is held).
	Dropped uint64
	// Trimmed counts retransmissions released in part (the bytes already
	// compared), as a copy cut short.
	Trimmed      uint64
	MatchedBytes uint64 // TCP payload bytes matched
	Checkpoints  uint64 // calls to Checkpoint
	Mismatches   uint64 // flows found to differ
	// Triggers counts checkpoint requests by their (first) reason.
	Triggers      [Period + 1]uint64
	HeldFrames    int // primary frames held now
	HeldBytes     int // their bytes
	BufferedBytes int // unmatched bytes kept for comparison
	Flows         int // flows tracked
}

// side is a replica.
type side uint8

const (
	pri side = 0
	sec side = 1
)

const noSide = -1

// held is a primary frame waiting to be released.
type held struct {
	frame []byte
	at    time.Duration
	owner *conn // nil: an orphan, released only by Checkpoint
	// The global list, in the order the primary sent the frames.
	prev, next *held

	// What must be true before the frame leaves (TCP):
	end    int64  // stream positions below end matched (data, FIN)
	syn    bool   // the secondary sent its SYN too
	rst    bool   // the secondary reset the connection too
	hasAck bool   // the secondary acknowledged at least ack
	ack    uint32 //
	// Datagrams: the bytes compared, and whether they matched.
	body    []byte
	matched bool
}

const noEnd = math.MinInt64

// stream is one replica's side of a TCP connection (what its guest sent).
type stream struct {
	// base is the sequence number of stream position 0 (the SYN's
	// sequence number plus one); known says whether it is set.
	base    uint32
	known   bool
	synSeen bool
	opts    synOptions
	// front: every position below it has been received (or compared).
	front int64
	// gaps: segments received beyond front, sorted, disjoint.
	gaps []segment
	// fin is the position of this side's FIN, -1 if none yet.
	fin     int64
	rst     bool
	sndEnd  int64 // the highest position end seen, FIN included
	ack     uint32
	ackSeen bool
}

type segment struct {
	pos  int64
	data []byte
}

// conn is a flow: a TCP connection, or a datagram flow.
type conn struct {
	key flowKey
	tcp bool

	// TCP. Positions are stream offsets: position p of a side is the
	// sequence number base+p of that side. Every position below matched
	// was received from both sides and compared equal (FIN included: a
	// matched FIN at f makes matched f+1). At most one side is ahead:
	// the other's front is matched, and pend holds the ahead side's bytes
	// from matched to its front.
	s        [2]stream
	matched  int64
	ahead    int
	pend     []byte
	pendOff  int
	closed   bool
	diverged bool

	// Datagrams the secondary sent that the primary has not yet (the
	// primary's unmatched ones are its held frames).
	dgrams  [][]byte
	dgHead  int
	dgIndex int64 // datagrams compared so far, for reports

	// The flow's held frames, in two queues, each released in order.
	// data: frames that carry new sequence space (bytes, SYN, FIN) or a
	// RST, released as the comparison reaches them; for a datagram flow,
	// every frame. acks: frames that carry nothing new (pure
	// acknowledgements, retransmissions of bytes already compared),
	// released as soon as the secondary has acknowledged as much. Were
	// they one queue, a retransmission the client needs would wait behind
	// bytes the secondary cannot send until the client has it.
	data, acks queue
	buffered   int // bytes this flow counts in Comparator.buffered

	lruPrev, lruNext       *conn
	closedPrev, closedNext *conn
	inClosed               bool
	lastSeen               time.Duration
}

// queue is a FIFO of held frames.
type queue struct {
	q    []*held
	head int
}

func (q *queue) len() int       { return len(q.q) - q.head }
func (q *queue) items() []*held { return q.q[q.head:] }
func (q *queue) push(h *held)   { q.q = append(q.q, h) }

func (q *queue) peek() *held {
	if q.head == len(q.q) {
		return nil
	}
	return q.q[q.head]
}

func (q *queue) pop() {
	q.q[q.head] = nil
	q.head++
	switch {
	case q.head == len(q.q):
		q.q, q.head = q.q[:0], 0
	case q.head > 64 && q.head > len(q.q)/2:
		n := copy(q.q, q.q[q.head:])
		clear(q.q[n:])
		q.q, q.head = q.q[:n], 0
	}
}

func (q *queue) reset() {
	clear(q.q)
	q.q, q.head = q.q[:0], 0
}

// holding says whether the flow holds frames.
func (cn *conn) holding() bool { return cn.data.len()+cn.acks.len() > 0 }

// Comparator compares the network output of two replicas that execute the
// same inputs (COLO): see the package documentation. It is not safe for
// concurrent use.
type Comparator struct {
	cfg   Config
	conns map[flowKey]*conn
	// lru: every flow, least recently active first. closed: closed TCP
	// connections, least recently active first.
	lruHead, lruTail       *conn
	closedHead, closedTail *conn

	heldHead, heldTail *held
	heldBytes          int
	heldFrames         int
	buffered           int
	free               []*held

	out      [][]byte
	want     *Trigger
	lastCkpt time.Duration
	stats    Stats
}

// New returns a comparator; now is the current time on the clock the
// caller will pass to every call (any monotonic clock: time.Since of a
// fixed start, say).
func New(cfg Config, now time.Duration) *Comparator {
	cfg.defaults()
	return &Comparator{cfg: cfg, conns: make(map[flowKey]*conn), lastCkpt: now}
}

// Primary takes a frame the primary's guest transmitted. The comparator
// keeps frame until it is released (Released) or handed back by
// Checkpoint, and the caller must not modify it afterwards; unless it
// drops it (Stats.Dropped), or releases a copy cut short in its place
// (Stats.Trimmed).
func (c *Comparator) Primary(frame []byte, now time.Duration) {
	c.stats.PrimaryFrames++
	var p packet
	parse(frame, true, &p)
	switch p.kind {
	case kindPass:
		c.out = append(c.out, frame)
		c.stats.Released++
	case kindTCP:
		c.tcp(pri, &p, frame, now)
	default:
		c.datagram(pri, &p, frame, now)
	}
	c.timers(now)
}

// Secondary takes a frame the secondary's guest transmitted. The
// comparator copies what it needs; the frame itself never leaves.
func (c *Comparator) Secondary(frame []byte, now time.Duration) {
	c.stats.SecondaryFrames++
	var p packet
	parse(frame, true, &p)
	switch p.kind {
	case kindPass:
	case kindTCP:
		c.tcp(sec, &p, frame, now)
	default:
		c.datagram(sec, &p, frame, now)
	}
	c.timers(now)
}

// Tick lets time pass: it checks the hold timeout and the period, and
// forgets closed connections that lingered long enough. Call it
// regularly (every few milliseconds, or at the earliest deadline).
func (c *Comparator) Tick(now time.Duration) {
	c.timers(now)
	for cn := c.closedHead; cn != nil; {
		next := cn.closedNext
		if now-cn.lastSeen < c.cfg.Linger {
			break
		}
		if !cn.holding() {
			c.remove(cn)
		}
		cn = next
	}
}

// Deadline returns the next time at which Tick has something to do (the
// oldest held frame's hold timeout, the period, the end of a closed
// connection's linger), and false if there is none. A driver may arm one
// timer for it instead of ticking; it must look again after each call
// that changes the comparator.
func (c *Comparator) Deadline() (time.Duration, bool) {
	var d time.Duration
	ok := false
	earliest := func(t time.Duration) {
		if !ok || t < d {
			d, ok = t, true
		}
	}
	if c.want == nil {
		if h := c.heldHead; h != nil {
			earliest(h.at + c.cfg.HoldTimeout)
		}
		if c.cfg.MaxPeriod > 0 {
			earliest(c.lastCkpt + c.cfg.MaxPeriod)
		}
	}
	if cn := c.closedHead; cn != nil {
		earliest(cn.lastSeen + c.cfg.Linger)
	}
	return d, ok
}

// Released appends the primary frames that may now leave, in the order
// they became releasable, to dst and returns it; the comparator forgets
// them.
func (c *Comparator) Released(dst [][]byte) [][]byte {
	dst = append(dst, c.out...)
	clear(c.out)
	c.out = c.out[:0]
	return dst
}

// Want reports whether the comparator asks for a checkpoint, and the
// first reason since the last one.
func (c *Comparator) Want() (Trigger, bool) {
	if c.want == nil {
		return Trigger{}, false
	}
	return *c.want, true
}

// Checkpoint is called when a checkpoint is taken: both replicas paused,
// every frame the primary's guest sent before the pause given to Primary,
// and the secondary's frames from before the pause given to Secondary or
// discarded. It returns the primary frames still held, in the order they
// were sent: the caller releases them once the secondary has acknowledged
// the checkpoint (the secondary now has the state that produced them).
// The comparator's state becomes the primary's: each connection's
// secondary side takes the primary's sequence numbers (the mappings
// become the identity) and its stream position, the comparison buffers
// empty, closed connections and datagram flows are forgotten, and the
// checkpoint request clears.
//
// When the secondary is lost, the primary continues alone: call
// Checkpoint, release what it returns at once, and stop feeding the
// comparator.
func (c *Comparator) Checkpoint(now time.Duration) [][]byte {
	c.stats.Checkpoints++
	var frames [][]byte
	for h := c.heldHead; h != nil; {
		next := h.next
		frames = append(frames, h.frame)
		c.freeHeld(h)
		h = next
	}
	c.heldHead, c.heldTail = nil, nil
	c.heldBytes, c.heldFrames = 0, 0
	for cn := c.lruHead; cn != nil; {
		next := cn.lruNext
		cn.data.reset()
		cn.acks.reset()
		ps := &cn.s[pri]
		if !cn.tcp || !ps.known || ps.rst || ps.fin >= 0 {
			c.remove(cn)
		} else {
			c.resync(cn)
		}
		cn = next
	}
	c.want = nil
	c.lastCkpt = now
	return frames
}

// resync gives a connection's secondary side the primary's state.
func (c *Comparator) resync(cn *conn) {
	c.dropBuffers(cn)
	ps, ss := &cn.s[pri], &cn.s[sec]
	m := max(cn.matched, ps.sndEnd)
	*ss = stream{
		base: ps.base, known: true, synSeen: ps.synSeen, opts: ps.opts,
		fin: -1, sndEnd: m, ack: ps.ack, ackSeen: ps.ackSeen,
	}
	ps.front, ss.front = m, m
	ps.sndEnd = m
	cn.matched = m
	cn.diverged = false
}

// Stats returns the counters.
func (c *Comparator) Stats() Stats {
	s := c.stats
	s.HeldFrames = c.heldFrames
	s.HeldBytes = c.heldBytes
	s.BufferedBytes = c.buffered
	s.Flows = len(c.conns)
	return s
}

// trigger records a reason to checkpoint; the first one since the last
// checkpoint is the one reported.
func (c *Comparator) trigger(t Trigger) {
	if t.Reason == Mismatch {
		c.stats.Mismatches++
	}
	if c.want == nil {
		c.stats.Triggers[t.Reason]++
		c.want = &t
	}
}

func (c *Comparator) timers(now time.Duration) {
	if h := c.heldHead; h != nil && now-h.at >= c.cfg.HoldTimeout {
		if c.want == nil {
			c.trigger(Trigger{Reason: HoldTimeout, Age: now - h.at, At: now})
		}
	}
	if c.cfg.MaxPeriod > 0 && now-c.lastCkpt >= c.cfg.MaxPeriod && c.want == nil {
		c.trigger(Trigger{Reason: Period, At: now})
	}
}

// The flow table.

func (c *Comparator) lookup(k flowKey, tcp bool, now time.Duration) *conn {
	cn := c.conns[k]
	if cn != nil {
		c.touch(cn, now)
		return cn
	}
	if len(c.conns) >= c.cfg.MaxConnections {
		c.evict(now)
	}
	cn = &conn{key: k, tcp: tcp, ahead: noSide, lastSeen: now}
	cn.s[pri].fin, cn.s[sec].fin = -1, -1
	c.conns[k] = cn
	cn.lruPrev = c.lruTail
	if c.lruTail != nil {
		c.lruTail.lruNext = cn
	} else {
		c.lruHead = cn
	}
	c.lruTail = cn
	return cn
}

// touch marks a flow active: to the back of the LRU (and closed) lists.
func (c *Comparator) touch(cn *conn, now time.Duration) {
	cn.lastSeen = now
	if c.lruTail != cn {
		c.lruUnlink(cn)
		cn.lruPrev = c.lruTail
		c.lruTail.lruNext = cn
		c.lruTail = cn
	}
	if cn.inClosed && c.closedTail != cn {
		c.closedUnlink(cn)
		c.closedAppend(cn)
	}
}

func (c *Comparator) lruUnlink(cn *conn) {
	if cn.lruPrev != nil {
		cn.lruPrev.lruNext = cn.lruNext
	} else {
		c.lruHead = cn.lruNext
	}
	if cn.lruNext != nil {
		cn.lruNext.lruPrev = cn.lruPrev
	} else {
		c.lruTail = cn.lruPrev
	}
	cn.lruPrev, cn.lruNext = nil, nil
}

func (c *Comparator) closedAppend(cn *conn) {
	cn.inClosed = true
	cn.closedPrev = c.closedTail
	if c.closedTail != nil {
		c.closedTail.closedNext = cn
	} else {
		c.closedHead = cn
	}
	c.closedTail = cn
}

func (c *Comparator) closedUnlink(cn *conn) {
	if !cn.inClosed {
		return
	}
	if cn.closedPrev != nil {
		cn.closedPrev.closedNext = cn.closedNext
	} else {
		c.closedHead = cn.closedNext
	}
	if cn.closedNext != nil {
		cn.closedNext.closedPrev = cn.closedPrev
	} else {
		c.closedTail = cn.closedPrev
	}
	cn.closedPrev, cn.closedNext, cn.inClosed = nil, nil, false
}

// evict makes room for one flow: the least recently active closed
// connection, or else the least recently active flow.
func (c *Comparator) evict(now time.Duration) {
	cn := c.closedHead
	if cn == nil || cn.holding() {
		cn = c.lruHead
	}
	if cn == nil {
		return
	}
	if c.matters(cn) {
		c.trigger(Trigger{Reason: TableFull, Flow: cn.key.flow(), At: now})
	}
	c.remove(cn)
}

// matters says whether forgetting a flow loses something: held frames
// (they become orphans, released at the next checkpoint), bytes to
// compare, or a sequence offset (a connection seen again after it was
// forgotten is assumed to have none).
func (c *Comparator) matters(cn *conn) bool {
	if cn.holding() || cn.buffered > 0 {
		return true
	}
	_, ok := cn.delta()
	return ok && !cn.closed && cn.s[pri].base != cn.s[sec].base
}

// remove forgets a flow; its held frames become orphans.
func (c *Comparator) remove(cn *conn) {
	c.orphan(cn)
	c.dropBuffers(cn)
	c.lruUnlink(cn)
	c.closedUnlink(cn)
	delete(c.conns, cn.key)
}

func (c *Comparator) orphan(cn *conn) {
	for _, q := range [2]*queue{&cn.data, &cn.acks} {
		for _, h := range q.items() {
			h.owner = nil
		}
		q.reset()
	}
}

func (c *Comparator) dropBuffers(cn *conn) {
	c.buffered -= cn.buffered
	cn.buffered = 0
	cn.pend, cn.pendOff, cn.ahead = nil, 0, noSide
	cn.s[pri].gaps, cn.s[sec].gaps = nil, nil
	cn.dgrams, cn.dgHead = nil, 0
}

// delta is the secondary's sequence numbers minus the primary's, once
// both are known.
func (cn *conn) delta() (uint32, bool) {
	if !cn.tcp || !cn.s[pri].known || !cn.s[sec].known {
		return 0, false
	}
	return cn.s[sec].base - cn.s[pri].base, true
}

// Held frames.

// hold keeps a primary frame, owned by cn in its queue q (nil, nil: an
// orphan). It returns nil if the frame is dropped for lack of room.
func (c *Comparator) hold(frame []byte, cn *conn, q *queue, now time.Duration) *held {
	if c.heldBytes+len(frame) > 2*c.cfg.MaxHeldBytes {
		c.stats.Dropped++
		return nil
	}
	var h *held
	if n := len(c.free); n > 0 {
		h = c.free[n-1]
		c.free = c.free[:n-1]
	} else {
		h = new(held)
	}
	*h = held{frame: frame, at: now, owner: cn, end: noEnd, prev: c.heldTail}
	if c.heldTail != nil {
		c.heldTail.next = h
	} else {
		c.heldHead = h
	}
	c.heldTail = h
	c.heldBytes += len(frame)
	c.heldFrames++
	if q != nil {
		q.push(h)
	}
	if c.heldBytes >= c.cfg.MaxHeldBytes {
		c.trigger(Trigger{Reason: HeldBytes, Bytes: c.heldBytes, At: now})
	}
	return h
}

func (c *Comparator) freeHeld(h *held) {
	*h = held{}
	if len(c.free) < 1024 {
		c.free = append(c.free, h)
	}
}

// release lets out the flow's held frames, each queue in order, while
// they may go.
func (c *Comparator) release(cn *conn) {
	for _, q := range [2]*queue{&cn.data, &cn.acks} {
		for h := q.peek(); h != nil && cn.releasable(h); h = q.peek() {
			q.pop()
			if h.prev != nil {
				h.prev.next = h.next
			} else {
				c.heldHead = h.next
			}
			if h.next != nil {
				h.next.prev = h.prev
			} else {
				c.heldTail = h.prev
			}
			c.heldBytes -= len(h.frame)
			c.heldFrames--
			c.out = append(c.out, h.frame)
			c.stats.Released++
			c.freeHeld(h)
		}
	}
}

// releasable says whether a held frame may leave. On a diverged
// connection that is still true of the frames that hold only bytes
// matched before the difference: what the comparator learnt then stays
// true.
func (cn *conn) releasable(h *held) bool {
	if !cn.tcp {
		return h.matched
	}
	ss := &cn.s[sec]
	switch {
	case h.end > cn.matched:
		return false
	case h.syn && !ss.synSeen:
		return false
	case h.rst:
		// A reset ends the connection for the client too: the secondary
		// must have reset it; what it acknowledged no longer matters.
		return ss.rst
	case h.hasAck && (!ss.ackSeen || seqAfter(h.ack, ss.ack)):
		// The primary acknowledges client bytes the secondary has not
		// acknowledged: once the client drops them, a failover would
		// lose them (QEMU's colo-compare holds these frames too).
		return false
	}
	return true
}

// seqAfter reports a > b in sequence space (RFC 9293 3.4).
func seqAfter(a, b uint32) bool { return int32(a-b) > 0 }

// mismatch stops comparing a flow until the next checkpoint and asks for
// one.
func (c *Comparator) mismatch(cn *conn, off int64, now time.Duration) {
	if cn.diverged {
		return
	}
	cn.diverged = true
	c.dropBuffers(cn)
	t := Trigger{Reason: Mismatch, Flow: cn.key.flow(), Offset: off, At: now}
	if cn.tcp {
		t.Seq = cn.s[pri].base + uint32(off)
	}
	c.trigger(t)
}

func (c *Comparator) overflow(cn *conn, now time.Duration) {
	if cn.diverged {
		return
	}
	bytes := c.buffered
	cn.diverged = true
	c.dropBuffers(cn)
	c.trigger(Trigger{Reason: BufferFull, Flow: cn.key.flow(), Bytes: bytes, At: now})
}

// Datagrams.

// datagram compares a non-TCP frame with the other replica's frame of the
// same rank in its flow.
func (c *Comparator) datagram(s side, p *packet, frame []byte, now time.Duration) {
	cn := c.lookup(p.key, false, now)
	if s == pri {
		h := c.hold(frame, cn, &cn.data, now)
		if cn.diverged {
			return
		}
		if h == nil {
			// Dropped: the flow's datagrams no longer pair up by rank. A
			// checkpoint is already asked for (HeldBytes).
			cn.diverged = true
			c.dropBuffers(cn)
			return
		}
		h.body = p.body
		if cn.dgHead < len(cn.dgrams) {
			b := cn.dgrams[cn.dgHead]
			cn.dgrams[cn.dgHead] = nil
			cn.dgHead++
			c.buffered -= len(b)
			cn.buffered -= len(b)
			if cn.dgHead == len(cn.dgrams) {
				cn.dgrams, cn.dgHead = cn.dgrams[:0], 0
			}
			c.matchDatagram(cn, h, b, now)
		}
		c.release(cn)
		c.forgetIdle(cn)
		return
	}
	if cn.diverged {
		return
	}
	// The primary's frames not yet matched are its held frames, in order.
	for _, h := range cn.data.items() {
		if !h.matched {
			c.matchDatagram(cn, h, p.body, now)
			c.release(cn)
			c.forgetIdle(cn)
			return
		}
	}
	if c.buffered+len(p.body) > c.cfg.MaxBufferedBytes {
		c.overflow(cn, now)
		return
	}
	c.buffered += len(p.body)
	cn.buffered += len(p.body)
	cn.dgrams = append(cn.dgrams, bytes.Clone(p.body))
}

func (c *Comparator) matchDatagram(cn *conn, h *held, body []byte, now time.Duration) {
	if i := firstDiff(h.body, body); i >= 0 {
		c.mismatch(cn, int64(i), now)
		return
	}
	h.matched = true
	cn.dgIndex++
}

// forgetIdle drops a datagram flow with nothing pending: it has no state.
func (c *Comparator) forgetIdle(cn *conn) {
	if !cn.diverged && !cn.holding() && cn.dgHead == len(cn.dgrams) {
		c.remove(cn)
	}
}

// firstDiff returns the first index where a and b differ (a shorter one
// differs at its end), or -1.
func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// TCP.

func (c *Comparator) tcp(s side, p *packet, frame []byte, now time.Duration) {
	cn := c.lookup(p.key, true, now)
	if !cn.tcp {
		// A datagram flow with the same key: IPv4 fragments of TCP.
		// Compare this one as a datagram too.
		c.datagram(s, p, frame, now)
		return
	}
	t := &p.tcp
	st := &cn.s[s]
	rst := t.flags&tcpRST != 0
	syn := t.flags&tcpSYN != 0 && !rst
	fin := t.flags&tcpFIN != 0 && !rst
	if syn {
		c.syn(cn, s, t, frame[t.off:t.off+t.hdrLen], now)
	} else if !st.known && !rst && !cn.s[1-s].known {
		// A connection whose SYN was not seen (it predates the last
		// checkpoint, or was forgotten): both sides share this frame's
		// sequence number as position 0, the mapping being the identity
		// after a checkpoint.
		cn.s[pri].base, cn.s[sec].base = t.seq, t.seq
		cn.s[pri].known, cn.s[sec].known = true, true
	}
	if !st.known && !rst {
		// The other side opened a new incarnation of the 4-tuple with a
		// SYN and this side has not: this is a segment of the old one,
		// which the comparator cannot place. The secondary's is dropped;
		// the primary's waits for the next checkpoint.
		if s == pri {
			c.hold(frame, nil, nil, now)
		}
		return
	}
	// The frame's place in the stream: data from start to end, then the
	// FIN if any.
	var start, end int64
	if !rst {
		start = cn.pos(s, t.seq)
		if syn {
			start++
		}
		end = start + int64(len(t.payload))
	}
	seqEnd := end
	if fin {
		seqEnd++
	}
	var h *held
	if s == pri {
		var q *queue
		switch {
		case rst || syn:
			q = &cn.data
		case len(t.payload) == 0 && !fin:
			q = &cn.acks // a pure acknowledgement
		case seqEnd > st.sndEnd:
			q = &cn.data // new bytes
		case seqEnd <= cn.matched:
			q = &cn.acks // a retransmission of compared bytes
		case start < cn.matched && !syn && tcpValid(frame, p):
			// A retransmission that runs past the compared bytes: its
			// compared part leaves (the client may lack it, and the
			// secondary, whose output it is too, may wait for the
			// client's acknowledgement of it to send the rest), the rest
			// is held in its first copy.
			frame = trimTCP(frame, p, int(cn.matched-start))
			seqEnd = cn.matched
			q = &cn.acks
			c.stats.Trimmed++
		default:
			// A retransmission of bytes still to be compared: their
			// first copy is held, and TCP takes this as a loss.
			c.stats.Dropped++
		}
		if q != nil {
			h = c.hold(frame, cn, q, now)
		}
		if h != nil {
			h.syn, h.rst = syn, rst
			if len(t.payload) > 0 || fin {
				h.end = seqEnd
			}
		}
	}
	if t.flags&tcpACK != 0 {
		if !st.ackSeen || seqAfter(t.ack, st.ack) {
			st.ack, st.ackSeen = t.ack, true
		}
		if h != nil {
			h.ack, h.hasAck = t.ack, true
		}
	}
	if rst {
		st.rst = true
	} else {
		st.sndEnd = max(st.sndEnd, seqEnd)
		if !cn.diverged {
			if fin {
				c.fin(cn, s, end, now)
			}
			c.data(cn, s, start, t.payload, now)
		}
	}
	if !cn.diverged {
		c.ends(cn, now)
	}
	c.release(cn)
}

// pos is the stream position of a side's sequence number: the one
// nearest the matched position, so streams may pass 4 GiB.
func (cn *conn) pos(s side, seq uint32) int64 {
	st := &cn.s[s]
	ref := st.base + uint32(cn.matched)
	return cn.matched + int64(int32(seq-ref))
}

// syn records a side's SYN: its initial sequence number and options.
func (c *Comparator) syn(cn *conn, s side, t *tcpHeader, hdr []byte, now time.Duration) {
	st := &cn.s[s]
	if st.synSeen && st.base == t.seq+1 {
		return // a retransmission
	}
	if st.known || st.rst || cn.closed {
		// A new SYN on a tuple this side used, or on a closed or reset
		// connection: a new incarnation of the connection. What was held
		// of the old one waits for the next checkpoint.
		c.reincarnate(cn)
	}
	st.base, st.known, st.synSeen = t.seq+1, true, true
	st.opts = parseSYNOptions(hdr)
	st.sndEnd = 0
	if o := &cn.s[1-s]; o.synSeen && o.opts != st.opts {
		c.mismatch(cn, -1, now)
	}
}

func (c *Comparator) reincarnate(cn *conn) {
	c.orphan(cn)
	c.dropBuffers(cn)
	c.closedUnlink(cn)
	cn.s = [2]stream{{fin: -1}, {fin: -1}}
	cn.matched, cn.closed, cn.diverged = 0, false, false
}

// fin records a side's FIN at position f.
func (c *Comparator) fin(cn *conn, s side, f int64, now time.Duration) {
	st := &cn.s[s]
	switch {
	case st.fin == f:
	case st.fin >= 0:
		c.mismatch(cn, min(st.fin, f), now) // the FIN moved
	case f < st.front:
		c.mismatch(cn, f, now) // a FIN before bytes already sent
	default:
		st.fin = f
	}
}

// data takes a side's payload bytes at position pos.
func (c *Comparator) data(cn *conn, s side, pos int64, data []byte, now time.Duration) {
	st := &cn.s[s]
	end := pos + int64(len(data))
	if len(data) == 0 || end <= st.front {
		return // nothing new: a retransmission
	}
	if st.fin >= 0 && end > st.fin {
		c.mismatch(cn, st.fin, now) // bytes after the FIN
		return
	}
	if pos < st.front {
		data = data[st.front-pos:]
		pos = st.front
	}
	if pos > st.front {
		c.gap(cn, s, pos, data, now)
		return
	}
	c.extend(cn, s, data, now)
	for !cn.diverged && len(st.gaps) > 0 && st.gaps[0].pos <= st.front {
		g := st.gaps[0]
		st.gaps = st.gaps[1:]
		c.buffered -= len(g.data)
		cn.buffered -= len(g.data)
		if e := g.pos + int64(len(g.data)); e > st.front {
			c.extend(cn, s, g.data[st.front-g.pos:], now)
		}
	}
	if len(st.gaps) == 0 {
		st.gaps = nil
	}
}

// extend appends bytes at a side's front: compared with the other side's
// where it is ahead, kept where this side is.
func (c *Comparator) extend(cn *conn, s side, b []byte, now time.Duration) {
	st := &cn.s[s]
	if cn.ahead == int(1-s) {
		pend := cn.pend[cn.pendOff:]
		n := min(len(b), len(pend))
		if i := firstDiff(b[:n], pend[:n]); i >= 0 {
			// The bytes before the difference matched: the frames that
			// hold only those may still leave.
			cn.matched += int64(i)
			c.stats.MatchedBytes += uint64(i)
			c.mismatch(cn, cn.matched, now)
			return
		}
		cn.matched += int64(n)
		st.front += int64(n)
		c.stats.MatchedBytes += uint64(n)
		c.buffered -= n
		cn.buffered -= n
		cn.pendOff += n
		if cn.pendOff == len(cn.pend) {
			cn.pend, cn.pendOff, cn.ahead = cn.pend[:0], 0, noSide
		}
		b = b[n:]
		if len(b) == 0 {
			return
		}
	}
	if c.buffered+len(b) > c.cfg.MaxBufferedBytes {
		c.overflow(cn, now)
		return
	}
	if cn.pendOff > 0 && cn.pendOff >= len(cn.pend)/2 {
		n := copy(cn.pend, cn.pend[cn.pendOff:])
		cn.pend, cn.pendOff = cn.pend[:n], 0
	}
	cn.pend = append(cn.pend, b...)
	cn.ahead = int(s)
	st.front += int64(len(b))
	c.buffered += len(b)
	cn.buffered += len(b)
}

// gap keeps a segment received beyond a side's front, but for the parts
// already kept.
func (c *Comparator) gap(cn *conn, s side, pos int64, data []byte, now time.Duration) {
	st := &cn.s[s]
	var add []segment
	for _, g := range st.gaps {
		if len(data) == 0 {
			break
		}
		gend := g.pos + int64(len(g.data))
		if gend <= pos {
			continue
		}
		if g.pos >= pos+int64(len(data)) {
			break
		}
		if g.pos > pos {
			add = append(add, segment{pos, data[:g.pos-pos]})
		}
		if gend >= pos+int64(len(data)) {
			data = nil
			break
		}
		data = data[gend-pos:]
		pos = gend
	}
	if len(data) > 0 {
		add = append(add, segment{pos, data})
	}
	n := 0
	for _, a := range add {
		n += len(a.data)
	}
	if len(st.gaps)+len(add) > maxGaps || c.buffered+n > c.cfg.MaxBufferedBytes {
		c.overflow(cn, now)
		return
	}
	for _, a := range add {
		st.gaps = append(st.gaps, segment{a.pos, bytes.Clone(a.data)})
	}
	slices.SortFunc(st.gaps, func(a, b segment) int {
		switch {
		case a.pos < b.pos:
			return -1
		case a.pos > b.pos:
			return 1
		}
		return 0
	})
	c.buffered += n
	cn.buffered += n
}

// ends checks how each side's stream ended (FIN, RST) against the other's.
func (c *Comparator) ends(cn *conn, now time.Duration) {
	for _, x := range [2]side{pri, sec} {
		sx, sy := &cn.s[x], &cn.s[1-x]
		if sx.rst && !sy.rst && (sy.front > cn.matched || len(sy.gaps) > 0 || sy.fin >= cn.matched) {
			// One side aborted; the other sent more than it did.
			c.mismatch(cn, cn.matched, now)
			return
		}
		if sx.fin >= 0 && sx.front == sx.fin && len(sx.gaps) == 0 {
			// This side's stream is complete: the other's must end there.
			if sy.front > sx.fin || (len(sy.gaps) > 0 && lastEnd(sy.gaps) > sx.fin) {
				c.mismatch(cn, sx.fin, now)
				return
			}
			if sy.fin >= 0 && sy.fin != sx.fin {
				c.mismatch(cn, min(sx.fin, sy.fin), now)
				return
			}
		}
	}
	ps, ss := &cn.s[pri], &cn.s[sec]
	if ps.fin >= 0 && ps.fin == ss.fin && cn.matched == ps.fin {
		// Both FINs at the same place, every byte before them matched.
		cn.matched++
		ps.front, ss.front = cn.matched, cn.matched
	}
	if !cn.closed && ((ps.fin >= 0 && cn.matched > ps.fin) || (ps.rst && ss.rst)) {
		cn.closed = true
		c.closedAppend(cn)
	}
}

func lastEnd(gs []segment) int64 {
	g := gs[len(gs)-1]
	return g.pos + int64(len(g.data))
}
