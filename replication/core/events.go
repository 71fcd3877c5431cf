package core

import (
	"fmt"

	"ftvm/arbiter/view"
	"ftvm/replay/eventlog"
)

// Event is an input to Step.
type Event interface{ isEvent() }

// Tick is one unit of logical time: the driver steps one every tick
// period (see Config). Heartbeats, failure detection and arbiter retries
// count ticks.
type Tick struct{}

// ArbiterAnswer is the arbiter's answer to an Arbitrate action: Won, or
// lost to Current, or Err (unknown: the swap may or may not be stored).
type ArbiterAnswer struct {
	Old, New view.View
	Won      bool
	Current  view.View
	Err      error
}

// LinkFailed says the connection to the peer failed: closed, reset, timed
// out, or a message that broke the protocol (Err wraps ErrProtocol).
// Tampered says a TLS record failed its integrity check: someone altered
// the stream in transit.
type LinkFailed struct {
	Err      error
	Tampered bool
}

// JoinRequest is a would-be backup's hello, on a connection whose TLS
// certificate names CertID.
type JoinRequest struct {
	ID, CertID, Cluster string
	Version             int
}

// Primary's events.

// Append is a record the driver's recorder logs (an input, a digest, the
// output hashes, the End record).
type Append struct{ Record eventlog.Record }

// EpochEnded says the guest ran to Instret; Outputs says the epoch
// produced outputs (collected by the driver's buffer since the last Hold).
type EpochEnded struct {
	Instret uint64
	Outputs bool
}

// Flush asks for what the log holds to be sent now (inputs were just
// delivered: the backup has them while the guest works on them, and the
// acknowledgement of the epoch's Sync comes sooner).
type Flush struct{}

// Written says the driver has written the log to the connection up to
// byte Bytes.
type Written struct{ Bytes int64 }

// Acked is the backup's acknowledgement: it holds log frames 1..Frames,
// which end at byte Bytes, and has replayed to instruction Replayed.
type Acked struct {
	Frames, Bytes int64
	Replayed      uint64
}

// Transferred says the state transfer to the joining backup ID is complete,
// with the guest stopped at Instret in the state whose digest is State.
type Transferred struct {
	ID      string
	State   [32]byte
	Instret uint64
}

// JoinFailed says the state transfer to the joining backup ID failed.
type JoinFailed struct {
	ID  string
	Err error
}

// Finish says the guest stopped for good (power-off, reboot, lockup); if a
// backup listens, the recorder has appended the End record.
type Finish struct{ Reason string }

// Backup's events.

// Following says the state transfer from Primary is complete (the engine
// is at Instret, in the state whose digest is State) and its log starts
// with Header.
type Following struct {
	Primary string
	Header  eventlog.Header
	State   [32]byte
	Instret uint64
}

// Received is a record read from the primary's log: frame Frame, ending at
// byte Offset. Batch says nothing more is waiting to be read (the end of
// what the primary sent together): a time to acknowledge.
type Received struct {
	Record        eventlog.Record
	Frame, Offset int64
	Batch         bool
}

// Applied says the engine replayed Record (frame Frame, ending at byte
// Offset) and is at Instret.
type Applied struct {
	Record        eventlog.Record
	Frame, Offset int64
	Instret       uint64
}

// ApplyFailed says the replay departed from the log (a divergence, an
// output mismatch) or could not apply a record.
type ApplyFailed struct{ Err error }

func (Tick) isEvent()          {}
func (ArbiterAnswer) isEvent() {}
func (LinkFailed) isEvent()    {}
func (JoinRequest) isEvent()   {}
func (Append) isEvent()        {}
func (EpochEnded) isEvent()    {}
func (Flush) isEvent()         {}
func (Written) isEvent()       {}
func (Acked) isEvent()         {}
func (Transferred) isEvent()   {}
func (JoinFailed) isEvent()    {}
func (Finish) isEvent()        {}
func (Following) isEvent()     {}
func (Received) isEvent()      {}
func (Applied) isEvent()       {}
func (ApplyFailed) isEvent()   {}

func (e Tick) String() string { return "tick" }
func (e ArbiterAnswer) String() string {
	switch {
	case e.Err != nil:
		return fmt.Sprintf("arbiter-answer %v: error %v", e.New, e.Err)
	case e.Won:
		return fmt.Sprintf("arbiter-answer %v: won", e.New)
	}
	return fmt.Sprintf("arbiter-answer %v: lost to %v", e.New, e.Current)
}
func (e LinkFailed) String() string {
	return fmt.Sprintf("link-failed %v tampered=%v", e.Err, e.Tampered)
}
func (e JoinRequest) String() string {
	return fmt.Sprintf("join-request id=%s cert=%s cluster=%s version=%d", e.ID, e.CertID, e.Cluster, e.Version)
}
func (e Append) String() string {
	return fmt.Sprintf("append %v@%d", e.Record.Kind, e.Record.Instret)
}
func (e EpochEnded) String() string {
	return fmt.Sprintf("epoch-ended instret=%d outputs=%v", e.Instret, e.Outputs)
}
func (e Flush) String() string   { return "flush" }
func (e Written) String() string { return fmt.Sprintf("written %d", e.Bytes) }
func (e Acked) String() string {
	return fmt.Sprintf("acked frames=%d bytes=%d replayed=%d", e.Frames, e.Bytes, e.Replayed)
}
func (e Transferred) String() string {
	return fmt.Sprintf("transferred %s instret=%d", e.ID, e.Instret)
}
func (e JoinFailed) String() string { return fmt.Sprintf("join-failed %s: %v", e.ID, e.Err) }
func (e Finish) String() string     { return "finish " + e.Reason }
func (e Following) String() string {
	return fmt.Sprintf("following %s instret=%d", e.Primary, e.Instret)
}
func (e ApplyFailed) String() string { return fmt.Sprintf("apply-failed %v", e.Err) }
func (e Received) String() string {
	return fmt.Sprintf("received %v@%d frame=%d offset=%d batch=%v", e.Record.Kind, e.Record.Instret, e.Frame, e.Offset, e.Batch)
}
func (e Applied) String() string {
	return fmt.Sprintf("applied %v@%d frame=%d instret=%d", e.Record.Kind, e.Record.Instret, e.Frame, e.Instret)
}
