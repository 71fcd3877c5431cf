// Package plover is PLOVER's protocol (Wang et al., "PLOVER: Fast,
// Multi-core Scalable Virtual Machine Fault-tolerance", USENIX ATC 2018)
// as a state machine with no I/O, in the manner of etcd raft's RawNode,
// which it is built on: events go in (Step), actions come out (Ready).
// It knows no sockets, TLS, goroutines, wall clock or instruction set:
// time is a count of Ticks, messages are bytes it asks its driver to send
// to a member, and the guest is told what to do by actions the driver's
// guest goroutine carries out in order.
//
//	         events                                  actions
//	driver ─────────────► ┌──────────────────┐ ─────────────────► driver
//	Tick, Message,        │       Core       │ Send (raft message to a member)
//	LinkDown, Unreachable,│ raft RawNode +   │ guest work, in order: Apply
//	Propose, Flush,       │ MemoryStorage,   │   (inputs), SyncPoint, GoLive
//	EpochEnded,           │ the directory,   │ AbortSync, Hold, Release, Solo
//	JoinRequest, Start,   │ the sync policy, │ Welcome, StartJoiner, Refuse
//	Transferred,          │ the output rule, │ Stop, Note
//	JoinFailed, SyncDone, │ membership       │
//	SyncFailed, Finish,   └──────────────────┘ queries: Status, Role
//	Delivered
//
// A group has three members: the primary and the backup, which run the
// guest (Replica), and a witness, which does not (Witness). Raft orders
// what the guest receives: the primary's host inputs (Propose) are
// batched into one entry per epoch (Flush) and applied by both replicas,
// in log order, once committed (Apply); the witness only keeps the log.
// The primary looks at its guest after every epoch and, while outputs
// wait, every few hundred microseconds (EpochEnded); after IdleChecks
// consecutive idle and quiet looks, or MaxPeriodTicks with something to
// synchronise, it proposes a sync entry. Both replicas stop where the log
// puts it (SyncPoint) and synchronise their states (the driver, with
// package statesync); the primary's outputs emitted before that point
// leave when the sync completes (Hold, then Release), so every output a
// client sees comes from a state the backup holds too.
//
// Leadership is raft's (PreVote and CheckQuorum on): a replica that wins
// an election goes live (GoLive) and removes the old primary, whose
// state is not its own, from the group; its outputs leave once the
// removal is committed (Solo): from then on the old primary can never
// lead again. A witness that wins an election hands the leadership to the
// replica it last heard from (TransferLeader, after raft brings it up to
// date): it is never the primary. A primary that loses the leadership is
// deposed and stops. A follower whose connection from the leader ends
// (LinkDown: a killed process's kernel closes it) stops waiting for it
// (ForgetLeader), and a backup stands for election at once.
//
// Membership: the primary alone starts a group (NewPrimary); a witness
// joins as a membership change; a backup first receives the primary's
// state by live transfer (the driver's), then its log starts where that
// state is (StartJoiner: raft snapshot metadata at the index the guest
// had applied) and it is added. The primary removes members silent for
// LostTicks or whose connection ended. Without a backup its outputs leave
// at once (Solo); with one they wait for syncs (Hold). Members are
// crash-stop: a raft id is one incarnation, a restarted process joins
// again as a new member.
//
// The log is compacted at every sync (both replicas have applied it) and,
// without a backup, up to what the guest was given (Delivered); never
// past the last membership change, and a member added brings the stored
// snapshot to that entry, so that a snapshot raft sends names it.
//
// Refusal: a consensus message whose raft id is not the member that the
// connection's certificate names, a message of raft's local types, a
// message for another member, a join request for another cluster or
// version or naming another certificate, are refused with a Note.
package plover
