package arbiter

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrUnreachable is what a Memory arbiter returns while it plays
// unreachable.
var ErrUnreachable = errors.New("arbiter unreachable")

// Memory is an Arbiter held in this process, for tests of the replication
// layer: it follows the same rules as the etcd one (atomic swap,
// idempotent for the same new view, argument checks) and can play an
// unreachable arbiter, or one that stores a swap but loses its answer. It
// arbitrates nothing between processes; replicas use DialEtcd.
type Memory struct {
	mu          sync.Mutex
	view        View
	unreachable bool
	loseAnswers bool
}

var _ Arbiter = (*Memory)(nil)

// NewMemory returns a Memory arbiter with no view stored. All the replicas
// of a test share it.
func NewMemory() *Memory { return &Memory{} }

// SetUnreachable makes every call fail with ErrUnreachable (true) or
// succeed again (false).
func (m *Memory) SetUnreachable(u bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.unreachable = u
}

// SetLoseAnswers makes a winning Swap store its view and still fail, as
// when etcd commits a transaction whose answer never reaches the client.
func (m *Memory) SetLoseAnswers(l bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loseAnswers = l
}

func (m *Memory) Current(ctx context.Context) (View, bool, error) {
	if err := ctx.Err(); err != nil {
		return View{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.unreachable {
		return View{}, false, fmt.Errorf("arbiter: reading the view: %w", ErrUnreachable)
	}
	return m.view, !m.view.IsZero(), nil
}

func (m *Memory) Swap(ctx context.Context, old, new View) (bool, View, error) {
	if err := checkSwap(old, new); err != nil {
		return false, View{}, fmt.Errorf("arbiter: swap: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return false, View{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.unreachable {
		return false, View{}, fmt.Errorf("arbiter: swap to %v: %w", new, ErrUnreachable)
	}
	switch m.view {
	case old:
		m.view = new
		if m.loseAnswers {
			return false, View{}, fmt.Errorf("arbiter: swap to %v: not confirmed: answer lost", new)
		}
		return true, new, nil
	case new:
		return true, new, nil
	}
	return false, m.view, nil
}

func (m *Memory) Close() error { return nil }
