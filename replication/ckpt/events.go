package ckpt

import (
	"fmt"

	"ftvm/arbiter/view"
	"ftvm/replication/core"
)

// Mode is the kind of checkpoint replication.
type Mode int

const (
	Remus Mode = iota + 1 // the backup applies checkpoints and does not execute
	COLO                  // both execute; checkpoints on output mismatch
)

func (m Mode) String() string {
	switch m {
	case Remus:
		return "checkpoint"
	case COLO:
		return "colo"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// ParseMode reads a mode's name ("checkpoint" or "colo").
func ParseMode(s string) (Mode, error) {
	switch s {
	case "checkpoint":
		return Remus, nil
	case "colo":
		return COLO, nil
	}
	return 0, fmt.Errorf("unknown checkpointing mode %q (want checkpoint or colo)", s)
}

// Header opens the link from a primary to the backup it transferred its
// state to: what the backup checks before it follows.
type Header struct {
	Mode    Mode
	Cluster string
	View    view.View
	// State is the digest of the transferred state and Instret its
	// instruction count; it is checkpoint 0 of the link.
	State   [32]byte
	Instret uint64
}

// Primary's events.

// Taken says the driver took checkpoint Seq (which MayCheckpoint gave)
// with the guest paused at Instret; Outputs says the epoch it ends
// produced outputs (collected by the output buffer since the last Hold).
type Taken struct {
	core.EventType
	Seq, Instret uint64
	Outputs      bool
}

// Acked says the backup has the state of checkpoints up to Seq (its
// acknowledgement, and its heartbeat); Ended, that it has the end of the
// run too.
type Acked struct {
	core.EventType
	Seq   uint64
	Ended bool
}

// Backup's events.

// Following says the state transfer from Primary is complete (the engine
// is at Instret, in the state whose digest is State) and the link opened
// with Header.
type Following struct {
	core.EventType
	Primary string
	Header  Header
	State   [32]byte
	Instret uint64
}

// Received says a message came from the primary.
type Received struct{ core.EventType }

// Committed says checkpoint Seq is applied whole (Remus) or the sync Seq
// is complete (COLO): the engine is in the primary's state of that
// checkpoint, at Instret.
type Committed struct {
	core.EventType
	Seq, Instret uint64
}

// Ended says the primary's guest stopped for Reason, after the
// checkpoints already received.
type Ended struct {
	core.EventType
	Reason string
}

func (e Taken) String() string {
	return fmt.Sprintf("taken %d instret=%d outputs=%v", e.Seq, e.Instret, e.Outputs)
}
func (e Acked) String() string { return fmt.Sprintf("acked %d ended=%v", e.Seq, e.Ended) }
func (e Following) String() string {
	return fmt.Sprintf("following %s instret=%d", e.Primary, e.Instret)
}
func (e Received) String() string  { return "received" }
func (e Committed) String() string { return fmt.Sprintf("committed %d instret=%d", e.Seq, e.Instret) }
func (e Ended) String() string     { return "ended " + e.Reason }

// Actions.

// SendHeader (primary): open the link with h (after Link).
type SendHeader struct {
	core.ActionType
	Header Header
}

// SendCheckpoint (primary): checkpoint Seq, taken, goes to the backup
// (Remus: stream it; COLO: run the sync exchange, then step Acked or
// LinkFailed).
type SendCheckpoint struct {
	core.ActionType
	Seq uint64
}

// SendHeartbeat (primary): tell the backup this primary is alive.
type SendHeartbeat struct{ core.ActionType }

// SendEnd (primary): the guest stopped for Reason; nothing follows.
type SendEnd struct {
	core.ActionType
	Reason string
}

// SendAck (backup): acknowledge checkpoints up to Seq (and the end).
type SendAck struct {
	core.ActionType
	Seq   uint64
	Ended bool
}

func (a SendHeader) String() string {
	return fmt.Sprintf("send-header %v %v instret=%d", a.Header.Mode, a.Header.View, a.Header.Instret)
}
func (a SendCheckpoint) String() string { return fmt.Sprintf("send-checkpoint %d", a.Seq) }
func (a SendHeartbeat) String() string  { return "send-heartbeat" }
func (a SendEnd) String() string        { return "send-end " + a.Reason }
func (a SendAck) String() string        { return fmt.Sprintf("send-ack %d ended=%v", a.Seq, a.Ended) }
