package plover

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// ProtocolVersion is the version of the member protocol a join request
// must speak.
const ProtocolVersion = 1

// The errors of a Stop.
var (
	// ErrDeposed: this replica was the primary and another member leads
	// the group now; its held outputs never leave.
	ErrDeposed = errors.New("deposed: the group has another leader")
	// ErrRemoved: the group removed this member (the primary judged it
	// lost); it must join again, as a new member, to take part.
	ErrRemoved = errors.New("removed from the group")
)

// Config configures a core. Times are in ticks: the driver steps a Tick
// every tick period it chooses.
type Config struct {
	Self    Member
	Cluster string

	// ElectionTicks is raft's election timeout (default 20), and
	// HeartbeatTicks the leader's heartbeat interval (default 2).
	ElectionTicks, HeartbeatTicks int
	// LostTicks is the silence after which the primary removes a member
	// from the group (default 2*ElectionTicks).
	LostTicks int
	// IdleChecks is how many consecutive looks at an idle, quiet guest
	// start a sync (default 3); MaxPeriodTicks is the longest the primary
	// goes without a sync while there is something to synchronise
	// (default 10).
	IdleChecks, MaxPeriodTicks int
	// MaxBatch is the most input bytes proposed in one entry (default
	// 256 KiB).
	MaxBatch int
}

func (c *Config) setDefaults() error {
	if err := c.Self.valid(); err != nil {
		return fmt.Errorf("plover: this member: %w", err)
	}
	if c.Cluster == "" {
		return errors.New("plover: a cluster name is required")
	}
	if c.ElectionTicks <= 0 {
		c.ElectionTicks = 20
	}
	if c.HeartbeatTicks <= 0 {
		c.HeartbeatTicks = 2
	}
	if c.ElectionTicks <= c.HeartbeatTicks {
		return fmt.Errorf("plover: election timeout of %d ticks is not above the heartbeat's %d", c.ElectionTicks, c.HeartbeatTicks)
	}
	if c.LostTicks <= 0 {
		c.LostTicks = 2 * c.ElectionTicks
	}
	if c.IdleChecks <= 0 {
		c.IdleChecks = 3
	}
	if c.MaxPeriodTicks <= 0 {
		c.MaxPeriodTicks = 10
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 256 << 10
	}
	return nil
}

// Role is what a member is doing.
type Role int

const (
	Joining     Role = iota // waiting to start (a backup receiving its state)
	Primary                 // a replica leading the group: it runs the guest on the host's inputs
	Backup                  // a replica following the primary
	WitnessRole             // a witness
	Stopped
)

func (r Role) String() string {
	switch r {
	case Joining:
		return "joining"
	case Primary:
		return "primary"
	case Backup:
		return "backup"
	case WitnessRole:
		return "witness"
	case Stopped:
		return "stopped"
	}
	return "unknown"
}

// Core is one member's protocol state: the raft node and everything built
// on it. It is not safe for concurrent use: the driver serialises Step,
// Ready and the queries.
type Core struct {
	cfg  Config
	st   *raft.MemoryStorage
	rn   *raft.RawNode
	dir  Directory
	cs   *pb.ConfState
	acts []Action
	log  *noteLogger

	role      Role
	lead      uint64
	term      uint64
	reason    string
	applied   uint64 // the last entry handed to the driver
	confIndex uint64 // the last membership change applied
	delivered uint64 // the last entry the guest was given

	// A primary's.
	batch     []byte
	ccQueue   []*pb.ConfChange
	ccPending bool
	silent    map[uint64]int
	solo      bool // outputs leave at once
	joining   *Member
	hold      uint64 // do not compact past this index (0: no hold)
	idle      int
	sinceSync int
	work      bool // inputs applied or outputs made since the last sync
	finishing bool

	ccReady bool // this leader's empty entry is applied: raft takes membership changes

	syncSeq    uint64 // the last sync proposed
	syncBusy   bool   // a sync is proposed or running
	syncFinal  bool   // the sync running is a stopped guest's last
	syncPeer   uint64
	syncIndex  uint64
	lastMarker uint64 // the index of the last sync completed (or seen, on a witness)
	syncs      int
	last       SyncStats
}

// NewPrimary returns the core of a replica that starts a new group: it is
// its only member, leads it and runs the guest.
func NewPrimary(cfg Config) (*Core, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	c := newCore(cfg)
	if err := c.startRaft(0); err != nil {
		return nil, err
	}
	if err := c.rn.Bootstrap([]raft.Peer{{ID: cfg.Self.RaftID, Context: cfg.Self.encode()}}); err != nil {
		return nil, err
	}
	c.role = Backup // until it leads
	c.ready()       // the bootstrap's membership entry, applied before an election
	if err := c.rn.Campaign(); err != nil {
		return nil, err
	}
	c.ready()
	return c, nil
}

// NewJoiner returns the core of a member about to join a group (Step
// Start when the primary has welcomed it and, for a backup, transferred
// the state).
func NewJoiner(cfg Config) (*Core, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return newCore(cfg), nil
}

func newCore(cfg Config) *Core {
	c := &Core{cfg: cfg, dir: Directory{cfg.Self.RaftID: cfg.Self}, silent: map[uint64]int{}, cs: &pb.ConfState{}}
	c.log = &noteLogger{c: c}
	return c
}

func (c *Core) startRaft(applied uint64) error {
	if c.st == nil {
		c.st = raft.NewMemoryStorage()
	}
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        c.cfg.Self.RaftID,
		ElectionTick:              c.cfg.ElectionTicks,
		HeartbeatTick:             c.cfg.HeartbeatTicks,
		Storage:                   c.st,
		Applied:                   applied,
		MaxSizePerMsg:             1 << 20,
		MaxInflightMsgs:           256,
		MaxUncommittedEntriesSize: 64 << 20,
		CheckQuorum:               true,
		PreVote:                   true,
		DisableProposalForwarding: true,
		Logger:                    c.log,
	})
	if err != nil {
		return err
	}
	c.rn = rn
	return nil
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

// Step takes an event.
func (c *Core) Step(ev Event) error {
	if c.role == Stopped {
		return nil
	}
	switch ev := ev.(type) {
	case Start:
		return c.start(ev)
	case JoinRequest:
		c.joinRequest(ev)
		return nil
	}
	if c.rn == nil {
		return nil // not started
	}
	switch ev := ev.(type) {
	case Tick:
		c.tick()
	case Message:
		c.message(ev)
	case LinkDown:
		c.linkDown(ev)
	case Unreachable:
		c.rn.ReportUnreachable(ev.To)
	case Propose:
		c.propose(ev.Input)
	case Flush:
		c.flush()
	case EpochEnded:
		c.epochEnded(ev)
	case Transferred:
		c.transferred(ev)
	case JoinFailed:
		c.joinFailed(ev)
	case SyncDone:
		c.syncDone(ev)
	case SyncFailed:
		c.syncFailed(ev)
	case Finish:
		c.finish(ev.Reason)
	case Delivered:
		c.delivered = max(c.delivered, ev.Index)
	default:
		return fmt.Errorf("plover: unknown event %T", ev)
	}
	c.ready()
	return nil
}

func (c *Core) stop(err error) {
	if c.role == Stopped {
		return
	}
	c.role = Stopped
	c.do(Stop{Err: err, Reason: c.reason})
}

// start begins a joiner's part.
func (c *Core) start(s Start) error {
	if c.rn != nil || c.role != Joining {
		return nil
	}
	for _, m := range s.Directory {
		c.dir[m.RaftID] = m
	}
	c.dir[c.cfg.Self.RaftID] = c.cfg.Self
	var applied uint64
	if s.Snapshot != nil {
		var meta pb.SnapshotMetadata
		if err := proto.Unmarshal(s.Snapshot, &meta); err != nil || meta.GetIndex() == 0 || meta.GetConfState() == nil {
			err = fmt.Errorf("plover: the primary's log start is malformed: %v", err)
			c.stop(err)
			return err
		}
		c.st = raft.NewMemoryStorage()
		snap := &pb.Snapshot{Metadata: &meta, Data: EncodeDirectory(Directory(c.dir).List())}
		if err := c.st.ApplySnapshot(snap); err != nil {
			c.stop(err)
			return err
		}
		c.cs = meta.GetConfState()
		applied = meta.GetIndex()
		c.applied, c.lastMarker = applied, applied
	}
	if err := c.startRaft(applied); err != nil {
		c.stop(err)
		return err
	}
	if c.cfg.Self.Kind == Witness {
		c.role = WitnessRole
	} else {
		c.role = Backup
	}
	c.ready()
	return nil
}

// ready takes raft's Ready batches: stores what must be stored, sends
// what must be sent, follows the leadership, and applies what is
// committed.
func (c *Core) ready() {
	for c.rn != nil && c.rn.HasReady() && c.role != Stopped {
		rd := c.rn.Ready()
		if rd.Snapshot != nil && !raft.IsEmptySnap(rd.Snapshot) {
			c.snapshot(rd.Snapshot)
		}
		if len(rd.Entries) > 0 {
			c.st.Append(rd.Entries)
		}
		if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
			c.st.SetHardState(rd.HardState)
			c.term = rd.HardState.GetTerm()
		}
		for _, m := range rd.Messages {
			c.send(m)
		}
		if rd.SoftState != nil {
			c.softState(rd.SoftState)
		}
		for _, e := range rd.CommittedEntries {
			if c.role == Stopped {
				break
			}
			c.apply(e)
		}
		c.rn.Advance(rd)
	}
}

// snapshot takes a snapshot the leader sent: a witness learns the
// directory from it; a replica cannot use one (its state comes from the
// state transfer and syncs, never from raft), so it stops.
func (c *Core) snapshot(s *pb.Snapshot) {
	if c.cfg.Self.Kind == Replica {
		c.stop(fmt.Errorf("plover: the leader sent a raft snapshot at index %d: this replica's log no longer continues its state", s.GetMetadata().GetIndex()))
		return
	}
	if ms, err := DecodeDirectory(s.Data); err == nil {
		for _, m := range ms {
			c.dir[m.RaftID] = m
		}
	}
	c.st.ApplySnapshot(s)
	c.cs = s.GetMetadata().GetConfState()
	c.applied = max(c.applied, s.GetMetadata().GetIndex())
}

func (c *Core) send(m *pb.Message) {
	to, ok := c.dir[m.GetTo()]
	if !ok {
		return // a member the directory does not know: raft retries
	}
	data, err := proto.Marshal(m)
	if err != nil {
		return
	}
	c.do(Send{To: to, Data: data})
}

// softState follows the leadership.
func (c *Core) softState(s *raft.SoftState) {
	c.lead = s.Lead
	leader := s.RaftState == raft.StateLeader
	switch {
	case c.role == Primary && !leader:
		c.note(slog.LevelWarn, "the group has another leader: deposed", "leader", c.dir[s.Lead].ID)
		c.stop(ErrDeposed)
	case c.role == Backup && leader:
		c.goLive()
	case c.role == WitnessRole && leader:
		c.note(slog.LevelInfo, "the witness leads the group: handing the leadership to a replica")
		c.handOver()
	}
}

// goLive makes a replica that won the leadership the primary.
func (c *Core) goLive() {
	c.role = Primary
	c.ccReady, c.ccPending = false, false
	c.idle, c.sinceSync, c.work = 0, 0, false
	if c.syncBusy {
		// The sync with the old primary will never complete.
		c.syncBusy = false
		c.do(AbortSync{Seq: c.syncSeq})
	}
	c.note(slog.LevelInfo, "leading the group: this replica is the primary", "term", c.term)
	c.do(GoLive{})
	others := false
	for _, id := range c.cs.GetVoters() {
		if m, ok := c.dir[id]; ok && id != c.cfg.Self.RaftID && m.Kind == Replica {
			// The old primary: it is dead or deposed, and its state is not
			// this one's; it leaves the group so it can never lead again.
			others = true
			c.removeMember(id, "the previous primary")
		}
	}
	if !others {
		c.goSolo()
	}
}

func (c *Core) goSolo() {
	if c.solo {
		return
	}
	c.solo = true
	c.do(Solo{})
}

// handOver (a witness leading) asks raft to pass the leadership to a
// replica voter, which raft first brings up to date.
func (c *Core) handOver() {
	best, quiet := uint64(0), c.cfg.ElectionTicks
	for _, id := range c.cs.GetVoters() {
		if m, ok := c.dir[id]; ok && m.Kind == Replica && c.silent[id] < quiet {
			best, quiet = id, c.silent[id]
		}
	}
	if best != 0 {
		c.rn.TransferLeader(best)
	}
}

func (c *Core) tick() {
	c.rn.Tick()
	for _, id := range c.cs.GetVoters() {
		if id == c.cfg.Self.RaftID {
			continue
		}
		if c.silent[id]++; c.silent[id] == c.cfg.LostTicks && c.role == Primary {
			c.removeMember(id, fmt.Sprintf("silent for %d ticks", c.silent[id]))
		}
	}
	switch c.role {
	case Primary:
		c.sinceSync++
		c.nextConfChange()
		c.maybeSync()
		if c.otherReplica() == 0 && c.joining == nil {
			// No backup, no syncs: nobody needs the log before what the
			// guest was given (a backup that joins starts from a state
			// transfer there).
			c.compact(c.delivered)
		}
	case WitnessRole:
		if c.rn.BasicStatus().RaftState == raft.StateLeader {
			c.handOver()
		}
		if c.replicas() < 2 {
			c.compact(c.applied)
		}
	}
}

func (c *Core) message(ev Message) {
	m := &pb.Message{}
	if err := proto.Unmarshal(ev.Data, m); err != nil {
		c.note(slog.LevelWarn, "a malformed consensus message", "from", ev.From, "err", err.Error())
		return
	}
	from, ok := c.dir[m.GetFrom()]
	switch {
	case raft.IsLocalMsg(m.GetType()):
		c.note(slog.LevelWarn, "refused a local consensus message from the network", "from", ev.From, "type", m.GetType().String())
		return
	case !ok || from.ID != ev.From:
		c.note(slog.LevelWarn, "refused a consensus message from a non-member", "from", ev.From, "raft_id", fmt.Sprintf("%x", m.GetFrom()))
		return
	case m.GetTo() != c.cfg.Self.RaftID:
		c.note(slog.LevelWarn, "refused a consensus message for another member", "from", ev.From)
		return
	}
	c.silent[m.GetFrom()] = 0
	c.rn.Step(m)
}

// linkDown: a member's connection ended. A follower stops waiting for a
// leader that went away (a killed process's connections close at once),
// and a backup stands for election; the primary removes the member.
func (c *Core) linkDown(ev LinkDown) {
	var id uint64
	for _, m := range c.dir {
		if m.ID == ev.From && m.RaftID != c.cfg.Self.RaftID {
			id = m.RaftID
		}
	}
	if id == 0 || !slices.Contains(c.cs.GetVoters(), id) {
		return
	}
	switch {
	case c.role == Primary:
		c.removeMember(id, "its connection ended")
	case id == c.lead:
		c.silent[id] = c.cfg.LostTicks
		c.rn.ForgetLeader()
		if c.role == Backup {
			c.rn.Campaign()
		}
	}
}

// removeMember (primary) proposes the removal of a member.
func (c *Core) removeMember(id uint64, why string) {
	for _, cc := range c.ccQueue {
		if cc.GetNodeId() == id {
			return
		}
	}
	c.note(slog.LevelWarn, "removing a member", "member", c.dir[id].String(), "why", why)
	c.queueConfChange(&pb.ConfChange{Type: pb.ConfChangeRemoveNode.Enum(), NodeId: new(id)})
}

func (c *Core) queueConfChange(cc *pb.ConfChange) {
	c.ccQueue = append(c.ccQueue, cc)
	c.nextConfChange()
}

func (c *Core) nextConfChange() {
	if c.ccPending || !c.ccReady || len(c.ccQueue) == 0 || c.role != Primary {
		return
	}
	cc := c.ccQueue[0]
	if err := c.rn.ProposeConfChange(cc); err != nil {
		c.note(slog.LevelWarn, "membership change not proposed", "err", err.Error())
		return
	}
	c.ccPending = true
}

// propose adds a host input to the batch.
func (c *Core) propose(in Input) {
	if c.role != Primary || c.finishing {
		return
	}
	if len(c.batch)+len(in.Data) > c.cfg.MaxBatch && len(c.batch) > 0 {
		c.flush()
	}
	c.batch = appendInput(c.batch, in)
}

// flush proposes the batch.
func (c *Core) flush() {
	if len(c.batch) == 0 || c.role != Primary {
		return
	}
	b := c.batch
	c.batch = nil
	if err := c.rn.Propose(b); err != nil {
		// The inputs are lost, as on a lossy network: the guest's peers
		// send again.
		c.note(slog.LevelDebug, "inputs not proposed", "err", err.Error())
	}
}

// apply hands a committed entry to the driver, or carries out a
// membership change.
func (c *Core) apply(e *pb.Entry) {
	idx := e.GetIndex()
	if idx <= c.applied {
		return
	}
	c.applied = idx
	switch e.GetType() {
	case pb.EntryConfChange:
		var cc pb.ConfChange
		if err := proto.Unmarshal(e.Data, &cc); err != nil {
			c.stop(fmt.Errorf("plover: a malformed membership change at %d: %w", idx, err))
			return
		}
		c.confChange(idx, &cc)
	case pb.EntryNormal:
		if len(e.Data) == 0 {
			if c.role == Primary && e.GetTerm() == c.term {
				// This leader's first entry: raft takes membership
				// changes once it is applied. Or a membership change
				// proposed before raft had applied the entries before
				// that one (they may be committed with it, and raft
				// learns they are applied only after this Ready): raft
				// turned it into this empty entry, and it is proposed
				// again.
				c.ccReady, c.ccPending = true, false
				c.nextConfChange()
			}
			return
		}
		switch e.Data[0] {
		case entryInputs:
			ins, err := decodeInputs(e.Data[1:])
			if err != nil {
				c.stop(fmt.Errorf("plover: entry %d: %w", idx, err))
				return
			}
			if c.cfg.Self.Kind == Replica {
				c.work = true
				c.do(Apply{Index: idx, Inputs: ins})
			}
		case entrySync:
			m, err := decodeMarker(e.Data[1:])
			if err != nil {
				c.stop(fmt.Errorf("plover: entry %d: %w", idx, err))
				return
			}
			c.marker(idx, m)
		default:
			c.stop(fmt.Errorf("plover: entry %d of unknown kind %d", idx, e.Data[0]))
		}
	}
}

func (c *Core) confChange(idx uint64, cc *pb.ConfChange) {
	id := cc.GetNodeId()
	var m Member
	if cc.GetType() == pb.ConfChangeAddNode {
		var err error
		if m, err = decodeMember(cc.Context); err != nil || m.RaftID != id {
			c.stop(fmt.Errorf("plover: a membership change with a malformed member: %v", err))
			return
		}
	}
	c.cs = c.rn.ApplyConfChange(cc)
	if c.role == Primary {
		c.ccPending = false
		if len(c.ccQueue) > 0 && c.ccQueue[0].GetNodeId() == id {
			c.ccQueue = c.ccQueue[1:]
		}
	}
	switch cc.GetType() {
	case pb.ConfChangeAddNode:
		c.dir[id] = m
		c.silent[id] = 0
		c.note(slog.LevelInfo, "member added", "member", m.String())
		// A snapshot raft sends the new member must name it: the one
		// stored is brought to this entry (the log is kept).
		c.confIndex = idx
		if snap, _ := c.st.Snapshot(); snap.GetMetadata().GetIndex() < idx {
			c.st.CreateSnapshot(idx, c.cs, EncodeDirectory(c.dir.List()))
		}
		if c.joining != nil && c.joining.RaftID == id {
			c.joining = nil
		}
	case pb.ConfChangeRemoveNode:
		c.confIndex = idx
		gone := c.dir[id]
		c.note(slog.LevelInfo, "member removed", "member", gone.String())
		if id == c.cfg.Self.RaftID {
			c.stop(ErrRemoved)
			return
		}
		delete(c.silent, id)
		if c.syncBusy && c.syncPeer == id {
			c.syncBusy = false
			c.do(AbortSync{Seq: c.syncSeq})
		}
		if c.role == Primary && c.otherReplica() == 0 {
			c.goSolo()
			if c.finishing {
				c.stop(nil)
				return
			}
		}
		if c.role == Backup && gone.Kind == Replica {
			// The primary this backup followed is gone from the group.
			c.stop(fmt.Errorf("plover: the primary %s left the group", gone.ID))
			return
		}
	}
	c.nextConfChange()
}

// otherReplica is the raft id of the voter that is a replica and not
// this one (0: none).
func (c *Core) otherReplica() uint64 {
	for _, id := range c.cs.GetVoters() {
		if m, ok := c.dir[id]; ok && id != c.cfg.Self.RaftID && m.Kind == Replica {
			return id
		}
	}
	return 0
}

// marker applies a sync entry: the primary and the backup it names pause
// there and synchronise; anyone else passes.
func (c *Core) marker(idx uint64, m marker) {
	self := c.cfg.Self.RaftID
	switch {
	case c.role == Primary && m.primary == self && m.term == c.term && m.backup == c.otherReplica():
		c.syncPeer, c.syncIndex, c.syncFinal, c.work = m.backup, idx, m.final, false
		c.do(SyncPoint{Seq: m.seq, Index: idx, Peer: c.dir[m.backup], Primary: true, Final: m.final})
	case c.role == Backup && m.backup == self && m.primary == c.lead && m.term == c.term:
		c.syncSeq, c.syncBusy, c.syncPeer, c.syncIndex, c.syncFinal = m.seq, true, m.primary, idx, m.final
		c.do(SyncPoint{Seq: m.seq, Index: idx, Peer: c.dir[m.primary], Final: m.final})
	case c.role == Primary && m.primary == self:
		// A sync proposed for a backup that has left since.
		c.syncBusy = false
		if m.final {
			c.stop(nil)
		}
	case c.role == WitnessRole:
		c.compact(c.lastMarker)
		c.lastMarker = idx
	}
}

func (c *Core) epochEnded(e EpochEnded) {
	if c.role != Primary {
		return
	}
	if !e.Quiet {
		c.work = true
	}
	if e.Idle && e.Quiet {
		c.idle++
	} else {
		c.idle = 0
	}
	c.maybeSync()
}

// maybeSync proposes a sync when the guest has been idle and quiet for
// IdleChecks looks, or MaxPeriodTicks after the last one, if there is a
// backup and something to synchronise.
func (c *Core) maybeSync() {
	if c.role != Primary || c.syncBusy || c.finishing || !c.work || c.otherReplica() == 0 || c.joining != nil || c.ccPending {
		return
	}
	if c.idle < c.cfg.IdleChecks && c.sinceSync < c.cfg.MaxPeriodTicks {
		return
	}
	c.proposeSync(false)
}

func (c *Core) proposeSync(final bool) {
	m := marker{seq: c.syncSeq + 1, term: c.term, primary: c.cfg.Self.RaftID, backup: c.otherReplica(), final: final}
	c.flush() // inputs received before the sync are applied before it
	if err := c.rn.Propose(m.encode()); err != nil {
		c.note(slog.LevelDebug, "sync not proposed", "err", err.Error())
		return
	}
	c.syncSeq, c.syncBusy, c.syncPeer = m.seq, true, m.backup
	c.idle, c.sinceSync = 0, 0
}

func (c *Core) syncDone(d SyncDone) {
	if !c.syncBusy || d.Seq != c.syncSeq {
		return
	}
	c.syncBusy = false
	c.syncs++
	c.last = d.Stats
	c.lastMarker = c.syncIndex
	if c.role == Primary {
		c.do(Release{Seq: d.Seq})
		c.hold = 0 // the backup has the log through the sync
	}
	c.compact(c.syncIndex)
	switch {
	case c.syncFinal:
		c.stop(nil)
	case c.finishing:
		c.proposeSync(true)
	}
}

func (c *Core) syncFailed(f SyncFailed) {
	if !c.syncBusy || f.Seq != c.syncSeq {
		return
	}
	c.syncBusy = false
	switch c.role {
	case Primary:
		// The backup could not be brought to this state: it leaves the
		// group, and the outputs leave with no backup.
		c.note(slog.LevelError, "sync failed", "seq", f.Seq, "err", f.Err.Error())
		if id := c.otherReplica(); id != 0 {
			c.removeMember(id, "sync failed: "+f.Err.Error())
		}
	case Backup:
		c.stop(fmt.Errorf("plover: sync %d: %w", f.Seq, f.Err))
	}
}

// compact drops the log before index i (keeping what a joining backup
// still needs).
func (c *Core) compact(i uint64) {
	if c.hold != 0 {
		i = min(i, c.hold)
	}
	fi, _ := c.st.FirstIndex()
	if i < fi || i > c.applied || i < c.confIndex {
		// Not before the last membership change: the snapshot's
		// configuration is the current one.
		return
	}
	if snap, _ := c.st.Snapshot(); snap.GetMetadata().GetIndex() < i {
		if _, err := c.st.CreateSnapshot(i, c.cs, EncodeDirectory(c.dir.List())); err != nil {
			return
		}
	}
	c.st.Compact(i)
}

func (c *Core) joinRequest(j JoinRequest) {
	m := j.Member
	var why string
	switch {
	case j.Version != ProtocolVersion:
		why = fmt.Sprintf("protocol version %d, this member speaks %d", j.Version, ProtocolVersion)
	case j.Cluster != c.cfg.Cluster:
		why = fmt.Sprintf("cluster %q, this member serves %q", j.Cluster, c.cfg.Cluster)
	case m.valid() != nil:
		why = "malformed member: " + m.valid().Error()
	case m.ID != j.CertID:
		why = fmt.Sprintf("hello names member %q but the certificate is %q's", m.ID, j.CertID)
	case m.ID == c.cfg.Self.ID:
		why = fmt.Sprintf("id %q is this member's own", m.ID)
	case c.role != Primary:
		why = fmt.Sprintf("%s is not the primary (%v)", c.cfg.Self.ID, c.role)
		if l, ok := c.dir[c.lead]; ok && l.Kind == Replica && c.lead != c.cfg.Self.RaftID {
			why += ": join " + l.Addr
		}
	case c.finishing:
		why = "the guest has stopped"
	case c.joining != nil || c.ccPending || len(c.ccQueue) > 0:
		why = "a membership change is in progress"
	case c.dir.has(m.RaftID) && slices.Contains(c.cs.GetVoters(), m.RaftID):
		why = "raft id already in the group"
	case m.Kind == Replica && c.otherReplica() != 0:
		why = "the group has a backup: " + c.dir[c.otherReplica()].ID
	case m.Kind == Witness && c.witness() != 0:
		why = "the group has a witness: " + c.dir[c.witness()].ID
	}
	if why != "" {
		c.do(Refuse{ID: m.ID, Reason: why})
		return
	}
	dir := c.members()
	c.dir[m.RaftID] = m
	if m.Kind == Witness {
		c.do(Welcome{ID: m.ID, Directory: dir})
		c.queueConfChange(addNode(m))
		c.ready()
		return
	}
	c.joining = &m
	c.do(Welcome{ID: m.ID, Transfer: true, Directory: dir})
}

func (d Directory) has(id uint64) bool { _, ok := d[id]; return ok }

func addNode(m Member) *pb.ConfChange {
	return &pb.ConfChange{Type: pb.ConfChangeAddNode.Enum(), NodeId: new(m.RaftID), Context: m.encode()}
}

// replicas counts the replica voters.
func (c *Core) replicas() int {
	n := 0
	for _, id := range c.cs.GetVoters() {
		if m, ok := c.dir[id]; ok && m.Kind == Replica {
			n++
		}
	}
	return n
}

// witness is the raft id of the witness voter (0: none).
func (c *Core) witness() uint64 {
	for _, id := range c.cs.GetVoters() {
		if m, ok := c.dir[id]; ok && m.Kind == Witness {
			return id
		}
	}
	return 0
}

// members lists the group's voters.
func (c *Core) members() []Member {
	var ms []Member
	for _, id := range c.cs.GetVoters() {
		if m, ok := c.dir[id]; ok {
			ms = append(ms, m)
		}
	}
	return ms
}

func (c *Core) transferred(t Transferred) {
	if c.role != Primary || c.joining == nil || c.joining.ID != t.ID {
		return
	}
	term, err := c.st.Term(t.Applied)
	if err != nil {
		c.joinFailed(JoinFailed{ID: t.ID, Err: fmt.Errorf("the log at %d: %w", t.Applied, err)})
		return
	}
	meta := &pb.SnapshotMetadata{Index: new(t.Applied), Term: new(term), ConfState: c.cs}
	b, err := proto.Marshal(meta)
	if err != nil {
		c.joinFailed(JoinFailed{ID: t.ID, Err: err})
		return
	}
	c.do(StartJoiner{ID: t.ID, Snapshot: b}, Hold{})
	c.solo, c.hold = false, t.Applied
	c.work = true
	c.queueConfChange(addNode(*c.joining))
}

func (c *Core) joinFailed(j JoinFailed) {
	if c.joining == nil || c.joining.ID != j.ID {
		return
	}
	c.note(slog.LevelWarn, "join failed", "member", j.ID, "err", j.Err.Error())
	delete(c.dir, c.joining.RaftID)
	c.joining = nil
}

// finish: the guest stopped. With a backup, a last sync brings it to the
// final state and releases the outputs; alone, they leave at once.
func (c *Core) finish(reason string) {
	c.reason = reason
	switch {
	case c.role == Backup:
		// The backup stops after the primary's last sync.
	case c.role != Primary:
		c.stop(nil)
	case c.otherReplica() == 0:
		c.goSolo()
		c.stop(nil)
	case !c.finishing:
		c.finishing = true
		if !c.syncBusy {
			c.proposeSync(true)
		}
	}
}

// Status is the core's view of the member, for status and metrics.
type Status struct {
	Role     Role
	Term     uint64
	Leader   string
	Members  []Member
	Applied  uint64
	Commit   uint64
	Solo     bool
	Syncs    int
	LastSync SyncStats
	Syncing  bool
}

// Status returns the core's figures.
func (c *Core) Status() Status {
	s := Status{Role: c.role, Term: c.term, Applied: c.applied, Solo: c.solo, Syncs: c.syncs, LastSync: c.last, Syncing: c.syncBusy}
	if l, ok := c.dir[c.lead]; ok {
		s.Leader = l.ID
	}
	if c.rn != nil {
		s.Members = c.members()
		s.Commit = c.rn.BasicStatus().GetCommit()
	}
	return s
}

// Stopped reports whether the member has stopped.
func (c *Core) Stopped() bool { return c.role == Stopped }

// Role returns what the member is doing.
func (c *Core) Role() Role { return c.role }

// noteLogger is raft's logger: warnings and errors become Notes, the rest
// is dropped; Fatal and Panic panic, as raft requires.
type noteLogger struct{ c *Core }

func (l *noteLogger) Debug(v ...any)                 {}
func (l *noteLogger) Debugf(format string, v ...any) {}
func (l *noteLogger) Info(v ...any)                  { l.c.note(slog.LevelDebug, "raft: "+fmt.Sprint(v...)) }
func (l *noteLogger) Infof(format string, v ...any) {
	l.c.note(slog.LevelDebug, "raft: "+fmt.Sprintf(format, v...))
}
func (l *noteLogger) Warning(v ...any) { l.c.note(slog.LevelWarn, "raft: "+fmt.Sprint(v...)) }
func (l *noteLogger) Warningf(format string, v ...any) {
	l.c.note(slog.LevelWarn, "raft: "+fmt.Sprintf(format, v...))
}
func (l *noteLogger) Error(v ...any) { l.c.note(slog.LevelError, "raft: "+fmt.Sprint(v...)) }
func (l *noteLogger) Errorf(format string, v ...any) {
	l.c.note(slog.LevelError, "raft: "+fmt.Sprintf(format, v...))
}
func (l *noteLogger) Fatal(v ...any)                 { panic(fmt.Sprint(v...)) }
func (l *noteLogger) Fatalf(format string, v ...any) { panic(fmt.Sprintf(format, v...)) }
func (l *noteLogger) Panic(v ...any)                 { panic(fmt.Sprint(v...)) }
func (l *noteLogger) Panicf(format string, v ...any) { panic(fmt.Sprintf(format, v...)) }
