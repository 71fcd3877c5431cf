package replication

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"ftvm/host"
	"ftvm/replay"
	"ftvm/replay/eventlog"
	"ftvm/vm"
)

// primary is the state of a replica running the guest.
type primary struct {
	r    *Replica
	e    Engine
	view View
	ctx  context.Context

	joins chan *joiner // from the acceptor
	link  *link        // nil while unprotected
	join  *joiner      // a backup being brought up to date

	in *host.Inputs
}

// RunPrimary runs e as the pair's primary until the guest powers off, ctx
// ends, or the replica is deposed. Backups may join through ln (nil: never
// protected). e must have been built with r.Outputs().
func (r *Replica) RunPrimary(ctx context.Context, e Engine, ln net.Listener) (vm.StopReason, error) {
	v, err := r.claimPrimary(ctx)
	if err != nil {
		return vm.StopLimit, err
	}
	// The guest's MAC may have lived elsewhere before (an earlier
	// incarnation of the pair): tell the network it is here now.
	if r.cfg.Host.Announce != nil {
		r.cfg.Host.Announce()
	}
	return r.primaryLoop(ctx, e, v, ln)
}

// claimPrimary makes this replica the cluster's unprotected primary at the
// arbiter: a new cluster, or one that names this replica already.
func (r *Replica) claimPrimary(ctx context.Context) (View, error) {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cur, ok, err := r.cfg.Arbiter.Current(c)
	if err != nil {
		return View{}, fmt.Errorf("arbiter: %w", err)
	}
	if ok && cur.Primary != r.cfg.ID {
		return View{}, fmt.Errorf("cluster %q already has a primary at the arbiter: %v (start this replica as its backup, or use another cluster name)", r.cfg.Cluster, cur)
	}
	next := View{Generation: cur.Generation + 1, Primary: r.cfg.ID}
	won, now, err := r.cfg.Arbiter.Swap(c, cur, next)
	if err != nil {
		return View{}, fmt.Errorf("arbiter: %w", err)
	}
	if !won {
		return View{}, fmt.Errorf("cluster %q changed at the arbiter while starting: %v", r.cfg.Cluster, now)
	}
	return next, nil
}

func (r *Replica) primaryLoop(ctx context.Context, e Engine, v View, ln net.Listener) (vm.StopReason, error) {
	p := &primary{r: r, e: e, view: v, ctx: ctx, joins: make(chan *joiner), in: host.NewInputs(r.cfg.Host.ConsoleIn, r.cfg.Host.Net)}
	r.out.mode = modeSolo
	if pe, ok := e.(vm.Pauser); ok {
		r.out.pause = pe.Pause
	}
	r.setStatus(func(s *Status) { s.Role, s.View, s.Peer, s.Error = "primary", v, "", "" })
	r.log.Info("primary running", "view", v.String(), "instret", e.Instret())
	if ln != nil {
		actx, cancel := context.WithCancel(ctx)
		defer cancel()
		go p.accept(actx, ln)
	}
	defer p.dropLink()
	reason, err := p.run()
	if err != nil {
		r.setStatus(func(s *Status) { s.Role, s.Error = "stopped", err.Error() })
	}
	return reason, err
}

// engine is what the loop runs: through the recorder while a backup
// listens, so that every input is logged.
func (p *primary) engine() vm.Engine {
	if p.link != nil {
		return p.link.rec
	}
	return p.e
}

func (p *primary) run() (vm.StopReason, error) {
	cfg := &p.r.cfg
	pace := host.NewPace(p.e)
	p.e.SetIdleSkip(false)
	for {
		if err := p.control(); err != nil {
			return vm.StopLimit, err
		}
		if err := p.throttle(); err != nil {
			return vm.StopLimit, err
		}
		reason := p.engine().Run(p.e.Instret() + cfg.Epoch)
		if err := p.endEpoch(false); err != nil {
			return reason, err
		}
		if err := p.deliverInputs(); err != nil {
			return reason, err
		}
		switch reason {
		case vm.StopPowerOff, vm.StopReboot, vm.StopLockup:
			return reason, p.finish(reason)
		case vm.StopIdle:
			if err := p.idle(pace); err != nil {
				return reason, err
			}
		}
		p.status()
	}
}

// endEpoch closes an epoch: if it produced outputs (or the backup has not
// heard from us for a heartbeat), a Sync record is appended and the
// outputs are held behind it; the log is flushed to the backup.
func (p *primary) endEpoch(heartbeat bool) error {
	l := p.link
	if l == nil {
		return nil
	}
	if p.r.out.pendingEpoch() || heartbeat || p.r.cfg.Lockstep || time.Since(l.lastSend) >= p.r.cfg.Heartbeat {
		at := p.e.Instret()
		rec := eventlog.Record{Instret: at, Kind: kindSync, Data: binary.AppendUvarint(nil, p.r.out.releasedThrough())}
		if err := l.w.Append(rec); err != nil {
			return p.backupLost(fmt.Errorf("log: %w", err))
		}
		p.r.out.hold(l.w.Frames(), at)
		l.syncSent(l.w.Frames())
	}
	if err := p.flush(); err != nil || !p.r.cfg.Lockstep {
		return err
	}
	for l.acked.Load() < l.w.Frames() {
		select {
		case <-l.acks:
		case <-l.dead:
			return p.backupLost(l.cause())
		case <-p.ctx.Done():
			return p.ctx.Err()
		}
	}
	return nil
}

func (p *primary) flush() error {
	l := p.link
	if l == nil {
		return nil
	}
	if err := l.w.Flush(); err != nil {
		return p.backupLost(fmt.Errorf("log: %w", err))
	}
	if err := l.rec.Err(); err != nil {
		return p.backupLost(fmt.Errorf("log: %w", err))
	}
	return nil
}

// deliverInputs hands the host's pending inputs to the guest (logged, when
// a backup listens). Its error is flush's: the log failed and the primary
// lost the arbitration that followed (ErrDeposed), or ctx ended while it
// tried to reach the arbiter. Either way the primary must stop.
func (p *primary) deliverInputs() error {
	if p.in.Deliver(p.engine()) {
		// Let the backup have the inputs while the guest works on them: the
		// acknowledgement of the epoch's Sync then comes sooner.
		return p.flush()
	}
	return nil
}

// idle waits, with the guest idle, for its timer, an input, a heartbeat
// due, or a control event; time then moves on to the host's.
func (p *primary) idle(pace host.Pace) error {
	for {
		// The engine is looked up on every turn: a backup may join while
		// the guest idles, and from then on every input must be logged.
		e := p.engine()
		dl := p.e.Deadline()
		now := pace.Now()
		if dl != ^uint64(0) && dl <= now {
			_, err := e.Deliver(vm.AdvanceTime{To: dl})
			return err
		}
		if p.in.Pending() {
			// The UART is full; the guest must run to drain it.
			_, err := e.Deliver(vm.AdvanceTime{To: max(now, p.e.Now())})
			return err
		}
		wait := pace.Until(dl, now)
		var hb <-chan time.Time
		var lost <-chan struct{}
		if p.link != nil {
			t := time.NewTimer(max(0, p.r.cfg.Heartbeat-time.Since(p.link.lastSend)))
			defer t.Stop()
			hb, lost = t.C, p.link.dead
		}
		// A state transfer in progress goes on while the guest idles.
		var joining <-chan struct{}
		if p.join != nil {
			joining = closedChan
		}
		t := time.NewTimer(wait)
		woke := true
		select {
		case <-joining:
			woke = false
		case b, ok := <-p.in.Console():
			p.in.Took(b, ok)
		case <-p.in.NetReady():
		case <-t.C:
		case <-hb:
			woke = false
		case <-lost:
			woke = false
		case j := <-p.joins:
			p.startJoin(j)
			woke = false
		case <-p.ctx.Done():
			t.Stop()
			return p.ctx.Err()
		}
		t.Stop()
		if !woke {
			if err := p.control(); err != nil {
				return err
			}
			if err := p.endEpoch(true); err != nil {
				return err
			}
			p.status()
			continue
		}
		to := pace.Now()
		if dl != ^uint64(0) && to > dl {
			to = dl
		}
		if _, err := e.Deliver(vm.AdvanceTime{To: max(to, p.e.Now())}); err != nil {
			return err
		}
		return p.deliverInputs()
	}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// control handles what happened outside the loop: a backup that asks to
// join, or the backup's link failing.
func (p *primary) control() error {
	if l := p.link; l != nil {
		select {
		case <-l.dead:
			return p.backupLost(l.cause())
		default:
		}
	}
	select {
	case j := <-p.joins:
		p.startJoin(j)
	default:
	}
	if p.join != nil {
		return p.stepJoin()
	}
	return nil
}

// throttle makes the primary wait while the backup trails by more than
// MaxLag instructions, so the lag (and the time a failover must replay)
// stays bounded. Heartbeats continue meanwhile.
func (p *primary) throttle() error {
	for l := p.link; l != nil && p.e.Instret() > l.replayed.Load()+p.r.cfg.MaxLag; l = p.link {
		select {
		case <-l.dead:
			return p.backupLost(l.cause())
		case <-time.After(time.Millisecond):
		case <-p.ctx.Done():
			return p.ctx.Err()
		}
		if err := p.endEpoch(false); err != nil {
			return err
		}
	}
	return nil
}

// backupLost is called when the link to the backup failed. The primary
// may continue unprotected only after winning the arbitration; until then
// the guest does not run and its outputs stay held.
func (p *primary) backupLost(cause error) error {
	l := p.link
	if l == nil {
		return nil
	}
	p.r.log.Warn("backup lost", "backup", l.id, "cause", cause.Error(), "held_outputs", p.r.out.heldCount())
	p.dropLink()
	p.r.setStatus(func(s *Status) { s.Role = "arbitrating" })
	next := View{Generation: p.view.Generation + 1, Primary: p.r.cfg.ID}
	won, err := p.r.arbitrate(p.ctx, p.view, next)
	if err != nil {
		return err
	}
	if !won {
		p.r.out.dropAll()
		return ErrDeposed
	}
	p.view = next
	p.r.out.flushAll()
	p.r.setStatus(func(s *Status) {
		s.Role, s.View, s.Peer, s.PeerInstret, s.LagInsns, s.LagBytes, s.Error = "primary", next, "", 0, 0, 0, ""
	})
	p.r.log.Info("continuing unprotected", "view", next.String())
	return nil
}

// arbitrate swaps the view from old to next at the arbiter, retrying while
// it cannot be reached (a replica that cannot reach the arbiter never acts
// alone). It reports whether this replica won.
func (r *Replica) arbitrate(ctx context.Context, old, next View) (bool, error) {
	backoff := 20 * time.Millisecond
	for {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		won, cur, err := r.cfg.Arbiter.Swap(c, old, next)
		cancel()
		if err == nil {
			if won {
				r.log.Info("won the arbitration", "view", next.String())
			} else {
				r.log.Warn("lost the arbitration", "view", cur.String())
			}
			return won, nil
		}
		r.log.Warn("arbiter unreachable: not acting alone", "err", err.Error())
		r.setStatus(func(s *Status) { s.Error = "arbiter unreachable: " + err.Error() })
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// finish ends a run whose guest stopped: the backup gets the End record
// and the held outputs leave once it has it.
func (p *primary) finish(reason vm.StopReason) error {
	l := p.link
	if l == nil {
		return nil
	}
	if err := l.rec.Close(reason); err != nil {
		return p.backupLost(err)
	}
	p.r.out.hold(l.w.Frames(), p.e.Instret())
	deadline := time.After(p.r.cfg.Timeout)
	for l.acked.Load() < l.w.Frames() {
		select {
		case <-l.dead:
			return p.backupLost(l.cause())
		case <-deadline:
			return p.backupLost(errors.New("no acknowledgement of the End record"))
		case <-time.After(time.Millisecond):
		}
	}
	p.r.out.release(l.acked.Load())
	return nil
}

func (p *primary) status() {
	l := p.link
	in := p.e.Instret()
	p.r.setStatus(func(s *Status) {
		s.Instret, s.HeldOutputs = in, p.r.out.heldCount()
		if l != nil {
			rep := l.replayed.Load()
			s.PeerInstret, s.LagInsns = rep, in-min(in, rep)
			s.LogBytes, s.LogFrames = l.w.Offset(), l.w.Frames()
			s.LagBytes = l.flushedBytes.Load() - l.ackedBytes.Load()
			s.AckLatency = l.averageAck()
			s.LastHeartbeat = time.Unix(0, l.lastAck.Load())
			s.sampleRate(time.Now())
		}
	})
}

// link is a primary's connection to its backup once the backup is up to
// date: the log goes out through snd, acknowledgements come back.
type link struct {
	id   string
	conn *tls.Conn
	w    *eventlog.Writer
	rec  *replay.Recorder
	snd  *sender

	acked         atomic.Int64 // log frames the backup holds
	ackedBytes    atomic.Int64 // and the log bytes they end at
	flushedFrames atomic.Int64 // log frames handed to the sender
	flushedBytes  atomic.Int64
	replayed      atomic.Uint64
	lastAck       atomic.Int64 // unix nanoseconds
	lastSend      time.Time    // engine goroutine only

	acks chan struct{} // signalled (coalesced) on every new acknowledgement

	// The acknowledgement latency of Sync records: when the newest one not
	// yet timed was appended, and a moving average of how long its
	// acknowledgement took (the output rule's cost, network included).
	ackMu      sync.Mutex
	timedFrame int64
	timedAt    time.Time
	ackLatency time.Duration
	dead       chan struct{} // closed when the link fails
	once       sync.Once
	err        error
	readers    sync.WaitGroup
}

func (l *link) fail(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.dead)
		l.conn.Close()
	})
}

func (l *link) cause() error {
	<-l.dead
	return l.err
}

// readAcks reads the backup's acknowledgements, releasing the outputs they
// cover. Silence longer than the timeout kills the link.
func (l *link) readAcks(r *Replica, br *bufio.Reader) {
	defer l.readers.Done()
	for {
		l.conn.SetReadDeadline(time.Now().Add(r.cfg.Timeout))
		t, payload, err := readMessage(br)
		if err != nil {
			l.fail(fmt.Errorf("backup silent or gone: %w", err))
			return
		}
		if t != msgAck {
			l.fail(fmt.Errorf("%w: backup sent %v", errProtocol, t))
			return
		}
		a, err := decodeAck(payload)
		if err != nil || int64(a.Frames) > l.flushedFrames.Load() || int64(a.Bytes) > l.flushedBytes.Load() {
			l.fail(fmt.Errorf("%w: backup acknowledged frames it was not sent", errProtocol))
			return
		}
		l.lastAck.Store(time.Now().UnixNano())
		l.replayed.Store(a.Replayed)
		if int64(a.Frames) > l.acked.Load() {
			l.acked.Store(int64(a.Frames))
			l.ackedAt(int64(a.Frames))
			l.ackedBytes.Store(int64(a.Bytes))
			r.out.release(int64(a.Frames))
			select {
			case l.acks <- struct{}{}:
			default:
			}
		}
	}
}

// syncSent notes that Sync frame f was appended now, unless one is being
// timed already.
func (l *link) syncSent(f int64) {
	l.ackMu.Lock()
	if l.timedFrame == 0 {
		l.timedFrame, l.timedAt = f, time.Now()
	}
	l.ackMu.Unlock()
}

// ackedAt takes the acknowledgement of frames up to f into the average.
func (l *link) ackedAt(f int64) {
	l.ackMu.Lock()
	if l.timedFrame != 0 && f >= l.timedFrame {
		d := time.Since(l.timedAt)
		if l.ackLatency == 0 {
			l.ackLatency = d
		} else {
			l.ackLatency += (d - l.ackLatency) / 8
		}
		l.timedFrame = 0
	}
	l.ackMu.Unlock()
}

func (l *link) averageAck() time.Duration {
	l.ackMu.Lock()
	defer l.ackMu.Unlock()
	return l.ackLatency
}

// dropLink closes the link to the backup (if any) and any join in progress.
func (p *primary) dropLink() {
	if j := p.join; j != nil {
		j.ts.Close()
		j.conn.Close()
		p.join = nil
	}
	l := p.link
	if l == nil {
		return
	}
	l.fail(errors.New("link closed"))
	l.snd.stop()
	l.readers.Wait()
	p.link = nil
	p.r.out.hashes = nil
	// Nothing may leave until the arbitration decides: flushAll (won) or
	// dropAll (lost) settles what is held and the mode.
	p.r.out.mode = modeDiscard
}

// sender writes the log to the backup from its own goroutine, so that a
// slow network costs the engine goroutine only when the queue is full:
// that back-pressure is what slows a primary whose backup falls behind.
type sender struct {
	l    *link
	q    chan []byte
	done chan struct{}
	sent atomic.Int64
}

const senderQueue = 256 // chunks (each up to the event log's 64 KiB flush size)

func newSender(l *link, timeout time.Duration) *sender {
	s := &sender{l: l, q: make(chan []byte, senderQueue), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			var b []byte
			select {
			case b = <-s.q:
			case <-l.dead:
				return
			}
			// Coalesce what else is queued into one write.
			for more := true; more && len(b) < 1<<20; {
				select {
				case c := <-s.q:
					b = append(b, c...)
				default:
					more = false
				}
			}
			l.conn.SetWriteDeadline(time.Now().Add(timeout))
			if _, err := l.conn.Write(b); err != nil {
				l.fail(fmt.Errorf("sending the log: %w", err))
				return
			}
			s.sent.Add(int64(len(b)))
		}
	}()
	return s
}

// Write queues a copy of p (the event log reuses its buffer). It is called
// by the log writer on the engine goroutine, with the frames it writes
// already counted and still in its buffer.
func (s *sender) Write(p []byte) (int, error) {
	s.l.flushedFrames.Store(s.l.w.Frames())
	s.l.flushedBytes.Store(s.l.w.Offset())
	s.l.lastSend = time.Now()
	b := append([]byte(nil), p...)
	select {
	case s.q <- b:
	case <-s.l.dead:
		// The link is gone: the loop learns it from dead and arbitrates.
	}
	return len(p), nil
}

func (s *sender) stop() { <-s.done }
