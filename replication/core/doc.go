// Package core is the protocol of a primary/backup pair that replicates a
// guest by deterministic replay, as a state machine with no I/O: events go
// in (Step), actions come out (Ready), in the manner of etcd raft's
// RawNode. It knows no sockets, TLS, goroutines, wall clock or instruction
// set: time is a count of Ticks, the log is bytes it asks its driver to
// send, outputs are counted and held by the driver on its word, and the
// arbiter is a question it asks and an answer it is given.
//
//	         events                                actions
//	driver ─────────────► ┌────────────────┐ ─────────────────► driver
//	Append, Flush,        │      Core      │ Send, SendAck, Hold, Release,
//	EpochEnded, Acked,    │ role, view,    │ ReleaseAll, DropAll, Settle,
//	Written, Tick,        │ log writer,    │ Reissue, Arbitrate, Welcome,
//	JoinRequest,          │ output rule,   │ Refuse, Link, Unlink, GoLive,
//	Transferred,          │ failure        │ Stop, Note
//	JoinFailed, Finish,   │ detector,      │
//	Following, Received,  │ flow control,  │ queries: MayRun, Status
//	Applied, ApplyFailed, │ arbitration    │
//	LinkFailed,           │                │
//	ArbiterAnswer         └────────────────┘
//
// The driver (package replication) owns the engine's goroutine, the TLS
// connections, the goroutines that read and write them, the ticker, the
// arbiter client, status and metrics. It serialises Step calls (one lock),
// carries out the actions in the order they come, and asks MayRun before
// every epoch the guest runs.
//
// # The primary
//
// The core owns the event log that streams to the backup: the driver's
// recorder appends input and digest records (Append), and the core appends
// a Sync record at the end of every epoch that produced outputs, with the
// held outputs of that epoch behind it (Hold): they leave (Release) only
// once the backup acknowledges holding the Sync's frame, and in order.
// Every HeartbeatTicks ticks without a send, the core appends a Sync at the
// last instruction count it knows as a heartbeat: heartbeats come from the
// driver's ticker, not from the guest's epochs, so nothing the guest does
// (device work that makes an epoch last, a flood of outputs) silences a
// healthy primary, while a frozen process (its ticker stops with it) goes
// silent. A backup silent for TimeoutTicks ticks, a failed link or a forged
// acknowledgement loses the backup: the guest stops running (MayRun) and
// its outputs stay held until the core has won the arbitration (ReleaseAll,
// continue unprotected) or lost it (DropAll, Stop with ErrDeposed). An
// unreachable arbiter is asked again, with backoff, for as long as it takes:
// the primary never acts alone. Flow control: the guest waits while the
// backup trails by more than MaxLag instructions, while more than
// SendWindow log bytes wait to be written, and (Lockstep) until each epoch
// is acknowledged.
//
// # The backup
//
// The backup checks the log's header (Following), counts and checks what
// it receives (Received) and acknowledges it at the end of every batch and
// every heartbeat (SendAck); the driver replays each record on its engine
// and says so (Applied). A Sync applied settles the outputs the primary
// says it released. A primary silent for TimeoutTicks ticks while the
// backup has replayed everything it received (a backup busy replaying is
// not reading, and cannot judge), or a link that ends, is lost: once the
// backup has replayed all it holds it must win the arbitration, then it
// re-issues its uncertain outputs (Reissue) and goes live (GoLive) as a
// primary without a backup. A log that fails its checks, a tampered
// stream, a divergent replay or a malformed record is refused (Stop): that
// is evidence of a fault, not of the primary's death, and the backup never
// goes live on it.
package core
