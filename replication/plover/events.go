package plover

import (
	"fmt"
	"log/slog"
	"strings"
)

// Event is an input to Step.
type Event interface{ isEvent() }

// Tick is one unit of logical time (raft's ticks, failure detection).
type Tick struct{}

// Message is a consensus message that arrived on a connection whose
// certificate names From.
type Message struct {
	From string
	Data []byte
}

// LinkDown says the connection on which member From sent its messages
// ended: its process died (its kernel closed the connection) or the
// network failed. A follower whose leader it was stops waiting for it.
type LinkDown struct{ From string }

// Unreachable says messages to member To could not be sent.
type Unreachable struct{ To uint64 }

// Propose gives the primary's core an input from the host, for the next
// batch.
type Propose struct{ Input Input }

// Flush proposes the batch of inputs collected so far.
type Flush struct{}

// EpochEnded is a look at the guest by the primary's run loop: after an
// epoch, or while the guest idles. Idle says every hart waits for an
// interrupt; Quiet says the guest emitted nothing and touched no disk
// since the previous look.
type EpochEnded struct{ Idle, Quiet bool }

// JoinRequest is a would-be member's hello, on a connection whose
// certificate names CertID.
type JoinRequest struct {
	Member  Member
	CertID  string
	Cluster string
	Version int
}

// Transferred says the state transfer to joining backup ID is complete:
// the primary's guest stopped with the log applied through Applied.
type Transferred struct {
	ID      string
	Applied uint64
}

// JoinFailed says the state transfer to joining member ID failed.
type JoinFailed struct {
	ID  string
	Err error
}

// Start begins a joiner's part in the group: the primary welcomed it with
// Directory and, for a backup, its state is the primary's with the log
// applied through Snapshot's index.
type Start struct {
	Directory []Member
	Snapshot  []byte // raft snapshot metadata (a backup), nil (a witness)
}

// SyncDone says the sync Seq completed on this replica.
type SyncDone struct {
	Seq   uint64
	Stats SyncStats
}

// SyncFailed says the sync Seq failed on this replica.
type SyncFailed struct {
	Seq uint64
	Err error
}

// Finish says the guest stopped for good (power-off, reboot, lockup).
type Finish struct{ Reason string }

// Delivered says the guest has been given the entries up to log index
// Index: the log before it may be compacted when no backup needs it.
type Delivered struct{ Index uint64 }

func (Tick) isEvent()        {}
func (Message) isEvent()     {}
func (LinkDown) isEvent()    {}
func (Unreachable) isEvent() {}
func (Propose) isEvent()     {}
func (Flush) isEvent()       {}
func (EpochEnded) isEvent()  {}
func (JoinRequest) isEvent() {}
func (Transferred) isEvent() {}
func (JoinFailed) isEvent()  {}
func (Start) isEvent()       {}
func (SyncDone) isEvent()    {}
func (SyncFailed) isEvent()  {}
func (Finish) isEvent()      {}
func (Delivered) isEvent()   {}

// SyncStats describe one sync, for the report.
type SyncStats struct {
	Dirty    int     // pages in the union of both dirty sets
	Same     int     // of those, identical on both replicas
	Sent     int     // pages sent
	Chunks   int     // disk chunks compared
	SentDisk int     // disk chunks sent
	Bytes    int64   // sync messages, both ways
	Pause    float64 // seconds the guest was paused
	Repaired []int   // pages repaired after a memory error
}

// Action is something the driver must do, in the order Ready returns them.
type Action interface{ isAction() }

// Send: send raft message Data to member To.
type Send struct {
	To   Member
	Data []byte
}

// Apply (guest work): deliver these inputs, committed at log index Index.
type Apply struct {
	Index  uint64
	Inputs []Input
}

// SyncPoint (guest work): pause and run sync Seq (committed at Index) with
// Peer, as the primary (Primary) or the backup. Final: the guest has
// stopped, and the replica stops after it.
type SyncPoint struct {
	Seq, Index uint64
	Peer       Member
	Primary    bool
	Final      bool
}

// GoLive (guest work): this replica is the primary now: inputs come from
// the host, the guest's MAC lives here; its outputs stay held until Solo.
type GoLive struct{}

// AbortSync: sync Seq will not complete (the peer left the group or lost
// its role): give it up.
type AbortSync struct{ Seq uint64 }

// Hold: the outputs emitted from now on wait for a sync (a backup holds
// this replica's state).
type Hold struct{}

// Release: the outputs emitted before sync Seq's pause leave.
type Release struct{ Seq uint64 }

// Solo: no other replica is in the group: everything held leaves (a new
// primary's uncertain outputs too), and outputs leave at once from now
// on.
type Solo struct{}

// Welcome: accept the join request of ID with the group's directory; for
// a backup (Transfer), transfer the state to it, then Step Transferred or
// JoinFailed.
type Welcome struct {
	ID        string
	Transfer  bool
	Directory []Member
}

// StartJoiner: send the joined backup ID where its log starts (raft
// snapshot metadata).
type StartJoiner struct {
	ID       string
	Snapshot []byte
}

// Refuse: answer the join request of ID with Reason and close it.
type Refuse struct{ ID, Reason string }

// Stop: the replica is done: Err nil with the guest's stop Reason, or why
// it must stop.
type Stop struct {
	Err    error
	Reason string
}

// Note is something worth a line in the replica's log.
type Note struct {
	Level slog.Level
	Msg   string
	Args  []any
}

func (Send) isAction()        {}
func (Apply) isAction()       {}
func (SyncPoint) isAction()   {}
func (GoLive) isAction()      {}
func (AbortSync) isAction()   {}
func (Hold) isAction()        {}
func (Release) isAction()     {}
func (Solo) isAction()        {}
func (Welcome) isAction()     {}
func (StartJoiner) isAction() {}
func (Refuse) isAction()      {}
func (Stop) isAction()        {}
func (Note) isAction()        {}

func (a Send) String() string  { return fmt.Sprintf("send %d bytes to %s", len(a.Data), a.To.ID) }
func (a Apply) String() string { return fmt.Sprintf("apply %d inputs at %d", len(a.Inputs), a.Index) }
func (a SyncPoint) String() string {
	return fmt.Sprintf("sync %d at %d with %s", a.Seq, a.Index, a.Peer.ID)
}
func (a Note) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "note %s %q", a.Level, a.Msg)
	for i := 0; i+1 < len(a.Args); i += 2 {
		fmt.Fprintf(&b, " %v=%v", a.Args[i], a.Args[i+1])
	}
	return b.String()
}
