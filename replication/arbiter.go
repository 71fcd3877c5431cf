package replication

import (
	"context"
	"fmt"
	"sync"
)

// View is the pair's configuration as the arbiter stores it: which replica
// may be live, and which one protects it.
type View struct {
	Generation uint64
	Primary    string
	Backup     string // "" while the primary runs unprotected
}

func (v View) String() string {
	b := v.Backup
	if b == "" {
		b = "none"
	}
	return fmt.Sprintf("generation %d (primary %s, backup %s)", v.Generation, v.Primary, b)
}

// Arbiter is the third party that decides which replica may act alone.
// Swap is an atomic compare-and-swap: it succeeds only if the stored view is
// still old. An error means nothing is known, and the caller must not act
// alone.
type Arbiter interface {
	Current(ctx context.Context) (v View, ok bool, err error)
	Swap(ctx context.Context, old, new View) (won bool, cur View, err error)
}

// MemArbiter is an Arbiter in memory, for tests of a pair inside one
// process. Down makes every call fail, as an unreachable arbiter does.
type MemArbiter struct {
	mu   sync.Mutex
	v    View
	ok   bool
	down bool
}

// SetDown makes the arbiter unreachable (true) or reachable again.
func (a *MemArbiter) SetDown(down bool) {
	a.mu.Lock()
	a.down = down
	a.mu.Unlock()
}

func (a *MemArbiter) Current(ctx context.Context) (View, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.down {
		return View{}, false, fmt.Errorf("arbiter unreachable")
	}
	return a.v, a.ok, nil
}

func (a *MemArbiter) Swap(ctx context.Context, old, new View) (bool, View, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.down {
		return false, View{}, fmt.Errorf("arbiter unreachable")
	}
	if a.v != old || (!a.ok && old != (View{})) {
		return false, a.v, nil
	}
	a.v, a.ok = new, true
	return true, new, nil
}
