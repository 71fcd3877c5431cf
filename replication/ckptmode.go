package replication

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"ftvm/replication/ckpt"
	"ftvm/replication/core"
	"ftvm/replication/outbuf"
	"ftvm/statesync"
)

// The checkpointing modes' part of the driver (package ckpt's core): the
// link that carries checkpoints (Remus) or syncs and the clients' inputs
// (COLO) to the backup, and acknowledgements (and the secondary's
// outputs) back; the backup's stream; the checkpoints' figures.

// ckptMode carries out a checkpointing core's own actions.
type ckptMode struct {
	d     *driver
	stats ckptStats
	// pending is the capture the engine's goroutine took, until the
	// core's SendCheckpoint puts it on the link (under the driver's
	// lock).
	pending *statesync.Capture
	free    chan *statesync.Capture
}

func newCkptMode(d *driver) *ckptMode {
	return &ckptMode{d: d, free: make(chan *statesync.Capture, 4)}
}

// capture returns a capture to fill, reusing the buffers of one sent.
func (m *ckptMode) capture() *statesync.Capture {
	select {
	case c := <-m.free:
		return c
	default:
		return &statesync.Capture{}
	}
}

func (m *ckptMode) recycle(c *statesync.Capture) {
	select {
	case m.free <- c:
	default:
	}
}

func (m *ckptMode) carry(a core.Action) ([]func(), bool) {
	d := m.d
	l, _ := d.link.(*ckptLink)
	switch a := a.(type) {
	case ckpt.SendHeader:
		if l != nil {
			b, _ := json.Marshal(encodeHeader(a.Header))
			l.queue(ckptItem{msg: appendMessage(nil, msgCkptHeader, b)})
			if l.colo != nil {
				// The guest's connections from before this primary was
				// promoted keep their mapping on the secondary too.
				var chain []byte
				if n := d.r.nic; n != nil {
					chain = n.appendChain(nil)
				} else {
					chain = binary.AppendUvarint(nil, 0)
				}
				l.queue(ckptItem{msg: appendMessage(nil, msgColoMappings, chain)})
			}
		}
	case ckpt.SendCheckpoint:
		c := m.pending
		m.pending = nil
		if l != nil && c != nil && c.Seq == a.Seq {
			l.queue(ckptItem{capture: c})
		}
	case ckpt.SendHeartbeat:
		if l != nil {
			l.queue(ckptItem{msg: appendMessage(nil, msgCkptBeat, nil)})
		}
	case ckpt.SendEnd:
		if l != nil {
			b, _ := json.Marshal(ckptEnd{Reason: a.Reason})
			l.queue(ckptItem{msg: appendMessage(nil, msgCkptEnd, b)})
		}
	case ckpt.SendAck:
		if s, ok := d.stream.(*ckptStream); ok {
			s.ack(ckptAck{Seq: a.Seq, Ended: a.Ended})
		}
	default:
		return nil, false
	}
	return nil, true
}

func (m *ckptMode) open(j *joiner) (channel, func()) {
	r := m.d.r
	l := newCkptLink(m, j)
	m.stats.reset()
	switch r.cfg.Mode {
	case Checkpoint:
		// Every output waits for the checkpoint that ends its epoch.
		r.out.SetMode(outbuf.Held)
	case COLO:
		// The guest's frames go to the comparator from now on (it is
		// stopped since the state transfer); its console output leaves
		// at once.
		l.colo = newColoPrimary(r, l)
		r.coloP.Store(l.colo)
	}
	return l, l.start
}

// tick is the driver's tick: a COLO comparator's time passes, a
// secondary's rewriter forgets closed connections.
func (m *ckptMode) tick() {
	d := m.d
	d.mu.Lock()
	l, _ := d.link.(*ckptLink)
	d.mu.Unlock()
	if l != nil && l.colo != nil {
		l.colo.tick()
	}
	if c := d.r.coloS.Load(); c != nil {
		c.rw.tick()
	}
	if n := d.r.nic; n != nil {
		for _, rw := range n.rewriters() {
			rw.tick()
		}
	}
}

func (m *ckptMode) status(st *Status, cs core.Status, l, s channel, now time.Time) {
	st.Mode = m.d.r.cfg.Mode.String()
	// The checkpoints of the current link, or of the last one.
	m.stats.status(st, now)
	switch {
	case l != nil:
		cl := l.(*ckptLink)
		st.LogBytes = cl.written.Load() + cl.readBytes.Load()
		if cl.colo != nil {
			cs := cl.colo.stats()
			st.ComparedBytes, st.Mismatches, st.ComparatorHeld = cs.MatchedBytes, cs.Mismatches, cs.HeldFrames
		}
	case s != nil:
		st.LogBytes = s.(*ckptStream).received.Load()
	default:
		return
	}
	st.sampleRate(now)
}

// ckptStats are a link's checkpoints, for the status.
type ckptStats struct {
	mu     sync.Mutex
	n      uint64 // taken (primary) or applied (backup)
	pages  uint64
	bytes  uint64
	pause  time.Duration
	recent []CheckpointStat // the last recentCheckpoints, oldest first
	rateT  time.Time
	rateN  uint64
	rate   float64
}

// recentCheckpoints is how many checkpoints the status lists.
const recentCheckpoints = 64

func (s *ckptStats) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n, s.pages, s.bytes, s.pause, s.recent, s.rateT, s.rateN, s.rate = 0, 0, 0, 0, nil, time.Time{}, 0, 0
}

// add records a checkpoint taken or applied.
func (s *ckptStats) add(c CheckpointStat) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	s.pages += uint64(c.Pages)
	s.pause += c.Pause
	s.bytes += uint64(c.Bytes)
	if len(s.recent) == recentCheckpoints {
		copy(s.recent, s.recent[1:])
		s.recent = s.recent[:len(s.recent)-1]
	}
	s.recent = append(s.recent, c)
}

// update changes the figures of checkpoint seq, if it is still listed.
func (s *ckptStats) update(seq uint64, f func(*CheckpointStat)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.recent) - 1; i >= 0; i-- {
		if c := &s.recent[i]; c.Seq == seq {
			old := c.Bytes
			f(c)
			s.bytes += uint64(c.Bytes - old)
			return
		}
	}
}

func (s *ckptStats) status(st *Status, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rateT.IsZero() || s.n < s.rateN {
		s.rateT, s.rateN = now, s.n
	} else if dt := now.Sub(s.rateT); dt >= time.Second {
		s.rate = float64(s.n-s.rateN) / dt.Seconds()
		s.rateT, s.rateN = now, s.n
	}
	st.Checkpoints, st.CheckpointRate = s.n, s.rate
	st.CheckpointPages, st.CheckpointBytes, st.CheckpointPause = s.pages, s.bytes, s.pause
	st.RecentCheckpoints = append([]CheckpointStat(nil), s.recent...)
}

// ckptItem is what a link's writer sends: a message, or a checkpoint to
// encode.
type ckptItem struct {
	msg     []byte
	capture *statesync.Capture
}

// ckptLink is a checkpointing primary's link to its backup: a writer
// goroutine sends what is queued (checkpoints are encoded there, with
// their MAC, while the guest runs on), a reader goroutine takes the
// backup's acknowledgements (and a COLO secondary's outputs and sync
// messages).
type ckptLink struct {
	m    *ckptMode
	d    *driver
	id   string
	conn *tls.Conn
	br   *bufio.Reader
	key  []byte

	mu     sync.Mutex
	cond   *sync.Cond
	q      []ckptItem
	qBytes int
	over   bool // the queue overflowed: the backup does not keep up
	closed bool

	lastAck   atomic.Int64 // unix nanoseconds
	written   atomic.Int64 // bytes written to the connection
	readBytes atomic.Int64 // payload bytes read from it

	// colo is the COLO mode's comparison (nil: Remus).
	colo *coloPrimary
}

func newCkptLink(m *ckptMode, j *joiner) *ckptLink {
	l := &ckptLink{m: m, d: m.d, id: j.id, conn: j.conn, br: j.br, key: checkpointKey(j.conn)}
	l.cond = sync.NewCond(&l.mu)
	l.lastAck.Store(time.Now().UnixNano())
	return l
}

// checkpointKey is the secret the checkpoints' MACs are made with on this
// connection: keying material exported from its TLS session, which both
// ends hold and nobody else does (RFC 8446, section 7.5).
func checkpointKey(c *tls.Conn) []byte {
	st := c.ConnectionState()
	k, err := st.ExportKeyingMaterial("ftvm checkpoint key", nil, 32)
	if err != nil {
		// Not TLS 1.3 (LoadTLS requires it): no key is as good as a
		// checksum, and the TLS records are authenticated anyway.
		return nil
	}
	return k
}

func (l *ckptLink) start() {
	now := time.Now()
	l.d.r.setStatus(func(s *Status) { s.LinkSince = now })
	go l.write()
	go l.read()
}

func (l *ckptLink) heard() time.Time { return time.Unix(0, l.lastAck.Load()) }
func (l *ckptLink) end()             { l.close(nil) }

// maxLinkQueue bounds the messages (the clients' inputs, on a COLO
// primary) waiting for the link: a backup that does not take them is lost.
// Checkpoints are bounded by the core (MaxInFlight).
const maxLinkQueue = 64 << 20

func (l *ckptLink) queue(it ckptItem) {
	l.mu.Lock()
	if l.closed || l.over {
		l.mu.Unlock()
		if it.capture != nil {
			l.m.recycle(it.capture)
		}
		return
	}
	if l.qBytes += len(it.msg); l.qBytes > maxLinkQueue {
		l.over = true
	}
	l.q = append(l.q, it)
	l.mu.Unlock()
	l.cond.Signal()
}

func (l *ckptLink) close(cause error) {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.cond.Broadcast()
	l.conn.Close()
	if l.colo != nil {
		l.colo.detach()
	}
}

// deadlineWriter gives every write on a connection a timeout.
type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
	n       *atomic.Int64
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	w.c.SetWriteDeadline(time.Now().Add(w.timeout))
	n, err := w.c.Write(p)
	w.n.Add(int64(n))
	return n, err
}

// write sends what is queued, in order.
func (l *ckptLink) write() {
	bw := bufio.NewWriterSize(deadlineWriter{l.conn, l.d.r.cfg.Timeout, &l.written}, 256<<10)
	// A checkpoint's records go through cw in messages of at most
	// maxMessage bytes; enc gathers the encoder's small writes.
	cw := &chunkWriter{w: bw, t: msgCkptData}
	enc := bufio.NewWriterSize(cw, maxMessage)
	for {
		l.mu.Lock()
		for len(l.q) == 0 && !l.closed {
			l.cond.Wait()
		}
		if l.closed {
			l.mu.Unlock()
			return
		}
		q, over := l.q, l.over
		l.q, l.qBytes = nil, 0
		l.mu.Unlock()
		if over {
			l.d.stepLink(l, core.LinkFailed{Err: fmt.Errorf("the backup does not keep up: %d MiB wait to be sent", maxLinkQueue>>20)})
			return
		}
		for _, it := range q {
			var err error
			if it.capture != nil {
				err = l.send(it.capture, enc)
			} else {
				_, err = bw.Write(it.msg)
			}
			if err == nil {
				err = bw.Flush()
			}
			if err != nil {
				l.d.stepLink(l, core.LinkFailed{Err: fmt.Errorf("sending to the backup: %w", err)})
				return
			}
		}
	}
}

// send encodes checkpoint c onto the link.
func (l *ckptLink) send(c *statesync.Capture, enc *bufio.Writer) error {
	defer l.m.recycle(c)
	n, err := c.Encode(enc, l.key)
	if err == nil {
		err = enc.Flush()
	}
	if err != nil {
		return err
	}
	l.m.stats.update(c.Seq, func(s *CheckpointStat) { s.Bytes = n })
	return nil
}

// read takes the backup's messages.
func (l *ckptLink) read() {
	for {
		t, p, err := readCkptMessage(l.br)
		if err != nil {
			l.d.stepLink(l, core.LinkFailed{Err: fmt.Errorf("backup gone: %w", err)})
			return
		}
		l.readBytes.Add(int64(len(p)))
		switch {
		case t == msgCkptAck:
			a, err := decodeCkptAck(p)
			if err != nil {
				l.d.stepLink(l, core.LinkFailed{Err: err})
				return
			}
			l.lastAck.Store(time.Now().UnixNano())
			l.m.stats.update(a.Seq, func(s *CheckpointStat) {
				if s.Ack == 0 {
					s.Ack = time.Since(s.At)
				}
			})
			l.d.stepLink(l, ckpt.Acked{Seq: a.Seq, Ended: a.Ended})
		case l.colo != nil && (t == msgColoOutput || t == msgColoSync):
			l.lastAck.Store(time.Now().UnixNano())
			if err := l.colo.receive(t, p); err != nil {
				l.d.stepLink(l, core.LinkFailed{Err: err})
				return
			}
		default:
			l.d.stepLink(l, core.LinkFailed{Err: fmt.Errorf("%w: backup sent %v", errProtocol, t)})
			return
		}
	}
}

// ckptStream is a checkpointing backup's connection to its primary: a
// reader goroutine takes the primary's messages (a Remus backup applies
// the checkpoints there: its guest does not run; a COLO secondary queues
// the inputs and sync messages for its engine's goroutine), a writer
// goroutine sends the acknowledgements (and a COLO secondary's outputs
// and sync messages).
type ckptStream struct {
	m       *ckptMode
	d       *driver
	conn    *tls.Conn
	br      *bufio.Reader
	primary string
	key     []byte
	applier *statesync.Applier // Remus

	done    chan struct{} // closed when the reader has returned
	closing chan struct{}
	once    sync.Once

	mu      sync.Mutex
	pending *ckptAck
	q       [][]byte // messages to write
	kick    chan struct{}
	wmu     sync.Mutex // held while writing to the connection

	lastRecv atomic.Int64 // unix nanoseconds
	received atomic.Int64 // bytes of checkpoints
	// commits are the checkpoints the applier committed during a Write.
	commits []statesync.Commit
	// colo is a COLO secondary's part (nil: Remus).
	colo *coloSecondary
}

func newCkptStream(m *ckptMode, j *joined) *ckptStream {
	s := &ckptStream{m: m, d: m.d, conn: j.conn, br: j.br, primary: j.primary, key: checkpointKey(j.conn),
		done: make(chan struct{}), closing: make(chan struct{}), kick: make(chan struct{}, 1)}
	s.lastRecv.Store(time.Now().UnixNano())
	return s
}

func (s *ckptStream) heard() time.Time { return time.Unix(0, s.lastRecv.Load()) }

// end closes the stream (close writes the last acknowledgement first).
func (s *ckptStream) end() { s.close(nil) }

// close closes the stream. An acknowledgement not yet written goes first
// (a backup that stops with the guest acknowledges the end as it stops).
func (s *ckptStream) close(error) {
	s.once.Do(func() {
		s.mu.Lock()
		a := s.pending
		s.pending = nil
		s.mu.Unlock()
		if a != nil {
			s.writeRaw(appendMessage(nil, msgCkptAck, a.encode()), time.Second)
		}
		close(s.closing)
		s.conn.Close()
	})
}

func (s *ckptStream) ack(a ckptAck) {
	s.mu.Lock()
	s.pending = &a
	s.mu.Unlock()
	s.kickWriter()
}

// send queues a message to the primary (a COLO secondary's outputs and
// sync messages).
func (s *ckptStream) send(t msgType, p []byte) {
	s.mu.Lock()
	s.q = append(s.q, appendMessage(nil, t, p))
	s.mu.Unlock()
	s.kickWriter()
}

func (s *ckptStream) kickWriter() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// write sends the queued messages and the latest acknowledgement.
func (s *ckptStream) write() {
	timeout := s.d.r.cfg.Timeout
	for {
		select {
		case <-s.kick:
		case <-s.closing:
			return
		}
		s.mu.Lock()
		q, a := s.q, s.pending
		s.q, s.pending = nil, nil
		s.mu.Unlock()
		if a != nil {
			q = append(q, appendMessage(nil, msgCkptAck, a.encode()))
		}
		for _, m := range q {
			if err := s.writeRaw(m, timeout); err != nil {
				// The connection is dead or the primary stopped reading:
				// the reader finds out, once it has taken what the
				// primary sent (a Remus backup applies every checkpoint
				// it received whole), or the ticks do.
				return
			}
		}
	}
}

func (s *ckptStream) writeRaw(b []byte, timeout time.Duration) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.conn.SetWriteDeadline(time.Now().Add(timeout))
	_, err := s.conn.Write(b)
	return err
}

// read takes the primary's messages until the stream ends.
func (s *ckptStream) read() {
	defer close(s.done)
	for {
		t, p, err := readCkptMessage(s.br)
		if err != nil {
			select {
			case <-s.closing:
			default:
				s.d.stepLink(s, core.LinkFailed{Err: err, Tampered: tampered(err)})
			}
			return
		}
		s.lastRecv.Store(time.Now().UnixNano())
		s.d.stepLink(s, ckpt.Received{})
		switch {
		case t == msgCkptData && s.applier != nil:
			s.received.Add(int64(len(p)))
			if !s.apply(p) {
				return
			}
		case t == msgCkptBeat:
		case s.colo != nil && (t == msgColoInput || t == msgColoSync):
			s.received.Add(int64(len(p)))
			if err := s.colo.receive(t, p); err != nil {
				s.d.stepLink(s, core.LinkFailed{Err: err})
				return
			}
		case t == msgCkptEnd:
			var e ckptEnd
			if err := readJSONPayload(p, &e); err != nil {
				s.d.stepLink(s, core.LinkFailed{Err: err})
				return
			}
			s.d.stepLink(s, ckpt.Ended{Reason: e.Reason})
			return
		default:
			s.d.stepLink(s, core.LinkFailed{Err: fmt.Errorf("%w: the primary sent %v", errProtocol, t)})
			return
		}
	}
}

// apply gives checkpoint bytes to the applier and steps what it
// committed; false: the checkpoints are refused.
func (s *ckptStream) apply(p []byte) bool {
	t0 := time.Now()
	s.commits = s.commits[:0]
	_, err := s.applier.Write(p)
	for _, c := range s.commits {
		s.m.stats.add(CheckpointStat{Seq: c.Seq, At: t0, Pause: time.Since(t0), Pages: c.Pages, StateBytes: c.StateBytes,
			DiskBytes: c.DiskBytes, Bytes: c.Bytes})
	}
	if err != nil {
		s.d.stepLink(s, core.ApplyFailed{Err: err})
		return false
	}
	if n := len(s.commits); n > 0 {
		c := s.commits[n-1]
		s.d.stepLink(s, ckpt.Committed{Seq: c.Seq, Instret: c.Instret})
	}
	return true
}
