package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"ftvm/host"
	"ftvm/migrate"
	"ftvm/replication/plover"
	"ftvm/runloop"
	"ftvm/statesync"
	"ftvm/vm"
)

// ploverGuest is a replica's guest goroutine: it runs the guest in the
// project's run loop, delivers the committed inputs, pauses for syncs,
// transfers the state to joining backups, and proposes the host's inputs
// once it is the primary.
type ploverGuest struct {
	p       *Plover
	e       Engine
	live    bool   // the primary: host inputs are proposed
	applied uint64 // the log index of the last entry delivered
	console []byte // committed console input the UART has not taken yet
	dirty   vm.DirtyLog
	fed     bool // inputs were delivered while the guest idled
	synced  bool // a sync changed the state since the guest stopped
	ts      *migrate.Sender
	tsJoin  *ploverJoiner
	// wasBackup: this replica joined as a backup, so going live is a
	// failover.
	wasBackup bool
	// nextLook is when the idle loop looks at the guest next.
	nextLook time.Time
	// table is the hashes of every page at the last sync (nil until a
	// backup joins); sentFull says which witness has had all of it.
	table    pageTable
	sentFull map[uint64]bool
}

// syncTimeout bounds a sync in which the peer stops answering (it also
// leaves the group, which aborts the sync sooner).
const syncTimeout = 30 * time.Second

// runGuest runs the guest until the core stops or ctx ends.
func (p *Plover) runGuest(ctx context.Context, e Engine, backup bool) (vm.StopReason, error) {
	g := &ploverGuest{p: p, e: e, dirty: e.TrackDirty(), wasBackup: backup, sentFull: map[uint64]bool{}}
	defer g.dirty.Stop()
	if backup {
		// The state is the primary's: the table of the last sync.
		g.table = p.hashAll(e)
	}
	p.mu.Lock()
	g.applied = p.core.Status().Applied
	p.mu.Unlock()
	in := host.NewInputs(p.cfg.Host.ConsoleIn, p.cfg.Host.Net)
	reason := vm.StopLimit
	for {
		var err error
		g.fed, g.synced = false, false
		reason, err = runloop.Run(runloop.Config{
			Engine:  g,
			Inputs:  in,
			Slice:   p.cfg.Epoch,
			Context: ctx,
			Hooks: runloop.Hooks{
				Before:    func() error { return g.ready(ctx, true) },
				Delivered: func() error { p.step(plover.Flush{}); return nil },
				After: func(r vm.StopReason) error {
					p.instret.Store(e.Instret())
					p.step(plover.EpochEnded{Idle: r == vm.StopIdle, Quiet: !p.activity.Swap(false)})
					return nil
				},
				Wake:  p.changed,
				Timer: g.timer,
				Busy:  func() bool { return g.ts != nil },
				Tick: func() error {
					g.nextLook = time.Now().Add(p.cfg.IdleCheck)
					if g.live {
						p.step(plover.EpochEnded{Idle: true, Quiet: !p.activity.Swap(false)})
					}
					return g.ready(ctx, false)
				},
				// Inputs delivered while the guest idles wake it: the loop
				// starts again and runs it.
				Stop: func(r vm.StopReason) bool { return r == vm.StopIdle && g.fed },
			},
		})
		if err != nil {
			if s := p.stopped(); s != nil && s.Err != nil {
				err = s.Err
			}
			p.r.stopStatus(err)
			if g.ts != nil {
				g.ts.Close()
			}
			return reason, err
		}
		switch reason {
		case vm.StopPowerOff, vm.StopReboot, vm.StopLockup:
			// The guest stopped: the primary's last sync brings the
			// backup to the same end; the backup waits for it (or for a
			// sync that brings its guest back to life).
			p.step(plover.Finish{Reason: reason.String()})
			for !g.synced {
				if s := p.stopped(); s != nil {
					if s.Err != nil {
						p.r.stopStatus(s.Err)
					}
					return reason, s.Err
				}
				if err := g.ready(ctx, false); err != nil {
					return reason, err
				}
				if g.synced {
					break
				}
				select {
				case <-p.changed:
				case <-ctx.Done():
					return reason, ctx.Err()
				}
			}
		}
	}
}

// The loop runs the guest through the replica: host inputs are proposed
// to the group (on the primary) or dropped (on a backup: its guest takes
// the primary's inputs from the log), time passes as the loop says.
var _ vm.Engine = (*ploverGuest)(nil)

func (g *ploverGuest) Run(until uint64) vm.StopReason { return g.e.Run(until) }
func (g *ploverGuest) Deliver(ev vm.Event) (int, error) {
	switch ev := ev.(type) {
	case vm.NetReceive:
		if g.leads() {
			g.p.step(plover.Propose{Input: plover.Input{Net: true, Data: ev.Frame}})
		}
		return len(ev.Frame), nil
	case vm.ConsoleInput:
		if g.leads() {
			g.p.step(plover.Propose{Input: plover.Input{Data: ev.Data}})
		}
		return len(ev.Data), nil
	}
	return g.e.Deliver(ev)
}

// leads reports whether this replica is the primary: host inputs go to
// the group (the core's word counts, even before the guest's goroutine
// has taken its GoLive: the inputs are applied after what is committed
// already).
func (g *ploverGuest) leads() bool {
	if g.live {
		return true
	}
	p := g.p
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.core.Role() == plover.Primary
}
func (g *ploverGuest) Instret() uint64        { return g.e.Instret() }
func (g *ploverGuest) Digest() vm.Digest      { return g.e.Digest() }
func (g *ploverGuest) Now() uint64            { return g.e.Now() }
func (g *ploverGuest) Deadline() uint64       { return g.e.Deadline() }
func (g *ploverGuest) SetIdleSkip(on bool)    { g.e.SetIdleSkip(on) }
func (g *ploverGuest) TicksPerSecond() uint64 { return g.e.TicksPerSecond() }

// timer makes the idle loop look at the guest every IdleCheck while the
// primary has a backup (a sync may be due), and at least every tick
// otherwise (the backup's log keeps coming).
func (g *ploverGuest) timer() (time.Duration, bool) {
	every := g.p.cfg.Tick
	if g.live && g.p.r.out.Held() > 0 {
		every = g.p.cfg.IdleCheck
	}
	now := time.Now()
	if g.nextLook.IsZero() || g.nextLook.Sub(now) > every {
		g.nextLook = now.Add(every)
	}
	return g.nextLook.Sub(now), true
}

// ready does the guest's work the core gave (inputs, syncs, going live)
// and the state transfer to a joining backup, and returns once the guest
// may run. running says the loop is about to run the guest.
func (g *ploverGuest) ready(ctx context.Context, running bool) error {
	p := g.p
	for {
		p.mu.Lock()
		stop, work, welcomed := p.stop, p.work, p.welcomed
		p.work, p.welcomed = nil, nil
		p.mu.Unlock()
		if stop != nil {
			return ploverStopErr(stop)
		}
		for i, w := range work {
			switch w := w.(type) {
			case plover.Apply:
				g.apply(w)
			case plover.SyncPoint:
				g.sync(ctx, w)
			case plover.GoLive:
				g.goLive()
			}
			if s := p.stopped(); s != nil {
				p.mu.Lock()
				p.work = append(work[i+1:], p.work...)
				p.mu.Unlock()
				return ploverStopErr(s)
			}
		}
		if len(work) > 0 {
			p.step(plover.Delivered{Index: g.applied})
		}
		g.deliverConsole()
		g.doFlips()
		for _, j := range welcomed {
			g.startTransfer(j)
		}
		if g.ts != nil {
			g.stepTransfer()
		}
		if len(work) == 0 {
			return nil
		}
		if !running {
			return nil
		}
	}
}

// apply delivers committed inputs.
func (g *ploverGuest) apply(a plover.Apply) {
	for _, in := range a.Inputs {
		if in.Net {
			g.e.Deliver(vm.NetReceive{Frame: in.Data})
		} else {
			g.console = append(g.console, in.Data...)
		}
	}
	g.applied = a.Index
	g.fed = true
}

// deliverConsole hands the UART what committed console input it takes.
func (g *ploverGuest) deliverConsole() {
	if len(g.console) == 0 {
		return
	}
	n, _ := g.e.Deliver(vm.ConsoleInput{Data: g.console})
	g.console = g.console[n:]
	if n > 0 {
		g.fed = true
	}
}

// goLive: this replica leads the group. Its guest takes the host's inputs
// from now on, and the network learns where the guest's MAC lives.
func (g *ploverGuest) goLive() {
	p := g.p
	failover := !g.live && g.wasBackup
	g.live = true
	if p.cfg.Host.Announce != nil {
		p.cfg.Host.Announce()
	}
	if failover {
		now := time.Now()
		p.r.setStatus(func(s *Status) { s.Failovers++; s.FailoverLive = now })
	}
	p.log.Warn("live: this replica is the primary", "instret", g.e.Instret(), "log_index", g.applied)
}

// sync pauses the guest for sync point sp and brings the backup to the
// primary's state (package statesync), then tells the core.
func (g *ploverGuest) sync(ctx context.Context, sp plover.SyncPoint) {
	p := g.p
	t0 := time.Now()
	role := statesync.Backup
	if sp.Primary {
		role = statesync.Primary
		// What the guest emitted before the pause leaves once the sync
		// completes.
		p.r.out.Hold(int64(sp.Seq))
	} else {
		// This backup's own outputs up to here were never seen, and the
		// primary's state replaces its own.
		p.r.out.Settle(^uint64(0))
	}
	ram := g.dirty.Collect(nil)
	disk := p.takeDiskDirty()
	var d vm.Disk
	if p.cfg.Disk != nil {
		d = p.cfg.Disk
	}
	s, err := statesync.NewSync(statesync.SyncConfig{Role: role, ID: sp.Seq, Engine: g.e, Disk: d, Key: p.key, Hasher: p.hasher})
	var out [][]byte
	if err == nil {
		out, err = s.Start(ram, disk)
	}
	deadline := time.Now().Add(syncTimeout)
	for {
		if errors.Is(err, statesync.ErrDiverged) {
			// Not the end: both sides go on to compare every page.
			out = slices.DeleteFunc(out, statesync.IsErrorMessage)
		}
		p.sendSync(sp.Peer, out)
		if err != nil || s.Done() {
			break
		}
		var msg []byte
		if msg, err = p.nextSync(ctx, sp, deadline); err != nil {
			break
		}
		out, err = s.Receive(msg)
	}
	var repair *RepairReport
	if errors.Is(err, statesync.ErrDiverged) {
		// The digests differ although the union's pages are the same on
		// both: a page outside it changed. Both replicas compare them all.
		union := statesync.NewBitmap(g.e.Pages())
		for _, pg := range s.UnionHashes().Pages {
			union.Set(pg)
		}
		repair, err = g.mend(ctx, sp, union)
	}
	if err == nil {
		// The sync's own writes (and a repair's): the replicas are
		// identical from here.
		g.dirty.Collect(nil)
		p.takeDiskDirty()
		if g.table != nil {
			g.table.update(s.UnionHashes())
		}
		if sp.Primary {
			g.tellWitness(s.UnionHashes())
		}
	}
	g.synced = true
	pause := time.Since(t0)
	if err != nil {
		p.log.Warn("sync failed", "seq", sp.Seq, "peer", sp.Peer.ID, "err", err.Error())
		p.step(plover.SyncFailed{Seq: sp.Seq, Err: err})
		return
	}
	st := s.Stats()
	rep := SyncReport{Seq: sp.Seq, DirtyPages: st.Pages, SamePages: st.SamePages, SentPages: len(st.SentPages),
		DiskChunks: st.Chunks, SentDiskChunks: len(st.SentChunks), Bytes: st.BytesIn + st.BytesOut, Pause: pause}
	rep.SamePages = st.Pages - len(st.SentPages)
	if rep.DirtyPages > 0 {
		rep.SameFraction = float64(rep.SamePages) / float64(rep.DirtyPages)
	}
	p.stMu.Lock()
	p.stats.syncs++
	p.stats.last = rep
	t := &p.stats.totals
	t.DirtyPages += int64(rep.DirtyPages)
	t.SamePages += int64(rep.SamePages)
	t.SentPages += int64(rep.SentPages)
	t.SyncBytes += rep.Bytes
	t.Pause += rep.Pause
	if repair != nil {
		p.stats.repairs = append(p.stats.repairs, *repair)
	}
	p.stMu.Unlock()
	if repair != nil {
		p.log.Warn("memory repaired", "seq", sp.Seq, "pages", fmt.Sprint(repair.Pages), "faulty", repair.Faulty,
			"majority", repair.Majority, "report", repair.Detail)
	}
	p.log.Debug("sync", "seq", sp.Seq, "dirty_pages", rep.DirtyPages, "same", rep.SamePages, "sent", rep.SentPages,
		"disk_chunks", rep.DiskChunks, "sent_disk_chunks", rep.SentDiskChunks, "bytes", rep.Bytes, "pause", pause.String())
	p.step(plover.SyncDone{Seq: sp.Seq})
}

// sendSync sends sync messages to the peer, in order.
func (p *Plover) sendSync(to plover.Member, msgs [][]byte) {
	for _, m := range msgs {
		p.net.send(to, msgSync, m, true, nil)
	}
}

// nextSync returns the next message of sync sp from its peer. It gives up
// when the core aborts the sync, the replica stops, ctx ends or deadline
// passes. Messages of earlier syncs are dropped; those of later ones stay.
func (p *Plover) nextSync(ctx context.Context, sp plover.SyncPoint, deadline time.Time) ([]byte, error) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		p.mu.Lock()
		var msg []byte
		keep := p.syncQ[:0]
		for _, m := range p.syncQ {
			seq := syncSeq(m.p)
			switch {
			case m.t != msgSync:
				keep = append(keep, m)
			case m.from != sp.Peer.ID || seq < sp.Seq:
			case seq == sp.Seq && msg == nil:
				msg = m.p
			default:
				keep = append(keep, m)
			}
		}
		p.syncQ = keep
		aborted, stop := p.aborted[sp.Seq], p.stop
		p.mu.Unlock()
		switch {
		case msg != nil:
			return msg, nil
		case aborted:
			return nil, errors.New("the sync was given up: the peer left the group")
		case stop != nil:
			return nil, fmt.Errorf("the replica stopped: %v", stop.Err)
		}
		select {
		case <-p.changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
			return nil, fmt.Errorf("no answer from %s for %v", sp.Peer.ID, syncTimeout)
		}
	}
}

// syncSeq is the sync a statesync message belongs to (its id, after the
// type byte).
func syncSeq(m []byte) uint64 {
	if len(m) < 9 {
		return 0
	}
	var v uint64
	for i := 8; i >= 1; i-- {
		v = v<<8 | uint64(m[i])
	}
	return v
}

// takeDiskDirty returns the disk chunks written since the last call.
func (p *Plover) takeDiskDirty() statesync.Bitmap {
	p.diskMu.Lock()
	defer p.diskMu.Unlock()
	if p.diskDirty == nil {
		return nil
	}
	b := append(statesync.Bitmap(nil), p.diskDirty...)
	clear(p.diskDirty)
	return b
}

// startTransfer welcomes a backup and starts the state transfer to it.
func (g *ploverGuest) startTransfer(j *ploverJoiner) {
	p := g.p
	if g.ts != nil {
		j.conn.Close()
		p.step(plover.JoinFailed{ID: j.m.ID, Err: errors.New("another transfer is in progress")})
		return
	}
	var disk *migrate.TrackedDisk
	if p.cfg.Disk != nil {
		disk = p.cfg.Disk
	}
	ts, err := migrate.NewSender(connRW{j.br, j.conn}, g.e, disk, migrate.Options{})
	if err != nil {
		j.conn.Close()
		p.step(plover.JoinFailed{ID: j.m.ID, Err: err})
		return
	}
	g.ts, g.tsJoin = ts, j
}

// stepTransfer advances the state transfer; at its end the guest is
// stopped where the backup's state is, and the core makes it a member.
func (g *ploverGuest) stepTransfer() {
	p, j, ts := g.p, g.tsJoin, g.ts
	fail := func(err error) {
		ts.Close()
		g.ts, g.tsJoin = nil, nil
		j.conn.Close()
		p.log.Warn("state transfer failed", "member", j.m.ID, "err", err.Error())
		p.step(plover.JoinFailed{ID: j.m.ID, Err: err})
	}
	done, err := ts.Step()
	if err != nil {
		fail(err)
		return
	}
	if !done {
		return
	}
	st, err := ts.Finish()
	if err != nil {
		fail(err)
		return
	}
	g.ts, g.tsJoin = nil, nil
	// The two replicas are identical here: the dirty sets start afresh,
	// and the table of page hashes is this state's.
	g.dirty.Collect(nil)
	p.takeDiskDirty()
	g.table, g.sentFull = p.hashAll(g.e), map[uint64]bool{}
	p.log.Info("state transferred", "member", j.m.ID, "instret", g.e.Instret(), "log_index", g.applied,
		"transfer", time.Since(j.t0).String(), "pause", st.Pause.String(), "bytes", st.BytesSent)
	p.step(plover.Transferred{ID: j.m.ID, Applied: g.applied})
}
