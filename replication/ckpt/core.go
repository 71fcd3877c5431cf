package ckpt

import (
	"errors"
	"fmt"
	"log/slog"

	"ftvm/arbiter/view"
	"ftvm/replication/core"
)

// Config configures a core: package core's (identity, ticks, arbiter
// retries; MaxLag, SendWindow and Lockstep are the replay's and unused),
// the mode, and Remus's pipelining.
type Config struct {
	core.Config
	Mode Mode
	// MaxInFlight is how many checkpoints may wait for the backup's
	// acknowledgement while the guest runs on (Remus; default 2). COLO
	// keeps the guest paused for its sync, one at a time.
	MaxInFlight int
}

func (c *Config) setDefaults() error {
	if err := c.Config.SetDefaults(); err != nil {
		return err
	}
	switch c.Mode {
	case Remus:
		if c.MaxInFlight <= 0 {
			c.MaxInFlight = 2
		}
	case COLO:
		c.MaxInFlight = 1
	default:
		return fmt.Errorf("ckpt: unknown mode %d", int(c.Mode))
	}
	return nil
}

// Core is one replica's protocol state. It is not safe for concurrent use:
// the driver serialises Step, Ready, MayRun, MayCheckpoint and Status.
type Core struct {
	cfg  Config
	role core.Role
	view view.View
	peer string // the linked backup (primary), or the primary followed
	acts []core.Action

	stopped bool
	reason  string
	arb     *core.Arbitration

	linked    bool
	seq       uint64 // primary: the last checkpoint taken; backup: the last committed
	acked     uint64 // primary: the last acknowledged
	instret   uint64 // the engine's count at the last checkpoint taken or committed
	holds     []uint64
	silent    int // ticks without hearing from the peer
	quiet     int // ticks without sending
	joining   string
	joinState [32]byte
	joinAt    uint64
	finishing bool
	finTicks  int
	ended     bool // backup: the primary's guest stopped
}

var _ interface {
	Step(core.Event) error
	Ready() []core.Action
	MayRun() bool
	Status() core.Status
} = (*Core)(nil)

// NewPrimary returns the core of a primary running unprotected in v.
func NewPrimary(cfg Config, v view.View) (*Core, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Core{cfg: cfg, role: core.Primary, view: v}, nil
}

// NewBackup returns the core of a backup about to join a primary (its
// state transfer is the driver's; Step Following when it is done).
func NewBackup(cfg Config) (*Core, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Core{cfg: cfg, role: core.Joining}, nil
}

// Mode is the core's mode.
func (c *Core) Mode() Mode { return c.cfg.Mode }

// Ready returns the actions to carry out, in order, and forgets them.
func (c *Core) Ready() []core.Action {
	a := c.acts
	c.acts = nil
	return a
}

func (c *Core) do(a ...core.Action) { c.acts = append(c.acts, a...) }

func (c *Core) note(l slog.Level, msg string, args ...any) {
	c.do(core.Note{Level: l, Msg: msg, Args: args})
}

// MayRun reports whether the guest may run: this replica is a primary,
// not stopped, arbitrating or finishing, and (with a backup) fewer than
// MaxInFlight checkpoints wait for their acknowledgement; or it is a COLO
// secondary following its primary (not arbitrating: a secondary whose
// primary is lost waits, so that none of its outputs is lost before it
// goes live).
func (c *Core) MayRun() bool {
	if c.stopped || c.arb != nil {
		return false
	}
	switch c.role {
	case core.Primary:
		return !c.finishing && (!c.linked || c.seq-c.acked < uint64(c.cfg.MaxInFlight))
	case core.Backup:
		return c.cfg.Mode == COLO && !c.ended
	}
	return false
}

// MayCheckpoint returns the sequence number of the next checkpoint, and
// whether one may be taken now: a backup is linked, the guest has not
// stopped, and fewer than MaxInFlight wait for their acknowledgement.
func (c *Core) MayCheckpoint() (uint64, bool) {
	if c.role != core.Primary || !c.linked || !c.MayRun() {
		return 0, false
	}
	return c.seq + 1, true
}

// Stopped reports whether the replica has stopped.
func (c *Core) Stopped() bool { return c.stopped }

// Status returns the core's figures: Frames is the last checkpoint taken
// (primary) or applied (backup), Instret the engine's count at it, and
// DoneBytes the last checkpoint acknowledged (primary).
func (c *Core) Status() core.Status {
	s := core.Status{Role: c.role, View: c.view, Peer: c.peer, Joining: c.joining, Arbitrating: c.arb != nil,
		Stopped: c.stopped, Instret: c.instret, Frames: int64(c.seq)}
	if c.role == core.Primary {
		s.DoneBytes = int64(c.acked)
	}
	return s
}

// Checkpoints returns the last checkpoint taken and the last acknowledged
// (primary), or the last applied twice (backup).
func (c *Core) Checkpoints() (taken, acked uint64) {
	if c.role == core.Primary {
		return c.seq, c.acked
	}
	return c.seq, c.seq
}

// Step takes an event.
func (c *Core) Step(ev core.Event) error {
	if c.stopped {
		return nil
	}
	switch ev := ev.(type) {
	case core.Tick:
		c.tick()
	case core.ArbiterAnswer:
		c.answer(ev)
	case core.LinkFailed:
		c.linkFailed(ev)
	case core.JoinRequest:
		c.joinRequest(ev)
	case core.Transferred:
		c.transferred(ev)
	case core.JoinFailed:
		if ev.ID == c.joining && c.arb == nil {
			c.abandonJoin(ev.Err)
		}
	case core.Finish:
		c.finish(ev.Reason)
	case core.ApplyFailed:
		if c.role == core.Backup {
			c.refuse(ev.Err)
		}
	case Taken:
		c.taken(ev)
	case Acked:
		c.acked1(ev)
	case Following:
		c.following(ev)
	case Received:
		if c.role == core.Backup {
			c.silent = 0
		}
	case Committed:
		c.committed(ev)
	case Ended:
		c.endOfRun(ev)
	default:
		return fmt.Errorf("ckpt: unknown event %T", ev)
	}
	return nil
}

func (c *Core) stop(err error) {
	c.stopped = true
	c.do(core.Stop{Err: err, Reason: c.reason})
}

func (c *Core) tick() {
	if c.arb != nil {
		if a, ok := c.arb.Tick(); ok {
			c.do(a)
		}
	}
	switch {
	case c.role == core.Primary && c.linked:
		c.tickPrimary()
	case c.role == core.Backup && !c.ended && c.arb == nil:
		c.tickBackup()
	}
}

func (c *Core) arbitrate(p core.Purpose, next view.View) {
	var a core.Arbitrate
	c.arb, a = core.NewArbitration(c.cfg.Config, p, c.view, next)
	c.do(a)
}

func (c *Core) answer(ans core.ArbiterAnswer) {
	a := c.arb
	if a == nil || !a.Answer(ans) {
		return
	}
	switch {
	case ans.Err != nil && a.Purpose == core.Protect:
		c.arb = nil
		c.abandonJoin(fmt.Errorf("arbiter: %w", ans.Err))
	case ans.Err != nil:
		c.note(slog.LevelWarn, "arbiter unreachable: not acting alone", "err", ans.Err.Error())
	case !ans.Won:
		c.arb = nil
		if a.Purpose == core.Protect {
			c.note(slog.LevelError, "the view changed under the primary", "view", ans.Current.String())
			c.joining = ""
			c.do(core.Unlink{Cause: core.ErrDeposed})
		} else {
			c.note(slog.LevelWarn, "lost the arbitration", "view", ans.Current.String())
		}
		c.do(core.DropAll{})
		c.stop(core.ErrDeposed)
	default:
		c.arb = nil
		c.view = a.New
		switch a.Purpose {
		case core.Alone:
			c.note(slog.LevelInfo, "won the arbitration", "view", a.New.String())
			c.do(core.ReleaseAll{})
			c.note(slog.LevelInfo, "continuing unprotected", "view", a.New.String())
			if c.finishing {
				c.stop(nil)
			}
		case core.TakeOver:
			c.note(slog.LevelInfo, "won the arbitration", "view", a.New.String())
			c.role, c.peer, c.acked = core.Primary, "", c.seq
			c.do(core.GoLive{View: a.New})
		case core.Protect:
			c.link()
		}
	}
}

func (c *Core) linkFailed(ev core.LinkFailed) {
	switch {
	case c.role == core.Primary && c.linked:
		c.backupLost(ev.Err)
	case c.role == core.Backup && !c.ended:
		if ev.Tampered || errors.Is(ev.Err, core.ErrProtocol) {
			c.refuse(ev.Err)
			return
		}
		c.primaryLost(ev.Err)
	}
}

func (c *Core) joinRequest(j core.JoinRequest) {
	why := core.RefuseJoin(c.cfg.Config, core.JoinState{Mode: c.cfg.Mode.String(), Role: c.role, Peer: c.peer, Linked: c.linked,
		Joining: c.joining, Arbitrating: c.arb != nil, Finishing: c.finishing}, j)
	if why != "" {
		c.do(core.Refuse{ID: j.ID, Reason: why})
		return
	}
	c.joining = j.ID
	c.do(core.Welcome{ID: j.ID})
}

func (c *Core) transferred(t core.Transferred) {
	if c.role != core.Primary || t.ID != c.joining || c.arb != nil {
		return
	}
	c.joinState, c.joinAt = t.State, t.Instret
	// The backup may go live only once the view names it, and the view
	// must not name it before it holds the state.
	c.arbitrate(core.Protect, c.view.Next(c.cfg.ID, t.ID))
}

func (c *Core) abandonJoin(err error) {
	c.note(slog.LevelWarn, "backup join failed", "backup", c.joining, "err", err.Error())
	c.joining = ""
	c.do(core.Unlink{Cause: err})
}

// link opens the link to the backup that joined: the transferred state
// is checkpoint 0.
func (c *Core) link() {
	id := c.joining
	c.linked, c.peer, c.joining = true, id, ""
	c.seq, c.acked, c.instret = 0, 0, c.joinAt
	c.holds, c.silent, c.quiet = nil, 0, 0
	c.note(slog.LevelInfo, "backup joined", "backup", id, "view", c.view.String(), "instret", c.joinAt)
	c.do(core.Link{Peer: id, View: c.view},
		SendHeader{Header: Header{Mode: c.cfg.Mode, Cluster: c.cfg.Cluster, View: c.view, State: c.joinState, Instret: c.joinAt}})
}

func (c *Core) taken(t Taken) {
	if c.role != core.Primary || !c.linked || c.finishing || t.Seq != c.seq+1 {
		return // late (the backup was lost meanwhile), or not the one asked for
	}
	c.seq, c.instret, c.quiet = t.Seq, t.Instret, 0
	if t.Outputs {
		c.holds = append(c.holds, t.Seq)
		c.do(core.Hold{Frame: int64(t.Seq)})
	}
	c.do(SendCheckpoint{Seq: t.Seq})
}

func (c *Core) acked1(a Acked) {
	if c.role != core.Primary || !c.linked {
		return // late: the link is gone
	}
	if a.Seq > c.seq || a.Seq < c.acked || (a.Ended && !c.finishing) {
		c.backupLost(fmt.Errorf("%w: backup acknowledged checkpoint %d (ended=%v); %d taken, %d acknowledged",
			core.ErrProtocol, a.Seq, a.Ended, c.seq, c.acked))
		return
	}
	c.silent = 0
	if a.Seq > c.acked {
		c.acked = a.Seq
		n := 0
		for n < len(c.holds) && c.holds[n] <= a.Seq {
			n++
		}
		if n > 0 {
			c.do(core.Release{Through: int64(c.holds[n-1])})
			c.holds = c.holds[n:]
		}
	}
	if a.Ended {
		// The backup has stopped with the guest: nobody can take over
		// from a state that did not produce these outputs.
		c.do(core.ReleaseAll{})
		c.stop(nil)
	}
}

func (c *Core) tickPrimary() {
	if c.silent++; c.silent >= c.cfg.TimeoutTicks {
		c.backupLost(fmt.Errorf("backup silent for %d ticks", c.silent))
		return
	}
	if c.finishing {
		if c.finTicks++; c.finTicks >= c.cfg.TimeoutTicks {
			c.backupLost(errors.New("no acknowledgement of the end"))
		}
		return
	}
	if c.quiet++; c.quiet >= c.cfg.HeartbeatTicks {
		c.quiet = 0
		c.do(SendHeartbeat{})
	}
}

// backupLost drops the link. The guest does not run and its outputs stay
// held until the arbitration decides.
func (c *Core) backupLost(cause error) {
	if !c.linked {
		return
	}
	c.note(slog.LevelWarn, "backup lost", "backup", c.peer, "cause", cause.Error())
	c.do(core.Unlink{Cause: cause})
	c.linked, c.peer, c.holds = false, "", nil
	c.arbitrate(core.Alone, c.view.Next(c.cfg.ID, ""))
}

// finish ends a run whose guest stopped: with a backup, the end goes out
// and the held outputs leave once the backup acknowledges it.
func (c *Core) finish(reason string) {
	if c.role != core.Primary || c.finishing {
		return
	}
	c.reason = reason
	switch {
	case c.linked:
		c.finishing = true
		c.do(SendEnd{Reason: reason})
	case c.arb != nil:
		c.finishing = true // stops once the arbitration is won
	case c.joining != "":
		c.abandonJoin(errors.New("the guest stopped"))
		c.stop(nil)
	default:
		c.stop(nil)
	}
}

// following checks that the link continues the state this backup holds
// and names it in the view.
func (c *Core) following(f Following) {
	if c.role != core.Joining {
		return
	}
	h := f.Header
	var err error
	switch {
	case h.Mode != c.cfg.Mode:
		err = fmt.Errorf("the primary replicates by %v, this backup by %v", h.Mode, c.cfg.Mode)
	case h.State != f.State:
		err = errors.New("the primary's link does not start from the state it transferred")
	case h.Instret != f.Instret:
		err = fmt.Errorf("the primary's link starts at instruction %d, the transferred state is at %d", h.Instret, f.Instret)
	case h.Cluster != c.cfg.Cluster || h.View.Generation == 0 || h.View.Backup != c.cfg.ID || h.View.Primary != f.Primary:
		err = fmt.Errorf("the primary's link names another pair: cluster %q, %v", h.Cluster, h.View)
	}
	if err != nil {
		c.do(core.Unlink{Cause: err})
		c.stop(err)
		return
	}
	c.role, c.peer, c.view = core.Backup, f.Primary, h.View
	c.seq, c.instret, c.silent, c.quiet = 0, f.Instret, 0, 0
}

func (c *Core) committed(m Committed) {
	if c.role != core.Backup || c.ended {
		return
	}
	c.seq, c.instret, c.silent = m.Seq, m.Instret, 0
	c.ack()
}

func (c *Core) ack() {
	c.quiet = 0
	c.do(SendAck{Seq: c.seq, Ended: c.ended})
}

func (c *Core) endOfRun(e Ended) {
	if c.role != core.Backup || c.ended {
		return
	}
	c.ended, c.reason = true, e.Reason
	c.note(slog.LevelInfo, "the primary's guest stopped", "reason", e.Reason, "checkpoint", c.seq)
	c.ack()
	c.stop(nil)
}

func (c *Core) tickBackup() {
	if c.quiet++; c.quiet >= c.cfg.HeartbeatTicks {
		c.ack() // sent even when nothing changed: the ack is the heartbeat
	}
	if c.silent++; c.silent >= c.cfg.TimeoutTicks {
		c.primaryLost(fmt.Errorf("primary silent for %d ticks", c.silent))
	}
}

// primaryLost: what the backup holds is applied already; it must win the
// arbitration to go live.
func (c *Core) primaryLost(cause error) {
	if c.arb != nil {
		return
	}
	c.note(slog.LevelWarn, "primary lost", "primary", c.peer, "cause", cause.Error(), "checkpoint", c.seq, "instret", c.instret)
	c.do(core.Unlink{Cause: cause})
	c.arbitrate(core.TakeOver, c.view.Next(c.cfg.ID, ""))
}

// refuse stops a backup that received something it must not follow.
func (c *Core) refuse(err error) {
	c.note(slog.LevelError, "refusing the primary's checkpoints", "err", err.Error())
	c.do(core.Unlink{Cause: err})
	c.stop(fmt.Errorf("refusing the primary's checkpoints: %w", err))
}
