// Package arbiter keeps a replicated pair from a split brain: when the
// primary and the backup lose contact, whichever wants to act alone (the
// backup to go live, or the primary to continue without its backup) must
// first win a compare-and-swap at a third party both can reach, and the
// loser stops. This is VMware FT's atomic test-and-set on shared storage,
// done on etcd (a witness process, cmd/ftvm-witness, or an existing
// cluster). Nothing in the package knows what is replicated.
//
// The stored state is a View: a generation number and the ids of the
// replica allowed to be live and of the one protecting it. The rules the
// replicas follow:
//
//   - Each replica remembers the view it runs under (the one it was given
//     when the pair formed or last changed), and when it loses its peer it
//     swaps from that view, never from one it has just read: if the stored
//     view has moved on, the peer has already acted and this replica lost.
//     Reading the current view and swapping from it would let a backup that
//     the primary has already dropped take over from it.
//   - Either replica, the backup to go live or the primary to continue
//     alone, swaps to old.Next(self, ""). It acts alone only if the swap is
//     won; if it is lost, the returned view names the replica that won, and
//     this one stops.
//   - An error means nothing is known: the swap may or may not have been
//     stored. The replica must not act alone; it may call Swap again with
//     the same arguments, which reports a win if the first call stored the
//     view (Swap is idempotent for the same new view).
//   - Re-protection is a swap too: the lone primary swaps
//     {g, P, ""} to {g+1, P, B} before it protects itself with B, and hands
//     the new view to B with the state transfer.
//
// The arbiter is consulted only when contact is lost, so its latency (a
// few milliseconds, one etcd transaction) adds to the failover time and to
// nothing else. No lease is involved: a lease would have to expire before
// the backup could go live, which puts seconds into every failover.
package arbiter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"ftvm/arbiter/view"
)

// View is the replica pair's configuration, stored under one key per
// cluster (package view, which has no dependencies, so that code that
// reasons about views need not link the etcd client).
type View = view.View

// Arbiter is the third party. Every call is bounded by its context (and by
// the implementation's own upper bound when the context has none): an
// unreachable arbiter makes calls fail, never block.
type Arbiter interface {
	// Current returns the stored view (ok=false if the cluster has none
	// yet). It is for start-up, status and diagnostics; a replica that lost
	// its peer swaps from the view it knows, not from this one.
	Current(ctx context.Context) (v View, ok bool, err error)
	// Swap replaces view old with new atomically: it succeeds only if the
	// stored view is still exactly old (for a cluster with no view, old is
	// the zero View), and new.Generation must be old.Generation+1. won
	// reports that the stored view is now new, cur is the stored view
	// (new if won; the view someone else stored first if not, or the zero
	// View if there is none). An error means the arbiter could not give an
	// answer: new may or may not have been stored, and the caller must not
	// act alone; calling Swap again with the same arguments is safe and
	// reports won if new was stored.
	Swap(ctx context.Context, old, new View) (won bool, cur View, err error)
	// Close releases the connection.
	Close() error
}

// ErrCorrupt is wrapped by the errors for a stored value that is not a
// view: something other than this package wrote the key. Nothing can be
// concluded from it, so the caller must not act alone.
var ErrCorrupt = errors.New("stored value is not a view")

// checkSwap validates the arguments of Swap.
func checkSwap(old, new View) error {
	if !old.IsZero() {
		if err := old.Validate(); err != nil {
			return fmt.Errorf("old view %v: %w", old, err)
		}
	}
	if err := new.Validate(); err != nil {
		return fmt.Errorf("new view %v: %w", new, err)
	}
	if old.Generation == math.MaxUint64 || new.Generation != old.Generation+1 {
		return fmt.Errorf("new view's generation %d does not follow the old one's, %d", new.Generation, old.Generation)
	}
	return nil
}

// The stored form: JSON, so that an operator can read it with etcdctl,
// with a format number so that a later layout is refused rather than
// misread.
type stored struct {
	Format     int    `json:"format"`
	Generation uint64 `json:"generation"`
	Primary    string `json:"primary"`
	Backup     string `json:"backup,omitempty"`
}

const format = 1

// maxStored bounds what decode accepts; a view is well under it.
const maxStored = 4096

// encode gives the canonical bytes of a valid view: Swap compares the
// stored bytes with them.
func encode(v View) []byte {
	b, err := json.Marshal(stored{Format: format, Generation: v.Generation, Primary: v.Primary, Backup: v.Backup})
	if err != nil {
		panic(err) // a struct of strings and integers always marshals
	}
	return b
}

// decode parses a stored value strictly.
func decode(b []byte) (View, error) {
	if len(b) > maxStored {
		return View{}, fmt.Errorf("%w: %d bytes long", ErrCorrupt, len(b))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s stored
	if err := dec.Decode(&s); err != nil {
		return View{}, fmt.Errorf("%w: %v (value %q)", ErrCorrupt, err, clip(b))
	}
	if dec.More() {
		return View{}, fmt.Errorf("%w: data after the view (value %q)", ErrCorrupt, clip(b))
	}
	if s.Format != format {
		return View{}, fmt.Errorf("%w: format %d, this version reads format %d (value %q)", ErrCorrupt, s.Format, format, clip(b))
	}
	v := View{Generation: s.Generation, Primary: s.Primary, Backup: s.Backup}
	if err := v.Validate(); err != nil {
		return View{}, fmt.Errorf("%w: %v (value %q)", ErrCorrupt, err, clip(b))
	}
	return v, nil
}

func clip(b []byte) []byte {
	if len(b) > 80 {
		return append(b[:80:80], "..."...)
	}
	return b
}
