package plover

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// These tests drive three cores (a primary, a backup and a witness)
// through a network the test controls: messages move only when the test
// delivers them, links can be cut, members killed, and time is a count of
// Ticks. There is no guest: a replica's guest work (the inputs it applies,
// the syncs it runs, going live) is recorded, and a sync point reached by
// both replicas completes when the test says so (auto by default), as the
// driver's exchange would.

type node struct {
	t       *testing.T
	c       *Core
	m       Member
	applied []string // the inputs applied, in order
	indexes []uint64
	syncs   []SyncPoint // sync points reached, not yet done
	done    []uint64    // syncs completed
	live    int         // GoLive actions
	held    bool        // outputs wait for syncs
	solo    bool
	release []uint64
	stop    *Stop
	welcome *Welcome
	start   *StartJoiner
	refused []string
	notes   []string
}

type envelope struct {
	from string
	to   Member
	data []byte
}

type cluster struct {
	t        *testing.T
	nodes    map[string]*node
	order    []string
	q        []envelope
	cut      map[[2]string]bool
	dead     map[string]bool
	autoSync bool
	nextID   uint64
}

func newCluster(t *testing.T) *cluster {
	return &cluster{t: t, nodes: map[string]*node{}, cut: map[[2]string]bool{}, dead: map[string]bool{}, autoSync: true, nextID: 0x100}
}

func (cl *cluster) member(id string, k Kind) Member {
	cl.nextID++
	return Member{RaftID: cl.nextID, ID: id, Kind: k, Addr: id + ":7400"}
}

func testConfig(m Member) Config {
	return Config{Self: m, Cluster: "test", ElectionTicks: 10, HeartbeatTicks: 1, LostTicks: 30, IdleChecks: 3, MaxPeriodTicks: 5}
}

// primary starts a group.
func (cl *cluster) primary(id string) *node {
	m := cl.member(id, Replica)
	c, err := NewPrimary(testConfig(m))
	if err != nil {
		cl.t.Fatal(err)
	}
	n := &node{t: cl.t, c: c, m: m}
	cl.nodes[id] = n
	cl.order = append(cl.order, id)
	cl.settle()
	return n
}

// join makes id join the group through primary p.
func (cl *cluster) join(p *node, id string, k Kind) *node {
	cl.t.Helper()
	m := cl.member(id, k)
	c, err := NewJoiner(testConfig(m))
	if err != nil {
		cl.t.Fatal(err)
	}
	n := &node{t: cl.t, c: c, m: m}
	cl.nodes[id] = n
	cl.order = append(cl.order, id)
	p.welcome = nil
	p.step(JoinRequest{Member: m, CertID: id, Cluster: "test", Version: ProtocolVersion})
	cl.settle()
	if p.welcome == nil {
		cl.t.Fatalf("%s was not welcomed: %v", id, p.refused)
	}
	s := Start{Directory: p.welcome.Directory}
	if p.welcome.Transfer {
		// The state transfer: the primary's guest stops with the log
		// applied through its last index.
		p.start = nil
		p.step(Transferred{ID: id, Applied: p.lastIndex()})
		cl.settle()
		if p.start == nil {
			cl.t.Fatalf("no log start for %s", id)
		}
		s.Snapshot = p.start.Snapshot
		n.applied = append([]string(nil), p.applied...)
	}
	n.step(s)
	cl.settle()
	return n
}

func (n *node) lastIndex() uint64 {
	if len(n.indexes) == 0 {
		return n.c.applied
	}
	return n.indexes[len(n.indexes)-1]
}

func (n *node) step(ev Event) {
	n.t.Helper()
	if err := n.c.Step(ev); err != nil {
		n.t.Fatalf("%s: step %T: %v", n.m.ID, ev, err)
	}
}

// collect carries out a node's actions.
func (cl *cluster) collect(n *node) bool {
	acts := n.c.Ready()
	for _, a := range acts {
		switch a := a.(type) {
		case Send:
			if !cl.dead[n.m.ID] {
				cl.q = append(cl.q, envelope{n.m.ID, a.To, a.Data})
			}
		case Apply:
			for _, in := range a.Inputs {
				n.applied = append(n.applied, string(in.Data))
			}
			n.indexes = append(n.indexes, a.Index)
			defer n.step(Delivered{Index: a.Index})
		case SyncPoint:
			n.syncs = append(n.syncs, a)
		case GoLive:
			n.live++
		case AbortSync:
			n.syncs = nil
		case Hold:
			n.held, n.solo = true, false
		case Release:
			n.release = append(n.release, a.Seq)
		case Solo:
			n.solo, n.held = true, false
		case Welcome:
			w := a
			n.welcome = &w
		case StartJoiner:
			s := a
			n.start = &s
		case Refuse:
			n.refused = append(n.refused, a.Reason)
		case Stop:
			s := a
			n.stop = &s
		case Note:
			n.notes = append(n.notes, a.String())
		}
	}
	return len(acts) > 0
}

// settle moves messages until nothing moves (cut links and dead members
// drop theirs), and completes the syncs both replicas reached.
func (cl *cluster) settle() {
	for range 10000 {
		moved := false
		for _, id := range cl.order {
			if cl.collect(cl.nodes[id]) {
				moved = true
			}
		}
		q := cl.q
		cl.q = nil
		for _, e := range q {
			to := cl.nodes[e.to.ID]
			if to == nil || cl.dead[e.to.ID] || cl.dead[e.from] || cl.cut[[2]string{e.from, e.to.ID}] {
				continue
			}
			to.step(Message{From: e.from, Data: e.data})
			moved = true
		}
		if cl.autoSync && cl.completeSyncs() {
			moved = true
		}
		if !moved {
			return
		}
	}
	cl.t.Fatal("the cluster does not settle")
}

// completeSyncs steps SyncDone on a primary and its backup that both
// reached the same sync point.
func (cl *cluster) completeSyncs() bool {
	for _, id := range cl.order {
		p := cl.nodes[id]
		if cl.dead[id] || len(p.syncs) == 0 || !p.syncs[0].Primary {
			continue
		}
		sp := p.syncs[0]
		b := cl.nodes[sp.Peer.ID]
		if b == nil || cl.dead[sp.Peer.ID] || cl.cut[[2]string{id, b.m.ID}] || len(b.syncs) == 0 || b.syncs[0].Seq != sp.Seq {
			continue
		}
		p.syncs, b.syncs = p.syncs[1:], b.syncs[1:]
		b.step(SyncDone{Seq: sp.Seq})
		p.step(SyncDone{Seq: sp.Seq})
		p.done, b.done = append(p.done, sp.Seq), append(b.done, sp.Seq)
		return true
	}
	return false
}

func (cl *cluster) tick(n int) {
	for range n {
		for _, id := range cl.order {
			if !cl.dead[id] {
				cl.nodes[id].step(Tick{})
			}
		}
		cl.settle()
	}
}

// partition cuts every link between id and the others (both ways).
func (cl *cluster) partition(id string, cut bool) {
	for _, o := range cl.order {
		if o != id {
			cl.cut[[2]string{id, o}], cl.cut[[2]string{o, id}] = cut, cut
		}
	}
}

// kill: id's process dies; its peers' connections from it end.
func (cl *cluster) kill(id string) {
	cl.dead[id] = true
	for _, o := range cl.order {
		if o != id && !cl.dead[o] {
			cl.nodes[o].step(LinkDown{From: id})
		}
	}
	cl.settle()
}

// input proposes inputs on n and flushes them in one batch.
func (n *node) input(ins ...string) {
	for _, s := range ins {
		n.step(Propose{Input: Input{Net: true, Data: []byte(s)}})
	}
	n.step(Flush{})
}

// group sets up a primary "a", a witness "w" and a backup "b".
func group(t *testing.T) (*cluster, *node, *node, *node) {
	cl := newCluster(t)
	a := cl.primary("a")
	w := cl.join(a, "w", Witness)
	b := cl.join(a, "b", Replica)
	cl.tick(3)
	if got := len(a.c.Status().Members); got != 3 {
		t.Fatalf("the group has %d members, want 3: %s", got, strings.Join(a.notes, "\n"))
	}
	return cl, a, b, w
}

func TestPrimaryAlone(t *testing.T) {
	cl := newCluster(t)
	a := cl.primary("a")
	if a.c.Role() != Primary || !a.solo || a.live != 1 {
		t.Fatalf("role %v, solo %v, live %d", a.c.Role(), a.solo, a.live)
	}
	a.input("x", "y")
	cl.settle()
	if got := strings.Join(a.applied, ","); got != "x,y" {
		t.Fatalf("applied %q", got)
	}
}

// The inputs are committed by a majority and applied in log order by both
// replicas; the witness applies none.
func TestInputsOrderedByConsensus(t *testing.T) {
	cl, a, b, w := group(t)
	if !a.held || a.solo {
		t.Fatalf("with a backup, outputs must wait for syncs: held %v solo %v", a.held, a.solo)
	}
	for i := range 20 {
		a.input(fmt.Sprintf("f%d", i), fmt.Sprintf("g%d", i))
	}
	cl.settle()
	if len(a.applied) != 40 || strings.Join(a.applied, ",") != strings.Join(b.applied, ",") {
		t.Fatalf("primary applied %v\nbackup applied %v", a.applied, b.applied)
	}
	if len(w.applied) != 0 || w.c.Role() != WitnessRole {
		t.Fatalf("the witness applied %d inputs, role %v", len(w.applied), w.c.Role())
	}
	// The backup cut off: the primary and the witness commit alone; the
	// backup catches up in the same order.
	cl.partition("b", true)
	a.input("h1", "h2")
	cl.settle()
	if got := a.applied[len(a.applied)-1]; got != "h2" || len(b.applied) != 40 {
		t.Fatalf("without the backup: primary's last %q, backup applied %d", got, len(b.applied))
	}
	cl.partition("b", false)
	cl.tick(2)
	if strings.Join(a.applied, ",") != strings.Join(b.applied, ",") {
		t.Fatalf("after the partition: primary %v\nbackup %v", a.applied, b.applied)
	}
	// Without both the witness and the backup nothing commits.
	cl.partition("b", true)
	cl.partition("w", true)
	a.input("lost")
	cl.settle()
	if a.applied[len(a.applied)-1] == "lost" {
		t.Fatal("an input was applied without a majority")
	}
}

// A sync starts when the guest is idle and quiet for IdleChecks looks;
// outputs leave only once it completes.
func TestSyncReleasesOutputs(t *testing.T) {
	cl, a, b, _ := group(t)
	cl.autoSync = false
	a.input("req")
	cl.settle()
	a.step(EpochEnded{Quiet: false}) // the answer
	for range 2 {
		a.step(EpochEnded{Idle: true, Quiet: true})
	}
	cl.settle()
	if len(a.syncs) != 0 {
		t.Fatal("a sync started before IdleChecks idle looks")
	}
	a.step(EpochEnded{Idle: true, Quiet: true})
	cl.settle()
	if len(a.syncs) != 1 || len(b.syncs) != 1 || a.syncs[0].Seq != b.syncs[0].Seq || !a.syncs[0].Primary || b.syncs[0].Primary {
		t.Fatalf("sync points: primary %v, backup %v", a.syncs, b.syncs)
	}
	if a.syncs[0].Index != b.syncs[0].Index || a.lastIndex() != b.lastIndex() {
		t.Fatal("the replicas do not pause at the same log position")
	}
	if len(a.release) != 0 {
		t.Fatal("outputs released before the sync completed")
	}
	cl.autoSync = true
	cl.settle()
	if len(a.release) != 1 || a.release[0] != 1 {
		t.Fatalf("released %v", a.release)
	}
	// Nothing to synchronise: no sync.
	for range 5 {
		a.step(EpochEnded{Idle: true, Quiet: true})
	}
	cl.tick(10)
	if len(a.done) != 1 {
		t.Fatalf("%d syncs with nothing to synchronise", len(a.done))
	}
	// A busy guest is synchronised every MaxPeriodTicks.
	a.input("busy")
	a.step(EpochEnded{})
	cl.tick(6)
	if len(a.done) != 2 {
		t.Fatalf("%d syncs after the period", len(a.done))
	}
}

// The primary dies: the backup is elected, goes live, removes the old
// primary and continues alone; the witness never becomes the primary.
func TestFailover(t *testing.T) {
	cl, a, b, w := group(t)
	a.input("x", "y")
	cl.settle()
	cl.kill("a")
	cl.tick(5)
	if b.c.Role() != Primary || b.live != 1 {
		t.Fatalf("backup: role %v, live %d\n%s", b.c.Role(), b.live, strings.Join(b.notes, "\n"))
	}
	if !b.solo {
		t.Fatal("the new primary is not alone after removing the old one")
	}
	if w.c.Role() != WitnessRole {
		t.Fatalf("witness role %v", w.c.Role())
	}
	b.input("z")
	cl.settle()
	if got := strings.Join(b.applied, ","); got != "x,y,z" {
		t.Fatalf("new primary applied %q", got)
	}
	// A new backup joins the new primary.
	c := cl.join(b, "c", Replica)
	cl.tick(3)
	if len(b.c.Status().Members) != 3 || c.c.Role() != Backup || !b.held {
		t.Fatalf("after the join: %d members, c is %v", len(b.c.Status().Members), c.c.Role())
	}
	b.input("after")
	cl.settle()
	if c.applied[len(c.applied)-1] != "after" {
		t.Fatalf("the new backup applied %v", c.applied)
	}
}

// The backup lags (the primary and the witness committed without it),
// then the primary dies: the witness, whose log is longer, is elected and
// hands the leadership to the backup once it is up to date.
func TestFailoverWithLaggingBackup(t *testing.T) {
	cl, a, b, w := group(t)
	cl.cut[[2]string{"a", "b"}] = true
	a.input("only", "on", "the", "witness")
	cl.settle()
	if len(b.applied) != 0 {
		t.Fatal("the backup was not cut off")
	}
	cl.kill("a")
	cl.tick(40)
	if b.c.Role() != Primary || w.c.Role() != WitnessRole {
		t.Fatalf("backup %v, witness %v\n%s\n%s", b.c.Role(), w.c.Role(), strings.Join(b.notes, "\n"), strings.Join(w.notes, "\n"))
	}
	if got := strings.Join(b.applied, ","); got != "only,on,the,witness" {
		t.Fatalf("the new primary applied %q", got)
	}
}

// A partition isolates the primary: it cannot commit and releases
// nothing; the other side elects the backup; the old primary is deposed.
func TestPartitionIsolatesPrimary(t *testing.T) {
	cl, a, b, _ := group(t)
	cl.partition("a", true)
	a.input("unsafe")
	a.step(EpochEnded{})
	for range 3 {
		a.step(EpochEnded{Idle: true, Quiet: true})
	}
	cl.tick(60)
	if len(a.release) != 0 {
		t.Fatalf("the isolated primary released %v", a.release)
	}
	for _, s := range a.applied {
		if s == "unsafe" {
			t.Fatal("the isolated primary applied an input it could not commit")
		}
	}
	if b.c.Role() != Primary {
		t.Fatalf("the backup did not take over: %v\n%s", b.c.Role(), strings.Join(b.notes, "\n"))
	}
	if a.stop == nil || !errors.Is(a.stop.Err, ErrDeposed) {
		t.Fatalf("the old primary did not stop as deposed: %+v", a.stop)
	}
}

// The backup dies: the primary removes it and its outputs leave at once.
func TestBackupDies(t *testing.T) {
	cl, a, _, _ := group(t)
	cl.kill("b")
	cl.tick(2)
	if !a.solo || len(a.c.Status().Members) != 2 {
		t.Fatalf("solo %v, %d members", a.solo, len(a.c.Status().Members))
	}
}

// The witness dies: the primary removes it and keeps its backup.
func TestWitnessDies(t *testing.T) {
	cl, a, b, _ := group(t)
	cl.kill("w")
	cl.tick(2)
	if a.solo || len(a.c.Status().Members) != 2 {
		t.Fatalf("solo %v, %d members", a.solo, len(a.c.Status().Members))
	}
	a.input("p")
	cl.settle()
	if b.applied[len(b.applied)-1] != "p" {
		t.Fatal("the pair stopped committing")
	}
	// A new witness joins.
	cl.join(a, "w2", Witness)
	cl.tick(3)
	if len(a.c.Status().Members) != 3 {
		t.Fatalf("%d members after the new witness joined", len(a.c.Status().Members))
	}
}

// Forged members: a message whose sender is not the member it claims, a
// local message type, and join requests that do not match their
// certificate, cluster or version are refused.
func TestForgedMembersRefused(t *testing.T) {
	cl, a, b, _ := group(t)
	msg := &pb.Message{Type: pb.MsgVote.Enum(), To: new(a.m.RaftID), From: new(b.m.RaftID), Term: new(uint64(100))}
	data, _ := proto.Marshal(msg)
	a.step(Message{From: "mallory", Data: data})
	hup, _ := proto.Marshal(&pb.Message{Type: pb.MsgHup.Enum(), To: new(b.m.RaftID), From: new(a.m.RaftID)})
	b.step(Message{From: "a", Data: hup})
	a.step(Message{From: "b", Data: []byte("garbage")})
	cl.settle()
	if a.c.Role() != Primary || b.c.Role() != Backup || a.c.Status().Term != b.c.Status().Term {
		t.Fatalf("a forged message moved the group: a %v b %v", a.c.Role(), b.c.Role())
	}
	m := cl.member("m", Witness)
	for _, j := range []JoinRequest{
		{Member: m, CertID: "x", Cluster: "test", Version: ProtocolVersion},
		{Member: m, CertID: "m", Cluster: "other", Version: ProtocolVersion},
		{Member: m, CertID: "m", Cluster: "test", Version: 99},
		{Member: m, CertID: "m", Cluster: "test", Version: ProtocolVersion}, // a witness is there
		{Member: Member{RaftID: 7, ID: "m", Kind: Replica, Addr: "m"}, CertID: "m", Cluster: "test", Version: ProtocolVersion},
	} {
		a.welcome = nil
		a.step(j)
		cl.settle()
		if a.welcome != nil {
			t.Fatalf("join %+v welcomed", j)
		}
	}
	if len(a.refused) != 5 {
		t.Fatalf("refusals: %q", a.refused)
	}
	b.step(JoinRequest{Member: cl.member("n", Witness), CertID: "n", Cluster: "test", Version: ProtocolVersion})
	cl.settle()
	if len(b.refused) != 1 || !strings.Contains(b.refused[0], "not the primary") {
		t.Fatalf("the backup's answer: %q", b.refused)
	}
}

// The primary dies during a sync: the backup, elected, gives the sync up
// (its guest would otherwise wait for a primary that is gone).
func TestFailoverDuringSync(t *testing.T) {
	cl, a, b, _ := group(t)
	cl.autoSync = false
	a.input("req")
	a.step(EpochEnded{})
	for range 3 {
		a.step(EpochEnded{Idle: true, Quiet: true})
	}
	cl.settle()
	if len(b.syncs) != 1 {
		t.Fatalf("backup sync points %v", b.syncs)
	}
	cl.kill("a")
	cl.tick(40)
	if b.c.Role() != Primary || len(b.syncs) != 0 {
		t.Fatalf("backup %v, sync points left %v", b.c.Role(), b.syncs)
	}
}

// The log does not grow without bound: after a sync (and without a
// backup, at once) what every replica applied is compacted away.
func TestLogCompacted(t *testing.T) {
	cl, a, b, w := group(t)
	for i := range 50 {
		a.input(fmt.Sprintf("f%d", i))
	}
	a.step(EpochEnded{})
	for range 3 {
		a.step(EpochEnded{Idle: true, Quiet: true})
	}
	cl.settle()
	a.input("one more")
	a.step(EpochEnded{})
	for range 3 {
		a.step(EpochEnded{Idle: true, Quiet: true})
	}
	cl.tick(2)
	for _, n := range []*node{a, b, w} {
		fi, _ := n.c.st.FirstIndex()
		li, _ := n.c.st.LastIndex()
		if li+1-fi > 20 {
			t.Fatalf("%s keeps entries %d to %d after two syncs", n.m.ID, fi, li)
		}
	}
	cl.kill("b")
	cl.tick(2)
	for i := range 50 {
		a.input(fmt.Sprintf("g%d", i))
	}
	cl.tick(2)
	for _, n := range []*node{a, w} {
		fi, _ := n.c.st.FirstIndex()
		li, _ := n.c.st.LastIndex()
		if li+1-fi > 10 {
			t.Fatalf("without a backup, %s keeps entries %d to %d", n.m.ID, fi, li)
		}
	}
}

// Members join a primary that has run alone for a while, its log
// compacted: the witness gets raft's snapshot (naming it), the backup
// its state transfer, and inputs flow to both.
func TestJoinAfterCompaction(t *testing.T) {
	cl := newCluster(t)
	a := cl.primary("a")
	for i := range 100 {
		a.input(fmt.Sprintf("solo%d", i))
	}
	cl.tick(3)
	if fi, _ := a.c.st.FirstIndex(); fi < 50 {
		t.Fatalf("the solo primary's log starts at %d", fi)
	}
	w := cl.join(a, "w", Witness)
	cl.tick(3)
	b := cl.join(a, "b", Replica)
	cl.tick(3)
	if len(a.c.Status().Members) != 3 || w.c.Role() != WitnessRole || b.c.Role() != Backup {
		t.Fatalf("members %v, w %v, b %v\n%s", a.c.Status().Members, w.c.Role(), b.c.Role(), strings.Join(w.notes, "\n"))
	}
	a.input("after")
	cl.settle()
	if b.applied[len(b.applied)-1] != "after" {
		t.Fatalf("the backup applied %v", b.applied[len(b.applied)-3:])
	}
}

// The primary dies after its last inputs reached the backup and the
// witness but before either learned they were committed: the new leader
// commits them together with its own first entry, and proposes the old
// primary's removal while applying that entry, when raft has not yet
// applied the old entries (before Advance). raft turns such a proposal
// into an empty entry; the removal must be proposed again, or the new
// primary never goes solo and its outputs never leave.
func TestFailoverWithUncommittedTail(t *testing.T) {
	cl, a, b, w := group(t)
	a.input("tail")
	cl.collect(a)
	q := cl.q
	cl.q = nil
	for _, e := range q { // a's appends reach b and w ...
		if e.from == "a" {
			cl.nodes[e.to.ID].step(Message{From: e.from, Data: e.data})
		}
	}
	cl.collect(b)
	cl.collect(w)
	cl.q = nil // ... and their acknowledgements are lost with a
	if len(b.applied) != 0 {
		t.Fatalf("the backup applied %v before the failover: the test needs the tail uncommitted", b.applied)
	}
	cl.kill("a")
	cl.tick(20)
	if b.c.Role() != Primary {
		t.Fatalf("the backup did not take over: %v\n%s", b.c.Role(), strings.Join(b.notes, "\n"))
	}
	if got := strings.Join(b.applied, ","); got != "tail" {
		t.Fatalf("the new primary applied %q, want the tail", got)
	}
	if !b.solo || len(b.c.Status().Members) != 2 {
		t.Fatalf("the new primary is not solo (%v) with the old one removed (%d members):\n%s\n%s",
			b.solo, len(b.c.Status().Members), strings.Join(b.notes, "\n"), strings.Join(w.notes, "\n"))
	}
}
