// Package ckpt is the protocol of the pairs that replicate a guest by
// copying its state rather than replaying its inputs, as a state machine
// with no I/O in the manner of package core (events in through Step,
// actions out through Ready, time in ticks). It serves two modes:
//
//   - Remus (Cully et al., NSDI'08): the backup does not execute. Every
//     period the primary pauses its guest, captures the pages written
//     since the last checkpoint, its processor and device state and the
//     epoch's disk writes, and resumes at once; the checkpoint travels
//     while the next epoch runs, and the epoch's outputs leave when the
//     backup acknowledges having applied it whole. On failover the backup
//     resumes from the last checkpoint it applied.
//   - COLO (Dong et al., SoCC'13): both replicas execute the same inputs
//     and the primary's network output leaves once the secondary has
//     produced the same (package netcompare, in the driver). A mismatch,
//     or a long time without one, makes the primary pause both guests and
//     bring the secondary to its state (package statesync's Sync), after
//     which both continue from the same state. On failover the secondary
//     continues from its current state.
//
// Both share the rest with the replay-based pair, and take package core's
// vocabulary and pieces for it: the view and its arbitration (a replica
// that lost its peer acts alone only after winning a compare-and-swap at
// the arbiter; Alone, TakeOver, Protect), the join of a backup by live
// state transfer (Welcome, Transferred, then the Protect arbitration and
// Link), heartbeats both ways from the driver's ticker and the failure
// detector, the refusal of input that fails its checks (a checkpoint torn
// is discarded, one forged, damaged or out of sequence is refused and the
// backup never goes live on it), and the output buffer's actions (Hold
// behind a checkpoint's sequence number, Release, ReleaseAll, DropAll).
//
//	         events                                actions
//	driver ─────────────► ┌────────────────┐ ─────────────────► driver
//	core's: Tick,         │      Core      │ core's: Hold, Release,
//	ArbiterAnswer,        │ role, view,    │ ReleaseAll, DropAll, Arbitrate,
//	LinkFailed,           │ checkpoint     │ Welcome, Refuse, Link, Unlink,
//	JoinRequest,          │ sequence,      │ GoLive, Stop, Note
//	Transferred,          │ output rule,   │ this package's: SendHeader,
//	JoinFailed, Finish,   │ failure        │ SendCheckpoint, SendHeartbeat,
//	ApplyFailed           │ detector,      │ SendEnd, SendAck
//	this package's:       │ arbitration    │
//	Taken, Acked,         └────────────────┘ queries: MayRun, MayCheckpoint,
//	Following, Received,                     Status
//	Committed, Ended
//
// # The primary
//
// While a backup is linked, the driver asks MayCheckpoint when a
// checkpoint is due (Remus: every period; COLO: when the comparator asks),
// takes it with the guest paused, and steps Taken: the outputs collected
// in the epoch are held behind its sequence number (Hold) and the
// checkpoint goes to the backup (SendCheckpoint: Remus streams the
// captured checkpoint, COLO runs the sync exchange). Acked says the
// backup has the state of a checkpoint: the outputs held behind it leave
// (Release). Remus lets the guest run while at most MaxInFlight
// checkpoints wait for their acknowledgement; COLO keeps its guest paused
// for the whole sync. The primary sends a heartbeat (SendHeartbeat) when
// it has sent nothing for HeartbeatTicks; a backup silent for
// TimeoutTicks, a failed link or sync, or a forged acknowledgement loses
// the backup: the guest waits and its outputs stay held until the
// arbitration is won (ReleaseAll: continue unprotected) or lost (DropAll,
// Stop with core.ErrDeposed). When the guest stops, the backup is told
// (SendEnd) and the outputs leave once it acknowledges the end.
//
// # The backup
//
// The backup checks the link's header against the state it received
// (Following), is kept alive by every message (Received), and
// acknowledges each checkpoint it has applied whole (Committed: SendAck)
// and every HeartbeatTicks. A primary silent for TimeoutTicks, or a link
// that ends, is lost: the backup arbitrates at once (what it holds is
// applied already; a checkpoint cut short is the driver's to discard) and,
// having won, goes live (GoLive) from the last checkpoint it applied
// (Remus) or its current state (COLO). A checkpoint that fails its checks
// (ApplyFailed) or a tampered link is refused: Stop, never GoLive.
package ckpt
