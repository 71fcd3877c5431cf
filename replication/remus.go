package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"ftvm/replication/ckpt"
	"ftvm/replication/core"
	"ftvm/replication/outbuf"
	"ftvm/runloop"
	"ftvm/statesync"
	"ftvm/vm"
)

// The checkpointing primary's engine goroutine and the Remus backup.

// ckptPrimary is what a checkpointing primary's engine goroutine keeps
// beside the shared primary's.
type ckptPrimary struct {
	*primary
	m *ckptMode
	// While a backup is linked: the pages the guest writes since the
	// last checkpoint, and when that was.
	dirty    vm.DirtyLog
	bits     []uint64
	last     time.Time
	digestAt uint64
	// colo is the COLO link's comparison (nil: none, or Remus).
	colo *coloPrimary
}

// ckptWrites is where the guest's disk writes go while a checkpointing
// primary has a backup (nil otherwise): each checkpoint takes those of
// its epoch.
type ckptWrites = atomic.Pointer[statesync.WriteLog]

// runCkpt runs the guest as a checkpointing primary: the project's run
// loop with hooks that take a checkpoint every period while a backup is
// linked (Remus). While the guest idles the loop wakes for the next
// checkpoint (Timer), for the driver (Wake) and for a state transfer
// (Busy).
func (p *primary) runCkpt(ctx context.Context) (vm.StopReason, error) {
	r := p.r
	c := &ckptPrimary{primary: p, m: r.d.mode.(*ckptMode)}
	p.onLink = c.linkChanged
	defer c.linkChanged(nil)
	period := r.cfg.Period
	var eng vm.Engine = p.e
	checkpoint := c.checkpointIfDue
	timer := func() (time.Duration, bool) {
		if c.dirty == nil {
			return 0, false
		}
		return period - time.Since(c.last), true
	}
	if r.cfg.Mode == COLO {
		// The comparator asks for checkpoints (its period included).
		eng = coloEngine{p.e, c}
		checkpoint = func() { c.syncPrimary(ctx, false) }
		timer = nil
	}
	reason, err := runloop.Run(runloop.Config{
		Engine:  eng,
		Inputs:  p.in,
		Slice:   r.cfg.Epoch,
		Context: ctx,
		Hooks: runloop.Hooks{
			// A checkpoint is taken before ready: the guest runs only
			// once the core lets it after the checkpoint too.
			Before: func() error {
				checkpoint()
				return p.ready(ctx)
			},
			After: func(vm.StopReason) error {
				checkpoint()
				return nil
			},
			Wake:  r.d.changed,
			Busy:  func() bool { return p.ts != nil },
			Timer: timer,
			Tick: func() error {
				checkpoint()
				return p.ready(ctx)
			},
		},
	})
	switch reason {
	case vm.StopPowerOff, vm.StopReboot, vm.StopLockup:
		if ferr := c.finish(ctx, reason); ferr != nil {
			return reason, ferr
		}
	}
	return reason, err
}

// linkChanged sets the engine up for link l (nil: none): the next
// checkpoint holds what the guest writes from now on (the guest has been
// stopped since the state transfer ended, whose state is checkpoint 0).
func (c *ckptPrimary) linkChanged(l channel) {
	r := c.r
	if c.dirty != nil {
		c.dirty.Stop()
		c.dirty = nil
		r.ckWrites.Store(nil)
		c.colo = nil
	}
	if l == nil {
		return
	}
	c.dirty = c.e.TrackDirty()
	c.last = time.Now()
	c.digestAt = c.e.Instret() + r.cfg.DigestEvery
	if cl, ok := l.(*ckptLink); ok && cl.colo != nil {
		c.colo = cl.colo
		if pe, ok := c.e.(vm.Pauser); ok {
			c.colo.pause = pe.Pause
		}
		return
	}
	r.ckWrites.Store(&statesync.WriteLog{})
}

// checkpointIfDue takes a checkpoint if the period has passed since the
// last one.
func (c *ckptPrimary) checkpointIfDue() {
	if c.dirty != nil && time.Since(c.last) >= c.r.cfg.Period {
		c.checkpoint()
	}
}

// checkpoint takes a checkpoint, if the core lets it, with the guest
// paused (between two Runs): a copy of the pages written since the last
// one, the engine's state and the epoch's disk writes. The writer
// goroutine encodes and sends it while the guest runs on.
func (c *ckptPrimary) checkpoint() bool {
	d, r := &c.r.d, c.r
	d.mu.Lock()
	seq, ok := d.core.(*ckpt.Core).MayCheckpoint()
	d.mu.Unlock()
	if !ok {
		return false
	}
	t0 := time.Now()
	c.last = t0
	c.bits = c.dirty.Collect(c.bits)
	var writes []statesync.DiskWrite
	if w := r.ckWrites.Load(); w != nil {
		writes = w.Take()
	}
	digest := c.e.Instret() >= c.digestAt
	if digest {
		c.digestAt = c.e.Instret() + r.cfg.DigestEvery
	}
	cp := c.m.capture()
	if err := cp.Take(c.e, seq, statesync.Bitmap(c.bits), writes, digest); err != nil {
		// The engine could not be read: the backup cannot be kept.
		d.step(core.LinkFailed{Err: fmt.Errorf("checkpoint %d: %w", seq, err)})
		return false
	}
	pause := time.Since(t0)
	st := CheckpointStat{Seq: seq, At: t0, Pause: pause, Pages: len(cp.Pages), StateBytes: len(cp.State)}
	for _, w := range writes {
		st.DiskBytes += int64(len(w.Data))
	}
	c.m.stats.add(st)
	d.mu.Lock()
	c.m.pending = cp
	_, later := d.stepLocked(ckpt.Taken{Seq: seq, Instret: cp.Instret, Outputs: r.out.Pending()})
	if c.m.pending != nil { // not sent: the backup was lost meanwhile
		c.m.pending = nil
		c.m.recycle(cp)
	}
	d.mu.Unlock()
	d.finish(later)
	r.log.Debug("checkpoint", "seq", seq, "pause", pause.String(), "pages", st.Pages, "state_bytes", st.StateBytes,
		"disk_bytes", st.DiskBytes, "instret", cp.Instret)
	return true
}

// finish ends a run whose guest stopped: a last checkpoint, so that the
// backup has the final state (and disk), then the end; the core releases
// the held outputs once the backup acknowledges it.
func (c *ckptPrimary) finish(ctx context.Context, reason vm.StopReason) error {
	d := &c.r.d
	if c.dirty != nil && c.colo == nil {
		err := d.wait(ctx, func() bool {
			_, ok := d.core.(*ckpt.Core).MayCheckpoint()
			return ok || d.link == nil || d.stop != nil
		})
		if err != nil {
			return err
		}
		c.checkpoint()
	}
	d.step(core.Finish{Reason: reason.String()})
	if err := d.wait(ctx, func() bool { return d.stop != nil }); err != nil {
		return err
	}
	return stopErr(d.stopped())
}

// runCkptBackup joins the primary at addr as a checkpointing backup and
// follows it; if the primary dies and this replica wins the arbitration,
// it goes live and continues as the primary.
func (r *Replica) runCkptBackup(ctx context.Context, addr string, ln net.Listener) (vm.StopReason, error) {
	c, err := ckpt.NewBackup(r.cfg.ckptConfig())
	if err != nil {
		return vm.StopLimit, err
	}
	m := newCkptMode(&r.d)
	ctx, stop := r.d.run(ctx, c, m, ln)
	defer stop()
	r.setStatus(func(s *Status) { s.Role, s.Mode = "joining", r.cfg.Mode.String() })
	r.out.SetMode(outbuf.Discard)
	j, err := r.dial(ctx, addr)
	if err != nil {
		r.stopStatus(err)
		return vm.StopLimit, err
	}
	s, err := r.followCkpt(m, j)
	if err != nil {
		j.conn.Close()
		r.stopStatus(err)
		return vm.StopLimit, err
	}
	var reason vm.StopReason
	if s.colo != nil {
		reason, err = r.runSecondary(ctx, s)
	} else {
		reason, err = r.awaitCkpt(ctx, s)
	}
	if err != nil || !r.d.golive() {
		r.stopStatus(err)
		return reason, err
	}
	r.failedOver()
	return r.primaryLoop(ctx, j.engine)
}

// runSecondary runs a COLO secondary's guest until the core stops the
// replica or tells it to go live; then the inputs the primary forwarded
// that the guest has not taken are delivered, and its frames are mapped
// into the clients' sequence numbers from now on.
func (r *Replica) runSecondary(ctx context.Context, s *ckptStream) (vm.StopReason, error) {
	c := s.colo
	err := c.run(ctx)
	s.close(nil)
	<-s.done
	r.coloS.Store(nil)
	if c.dirty != nil {
		c.dirty.Stop()
	}
	if err != nil {
		return vm.StopLimit, err
	}
	if stop := r.d.stopped(); stop != nil {
		if stop.Err != nil {
			return vm.StopLimit, stop.Err
		}
		return vm.ParseStopReason(stop.Reason), nil
	}
	c.rw.failover()
	if r.nic != nil {
		chain := append([]*rewriter{c.rw}, c.inherited...)
		r.nic.chain.Store(&chain)
	}
	c.deliverConsole()
	for {
		f, ok := c.TryReceive()
		if !ok {
			break
		}
		c.e.Deliver(vm.NetReceive{Frame: f})
	}
	return vm.StopLimit, nil
}

// followCkpt reads the link's header, checks it with the core, and starts
// the stream's goroutines.
func (r *Replica) followCkpt(m *ckptMode, j *joined) (*ckptStream, error) {
	t, p, err := readCkptMessage(j.br)
	if err != nil {
		return nil, fmt.Errorf("the primary's link: %w", err)
	}
	if t != msgCkptHeader {
		return nil, fmt.Errorf("the primary's link: %w: got %v, want a checkpoint header", errProtocol, t)
	}
	var wh ckptHeader
	if err := readJSONPayload(p, &wh); err != nil {
		return nil, err
	}
	h, err := wh.decode()
	if err != nil {
		return nil, err
	}
	s := newCkptStream(m, j)
	switch r.cfg.Mode {
	case COLO:
		// The secondary runs its guest from the transferred state, which
		// is the primary's sync 0.
		c := &coloSecondary{r: r, s: s, e: j.engine, rw: newRewriter(), ready: make(chan struct{}, 1)}
		t, p, err := readCkptMessage(j.br)
		if err == nil && t != msgColoMappings {
			err = fmt.Errorf("%w: got %v, want the rewriter states", errProtocol, t)
		}
		if err == nil {
			c.inherited, err = loadChain(p)
		}
		if err != nil {
			return nil, fmt.Errorf("the primary's link: %w", err)
		}
		c.dirty = j.engine.TrackDirty()
		if r.cfg.Disk != nil {
			c.chunks = statesync.NewChunkLog(r.cfg.Disk.Size(), 0)
		}
		s.colo = c
	case Checkpoint:
		dst, ok := j.engine.(vm.Syncable)
		if !ok {
			return nil, errors.New("the backup's engine cannot take checkpoints in place (not a vm.Syncable)")
		}
		var disk vm.Disk
		if r.cfg.Disk != nil {
			disk = r.cfg.Disk
		}
		s.applier, err = statesync.NewApplier(dst, disk, statesync.ApplierOptions{Key: s.key,
			OnCommit: func(c statesync.Commit) { s.commits = append(s.commits, c) }})
		if err != nil {
			return nil, err
		}
	}
	// From here on the core's ticks judge the primary's silence.
	j.dr.timeout.Store(0)
	r.d.mu.Lock()
	r.d.stream = s
	r.d.mu.Unlock()
	r.d.step(ckpt.Following{Primary: j.primary, Header: h, State: j.st.Digest, Instret: j.engine.Instret()})
	if stop := r.d.stopped(); stop != nil {
		return nil, stop.Err
	}
	r.following(j)
	if s.colo != nil {
		r.coloS.Store(s.colo)
	}
	go s.read()
	go s.write()
	return s, nil
}

// awaitCkpt waits, while a Remus backup's stream applies the checkpoints,
// until the core stops the replica or tells it to go live; then the
// stream's reader has returned, and a checkpoint it left incomplete is
// discarded: the engine is in the state of the last one applied whole.
func (r *Replica) awaitCkpt(ctx context.Context, s *ckptStream) (vm.StopReason, error) {
	d := &r.d
	err := d.wait(ctx, func() bool { return d.stop != nil || d.live })
	s.close(nil)
	<-s.done
	if s.applier != nil {
		s.applier.Discard()
	}
	if err != nil {
		return vm.StopLimit, err
	}
	if stop := d.stopped(); stop != nil {
		if stop.Err != nil {
			return vm.StopLimit, stop.Err
		}
		return vm.ParseStopReason(stop.Reason), nil
	}
	return vm.StopLimit, nil
}
