package core

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"ftvm/arbiter/view"
	"ftvm/replay/eventlog"
)

// ProtocolVersion is the version of the replica protocol a join request
// must speak.
const ProtocolVersion = 1

// KindSync is the replication layer's ancillary log record (package
// eventlog reserves the range for records that do not affect the guest).
// The primary appends one at the end of every epoch that produced outputs
// and as its heartbeat: the backup must hold it before the epoch's outputs
// leave, runs to its instruction count before it may go live, and learns
// from its payload (uvarint) the end of the newest epoch whose outputs
// have left.
const KindSync = eventlog.Kind(0x60)

// ErrDeposed is the Stop of a replica that lost the arbitration: the other
// replica is live, and this one must stop without emitting anything more.
var ErrDeposed = errors.New("lost the arbitration: the other replica is live")

// ErrProtocol marks a peer that broke the protocol (as opposed to one that
// went away).
var ErrProtocol = errors.New("protocol error")

// Config configures a core. Times are in ticks: the driver steps a Tick
// every tick period it chooses, and converts its durations.
type Config struct {
	ID      string // this replica
	Cluster string // the pair's name
	Engine  string // the engine's name, in the log's header

	// HeartbeatTicks is how long a replica may be quiet before it tells
	// its peer it is alive (default 2); TimeoutTicks is the silence after
	// which the peer is lost (default 50, at least 2*HeartbeatTicks).
	HeartbeatTicks, TimeoutTicks int
	// RetryTicks and MaxRetryTicks bound the wait between attempts to
	// reach an arbiter that did not answer (doubling; default 2 and 100).
	RetryTicks, MaxRetryTicks int
	// MaxLag is how many instructions the backup may trail the primary
	// before the guest waits (default 200 M).
	MaxLag uint64
	// SendWindow is how many log bytes may wait to be written before the
	// guest waits (default 8 MiB).
	SendWindow int64
	// Lockstep makes every epoch wait for the acknowledgement of the log
	// up to its end (Bressoud and Schneider's protocol, to measure its
	// cost).
	Lockstep bool
}

func (c *Config) setDefaults() error {
	if c.ID == "" || c.Cluster == "" {
		return errors.New("core: an id and a cluster are required")
	}
	if c.HeartbeatTicks <= 0 {
		c.HeartbeatTicks = 2
	}
	if c.TimeoutTicks <= 0 {
		c.TimeoutTicks = 50
	}
	if c.TimeoutTicks < 2*c.HeartbeatTicks {
		return fmt.Errorf("core: timeout of %d ticks is less than twice the heartbeat's %d", c.TimeoutTicks, c.HeartbeatTicks)
	}
	if c.RetryTicks <= 0 {
		c.RetryTicks = 2
	}
	if c.MaxRetryTicks < c.RetryTicks {
		c.MaxRetryTicks = max(100, c.RetryTicks)
	}
	if c.MaxLag == 0 {
		c.MaxLag = 200_000_000
	}
	if c.SendWindow <= 0 {
		c.SendWindow = 8 << 20
	}
	return nil
}

// Role is what a replica is.
type Role int

const (
	Joining Role = iota // a backup receiving its state
	Backup              // following a primary's log
	Primary             // running the guest
)

func (r Role) String() string {
	switch r {
	case Joining:
		return "joining"
	case Backup:
		return "backup"
	case Primary:
		return "primary"
	}
	return "unknown"
}

// purpose is why a replica arbitrates.
type purpose int

const (
	alone    purpose = iota // a primary that lost its backup continues unprotected
	takeOver                // a backup whose primary is lost goes live
	protect                 // a primary takes a backup that holds its state
)

type arbitration struct {
	purpose  purpose
	old, new view.View
	inFlight bool // an Arbitrate is out, no answer yet
	wait     int  // ticks before the next attempt
	backoff  int
}

// hold is a Sync frame with outputs behind it, and the epoch it ends.
type hold struct {
	frame   int64
	instret uint64
}

// Core is one replica's protocol state. It is not safe for concurrent use:
// the driver serialises Step, Ready, MayRun and Status.
type Core struct {
	cfg  Config
	role Role
	view view.View
	peer string // the linked backup (primary), or the primary followed
	acts []Action

	stopped bool
	reason  string // the guest's stop reason, once known
	arb     *arbitration

	// The primary's log channel.
	log           *eventlog.Writer
	buf           bytes.Buffer // what log wrote and no Send has taken
	linked        bool
	sentFrames    int64
	sentBytes     int64
	written       int64
	ackedFrames   int64
	ackedBytes    int64
	replayed      uint64 // the backup's (primary), or this engine's (backup)
	instret       uint64 // the engine's count at the last epoch end
	last          uint64 // the instruction count of the last record logged
	holds         []hold
	released      uint64 // the end of the newest epoch whose outputs left
	silent        int    // ticks without hearing from the peer
	quiet         int    // ticks without sending (primary) or acknowledging (backup)
	joining       string
	joinState     [32]byte
	joinInstret   uint64
	finishing     bool
	finishTicks   int
	recvFrames    int64
	recvBytes     int64
	appliedFrames int64
	appliedBytes  int64
	draining      bool // the primary is lost; replaying what is held
	ended         bool // the End record is received: the stream is done
}

// NewPrimary returns the core of a primary running unprotected in v.
func NewPrimary(cfg Config, v view.View) (*Core, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Core{cfg: cfg, role: Primary, view: v}, nil
}

// NewBackup returns the core of a backup about to join a primary (its
// state transfer is the driver's; Step Following when it is done).
func NewBackup(cfg Config) (*Core, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Core{cfg: cfg, role: Joining}, nil
}

// Ready returns the actions to carry out, in order, and forgets them.
func (c *Core) Ready() []Action {
	a := c.acts
	c.acts = nil
	return a
}

func (c *Core) do(a ...Action) { c.acts = append(c.acts, a...) }

func (c *Core) note(l slog.Level, msg string, args ...any) {
	c.do(Note{Level: l, Msg: msg, Args: args})
}

// MayRun reports whether the guest may run its next epoch: this replica
// is a primary, not stopped, not arbitrating, not finishing, and its
// backup (if any) keeps up (MaxLag, SendWindow, Lockstep).
func (c *Core) MayRun() bool {
	if c.stopped || c.role != Primary || c.arb != nil || c.finishing {
		return false
	}
	if !c.linked {
		return true
	}
	return c.instret <= c.replayed+c.cfg.MaxLag &&
		c.sentBytes-c.written <= c.cfg.SendWindow &&
		(!c.cfg.Lockstep || c.ackedFrames >= c.sentFrames)
}

// Stopped reports whether the replica has stopped (a Stop action was
// given).
func (c *Core) Stopped() bool { return c.stopped }

// Status is the core's view of the replica, for status and metrics.
type Status struct {
	Role        Role
	View        view.View
	Peer        string // the backup linked, or the primary followed
	Joining     string // a backup receiving the state
	Arbitrating bool
	Stopped     bool
	// Primary: the engine's count at the last epoch end and the backup's
	// replayed count. Backup: the replayed count (both).
	Instret, PeerInstret uint64
	// Primary: log frames and bytes sent, bytes acknowledged. Backup:
	// frames and bytes received, bytes replayed.
	Frames, Bytes, DoneBytes int64
}

// Status returns the core's figures.
func (c *Core) Status() Status {
	s := Status{Role: c.role, View: c.view, Peer: c.peer, Joining: c.joining, Arbitrating: c.arb != nil, Stopped: c.stopped}
	switch c.role {
	case Primary:
		s.Instret, s.PeerInstret = c.instret, c.replayed
		s.Frames, s.Bytes, s.DoneBytes = c.sentFrames, c.sentBytes, c.ackedBytes
	default:
		s.Instret, s.PeerInstret = c.replayed, c.replayed
		s.Frames, s.Bytes, s.DoneBytes = c.recvFrames, c.recvBytes, c.appliedBytes
	}
	return s
}

// Step takes an event. Its error is only for Append: the record could not
// be logged (the backup is then lost).
func (c *Core) Step(ev Event) error {
	if c.stopped {
		return nil
	}
	switch ev := ev.(type) {
	case Tick:
		c.tick()
	case ArbiterAnswer:
		c.answer(ev)
	case LinkFailed:
		c.linkFailed(ev)
	case JoinRequest:
		c.joinRequest(ev)
	case Append:
		return c.append(ev.Record)
	case EpochEnded:
		c.epochEnded(ev)
	case Flush:
		if c.linked {
			c.flush()
		}
	case Written:
		c.written = max(c.written, ev.Bytes)
	case Acked:
		c.acked(ev)
	case Transferred:
		c.transferred(ev)
	case JoinFailed:
		c.joinFailed(ev)
	case Finish:
		c.finish(ev.Reason)
	case Following:
		c.following(ev)
	case Received:
		c.received(ev)
	case Applied:
		c.applied(ev)
	case ApplyFailed:
		if c.role == Backup {
			c.refuse(ev.Err)
		}
	default:
		return fmt.Errorf("core: unknown event %T", ev)
	}
	return nil
}

func (c *Core) stop(err error) {
	c.stopped = true
	c.do(Stop{Err: err, Reason: c.reason})
}

func (c *Core) tick() {
	if a := c.arb; a != nil && !a.inFlight {
		if a.wait--; a.wait <= 0 {
			a.inFlight = true
			c.do(Arbitrate{Old: a.old, New: a.new})
		}
	}
	switch {
	case c.role == Primary && c.linked:
		c.tickPrimary()
	case c.role == Backup && !c.draining && !c.ended:
		c.tickBackup()
	}
}

// arbitrate starts asking the arbiter to swap the view to next.
func (c *Core) arbitrate(p purpose, next view.View) {
	c.arb = &arbitration{purpose: p, old: c.view, new: next, inFlight: true, backoff: c.cfg.RetryTicks}
	c.do(Arbitrate{Old: c.view, New: next})
}

func (c *Core) answer(ans ArbiterAnswer) {
	a := c.arb
	if a == nil || !a.inFlight || ans.Old != a.old || ans.New != a.new {
		return // not the question asked, or already answered
	}
	a.inFlight = false
	switch {
	case ans.Err != nil && a.purpose == protect:
		// Nothing is lost by not protecting now: the joining backup is
		// sent away and the primary runs on as it was.
		c.arb = nil
		c.abandonJoin(fmt.Errorf("arbiter: %w", ans.Err))
	case ans.Err != nil:
		c.note(slog.LevelWarn, "arbiter unreachable: not acting alone", "err", ans.Err.Error())
		a.wait, a.backoff = a.backoff, min(2*a.backoff, c.cfg.MaxRetryTicks)
	case !ans.Won:
		c.arb = nil
		if a.purpose == protect {
			c.note(slog.LevelError, "the view changed under the primary", "view", ans.Current.String())
			c.joining = ""
			c.do(Unlink{Cause: ErrDeposed})
		} else {
			c.note(slog.LevelWarn, "lost the arbitration", "view", ans.Current.String())
		}
		c.do(DropAll{})
		c.stop(ErrDeposed)
	default:
		c.arb = nil
		c.view = a.new
		switch a.purpose {
		case alone:
			c.note(slog.LevelInfo, "won the arbitration", "view", a.new.String())
			c.do(ReleaseAll{})
			c.note(slog.LevelInfo, "continuing unprotected", "view", a.new.String())
			if c.finishing {
				c.stop(nil)
			}
		case takeOver:
			c.note(slog.LevelInfo, "won the arbitration", "view", a.new.String())
			c.role, c.peer, c.draining = Primary, "", false
			c.instret, c.last = c.replayed, c.replayed
			c.do(Reissue{}, GoLive{View: a.new})
		case protect:
			c.link()
		}
	}
}

func (c *Core) linkFailed(ev LinkFailed) {
	switch {
	case c.role == Primary && c.linked:
		c.backupLost(ev.Err)
	case c.role == Backup && !c.draining && !c.ended:
		if ev.Tampered || refusable(ev.Err) {
			c.refuse(ev.Err)
			return
		}
		c.primaryLost(ev.Err)
	}
}

// refusable reports a log that fails its checks or a peer that broke the
// protocol: evidence of a fault, not of the primary's death.
func refusable(err error) bool {
	return errors.Is(err, eventlog.ErrCorrupt) || errors.Is(err, eventlog.ErrVersion) ||
		errors.Is(err, eventlog.ErrUnknownKind) || errors.Is(err, ErrProtocol)
}

// joinRequest answers a would-be backup.
func (c *Core) joinRequest(j JoinRequest) {
	var why string
	switch {
	case j.Version != ProtocolVersion:
		why = fmt.Sprintf("protocol version %d, this replica speaks %d", j.Version, ProtocolVersion)
	case j.Cluster != c.cfg.Cluster:
		why = fmt.Sprintf("cluster %q, this replica serves %q", j.Cluster, c.cfg.Cluster)
	case j.ID != j.CertID:
		why = fmt.Sprintf("hello names replica %q but the certificate is %q's", j.ID, j.CertID)
	case j.ID == c.cfg.ID:
		why = fmt.Sprintf("replica id %q is this replica's own", j.ID)
	case c.role == Joining:
		why = fmt.Sprintf("replica %s is joining a primary itself", c.cfg.ID)
	case c.role == Backup:
		why = fmt.Sprintf("replica %s is the backup of %s, not a primary: join %s", c.cfg.ID, c.peer, c.peer)
	case c.linked:
		why = "already protected by " + c.peer
	case c.joining != "":
		why = "replica " + c.joining + " is joining"
	case c.arb != nil:
		why = "arbitrating"
	case c.finishing:
		why = "the guest has stopped"
	}
	if why != "" {
		c.do(Refuse{ID: j.ID, Reason: why})
		return
	}
	c.joining = j.ID
	c.do(Welcome{ID: j.ID})
}

func (c *Core) transferred(t Transferred) {
	if c.role != Primary || t.ID != c.joining || c.arb != nil {
		return
	}
	c.joinState, c.joinInstret = t.State, t.Instret
	// The backup may go live only once the view names it, and the view
	// must not name it before it holds the state.
	c.arbitrate(protect, c.view.Next(c.cfg.ID, t.ID))
}

func (c *Core) joinFailed(j JoinFailed) {
	if j.ID == c.joining && c.arb == nil {
		c.abandonJoin(j.Err)
	}
}

func (c *Core) abandonJoin(err error) {
	c.note(slog.LevelWarn, "backup join failed", "backup", c.joining, "err", err.Error())
	c.joining = ""
	c.do(Unlink{Cause: err})
}

// link opens the log channel to the backup that joined.
func (c *Core) link() {
	id := c.joining
	hdr := eventlog.Header{
		Engine:       c.cfg.Engine,
		StartInstret: c.joinInstret,
		Images:       []eventlog.Image{{Role: "state", SHA256: c.joinState}},
		Params: []eventlog.Param{
			{Key: "cluster", Value: c.cfg.Cluster},
			{Key: "generation", Value: strconv.FormatUint(c.view.Generation, 10)},
			{Key: "primary", Value: c.view.Primary},
			{Key: "backup", Value: c.view.Backup},
		},
	}
	c.buf.Reset()
	w, err := eventlog.NewWriter(&c.buf, hdr)
	if err != nil {
		c.abandonJoin(err)
		return
	}
	c.log, c.linked, c.peer, c.joining = w, true, id, ""
	c.sentFrames, c.sentBytes, c.written, c.ackedFrames, c.ackedBytes = 0, 0, 0, 0, 0
	c.replayed, c.instret, c.last = c.joinInstret, c.joinInstret, c.joinInstret
	c.holds, c.silent, c.quiet = nil, 0, 0
	c.note(slog.LevelInfo, "backup joined", "backup", id, "view", c.view.String(), "instret", c.joinInstret)
	c.do(Link{Peer: id, View: c.view})
	c.flush()
}

func (c *Core) append(rec eventlog.Record) error {
	if !c.linked {
		return nil // the log is gone; the driver drops its recorder
	}
	if err := c.log.Append(rec); err != nil {
		c.backupLost(fmt.Errorf("log: %w", err))
		return err
	}
	c.last = rec.Instret
	c.sendBuffered() // the writer flushes on its own past 64 KiB
	return nil
}

func (c *Core) epochEnded(e EpochEnded) {
	if c.role != Primary {
		return
	}
	c.instret = max(c.instret, e.Instret)
	if !c.linked || c.finishing {
		return
	}
	if e.Outputs || c.cfg.Lockstep {
		if !c.sync(c.instret) {
			return
		}
		if e.Outputs {
			// The Sync is the log's last frame: the outputs wait for it.
			c.holds = append(c.holds, hold{c.log.Frames(), c.instret})
			c.do(Hold{Frame: c.log.Frames()})
		}
	}
	c.flush()
}

// sync appends a Sync record at instruction at. It reports false if the
// log failed (the backup is then lost).
func (c *Core) sync(at uint64) bool {
	at = max(at, c.last)
	rec := eventlog.Record{Instret: at, Kind: KindSync, Data: binary.AppendUvarint(nil, c.released)}
	if err := c.log.Append(rec); err != nil {
		c.backupLost(fmt.Errorf("log: %w", err))
		return false
	}
	c.last = at
	return true
}

func (c *Core) flush() {
	if err := c.log.Flush(); err != nil {
		c.backupLost(fmt.Errorf("log: %w", err))
		return
	}
	c.sendBuffered()
}

// sendBuffered hands what the log wrote to the driver.
func (c *Core) sendBuffered() {
	if c.buf.Len() == 0 {
		return
	}
	data := bytes.Clone(c.buf.Bytes())
	c.buf.Reset()
	c.sentFrames, c.sentBytes, c.quiet = c.log.Frames(), c.log.Offset(), 0
	c.do(Send{Data: data, Frames: c.sentFrames, Bytes: c.sentBytes})
}

func (c *Core) acked(a Acked) {
	if c.role != Primary || !c.linked {
		return // late: the link is gone
	}
	if a.Frames > c.sentFrames || a.Bytes > c.sentBytes || a.Frames < 0 || a.Bytes < 0 ||
		a.Replayed > max(c.instret, c.last) {
		c.backupLost(fmt.Errorf("%w: backup acknowledged frames it was not sent (%d frames, %d bytes, instruction %d)",
			ErrProtocol, a.Frames, a.Bytes, a.Replayed))
		return
	}
	c.silent = 0
	c.replayed = a.Replayed
	if a.Frames <= c.ackedFrames {
		return
	}
	c.ackedFrames, c.ackedBytes = a.Frames, a.Bytes
	n := 0
	for n < len(c.holds) && c.holds[n].frame <= a.Frames {
		c.released = c.holds[n].instret
		n++
	}
	if n > 0 {
		c.do(Release{Through: c.holds[n-1].frame})
		c.holds = c.holds[n:]
	}
	if c.finishing && c.ackedFrames >= c.sentFrames {
		c.do(Release{Through: c.sentFrames})
		c.stop(nil)
	}
}

func (c *Core) tickPrimary() {
	if c.silent++; c.silent >= c.cfg.TimeoutTicks {
		c.backupLost(fmt.Errorf("backup silent for %d ticks", c.silent))
		return
	}
	if c.finishing {
		if c.finishTicks++; c.finishTicks >= c.cfg.TimeoutTicks {
			c.backupLost(errors.New("no acknowledgement of the End record"))
		}
		return
	}
	// The heartbeat: a Sync at the last count known, unless what was sent
	// is still being written (the backup will hear that first).
	if c.quiet++; c.quiet >= c.cfg.HeartbeatTicks && c.written >= c.sentBytes {
		if c.sync(c.instret) {
			c.flush()
		}
	}
}

// backupLost drops the link. The guest does not run and its outputs stay
// held until the arbitration decides.
func (c *Core) backupLost(cause error) {
	if !c.linked {
		return
	}
	c.note(slog.LevelWarn, "backup lost", "backup", c.peer, "cause", cause.Error())
	c.do(Unlink{Cause: cause})
	c.linked, c.log, c.peer, c.holds = false, nil, "", nil
	c.sentFrames, c.sentBytes, c.written, c.ackedFrames, c.ackedBytes = 0, 0, 0, 0, 0
	c.buf.Reset()
	c.arbitrate(alone, c.view.Next(c.cfg.ID, ""))
}

// finish ends a run whose guest stopped: with a backup, the End record
// goes out and the held outputs leave once the backup holds it.
func (c *Core) finish(reason string) {
	if c.role != Primary || c.finishing {
		return
	}
	c.reason = reason
	switch {
	case c.linked:
		c.finishing = true
		c.flush()
		if c.linked { // flush may have lost the backup
			c.do(Hold{Frame: c.sentFrames})
		}
	case c.arb != nil:
		c.finishing = true // stops once the arbitration is won
	case c.joining != "":
		c.abandonJoin(errors.New("the guest stopped"))
		c.stop(nil)
	default:
		c.stop(nil)
	}
}

// following checks that the log continues the state this backup holds
// and names it in the view.
func (c *Core) following(f Following) {
	if c.role != Joining {
		return
	}
	h := f.Header
	param := func(k string) string {
		for _, p := range h.Params {
			if p.Key == k {
				return p.Value
			}
		}
		return ""
	}
	gen, err := strconv.ParseUint(param("generation"), 10, 64)
	switch {
	case h.Engine != c.cfg.Engine:
		err = fmt.Errorf("the primary runs engine %q, this backup %q", h.Engine, c.cfg.Engine)
	case len(h.Images) != 1 || h.Images[0].Role != "state" || h.Images[0].SHA256 != f.State:
		err = errors.New("the primary's log does not start from the state it transferred")
	case h.StartInstret != f.Instret:
		err = fmt.Errorf("the primary's log starts at instruction %d, the transferred state is at %d", h.StartInstret, f.Instret)
	case err != nil || gen == 0 || param("cluster") != c.cfg.Cluster || param("backup") != c.cfg.ID || param("primary") != f.Primary:
		err = fmt.Errorf("the primary's log header names another pair: %v", h.Params)
	}
	if err != nil {
		c.do(Unlink{Cause: err})
		c.stop(err)
		return
	}
	c.role, c.peer = Backup, f.Primary
	c.view = view.View{Generation: gen, Primary: f.Primary, Backup: c.cfg.ID}
	c.replayed = f.Instret
}

func (c *Core) received(r Received) {
	if c.role != Backup {
		return
	}
	if r.Record.Kind == KindSync {
		if _, ok := syncThrough(r.Record); !ok {
			c.refuse(fmt.Errorf("%w: malformed sync record at instruction %d", ErrProtocol, r.Record.Instret))
			return
		}
	}
	c.recvFrames, c.recvBytes, c.silent = r.Frame, r.Offset, 0
	if r.Record.Kind == eventlog.KindEnd {
		// The primary's guest stopped: the primary ends once it has this
		// acknowledgement, and the connection with it. The backup replays
		// to the End record and stops too; it has no primary to judge.
		c.ended = true
	}
	if r.Batch || c.ended {
		c.ack()
	}
}

func syncThrough(rec eventlog.Record) (uint64, bool) {
	through, n := binary.Uvarint(rec.Data)
	return through, n > 0 && n == len(rec.Data)
}

func (c *Core) ack() {
	c.quiet = 0
	c.do(SendAck{Frames: c.recvFrames, Bytes: c.recvBytes, Replayed: c.replayed})
}

func (c *Core) applied(a Applied) {
	if c.role != Backup {
		return
	}
	c.appliedFrames, c.appliedBytes, c.replayed = a.Frame, a.Offset, a.Instret
	switch a.Record.Kind {
	case KindSync:
		through, _ := syncThrough(a.Record)
		c.do(Settle{Through: through})
	case eventlog.KindEnd:
		c.reason = a.Record.Reason
		c.note(slog.LevelInfo, "the primary's guest stopped", "reason", a.Record.Reason, "instret", a.Record.Instret)
		c.stop(nil)
		return
	}
	if c.draining && c.arb == nil && c.appliedFrames >= c.recvFrames {
		c.arbitrate(takeOver, c.view.Next(c.cfg.ID, ""))
	}
}

func (c *Core) tickBackup() {
	if c.quiet++; c.quiet >= c.cfg.HeartbeatTicks {
		c.ack() // sent even when nothing changed: the ack is the heartbeat
	}
	// A backup still replaying what it received may simply not be
	// reading: it cannot judge its primary's silence.
	if c.appliedFrames < c.recvFrames {
		c.silent = 0
		return
	}
	if c.silent++; c.silent >= c.cfg.TimeoutTicks {
		c.primaryLost(fmt.Errorf("primary silent for %d ticks", c.silent))
	}
}

// primaryLost: once everything held is replayed, the backup must win the
// arbitration to go live.
func (c *Core) primaryLost(cause error) {
	c.note(slog.LevelWarn, "primary lost", "primary", c.peer, "cause", cause.Error(), "instret", c.replayed)
	c.do(Unlink{Cause: cause})
	c.draining = true
	if c.appliedFrames >= c.recvFrames {
		c.arbitrate(takeOver, c.view.Next(c.cfg.ID, ""))
	}
}

// refuse stops a backup that received something it must not follow.
func (c *Core) refuse(err error) {
	c.note(slog.LevelError, "refusing the primary's log", "err", err.Error())
	c.do(Unlink{Cause: err})
	c.stop(fmt.Errorf("refusing the primary's log: %w", err))
}
