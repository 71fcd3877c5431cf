package core

import (
	"fmt"
	"log/slog"
	"strings"

	"ftvm/arbiter/view"
)

// Action is something the driver must do, in the order Ready returns them.
type Action interface{ isAction() }

// Send: write these log bytes to the backup, after those of earlier Sends.
// After them the backup has been sent frames 1..Frames, Bytes bytes.
type Send struct {
	Data          []byte
	Frames, Bytes int64
}

// SendAck: acknowledge to the primary (the latest SendAck supersedes the
// earlier ones not yet written).
type SendAck struct {
	Frames, Bytes int64
	Replayed      uint64
}

// Hold: the outputs collected since the last Hold wait behind log frame
// Frame.
type Hold struct{ Frame int64 }

// Release: the outputs held behind frames up to Through may leave.
type Release struct{ Through int64 }

// ReleaseAll: everything held and collected leaves, and outputs leave at
// once from now on (the primary continues without a backup).
type ReleaseAll struct{}

// DropAll: everything held is discarded, and so is every later output
// (the replica lost the arbitration).
type DropAll struct{}

// Settle (backup): the primary released the outputs emitted at or before
// instruction Through; forget the uncertain ones up to it.
type Settle struct{ Through uint64 }

// Reissue (backup going live): emit the uncertain outputs again; outputs
// leave at once from now on.
type Reissue struct{}

// Arbitrate: swap Old to New at the arbiter and Step the ArbiterAnswer.
type Arbitrate struct{ Old, New view.View }

// Welcome: accept the join request of backup ID and transfer the state to
// it; Step Transferred or JoinFailed when done.
type Welcome struct{ ID string }

// Refuse: answer the join request of ID with Reason and close it.
type Refuse struct{ ID, Reason string }

// Link (primary): backup Peer is in View; its log channel opens (the
// header follows in a Send). Outputs are held from now on, and every input
// must be recorded.
type Link struct {
	Peer string
	View view.View
}

// Unlink: close the connection to the peer (the log channel, or a joining
// backup's transfer), for Cause.
type Unlink struct{ Cause error }

// GoLive (backup): this replica is the primary of View now; it must tell
// the network the guest's MAC lives here and run the guest.
type GoLive struct{ View view.View }

// Stop: the replica is done: Err nil with the guest's stop Reason, or why
// it must stop (ErrDeposed, a refused log).
type Stop struct {
	Err    error
	Reason string
}

// Note is something worth a line in the replica's log.
type Note struct {
	Level slog.Level
	Msg   string
	Args  []any // slog key-value pairs
}

func (Send) isAction()       {}
func (SendAck) isAction()    {}
func (Hold) isAction()       {}
func (Release) isAction()    {}
func (ReleaseAll) isAction() {}
func (DropAll) isAction()    {}
func (Settle) isAction()     {}
func (Reissue) isAction()    {}
func (Arbitrate) isAction()  {}
func (Welcome) isAction()    {}
func (Refuse) isAction()     {}
func (Link) isAction()       {}
func (Unlink) isAction()     {}
func (GoLive) isAction()     {}
func (Stop) isAction()       {}
func (Note) isAction()       {}

func (a Send) String() string {
	return fmt.Sprintf("send %d bytes (through frame %d, byte %d)", len(a.Data), a.Frames, a.Bytes)
}
func (a SendAck) String() string {
	return fmt.Sprintf("send-ack frames=%d bytes=%d replayed=%d", a.Frames, a.Bytes, a.Replayed)
}
func (a Hold) String() string       { return fmt.Sprintf("hold behind frame %d", a.Frame) }
func (a Release) String() string    { return fmt.Sprintf("release through frame %d", a.Through) }
func (a ReleaseAll) String() string { return "release-all" }
func (a DropAll) String() string    { return "drop-all" }
func (a Settle) String() string     { return fmt.Sprintf("settle through instret %d", a.Through) }
func (a Reissue) String() string    { return "reissue" }
func (a Arbitrate) String() string  { return fmt.Sprintf("arbitrate %v -> %v", a.Old, a.New) }
func (a Welcome) String() string    { return "welcome " + a.ID }
func (a Refuse) String() string     { return fmt.Sprintf("refuse %s: %s", a.ID, a.Reason) }
func (a Link) String() string       { return fmt.Sprintf("link %s in %v", a.Peer, a.View) }
func (a Unlink) String() string     { return fmt.Sprintf("unlink: %v", a.Cause) }
func (a GoLive) String() string     { return fmt.Sprintf("go-live %v", a.View) }
func (a Stop) String() string {
	if a.Err != nil {
		return fmt.Sprintf("stop: %v", a.Err)
	}
	return "stop: guest " + a.Reason
}
func (a Note) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "note %s %q", a.Level, a.Msg)
	for i := 0; i+1 < len(a.Args); i += 2 {
		fmt.Fprintf(&b, " %v=%v", a.Args[i], a.Args[i+1])
	}
	return b.String()
}
