package replication

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"ftvm/migrate"
	"ftvm/replay"
	"ftvm/replay/eventlog"
	"ftvm/replication/core"
	"ftvm/replication/outbuf"
	"ftvm/runloop"
	"ftvm/vm"
)

// RunBackup joins the primary at addr, follows its log, and, if the primary
// dies and this replica wins the arbitration, goes live and continues as
// the primary (accepting a new backup on ln). It returns when the guest
// powers off, ctx ends, the log is refused (corrupt, forged, divergent) or
// the replica is deposed.
func (r *Replica) RunBackup(ctx context.Context, addr string, ln net.Listener) (vm.StopReason, error) {
	if r.cfg.Factory == nil {
		return vm.StopLimit, errors.New("replication: a backup needs a Factory")
	}
	if r.cfg.Mode != Replay {
		return r.runCkptBackup(ctx, addr, ln)
	}
	c, err := core.NewBackup(r.cfg.coreConfig())
	if err != nil {
		return vm.StopLimit, err
	}
	// Anyone who dials this replica before it is a primary is told whom
	// to join (the core refuses).
	ctx, stop := r.d.run(ctx, c, replayMode{&r.d}, ln)
	defer stop()
	r.setStatus(func(s *Status) { s.Role = "joining" })
	r.out.SetMode(outbuf.Uncertain)
	s, e, err := r.join(ctx, addr)
	if err != nil {
		r.stopStatus(err)
		return vm.StopLimit, err
	}
	reason, err := r.follow(ctx, s, e)
	if err != nil || !r.d.golive() {
		r.stopStatus(err)
		return reason, err
	}
	r.failedOver()
	return r.primaryLoop(ctx, e)
}

// stream is a backup's connection to its primary: the log comes in
// through a reader goroutine, acknowledgements go out through a writer
// goroutine.
type stream struct {
	d       *driver
	conn    *tls.Conn
	br      *bufio.Reader
	rd      *eventlog.Reader
	primary string
	q       chan queued
	done    chan struct{} // closed by close
	addr    string        // the primary's, for a repair
	repair  *backupRepair // a repair in progress

	mu      sync.Mutex
	pending *core.SendAck
	ending  bool // close once the pending acknowledgement is written
	kick    chan struct{}
	once    sync.Once
	closed  chan struct{} // closed by close, after the connection

	lastRecv atomic.Int64 // unix nanoseconds
}

// queued is a received record, its frame and the stream offset where it
// ends.
type queued struct {
	rec   eventlog.Record
	frame int64
	end   int64
}

// deadlineReader gives every read on a connection a timeout while the
// backup joins (the hello, the state transfer); once it follows the log,
// the core's ticks judge the primary's silence instead (0: no deadline).
type deadlineReader struct {
	c       net.Conn
	timeout atomic.Int64 // nanoseconds
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if t := d.timeout.Load(); t > 0 {
		d.c.SetReadDeadline(time.Now().Add(time.Duration(t)))
	} else {
		d.c.SetReadDeadline(time.Time{})
	}
	return d.c.Read(p)
}

// joined is a backup's connection to its primary once the state is
// transferred.
type joined struct {
	conn    *tls.Conn
	br      *bufio.Reader
	dr      *deadlineReader
	primary string
	engine  Engine
	st      migrate.ReceiveStats
	t0      time.Time
}

// dial dials the primary, says hello and receives its state. Every read
// has a timeout until the caller clears dr's.
func (r *Replica) dial(ctx context.Context, addr string) (*joined, error) {
	cfg := &r.cfg
	dl := tls.Dialer{NetDialer: &net.Dialer{Timeout: handshakeTimeout}, Config: cfg.TLS}
	c, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("joining the primary at %s: %w", addr, err)
	}
	tc := c.(*tls.Conn)
	j := &joined{conn: tc, dr: &deadlineReader{c: tc}}
	j.primary, _ = peerID(tc)
	j.dr.timeout.Store(int64(max(cfg.Timeout, handshakeTimeout)))
	j.br = bufio.NewReaderSize(j.dr, 256<<10)
	fail := func(err error) (*joined, error) {
		tc.Close()
		return nil, err
	}
	tc.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	h := hello{Version: core.ProtocolVersion, Cluster: cfg.Cluster, ID: cfg.ID}
	if cfg.Mode != Replay {
		h.Mode = cfg.Mode.String()
	}
	if err := writeJSON(tc, msgHello, h); err != nil {
		return fail(fmt.Errorf("joining the primary at %s: %w", addr, err))
	}
	tc.SetWriteDeadline(time.Time{})
	var w welcome
	if err := readJSON(j.br, msgWelcome, &w); err != nil {
		return fail(fmt.Errorf("joining the primary at %s: %w", addr, err))
	}
	if w.Primary != j.primary {
		return fail(fmt.Errorf("joining %s: the welcome names %q but the certificate is %q's", addr, w.Primary, j.primary))
	}
	r.log.Info("joining", "primary", j.primary, "at", addr, "mode", cfg.Mode.String())
	j.t0 = time.Now()
	var disk migrate.Disk
	if cfg.Disk != nil {
		disk = cfg.Disk
	}
	j.engine, j.st, err = migrate.Receive(connRW{j.br, tc}, disk, cfg.Factory(r.Outputs()), migrate.ReceiveOptions{MaxMemory: maxGuestMemory})
	if err != nil {
		return fail(fmt.Errorf("the state transfer from %s: %w", j.primary, err))
	}
	return j, nil
}

// following records that the backup follows the primary now.
func (r *Replica) following(j *joined) {
	cs, _ := r.d.coreStatus()
	now := time.Now()
	e := j.engine
	r.setStatus(func(st *Status) {
		st.Role, st.View, st.Peer, st.LinkSince, st.Instret = "backup", cs.View, j.primary, now, e.Instret()
	})
	r.log.Info("following the primary", "primary", j.primary, "view", cs.View.String(), "instret", e.Instret(),
		"received_bytes", j.st.BytesReceived, "disk_chunks", j.st.Chunks, "transfer", now.Sub(j.t0).String())
}

// join dials the primary, receives its state and reads the log's header.
func (r *Replica) join(ctx context.Context, addr string) (*stream, Engine, error) {
	j, err := r.dial(ctx, addr)
	if err != nil {
		return nil, nil, err
	}
	s := &stream{d: &r.d, conn: j.conn, br: j.br, primary: j.primary, q: make(chan queued, 4096), done: make(chan struct{}), kick: make(chan struct{}, 1), closed: make(chan struct{}), addr: addr}
	fail := func(err error) (*stream, Engine, error) {
		j.conn.Close()
		return nil, nil, err
	}
	if s.rd, err = eventlog.NewReader(s.br); err != nil {
		return fail(fmt.Errorf("the primary's log: %w", err))
	}
	// From here on the core's ticks judge the primary's silence.
	j.dr.timeout.Store(0)
	r.d.mu.Lock()
	r.d.stream = s
	r.d.mu.Unlock()
	r.d.step(core.Following{Primary: s.primary, Header: s.rd.Header(), State: j.st.Digest, Instret: j.engine.Instret()})
	if stop := r.d.stopped(); stop != nil {
		return fail(stop.Err)
	}
	r.following(j)
	return s, j.engine, nil
}

// follow replays the log as it arrives, until the core stops the replica
// or tells it to go live.
func (r *Replica) follow(ctx context.Context, s *stream, e Engine) (vm.StopReason, error) {
	d := &r.d
	s.lastRecv.Store(time.Now().UnixNano())
	go s.read()
	go s.writeAcks()
	p := replay.NewPlayer(e)
	r.hashes = replay.NewOutputs()
	p.SetOutputs(r.hashes)
	defer func() { r.hashes = nil }()
	for {
		if stop := d.stopped(); stop != nil {
			if stop.Err != nil {
				return vm.StopLimit, stop.Err
			}
			// The run ended with the primary's guest: the acknowledgement
			// of the End record goes out before the connection closes
			// (the primary would take a backup that hangs up first for
			// lost, and declare itself unprotected).
			<-s.closed
			reason := vm.ParseStopReason(stop.Reason)
			return reason, guestEnded(reason, e.Instret())
		}
		if d.golive() {
			return vm.StopLimit, nil
		}
		select {
		case q := <-s.q:
			var err error
			if s.repair != nil && q.rec.Kind == eventlog.KindDigest {
				err = skipDigest(e, q.rec)
			} else {
				err = apply(p, e, q.rec)
			}
			if div, ok := repairable(err); ok && s.repair == nil {
				// A memory error: repaired from the primary, rather than
				// refused as a divergence.
				if s.repair, err = r.startRepair(ctx, s, div); err != nil {
					err = fmt.Errorf("%v; the repair could not start: %w", div, err)
				}
			}
			if err != nil {
				d.step(core.ApplyFailed{Err: err})
				continue
			}
			d.step(core.Applied{Record: q.rec, Frame: q.frame, Offset: q.end, Instret: e.Instret()})
			if s.repair != nil && q.frame >= s.repair.at.Frames {
				err := r.finishRepair(ctx, s.repair, e)
				s.repair = nil
				if err != nil {
					d.step(core.ApplyFailed{Err: fmt.Errorf("repair: %w", err)})
				}
			}
		case <-d.changed:
			r.doFlips(e)
		case <-ctx.Done():
			return vm.StopLimit, ctx.Err()
		}
	}
}

// apply replays one record.
func apply(p *replay.Player, e Engine, rec eventlog.Record) error {
	if rec.Kind == kindSync {
		return replay.RunTo(e, rec.Instret)
	}
	return p.Apply(rec)
}

// guestEnded is the error of a backup whose primary's guest ended with
// reason at instret: none when it powered off or rebooted, the run loop's
// errors when it locked up or waits for an interrupt nothing can raise,
// as the primary reports them.
func guestEnded(reason vm.StopReason, instret uint64) error {
	switch reason {
	case vm.StopLockup:
		return fmt.Errorf("the primary's guest ended after %d instructions: %w", instret, runloop.ErrLockup)
	case vm.StopIdle:
		return fmt.Errorf("the primary's guest ended after %d instructions: %w", instret, runloop.ErrNoWake)
	}
	return nil
}

func (d *driver) golive() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.live
}

// read moves checked log records into the replay queue. A full queue stops
// it, which stops the TCP window and so slows the primary.
func (s *stream) read() {
	for {
		rec, err := s.rd.Next()
		if err != nil {
			if err != io.EOF { // io.EOF: after the End record
				s.d.stepLink(s, core.LinkFailed{Err: err, Tampered: tampered(err)})
			}
			return
		}
		s.lastRecv.Store(time.Now().UnixNano())
		s.d.stepLink(s, core.Received{Record: rec, Frame: s.rd.Frame(), Offset: s.rd.Offset(), Batch: s.br.Buffered() == 0})
		select {
		case s.q <- queued{rec, s.rd.Frame(), s.rd.Offset()}:
		case <-s.done:
			return
		}
	}
}

// ack hands the writer goroutine the latest acknowledgement (the core's
// SendAck); one not yet written is superseded.
func (s *stream) ack(a core.SendAck) {
	s.mu.Lock()
	s.pending = &a
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// end closes the stream once the acknowledgement pending is written (a
// clean end: the primary waits for the acknowledgement of its End record).
func (s *stream) end() {
	s.mu.Lock()
	s.ending = true
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *stream) writeAcks() {
	timeout := s.d.r.cfg.Timeout
	for {
		select {
		case <-s.kick:
		case <-s.done:
			return
		}
		s.mu.Lock()
		a, ending := s.pending, s.ending
		s.pending = nil
		s.mu.Unlock()
		if a == nil {
			if ending {
				s.close(nil)
				return
			}
			continue
		}
		m := ack{Frames: uint64(a.Frames), Bytes: uint64(a.Bytes), Replayed: a.Replayed}
		s.conn.SetWriteDeadline(time.Now().Add(timeout))
		if err := writeMessage(s.conn, msgAck, m.encode()); err != nil {
			s.d.stepLink(s, core.LinkFailed{Err: fmt.Errorf("acknowledging: %w", err)})
			s.close(nil)
			return
		}
		s.mu.Lock()
		ending = s.ending && s.pending == nil
		s.mu.Unlock()
		if ending {
			s.close(nil)
			return
		}
	}
}

func (s *stream) heard() time.Time { return time.Unix(0, s.lastRecv.Load()) }

func (s *stream) close(error) {
	s.once.Do(func() {
		close(s.done)
		s.conn.Close()
		close(s.closed)
	})
}

// tampered reports a TLS record that failed its integrity check here:
// someone altered the stream in transit. That is not evidence that the
// primary died, so the backup refuses the stream rather than taking over
// (crypto/tls reports its own alerts as a net.OpError "local error").
func tampered(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "local error"
}

// failedOver tells the network the guest's MAC lives here now and logs the
// failover (its figures are in the status already).
func (r *Replica) failedOver() {
	if nb := r.cfg.Host.Net; nb != nil {
		for {
			if _, ok := nb.TryReceive(); !ok {
				break
			}
		}
	}
	if r.cfg.Host.Announce != nil {
		r.cfg.Host.Announce()
	}
	st := r.Status()
	cs, _ := r.d.coreStatus()
	r.log.Warn("live", "view", cs.View.String(), "instret", cs.Instret,
		"silent_for", st.FailoverDetected.Sub(st.PrimaryLastHeard).String(), "takeover", st.FailoverLive.Sub(st.FailoverDetected).String())
}
