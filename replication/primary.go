package replication

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"ftvm/host"
	"ftvm/migrate"
	"ftvm/replay"
	"ftvm/replay/eventlog"
	"ftvm/replication/ckpt"
	"ftvm/replication/core"
	"ftvm/replication/outbuf"
	"ftvm/runloop"
	"ftvm/vm"
)

// RunPrimary runs e as the pair's primary until the guest powers off, ctx
// ends, or the replica is deposed. Backups may join through ln (nil: never
// protected). e must have been built with r.Outputs().
func (r *Replica) RunPrimary(ctx context.Context, e Engine, ln net.Listener) (vm.StopReason, error) {
	v, err := r.claimPrimary(ctx)
	if err != nil {
		r.stopStatus(err)
		return vm.StopLimit, err
	}
	var c protocol
	var m mode
	if r.cfg.Mode == Replay {
		c, err = core.NewPrimary(r.cfg.coreConfig(), v)
		m = replayMode{&r.d}
	} else {
		c, err = ckpt.NewPrimary(r.cfg.ckptConfig(), v)
		m = newCkptMode(&r.d)
	}
	if err != nil {
		return vm.StopLimit, err
	}
	ctx, stop := r.d.run(ctx, c, m, ln)
	defer stop()
	// The guest's MAC may have lived elsewhere before (an earlier
	// incarnation of the pair): tell the network it is here now.
	if r.cfg.Host.Announce != nil {
		r.cfg.Host.Announce()
	}
	return r.primaryLoop(ctx, e)
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

// primary is the engine's goroutine of a primary.
type primary struct {
	r  *Replica
	e  Engine
	in *host.Inputs

	// cur is the link to the backup the engine is set up for; onLink sets
	// it up for another (or none).
	cur    channel
	onLink func(channel)
	// The replay mode's recorder logs every input while a backup
	// listens.
	rec *replay.Recorder
	// A state transfer in progress, to joiner.
	ts     *migrate.Sender
	tsJoin *joiner
}

// primaryLoop runs the guest as the primary, from RunPrimary or from a
// backup that went live (the driver's core is a primary's then).
func (r *Replica) primaryLoop(ctx context.Context, e Engine) (vm.StopReason, error) {
	p := &primary{r: r, e: e, in: host.NewInputs(r.cfg.Host.ConsoleIn, r.cfg.Host.Net)}
	if r.out.Mode() != outbuf.Held {
		r.out.SetMode(outbuf.Solo)
	}
	cs, _ := r.d.coreStatus()
	r.setStatus(func(s *Status) { s.Role, s.View, s.Peer, s.Error = "primary", cs.View, "", "" })
	r.log.Info("primary running", "view", cs.View.String(), "instret", e.Instret(), "mode", r.cfg.Mode.String())
	var reason vm.StopReason
	var err error
	if r.cfg.Mode == Replay {
		if pe, ok := e.(vm.Pauser); ok {
			r.out.SetPause(pe.Pause)
		}
		p.onLink = p.record
		reason, err = p.run(ctx)
	} else {
		reason, err = p.runCkpt(ctx)
	}
	if p.ts != nil {
		p.ts.Close()
	}
	r.stopStatus(err)
	return reason, err
}

// record makes a recorder for link l (nil: none): every input is logged
// while a backup listens.
func (p *primary) record(l channel) {
	p.rec = nil
	p.r.hashes = nil
	if l != nil {
		// NewRecorder logs the digest of the starting state.
		p.r.hashes = replay.NewOutputs()
		p.rec = replay.NewRecorder(p.e, coreLog{&p.r.d}, p.r.cfg.DigestEvery)
		p.rec.SetOutputs(p.r.hashes)
	}
}

// engine is what runs the guest: through the recorder while a backup
// listens, so that every input is logged.
func (p *primary) engine() vm.Engine {
	if p.rec != nil {
		return p.rec
	}
	return p.e
}

// run runs the guest in the project's one host-driven loop (package
// runloop). The hooks are the replication's: before every epoch the core
// must let the guest run (not arbitrating, the backup keeping up), the
// recorder must match the link, and a state transfer advances a step;
// delivered inputs are sent at once; every epoch's end goes to the core,
// which holds its outputs behind a Sync. While the guest idles the loop
// wakes for the driver (changed) and keeps a transfer going (Busy).
func (p *primary) run(ctx context.Context) (vm.StopReason, error) {
	r := p.r
	reason, err := runloop.Run(runloop.Config{
		Engine:  p,
		Inputs:  p.in,
		Slice:   r.cfg.Epoch,
		Context: ctx,
		Hooks: runloop.Hooks{
			Before: func() error { return p.ready(ctx) },
			Delivered: func() error {
				// Let the backup have the inputs while the guest works on
				// them: the acknowledgement of the epoch's Sync comes
				// sooner.
				r.d.step(core.Flush{})
				return nil
			},
			After: func(vm.StopReason) error {
				r.d.step(core.EpochEnded{Instret: p.e.Instret(), Outputs: r.out.Pending()})
				return nil
			},
			Wake: r.d.changed,
			Busy: func() bool { return p.ts != nil },
			Tick: func() error { return p.ready(ctx) },
		},
	})
	// A guest that stopped, locked up or can never be woken ends the run
	// on both replicas: the backup gets the End record (with the reason)
	// and ends too. Without it the backup would take the primary for dead
	// and go live with a guest that cannot run either.
	if err == nil || errors.Is(err, runloop.ErrLockup) || errors.Is(err, runloop.ErrNoWake) {
		switch reason {
		case vm.StopPowerOff, vm.StopReboot, vm.StopLockup, vm.StopIdle:
			if ferr := p.finish(ctx, reason); ferr != nil {
				return reason, ferr
			}
		}
	}
	return reason, err
}

// The loop runs the primary's engine: through the recorder while a backup
// listens (Run and Deliver), the engine itself for the rest.
var _ vm.Engine = (*primary)(nil)

func (p *primary) Run(until uint64) vm.StopReason   { return p.engine().Run(until) }
func (p *primary) Deliver(ev vm.Event) (int, error) { return p.engine().Deliver(ev) }
func (p *primary) Instret() uint64                  { return p.e.Instret() }
func (p *primary) Digest() vm.Digest                { return p.e.Digest() }
func (p *primary) Now() uint64                      { return p.e.Now() }
func (p *primary) Deadline() uint64                 { return p.e.Deadline() }
func (p *primary) SetIdleSkip(on bool)              { p.e.SetIdleSkip(on) }
func (p *primary) TicksPerSecond() uint64           { return p.e.TicksPerSecond() }

// ready returns once the guest may run its next epoch: the core says so
// (not arbitrating, the backup keeping up), the engine is set up for the
// link (onLink: the recorder, the dirty log), and the state transfer to a
// joining backup has advanced a step.
// It returns the core's Stop error, or ctx's.
func (p *primary) ready(ctx context.Context) error {
	d := &p.r.d
	for {
		d.mu.Lock()
		stop, l, welcomed, joiner, may, repair := d.stop, d.link, d.welcomed, d.joiner, d.core.MayRun(), d.repair
		d.welcomed, d.repair = nil, nil
		d.mu.Unlock()
		if stop != nil {
			return stopErr(stop)
		}
		p.r.doFlips(p.e)
		if repair != nil {
			p.serveRepair(ctx, repair)
		}
		if l != p.cur {
			p.cur = l
			p.onLink(l)
		}
		if p.ts != nil && joiner != p.tsJoin {
			p.ts.Close() // the core gave up on this backup
			p.ts, p.tsJoin = nil, nil
		}
		if welcomed != nil {
			p.startTransfer(welcomed)
		}
		if may {
			if p.ts == nil || !p.stepTransfer() {
				return nil
			}
			continue // the transfer is complete: the view changes first
		}
		select {
		case <-d.changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// coreLog is the recorder's log: the core owns the writer of the log that
// streams to the backup.
type coreLog struct{ d *driver }

func (l coreLog) Append(rec eventlog.Record) error { return l.d.step(core.Append{Record: rec}) }
func (l coreLog) Flush() error                     { return l.d.step(core.Flush{}) }

// finish ends a run whose guest stopped: the backup gets the End record
// and the held outputs leave once it has it (the core decides).
func (p *primary) finish(ctx context.Context, reason vm.StopReason) error {
	d := &p.r.d
	if p.rec != nil {
		p.rec.Close(reason) // the End record; a failure loses the backup
	}
	d.step(core.Finish{Reason: reason.String()})
	if err := d.wait(ctx, func() bool { return d.stop != nil }); err != nil {
		return err
	}
	return stopErr(d.stopped())
}

// replayMode is the replay protocol's part of the driver: the event log
// goes out on a link, acknowledgements come back on it; a backup's stream
// brings the log in.
type replayMode struct{ d *driver }

func (m replayMode) carry(a core.Action) ([]func(), bool) {
	d, r := m.d, m.d.r
	switch a := a.(type) {
	case core.Send:
		if l, ok := d.link.(*link); ok {
			l.send(a.Data, a.Frames)
		}
	case core.SendAck:
		if s, ok := d.stream.(*stream); ok {
			s.ack(a)
		}
	case core.Settle:
		r.out.Settle(a.Through)
	case core.Reissue:
		n := r.out.Reissue()
		return []func(){func() { r.log.Info("re-issued the uncertain outputs", "outputs", n) }}, true
	default:
		return nil, false
	}
	return nil, true
}

func (m replayMode) open(j *joiner) (channel, func()) {
	l := newLink(m.d, j)
	m.d.r.out.SetMode(outbuf.Held)
	return l, l.start
}

func (replayMode) status(st *Status, cs core.Status, l, s channel, now time.Time) {
	st.Mode = core.ModeName
	if l, ok := l.(*link); ok {
		st.PeerInstret, st.LagInsns = cs.PeerInstret, cs.Instret-min(cs.Instret, cs.PeerInstret)
		st.LogBytes, st.LogFrames, st.LagBytes = cs.Bytes, cs.Frames, cs.Bytes-cs.DoneBytes
		st.AckLatency = l.averageAck()
		st.sampleRate(now)
	}
	if _, ok := s.(*stream); ok {
		st.LogBytes, st.LogFrames = cs.Bytes, cs.Frames
		if cs.DoneBytes > 0 {
			st.LagBytes = max(0, cs.Bytes-cs.DoneBytes)
		}
		st.sampleRate(now)
	}
}

// link is a primary's connection to its backup once the backup is up to
// date: the log goes out through a sender goroutine, acknowledgements
// come back through a reader goroutine.
type link struct {
	d    *driver
	id   string
	conn *tls.Conn
	br   *bufio.Reader

	mu     sync.Mutex
	cond   *sync.Cond
	q      [][]byte
	closed bool

	lastAck atomic.Int64 // unix nanoseconds

	// The acknowledgement latency: when the newest frame not yet timed was
	// sent, and a moving average of how long its acknowledgement took
	// (the output rule's cost, network included).
	ackMu      sync.Mutex
	timedFrame int64
	timedAt    time.Time
	ackLatency time.Duration
}

func newLink(d *driver, j *joiner) *link {
	l := &link{d: d, id: j.id, conn: j.conn, br: j.br}
	l.cond = sync.NewCond(&l.mu)
	l.lastAck.Store(time.Now().UnixNano())
	return l
}

func (l *link) start() {
	now := time.Now()
	l.d.r.setStatus(func(s *Status) { s.LinkSince = now })
	go l.write()
	go l.readAcks()
}

// send queues log bytes (the core's Send) for the sender goroutine.
func (l *link) send(b []byte, frames int64) {
	l.mu.Lock()
	l.q = append(l.q, b)
	l.mu.Unlock()
	l.cond.Signal()
	l.ackMu.Lock()
	if l.timedFrame == 0 {
		l.timedFrame, l.timedAt = frames, time.Now()
	}
	l.ackMu.Unlock()
}

func (l *link) heard() time.Time { return time.Unix(0, l.lastAck.Load()) }
func (l *link) end()             { l.close(nil) }

func (l *link) close(cause error) {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.cond.Broadcast()
	l.conn.Close()
}

// write sends the log, coalescing what is queued into one write.
func (l *link) write() {
	timeout := l.d.r.cfg.Timeout
	var written int64
	for {
		l.mu.Lock()
		for len(l.q) == 0 && !l.closed {
			l.cond.Wait()
		}
		if l.closed {
			l.mu.Unlock()
			return
		}
		var b []byte
		for len(l.q) > 0 && len(b) < 1<<20 {
			b = append(b, l.q[0]...)
			l.q = l.q[1:]
		}
		l.mu.Unlock()
		l.conn.SetWriteDeadline(time.Now().Add(timeout))
		if _, err := l.conn.Write(b); err != nil {
			l.d.stepLink(l, core.LinkFailed{Err: fmt.Errorf("sending the log: %w", err)})
			return
		}
		written += int64(len(b))
		l.d.stepLink(l, core.Written{Bytes: written})
	}
}

// readAcks reads the backup's acknowledgements.
func (l *link) readAcks() {
	for {
		t, payload, err := readMessage(l.br)
		if err != nil {
			l.d.stepLink(l, core.LinkFailed{Err: fmt.Errorf("backup gone: %w", err)})
			return
		}
		if t != msgAck {
			l.d.stepLink(l, core.LinkFailed{Err: fmt.Errorf("%w: backup sent %v", errProtocol, t)})
			return
		}
		a, err := decodeAck(payload)
		if err != nil {
			l.d.stepLink(l, core.LinkFailed{Err: err})
			return
		}
		l.lastAck.Store(time.Now().UnixNano())
		l.ackedAt(int64(a.Frames))
		l.d.stepLink(l, core.Acked{Frames: int64(a.Frames), Bytes: int64(a.Bytes), Replayed: a.Replayed})
	}
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

// closeAll closes whatever connection a run leaves behind.
func (d *driver) closeAll() {
	d.mu.Lock()
	later := d.unlink(errors.New("replica stopped"))
	d.mu.Unlock()
	for _, f := range later {
		f()
	}
}
