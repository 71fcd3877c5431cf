package core

import (
	"fmt"

	"ftvm/arbiter/view"
)

// The pieces every replication protocol shares, for the cores of other
// modes (package ckpt's checkpointing cores; a consensus-ordered one) to
// build on: the event and action vocabulary (a core of another package
// defines its own events and actions by embedding EventType and
// ActionType, and the driver hands them over as it does this package's),
// the configuration's defaults, the arbitration with its retries, and the
// checks of a join request.

// EventType, embedded in a struct of another package, makes it an Event.
type EventType struct{}

func (EventType) isEvent() {}

// ActionType, embedded in a struct of another package, makes it an
// Action.
type ActionType struct{}

func (ActionType) isAction() {}

// SetDefaults checks c and fills in the defaults of its zero fields.
func (c *Config) SetDefaults() error { return c.setDefaults() }

// Purpose is why a replica arbitrates.
type Purpose int

const (
	Alone    Purpose = iota // a primary that lost its backup continues unprotected
	TakeOver                // a backup whose primary is lost goes live
	Protect                 // a primary takes a backup that holds its state
)

// Arbitration is one question to the arbiter and its retries: the swap of
// the view Old to New, asked again with doubling waits (from RetryTicks
// to MaxRetryTicks) for as long as the arbiter does not answer.
type Arbitration struct {
	Purpose  Purpose
	Old, New view.View
	inFlight bool // an Arbitrate is out, no answer yet
	wait     int  // ticks before the next attempt
	backoff  int
	max      int
}

// NewArbitration starts asking to swap old to new; the returned action
// asks the first time.
func NewArbitration(cfg Config, p Purpose, old, new view.View) (*Arbitration, Arbitrate) {
	a := &Arbitration{Purpose: p, Old: old, New: new, inFlight: true, backoff: cfg.RetryTicks, max: cfg.MaxRetryTicks}
	return a, Arbitrate{Old: old, New: new}
}

// Tick counts a tick; it returns the action that asks again when an
// unanswered question's wait is over.
func (a *Arbitration) Tick() (Arbitrate, bool) {
	if a.inFlight {
		return Arbitrate{}, false
	}
	if a.wait--; a.wait > 0 {
		return Arbitrate{}, false
	}
	a.inFlight = true
	return Arbitrate{Old: a.Old, New: a.New}, true
}

// Answer takes the arbiter's answer. It reports false for an answer to
// another question (or one already answered), which the core ignores. An
// answer with Err sets the next attempt's wait: the core must not act
// alone and asks again from Tick (unless it gives up the question).
func (a *Arbitration) Answer(ans ArbiterAnswer) bool {
	if !a.inFlight || ans.Old != a.Old || ans.New != a.New {
		return false
	}
	a.inFlight = false
	if ans.Err != nil {
		a.wait, a.backoff = a.backoff, min(2*a.backoff, a.max)
	}
	return true
}

// JoinState is what a core knows when a backup asks to join.
type JoinState struct {
	Mode        string // the protocol the core runs (JoinRequest.Mode)
	Role        Role
	Peer        string // the backup linked, or the primary followed
	Linked      bool   // a backup is linked
	Joining     string // a backup receiving the state
	Arbitrating bool
	Finishing   bool // the guest has stopped
}

// RefuseJoin returns why the join request j must be refused by replica
// cfg.ID in state s, or "" to welcome it.
func RefuseJoin(cfg Config, s JoinState, j JoinRequest) string {
	switch {
	case j.Version != ProtocolVersion:
		return fmt.Sprintf("protocol version %d, this replica speaks %d", j.Version, ProtocolVersion)
	case j.Mode != s.Mode:
		return fmt.Sprintf("this replica replicates by %s, not %s", s.Mode, j.Mode)
	case j.Cluster != cfg.Cluster:
		return fmt.Sprintf("cluster %q, this replica serves %q", j.Cluster, cfg.Cluster)
	case j.ID != j.CertID:
		return fmt.Sprintf("hello names replica %q but the certificate is %q's", j.ID, j.CertID)
	case j.ID == cfg.ID:
		return fmt.Sprintf("replica id %q is this replica's own", j.ID)
	case s.Role == Joining:
		return fmt.Sprintf("replica %s is joining a primary itself", cfg.ID)
	case s.Role == Backup:
		return fmt.Sprintf("replica %s is the backup of %s, not a primary: join %s", cfg.ID, s.Peer, s.Peer)
	case s.Linked:
		return "already protected by " + s.Peer
	case s.Joining != "":
		return "replica " + s.Joining + " is joining"
	case s.Arbitrating:
		return "arbitrating"
	case s.Finishing:
		return "the guest has stopped"
	}
	return ""
}
