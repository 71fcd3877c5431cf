package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"ftvm/replication/ckpt"
	"ftvm/replication/core"
)

// driver steps the replica's core and carries out its actions. Step is
// called from several goroutines (the engine's, the ticker, the link's
// reader and writer, the acceptor, the arbiter's caller); one lock
// serialises the core, and the actions that are data (log bytes to queue,
// outputs to hold or release, an acknowledgement to write) are carried out
// under it, in the core's order. What takes time (closing a connection,
// asking the arbiter, writing a refusal, emitting outputs) is done after
// the lock is released.
//
// The driver serves every replication protocol (see protocol and mode):
// what they share it carries out itself (the view's arbitration, the join
// of a backup and its state transfer, the output buffer's actions,
// go-live, stop, notes, the ticker, status); what one protocol alone does
// (its channel to the peer, what goes on it) its mode carries out.
//
// The engine's goroutine learns what concerns it (a backup welcomed, a
// link to record for, go live, stop) from fields set here, and waits for
// them on changed.
type driver struct {
	r *Replica

	mu   sync.Mutex
	core protocol
	mode mode
	ctx  context.Context // the run's: ends the arbiter's calls

	candidate *joiner // the joiner whose JoinRequest is being stepped
	welcomed  *joiner // welcomed, for the engine's goroutine to transfer to
	joiner    *joiner // the transfer in progress
	link      channel // the primary's channel to its backup
	stream    channel // the backup's from its primary
	repair    *joiner // a backup's repair request, for the engine's goroutine
	live      bool    // GoLive: the engine's goroutine must run as primary
	stop      *core.Stop
	changed   chan struct{} // signalled (coalesced) when engineState changes

	// When a backup declared its primary lost.
	detected time.Time
}

func (d *driver) init(r *Replica) {
	d.r = r
	d.changed = make(chan struct{}, 1)
}

// run gives the driver its core for a run and starts its ticker and its
// acceptor (on ln, if not nil). The returned stop ends them and closes
// what connections are left.
func (d *driver) run(ctx context.Context, c protocol, m mode, ln net.Listener) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	d.mu.Lock()
	d.core, d.mode, d.ctx, d.stop, d.live = c, m, ctx, nil, false
	d.mu.Unlock()
	go d.tick(ctx)
	if ln != nil {
		go d.accept(ctx, ln)
	}
	return ctx, func() {
		cancel()
		d.closeAll()
	}
}

// protocol is what the driver needs of a core. The replay core
// (core.Core) is one, the checkpointing cores (ckpt.Core, Remus and COLO)
// others; a consensus-ordered one would be another. All are stepped with
// package core's shared events (ticks, arbiter answers, join requests,
// link failures, transfers, the guest's end) and their own, and give
// core's shared actions (hold, release, drop, arbitrate, welcome, refuse,
// link, unlink, go live, stop, note) and their own, which their mode
// carries out.
type protocol interface {
	Step(core.Event) error
	Ready() []core.Action
	MayRun() bool
	Status() core.Status
}

var (
	_ protocol = (*core.Core)(nil)
	_ protocol = (*ckpt.Core)(nil)
)

// mode is what one protocol adds to the driver.
type mode interface {
	// carry carries out an action of the protocol's own (ok false: not
	// one it knows), under the driver's lock, and returns what is to be
	// done once the lock is released.
	carry(a core.Action) (later []func(), ok bool)
	// open makes the primary's channel to the backup j the core links
	// (core.Link), under the driver's lock; start, run after the lock is
	// released, starts its goroutines.
	open(j *joiner) (c channel, start func())
	// status puts the protocol's figures into the replica's status, from
	// the core's and from the channel to the peer (l, a primary's, or s,
	// a backup's; nil when there is none).
	status(st *Status, cs core.Status, l, s channel, now time.Time)
}

// channel is a replica's connection to its peer once the backup has
// joined: a primary's link, a backup's stream.
type channel interface {
	// close closes the connection (its goroutines end).
	close(cause error)
	// end closes a backup's stream once its last acknowledgement (of the
	// end of the primary's run) is written.
	end()
	// heard is when the peer was last heard from.
	heard() time.Time
}

// step steps ev into the core and carries out what comes of it.
func (d *driver) step(ev core.Event) error {
	d.mu.Lock()
	err, later := d.stepLocked(ev)
	d.mu.Unlock()
	d.finish(later)
	return err
}

// engineState is what the engine's goroutine waits on: changed is
// signalled when it changes.
type engineState struct {
	may      bool
	stop     *core.Stop
	link     channel
	welcomed *joiner
	joiner   *joiner
	live     bool
}

func (d *driver) engineState() engineState {
	return engineState{d.core.MayRun(), d.stop, d.link, d.welcomed, d.joiner, d.live}
}

// stepLink steps ev only if l is still the current link or stream: a late
// event from a connection the core has closed must not touch a newer one.
func (d *driver) stepLink(l any, ev core.Event) {
	d.mu.Lock()
	if (d.link == nil || d.link != l) && (d.stream == nil || d.stream != l) {
		d.mu.Unlock()
		return
	}
	_, later := d.stepLocked(ev)
	d.mu.Unlock()
	d.finish(later)
}

func (d *driver) stepLocked(ev core.Event) (error, []func()) {
	if d.core == nil {
		return nil, nil
	}
	before := d.engineState()
	err := d.core.Step(ev)
	later := d.carryOut(d.core.Ready())
	if d.engineState() != before {
		// The role, the view or the peer may have changed too: the
		// status says so now rather than at the next tick.
		later = append(later, d.signal, d.r.refreshStatus)
	}
	return err, later
}

// signal wakes the engine's goroutine.
func (d *driver) signal() {
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

// finish does what must not be done under the lock, and emits what the
// core released.
func (d *driver) finish(later []func()) {
	for _, f := range later {
		f()
	}
	d.r.out.Flush()
}

// carryOut carries out the actions that are data, under the lock, and
// returns the rest.
func (d *driver) carryOut(acts []core.Action) []func() {
	r := d.r
	var later []func()
	for _, a := range acts {
		switch a := a.(type) {
		case core.Hold:
			r.out.Hold(a.Frame)
		case core.Release:
			r.out.Release(a.Through)
		case core.ReleaseAll:
			r.out.ReleaseAll()
		case core.DropAll:
			r.out.DropAll()
		case core.Arbitrate:
			ctx := d.ctx
			later = append(later, func() { go d.arbitrate(ctx, a) })
		case core.Welcome:
			d.welcomed = d.candidate
		case core.Refuse:
			if j := d.candidate; j != nil {
				later = append(later, func() { d.refused(j, a.Reason) })
			}
		case core.Link:
			j := d.joiner
			d.joiner = nil
			if j == nil {
				break // cannot happen: the core links only the backup it transferred to
			}
			l, start := d.mode.open(j)
			d.link = l
			later = append(later, start)
		case core.Unlink:
			later = append(later, d.unlink(a.Cause)...)
		case core.GoLive:
			d.live = true
			// Before the status says "primary" (refreshStatus comes
			// after): whoever waits for the role reads these with it.
			later = append(later, func() {
				now := time.Now()
				r.setStatus(func(st *Status) { st.Failovers, st.FailoverLive = st.Failovers+1, now })
			})
		case core.Stop:
			s := a
			d.stop = &s
			if st := d.stream; st != nil && a.Err == nil {
				// The primary's guest ended: the backup's last
				// acknowledgement (of the End record) goes out first.
				d.stream = nil
				later = append(later, st.end)
			}
			if d.link != nil || d.stream != nil || d.joiner != nil || d.welcomed != nil {
				later = append(later, d.unlink(errors.New("stopping"))...)
			}
		case core.Note:
			later = append(later, func() { r.log.Log(context.Background(), a.Level, a.Msg, a.Args...) })
		default:
			more, ok := d.mode.carry(a)
			if !ok {
				panic(fmt.Sprintf("replication: the core gave an action its mode does not know: %T", a))
			}
			later = append(later, more...)
		}
	}
	return later
}

// unlink detaches the connections to the peer and returns what closes
// them.
func (d *driver) unlink(cause error) []func() {
	var later []func()
	if l := d.link; l != nil {
		d.link = nil
		later = append(later, func() { l.close(cause) })
	}
	if s := d.stream; s != nil {
		d.stream = nil
		if d.detected.IsZero() {
			// The primary is lost (or its log refused): the failover's
			// figures start here.
			now, heard := time.Now(), s.heard()
			d.detected = now
			later = append(later, func() {
				d.r.setStatus(func(st *Status) { st.PrimaryLastHeard, st.FailoverDetected = heard, now })
			})
		}
		later = append(later, func() { s.close(cause) })
	}
	for _, j := range []*joiner{d.joiner, d.welcomed} {
		if j != nil {
			later = append(later, func() { j.conn.Close() })
		}
	}
	d.joiner, d.welcomed = nil, nil
	return later
}

// arbitrate asks the arbiter and steps its answer.
func (d *driver) arbitrate(ctx context.Context, a core.Arbitrate) {
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	won, cur, err := d.r.cfg.Arbiter.Swap(c, a.Old, a.New)
	cancel()
	if err != nil {
		d.r.setStatus(func(s *Status) { s.Error = "arbiter unreachable: " + err.Error() })
	} else {
		d.r.setStatus(func(s *Status) { s.Error = "" })
	}
	d.step(core.ArbiterAnswer{Old: a.Old, New: a.New, Won: won, Current: cur, Err: err})
}

// tick runs the core's clock until ctx ends: the heartbeats and the
// failure detection. It runs on its own goroutine, so that nothing the
// engine's goroutine does (a long epoch, device work) delays it; a frozen
// process stops it, as it should.
func (d *driver) tick(ctx context.Context) {
	t := time.NewTicker(d.r.cfg.tick())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.step(core.Tick{})
		if t, ok := d.mode.(interface{ tick() }); ok {
			t.tick()
		}
		d.drainNIC()
		d.r.refreshStatus()
	}
}

// drainNIC drops what the host NIC receives while this replica is a
// backup: the guest is not live here.
func (d *driver) drainNIC() {
	nb := d.r.cfg.Host.Net
	if nb == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.core == nil || d.core.Status().Role == core.Primary || d.live {
		return
	}
	for {
		if _, ok := nb.TryReceive(); !ok {
			return
		}
	}
}

// wait blocks until f, called under the lock, reports done, or ctx ends.
func (d *driver) wait(ctx context.Context, f func() bool) error {
	for {
		d.mu.Lock()
		done := f()
		d.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-d.changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// stopped returns the Stop the core gave, if any.
func (d *driver) stopped() *core.Stop {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stop
}

// coreStatus returns the core's figures.
func (d *driver) coreStatus() (core.Status, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.core == nil {
		return core.Status{}, false
	}
	return d.core.Status(), true
}

// roleName is the role 'ftvm status' shows.
func roleName(s core.Status) string {
	switch {
	case s.Stopped:
		return "stopped"
	case s.Role == core.Joining:
		return "joining"
	case s.Role == core.Backup && s.Arbitrating:
		return "taking over"
	case s.Role == core.Backup:
		return "backup"
	case s.Arbitrating:
		return "arbitrating"
	case s.Joining != "":
		return "primary (backup joining)"
	}
	return "primary"
}

// refreshStatus updates the status from the core and the link.
func (r *Replica) refreshStatus() {
	cs, ok := r.d.coreStatus()
	if !ok {
		return
	}
	r.d.mu.Lock()
	l, s, m := r.d.link, r.d.stream, r.d.mode
	r.d.mu.Unlock()
	held := r.out.Held()
	now := time.Now()
	r.setStatus(func(st *Status) {
		if st.Role == "stopped" {
			return // the run's end set it, with the error
		}
		st.Role, st.View, st.HeldOutputs = roleName(cs), cs.View, held
		st.Peer = cs.Peer
		if cs.Joining != "" {
			st.Peer = cs.Joining
		}
		st.Instret = cs.Instret
		st.PeerInstret, st.LagInsns, st.LagBytes, st.AckLatency = 0, 0, 0, 0
		switch {
		case l != nil:
			st.LastHeartbeat = l.heard()
		case s != nil:
			st.LastHeartbeat = s.heard()
		}
		m.status(st, cs, l, s, now)
	})
}

// stopStatus records the end of a run.
func (r *Replica) stopStatus(err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	r.setStatus(func(s *Status) { s.Role, s.Error = "stopped", err.Error() })
}

// errStopped wraps a Stop into the error a Run returns.
func stopErr(s *core.Stop) error {
	if s == nil {
		return fmt.Errorf("replication: no stop")
	}
	return s.Err
}
