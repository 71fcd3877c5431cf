package replication

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"ftvm/migrate"
	"ftvm/replication/outbuf"
	"ftvm/replication/plover"
	"ftvm/statesync"
	"ftvm/vm"
)

// PLOVER mode (Wang et al., ATC 2018): a primary, a backup and a witness
// form a consensus group (package plover's core, on etcd's raft). The
// primary proposes the guest's inputs; once a majority holds them both
// replicas apply them in log order, so their memories stay mostly
// identical although each runs its harts in parallel, nondeterministically.
// When the guest goes idle (or after MaxPeriod), the primary proposes a
// sync: both replicas pause where the log puts the sync, exchange their
// dirty bitmaps, hash the union's pages in parallel, and the primary sends
// the pages that differ and its device state (package statesync); the
// outputs the primary's guest emitted before the pause leave only then.
// The witness only keeps the log (and the page hashes of the last sync,
// for repairs). A primary that dies is replaced by the backup, which the
// group elects; the witness is never a primary. This file is the driver:
// the core, its lock and its actions, the guest's goroutine and the sync;
// plover_net.go holds the connections.

// PloverConfig configures a member of a PLOVER group.
type PloverConfig struct {
	// The replica's configuration: ID, Cluster, TLS, Host, Factory, Disk,
	// Engine, Epoch, Heartbeat, Timeout and Log are used (Timeout is
	// raft's election timeout, default 300 ms); the arbiter is not (the
	// group agrees by itself).
	Config
	// Advertise is the address the other members dial to reach this one
	// (default: its listener's).
	Advertise string
	// MaxPeriod is the longest the primary goes without a sync while
	// there is something to synchronise (default 50 ms); IdleChecks is how
	// many consecutive looks at an idle guest (every IdleCheck, default
	// 250 µs, while outputs wait) start one (default 3).
	MaxPeriod  time.Duration
	IdleChecks int
	IdleCheck  time.Duration
	// Tick is the period of the core's clock (default 5 ms).
	Tick time.Duration
	// HashWorkers is how many goroutines hash pages in a sync (0: one per
	// host core).
	HashWorkers int
}

func (c *PloverConfig) setDefaults() error {
	if c.Timeout == 0 {
		c.Timeout = 300 * time.Millisecond
	}
	if err := c.Config.setDefaults(); err != nil {
		return err
	}
	if c.MaxPeriod == 0 {
		c.MaxPeriod = 50 * time.Millisecond
	}
	if c.IdleChecks == 0 {
		c.IdleChecks = 3
	}
	if c.IdleCheck == 0 {
		c.IdleCheck = 250 * time.Microsecond
	}
	if c.Tick == 0 {
		c.Tick = 5 * time.Millisecond
	}
	return nil
}

// Plover is one member of a PLOVER group: a replica (RunPrimary,
// RunBackup) or a witness (RunWitness).
type Plover struct {
	cfg    PloverConfig
	r      *Replica // the outputs, the status, the log
	log    *slog.Logger
	key    []byte
	hasher *statesync.Hasher
	net    *memberNet

	mu        sync.Mutex
	core      *plover.Core
	self      plover.Member
	work      []plover.Action // the guest's: Apply, SyncPoint, GoLive
	aborted   map[uint64]bool
	stop      *plover.Stop
	candidate *ploverJoiner            // the join request being stepped
	joiners   map[string]*ploverJoiner // welcomed backups, by id
	welcomed  []*ploverJoiner          // for the guest's goroutine to transfer to
	syncQ     []inbound                // sync messages not yet taken
	changed   chan struct{}
	ctx       context.Context

	activity  atomic.Bool   // the guest emitted or wrote since the last look
	instret   atomic.Uint64 // the guest's count at the end of its last slice
	diskMu    sync.Mutex
	diskDirty statesync.Bitmap

	stMu  sync.Mutex
	stats ploverStats

	flips       []*flipRequest // memory errors to inject
	witnessLost bool           // a message to the witness was lost
	wmu         sync.Mutex
	wtable      witnessTable // a witness's
}

// ploverJoiner is a member on its way in.
type ploverJoiner struct {
	m    plover.Member
	conn *tls.Conn
	br   *bufio.Reader
	t0   time.Time
}

// NewPlover checks cfg and returns a member. A primary's engine must be
// built with Outputs().
func NewPlover(cfg PloverConfig) (*Plover, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	r, err := newReplica(cfg.Config)
	if err != nil {
		return nil, err
	}
	p := &Plover{cfg: cfg, r: r, log: r.log, hasher: statesync.NewHasher(cfg.HashWorkers),
		aborted: map[uint64]bool{}, joiners: map[string]*ploverJoiner{}, changed: make(chan struct{}, 1)}
	// The checkpoints of a sync travel inside the mutual-TLS channel,
	// which authenticates them; their MAC only has to match.
	k := sha256.Sum256([]byte("ftvm plover sync " + cfg.Cluster))
	p.key = k[:]
	if cfg.Disk != nil {
		p.diskDirty = statesync.NewBitmap(int((cfg.Disk.Size() + statesync.DefaultChunkSize - 1) / statesync.DefaultChunkSize))
	}
	r.setStatus(func(s *Status) { s.Mode = "plover" })
	return p, nil
}

// Outputs is where the engine's outputs must go: the replica's output
// buffer, and the activity and dirty disk chunks the syncs need.
func (p *Plover) Outputs() vm.Outputs {
	o := p.r.Outputs()
	console, netOut := o.Console, o.Net
	o.Console = func(instret uint64, b []byte) {
		p.activity.Store(true)
		console(instret, b)
	}
	o.Net = func(instret uint64, f []byte) {
		p.activity.Store(true)
		netOut(instret, f)
	}
	o.Disk = func(_ uint64, off int64, b []byte) {
		p.activity.Store(true)
		p.diskMu.Lock()
		if p.diskDirty != nil && len(b) > 0 && off >= 0 {
			for c := off / statesync.DefaultChunkSize; c <= (off+int64(len(b))-1)/statesync.DefaultChunkSize && c < int64(len(p.diskDirty))*64; c++ {
				p.diskDirty.Set(int(c))
			}
		}
		p.diskMu.Unlock()
	}
	return o
}

// Status returns the member's current figures.
func (p *Plover) Status() Status { return p.r.Status() }

// Replica is the replica behind the member (its status, for monitoring).
func (p *Plover) Replica() *Replica { return p.r }

func (p *Plover) coreConfig(self plover.Member) plover.Config {
	ticks := func(d time.Duration) int { return max(1, int((d+p.cfg.Tick-1)/p.cfg.Tick)) }
	return plover.Config{
		Self: self, Cluster: p.cfg.Cluster,
		ElectionTicks: ticks(p.cfg.Timeout), HeartbeatTicks: ticks(p.cfg.Heartbeat),
		IdleChecks: p.cfg.IdleChecks, MaxPeriodTicks: ticks(p.cfg.MaxPeriod),
	}
}

// newMember names this member for a new incarnation: a fresh raft id.
func (p *Plover) newMember(kind plover.Kind, ln net.Listener) plover.Member {
	var b [8]byte
	for {
		rand.Read(b[:])
		if id := binary.LittleEndian.Uint64(b[:]) >> 1; id != 0 {
			addr := p.cfg.Advertise
			if addr == "" {
				addr = ln.Addr().String()
			}
			return plover.Member{RaftID: id, ID: p.cfg.ID, Kind: kind, Addr: addr}
		}
	}
}

// begin starts the member's machinery: its connections (accepting on
// ln), its ticker. The returned function ends them.
func (p *Plover) begin(ctx context.Context, c *plover.Core, self plover.Member, ln net.Listener) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	p.mu.Lock()
	p.core, p.self, p.ctx = c, self, ctx
	p.mu.Unlock()
	n := newMemberNet(p.cfg.ID, p.cfg.Cluster, p.cfg.TLS, max(p.cfg.Timeout, time.Second))
	n.deliver = p.deliver
	n.down = func(from string) { p.step(plover.LinkDown{From: from}) }
	n.join = p.joinRequest
	n.warn = func(msg string, args ...any) { p.r.warnRare(&p.r.rejectWarn, msg, args...) }
	p.net = n
	go n.accept(ctx, ln)
	go p.tick(ctx)
	return ctx, func() {
		cancel()
		n.close()
		p.mu.Lock()
		for _, j := range p.joiners {
			j.conn.Close()
		}
		p.mu.Unlock()
	}
}

// step steps ev into the core and carries out what comes of it.
func (p *Plover) step(ev plover.Event) {
	p.mu.Lock()
	later := p.stepLocked(ev)
	p.mu.Unlock()
	p.finish(later)
}

func (p *Plover) stepLocked(ev plover.Event) []func() {
	if p.core == nil {
		return nil
	}
	if err := p.core.Step(ev); err != nil {
		p.log.Warn("plover step", "err", err.Error())
	}
	return p.carryOut(p.core.Ready())
}

func (p *Plover) finish(later []func()) {
	for _, f := range later {
		f()
	}
	p.r.out.Flush()
}

func (p *Plover) signal() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// carryOut carries out the core's actions that are data, under the lock,
// and returns what must be done after it.
func (p *Plover) carryOut(acts []plover.Action) []func() {
	var later []func()
	out := p.r.out
	wake, changed := false, false
	for _, a := range acts {
		if _, ok := a.(plover.Send); !ok {
			changed = true
		}
		switch a := a.(type) {
		case plover.Send:
			to := a.To
			p.net.send(to, msgRaft, a.Data, false, func() { p.step(plover.Unreachable{To: to.RaftID}) })
		case plover.Apply, plover.SyncPoint, plover.GoLive:
			p.work = append(p.work, a)
			wake = true
		case plover.AbortSync:
			p.aborted[a.Seq] = true
			wake = true
		case plover.Hold:
			out.SetMode(outbuf.Held)
		case plover.Release:
			out.Release(int64(a.Seq))
		case plover.Solo:
			if out.Mode() == outbuf.Uncertain {
				n := out.Reissue()
				later = append(later, func() { p.log.Info("alone in the group: outputs leave at once", "reissued", n) })
			} else {
				out.ReleaseAll()
				later = append(later, func() { p.log.Info("alone in the group: outputs leave at once") })
			}
		case plover.Welcome:
			j := p.candidate
			if j == nil || j.m.ID != a.ID {
				break
			}
			w := ploverWelcome{Primary: p.cfg.ID, Transfer: a.Transfer, Directory: a.Directory}
			if a.Transfer {
				p.joiners[j.m.ID] = j
			}
			later = append(later, func() {
				// The welcome goes out before the transfer starts: only
				// then does the guest's goroutine get the joiner.
				j.conn.SetWriteDeadline(time.Now().Add(handshakeTimeout))
				err := writeJSON(j.conn, msgPloverWelcome, w)
				j.conn.SetWriteDeadline(time.Time{})
				p.log.Info("member joining", "member", j.m.String())
				switch {
				case err != nil && w.Transfer:
					j.conn.Close()
					p.step(plover.JoinFailed{ID: j.m.ID, Err: err})
				case !w.Transfer:
					j.conn.Close()
				default:
					p.mu.Lock()
					p.welcomed = append(p.welcomed, j)
					p.mu.Unlock()
					p.signal()
				}
			})
		case plover.StartJoiner:
			if j := p.joiners[a.ID]; j != nil {
				delete(p.joiners, a.ID)
				snap := a.Snapshot
				later = append(later, func() {
					j.conn.SetWriteDeadline(time.Now().Add(handshakeTimeout))
					writeMessage(j.conn, msgRaftStart, snap)
					j.conn.Close()
				})
			}
		case plover.Refuse:
			if j := p.candidate; j != nil {
				why := a.Reason
				later = append(later, func() {
					p.r.warnRare(&p.r.refuseWarn, "refused a member", "from", j.conn.RemoteAddr().String(), "id", j.m.ID, "err", why)
					j.conn.SetWriteDeadline(time.Now().Add(time.Second))
					writeJSON(j.conn, msgRefuse, refuse{Error: why})
					j.conn.Close()
				})
			}
		case plover.Stop:
			s := a
			p.stop = &s
			if errors.Is(s.Err, plover.ErrDeposed) || errors.Is(s.Err, plover.ErrRemoved) {
				out.DropAll()
			}
			wake = true
		case plover.Note:
			later = append(later, func() { p.log.Log(context.Background(), a.Level, a.Msg, a.Args...) })
		}
	}
	if wake {
		p.signal()
	}
	if changed {
		later = append(later, p.refreshStatus)
	}
	return later
}

// deliver takes a message a member sent.
func (p *Plover) deliver(m inbound) {
	switch m.t {
	case msgRaft:
		p.step(plover.Message{From: m.from, Data: m.p})
	case msgSync:
		p.mu.Lock()
		if len(p.syncQ) < 4096 {
			p.syncQ = append(p.syncQ, m)
		}
		p.mu.Unlock()
		p.signal()
	default:
		p.deliverOther(m)
	}
}

// tick runs the core's clock until ctx ends.
func (p *Plover) tick(ctx context.Context) {
	t := time.NewTicker(p.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.step(plover.Tick{})
		p.refreshStatus()
	}
}

// joinRequest asks the core about a member that wants in (on the
// connection's goroutine).
func (p *Plover) joinRequest(c *tls.Conn, br *bufio.Reader, h joinHello) {
	id, _ := peerID(c)
	j := &ploverJoiner{m: h.Member, conn: c, br: br, t0: time.Now()}
	p.mu.Lock()
	if p.core == nil {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.candidate = j
	later := p.stepLocked(plover.JoinRequest{Member: h.Member, CertID: id, Cluster: h.Cluster, Version: h.Version})
	p.candidate = nil
	p.mu.Unlock()
	p.finish(later)
}

// stopped returns the core's Stop, if any.
func (p *Plover) stopped() *plover.Stop {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stop
}

func ploverStopErr(s *plover.Stop) error {
	if s == nil {
		return errors.New("plover: no stop")
	}
	return s.Err
}

// wait blocks until the core stops or ctx ends.
func (p *Plover) wait(ctx context.Context) error {
	for {
		if s := p.stopped(); s != nil {
			return s.Err
		}
		select {
		case <-p.changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// RunPrimary starts a new group with this replica as its primary, running
// e, until the guest stops, ctx ends or the replica is deposed. Members
// join through ln. e must have been built with Outputs().
func (p *Plover) RunPrimary(ctx context.Context, e Engine, ln net.Listener) (vm.StopReason, error) {
	self := p.newMember(plover.Replica, ln)
	c, err := plover.NewPrimary(p.coreConfig(self))
	if err != nil {
		return vm.StopLimit, err
	}
	ctx, end := p.begin(ctx, c, self, ln)
	defer end()
	p.r.out.SetMode(outbuf.Uncertain) // until the core says alone or held
	p.finish(p.carryOutNow())
	p.log.Info("plover primary: a new group", "member", self.String())
	return p.runGuest(ctx, e, false)
}

func (p *Plover) carryOutNow() []func() {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.carryOut(p.core.Ready())
}

// RunBackup joins the group whose primary listens at addr as its backup:
// it receives the primary's state, then applies the log and syncs; if the
// primary dies and the group elects it, it continues as the primary.
func (p *Plover) RunBackup(ctx context.Context, addr string, ln net.Listener) (vm.StopReason, error) {
	if p.cfg.Factory == nil {
		return vm.StopLimit, errors.New("replication: a backup needs a Factory")
	}
	self := p.newMember(plover.Replica, ln)
	c, err := plover.NewJoiner(p.coreConfig(self))
	if err != nil {
		return vm.StopLimit, err
	}
	ctx, end := p.begin(ctx, c, self, ln)
	defer end()
	p.r.out.SetMode(outbuf.Uncertain)
	p.r.setStatus(func(s *Status) { s.Role = "joining" })
	conn, br, w, err := dialJoin(ctx, p.cfg.TLS, addr, p.cfg.Cluster, self)
	if err != nil {
		p.r.stopStatus(err)
		return vm.StopLimit, err
	}
	defer conn.Close()
	if !w.Transfer {
		return vm.StopLimit, fmt.Errorf("joining %s: %w: the welcome offers no state", addr, errProtocol)
	}
	t0 := time.Now()
	var disk migrate.Disk
	if p.cfg.Disk != nil {
		disk = p.cfg.Disk
	}
	e, st, err := migrate.Receive(connRW{br, conn}, disk, p.cfg.Factory(p.Outputs()), migrate.ReceiveOptions{MaxMemory: maxGuestMemory})
	if err != nil {
		err = fmt.Errorf("the state transfer from %s: %w", w.Primary, err)
		p.r.stopStatus(err)
		return vm.StopLimit, err
	}
	snap, err := readRaftStart(br)
	if err != nil {
		err = fmt.Errorf("joining %s: %w", w.Primary, err)
		p.r.stopStatus(err)
		return vm.StopLimit, err
	}
	conn.Close()
	p.step(plover.Start{Directory: w.Directory, Snapshot: snap})
	if s := p.stopped(); s != nil {
		return vm.StopLimit, s.Err
	}
	p.log.Info("plover backup: following", "primary", w.Primary, "member", self.String(),
		"received_bytes", st.BytesReceived, "disk_chunks", st.Chunks, "transfer", time.Since(t0).String())
	return p.runGuest(ctx, e, true)
}

// RunWitness joins the group whose primary listens at addr as its
// witness, and takes part until ctx ends or the group removes it.
func (p *Plover) RunWitness(ctx context.Context, addr string, ln net.Listener) error {
	self := p.newMember(plover.Witness, ln)
	c, err := plover.NewJoiner(p.coreConfig(self))
	if err != nil {
		return err
	}
	ctx, end := p.begin(ctx, c, self, ln)
	defer end()
	p.r.setStatus(func(s *Status) { s.Role = "joining" })
	conn, _, w, err := dialJoin(ctx, p.cfg.TLS, addr, p.cfg.Cluster, self)
	if err != nil {
		p.r.stopStatus(err)
		return err
	}
	conn.Close()
	p.step(plover.Start{Directory: w.Directory})
	p.log.Info("plover witness: following", "primary", w.Primary, "member", self.String())
	err = p.wait(ctx)
	p.r.stopStatus(err)
	return err
}

// refreshStatus updates the status from the core.
func (p *Plover) refreshStatus() {
	p.mu.Lock()
	if p.core == nil {
		p.mu.Unlock()
		return
	}
	cs := p.core.Status()
	p.mu.Unlock()
	held := p.r.out.Held()
	p.stMu.Lock()
	ps := p.stats
	p.stMu.Unlock()
	p.r.setStatus(func(st *Status) {
		if st.Role == "stopped" {
			return
		}
		st.Mode = "plover"
		st.Role, st.Term, st.HeldOutputs = cs.Role.String(), cs.Term, held
		st.Members, st.Peer = nil, ""
		for _, m := range cs.Members {
			st.Members = append(st.Members, m.ID+" ("+m.Kind.String()+")")
			if m.ID != p.cfg.ID && m.Kind == plover.Replica {
				st.Peer = m.ID
			}
		}
		st.Leader, st.LogIndex, st.Instret = cs.Leader, cs.Applied, p.instret.Load()
		st.Syncs = ps.syncs
		if ps.syncs > 0 {
			last := ps.last
			st.LastSync = &last
		}
		totals := ps.totals
		if p.net != nil {
			totals.MemberBytes = p.net.sent.Load()
		}
		st.Totals = &totals
		st.Repairs = ps.repairs
	})
}

// ploverStats are the sync figures the status shows.
type ploverStats struct {
	syncs   int
	last    SyncReport
	totals  SyncTotals
	repairs []RepairReport
}

// SyncTotals add up a PLOVER replica's syncs since it started, and what
// it sent to the other members.
type SyncTotals struct {
	DirtyPages int64         `json:"dirty_pages"`
	SamePages  int64         `json:"same_pages"`
	SentPages  int64         `json:"sent_pages"`
	SyncBytes  int64         `json:"sync_bytes"` // sync messages, both ways
	Pause      time.Duration `json:"pause_ns"`
	// MemberBytes is every byte this member sent to the others:
	// consensus, syncs, page hashes.
	MemberBytes int64 `json:"member_bytes"`
}

// SyncReport describes one PLOVER sync.
type SyncReport struct {
	Seq            uint64        `json:"seq"`
	DirtyPages     int           `json:"dirty_pages"`   // the union of both replicas' dirty pages
	SamePages      int           `json:"same_pages"`    // of those, identical on both
	SameFraction   float64       `json:"same_fraction"` // SamePages / DirtyPages
	SentPages      int           `json:"sent_pages"`    // pages the primary sent
	DiskChunks     int           `json:"disk_chunks"`   // disk chunks compared
	SentDiskChunks int           `json:"sent_disk_chunks"`
	Bytes          int64         `json:"bytes"` // sync messages, both ways
	Pause          time.Duration `json:"pause_ns"`
}

// RepairReport describes the repair of a replica's memory.
type RepairReport struct {
	At       time.Time `json:"at"`
	Pages    []int     `json:"pages"`    // the pages repaired
	Faulty   string    `json:"faulty"`   // the replica whose pages were wrong
	Majority bool      `json:"majority"` // a witness's hashes decided (else the primary was assumed right)
	Detail   string    `json:"detail"`
}
