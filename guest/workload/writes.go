package workload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
)

// Writes is the client of the fault-tolerance trials: numbered writes on
// one connection, one at a time, each an INCR of a key of its own, so that
// a write applied twice shows as the value 2. Because only one write is
// ever outstanding, the acknowledged writes are exactly 0..Acked-1, and
// write Acked is the one in flight if Sent > Acked.
type Writes struct {
	Prefix string // keys are Prefix + index
	Sent   int
	Acked  int
	// Latency[i] is how long write i took; MaxLatency and MaxAt tell the
	// longest (the pause a failover caused) and when it ended.
	Latency    []time.Duration
	MaxLatency time.Duration
	MaxAt      time.Time
	Started    time.Time
	Acks       []time.Time // when each write was acknowledged
	Err        error       // why the run ended early (nil: ctx ended or n reached)

	// Progress is the number of acknowledged writes, readable while the
	// run goes on.
	Progress atomic.Int64
}

func (w *Writes) key(i int) string { return w.Prefix + strconv.Itoa(i) }

// RunWrites writes on c until ctx ends or n writes (n <= 0: no limit) are
// acknowledged. A reply other than 1 ends the run with an error: the
// server applied a write twice, or answered wrongly.
func RunWrites(ctx context.Context, c io.ReadWriter, prefix string, n int) *Writes {
	w := NewWrites(prefix)
	w.Run(ctx, c, n)
	return w
}

// NewWrites prepares a run of writes under prefix; Run does them.
func NewWrites(prefix string) *Writes { return &Writes{Prefix: prefix} }

// Run writes on c until ctx ends or n writes (n <= 0: no limit) are
// acknowledged, or a write fails (w.Err).
func (w *Writes) Run(ctx context.Context, c io.ReadWriter, n int) {
	w.Started = time.Now()
	cl := NewClient(c)
	for n <= 0 || w.Acked < n {
		if ctx.Err() != nil {
			return
		}
		t0 := time.Now()
		w.Sent++
		got, err := cl.Do("INCR", w.key(w.Acked))
		if err != nil {
			w.Err = fmt.Errorf("write %d: %w", w.Acked, err)
			return
		}
		if got != "1" {
			w.Err = fmt.Errorf("write %d: INCR %s answered %s: applied more than once", w.Acked, w.key(w.Acked), got)
			return
		}
		now := time.Now()
		d := now.Sub(t0)
		w.Latency, w.Acks = append(w.Latency, d), append(w.Acks, now)
		if d > w.MaxLatency {
			w.MaxLatency, w.MaxAt = d, now
		}
		w.Acked++
		w.Progress.Store(int64(w.Acked))
	}
}

// Verify reads every key back on c: each acknowledged write must be there
// exactly once (value 1), the one in flight may be there once or not at all.
func (w *Writes) Verify(c io.ReadWriter) error {
	rb, err := w.ReadBack(c)
	if err != nil {
		return err
	}
	return rb.Err()
}

// ReadBack is what reading every write back found.
type ReadBack struct {
	Read  int   // writes read back (every one sent)
	Lost  []int // acknowledged writes that are not there
	Twice []int // writes applied more than once
}

// Err describes lost and duplicated writes (nil: none).
func (r ReadBack) Err() error {
	if len(r.Lost) > 0 || len(r.Twice) > 0 {
		return fmt.Errorf("%d acknowledged writes lost (%v), %d applied more than once (%v)", len(r.Lost), head(r.Lost), len(r.Twice), head(r.Twice))
	}
	return nil
}

// ReadBack reads every write sent back on c and counts the acknowledged
// ones that are missing and those applied more than once.
func (w *Writes) ReadBack(c io.ReadWriter) (ReadBack, error) {
	cl := NewClient(c)
	var r ReadBack
	for i := 0; i < w.Sent; i++ {
		got, err := cl.Do("GET", w.key(i))
		switch {
		case errors.Is(err, ErrNil):
			if i < w.Acked {
				r.Lost = append(r.Lost, i)
			}
		case err != nil:
			return r, fmt.Errorf("reading back write %d: %w", i, err)
		case got != "1":
			r.Twice = append(r.Twice, i)
		}
		r.Read++
	}
	return r, nil
}

func head(l []int) []int {
	if len(l) > 10 {
		return l[:10]
	}
	return l
}

// Percentile returns the p-th percentile (0..100) of the write latencies.
func (w *Writes) Percentile(p float64) time.Duration {
	return Percentile(w.Latency, p)
}

// Percentile returns the p-th percentile (0..100) of ds (nearest rank).
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// FirstIssuedAfter returns when the first write issued after t was
// acknowledged: after a failover at t, when the new primary served its
// first request (a write in flight at t may have been answered by either).
func (w *Writes) FirstIssuedAfter(t time.Time) (time.Time, bool) {
	for i, at := range w.Acks {
		if at.Add(-w.Latency[i]).After(t) {
			return at, true
		}
	}
	return time.Time{}, false
}

// FirstServedAfter is how long after t the first write issued after t was
// acknowledged (0 if none was).
func (w *Writes) FirstServedAfter(t time.Time) time.Duration {
	at, ok := w.FirstIssuedAfter(t)
	if !ok {
		return 0
	}
	return at.Sub(t)
}
