package statesync

import (
	"errors"
	"fmt"

	"ftvm/vm"
)

// ErrDiverged is wrapped when a replica's digest differs from the one the
// primary sent after the replica applied the primary's state: the replica
// is no longer a copy of the primary (its memory differs outside what was
// sent, or the engines disagree), and must be repaired or replaced.
var ErrDiverged = errors.New("the replica's state differs from the primary's")

// ApplierOptions configure an Applier.
type ApplierOptions struct {
	// Key is the replicas' shared secret the checkpoints' MACs are made
	// with.
	Key []byte
	// Committed is the sequence number of the state the replica is in
	// (the checkpoint that brought it there, or 0 for the state a live
	// transfer gave it); the next checkpoint must be Committed+1.
	Committed uint64
	Limits    Limits
	// OnCommit, if set, is told of each checkpoint applied.
	OnCommit func(Commit)
}

// Commit describes a checkpoint applied.
type Commit struct {
	Seq, Instret uint64
	Pages        int // pages written, all-zero ones included
	ZeroPages    int
	StateBytes   int
	DiskWrites   int
	DiskBytes    int64
	Bytes        int64 // the checkpoint's size on the wire
}

// Applier is the receiving side of Remus-style checkpointing: a backup
// that does not execute takes the primary's checkpoints from a stream and
// applies only complete ones, in sequence. While a checkpoint arrives it
// is staged (pages, state and the epoch's disk writes, which thus stay
// buffered until their checkpoint commits); once its MAC is checked it is
// applied to the replica and its disk, and the replica is in the
// primary's state at that checkpoint. A checkpoint cut short (the primary
// died, the link broke) is discarded by Discard; one damaged, forged or
// out of sequence is refused. Either way the replica stays in the last
// committed state, from which it resumes on failover.
//
// An Applier is used from one goroutine, the one that owns the replica,
// which does not run while checkpoints are applied (a Remus backup does
// not execute until it fails over).
type Applier struct {
	dst       vm.Syncable
	disk      vm.Disk
	dec       *Decoder
	opts      ApplierOptions
	committed uint64
	err       error
}

// NewApplier returns an applier of checkpoints to dst and disk (nil: the
// replica has no disk).
func NewApplier(dst vm.Syncable, disk vm.Disk, opts ApplierOptions) (*Applier, error) {
	geo := Geometry{PageSize: dst.PageSize(), Pages: dst.Pages()}
	if disk != nil {
		geo.DiskSize = disk.Size()
	}
	dec, err := NewDecoder(opts.Key, geo, opts.Limits)
	if err != nil {
		return nil, err
	}
	a := &Applier{dst: dst, disk: disk, dec: dec, opts: opts, committed: opts.Committed}
	dec.Expect(a.committed + 1)
	return a, nil
}

// Write takes the next bytes of the checkpoint stream and applies every
// checkpoint they complete, before returning. It returns len(p) or an
// error: a refused checkpoint (wrapping ErrBadCheckpoint; the replica is
// in the last committed state and the stream cannot be used further), a
// replica whose digest differs from the primary's after applying
// (ErrDiverged; the checkpoint is committed), or a failure to apply
// (a disk write).
func (a *Applier) Write(p []byte) (int, error) {
	if a.err != nil {
		return 0, a.err
	}
	total := 0
	for len(p) > 0 {
		n, c, err := a.dec.Feed(p)
		total += n
		p = p[n:]
		if err != nil {
			a.err = err
			return total, err
		}
		if c != nil {
			if err := a.commit(c); err != nil {
				a.err = err
				return total, err
			}
		}
	}
	return total, nil
}

func (a *Applier) commit(c *Checkpoint) error {
	defer a.dec.Release(c)
	if err := c.Apply(a.dst, a.disk); err != nil {
		return err
	}
	a.committed = c.Seq
	a.dec.Expect(c.Seq + 1)
	if a.opts.OnCommit != nil {
		a.opts.OnCommit(Commit{Seq: c.Seq, Instret: c.Instret, Pages: len(c.Pages), ZeroPages: c.ZeroPages(),
			StateBytes: len(c.State), DiskWrites: len(c.Writes), DiskBytes: c.DiskBytes(), Bytes: c.Size})
	}
	if c.Digest != ([32]byte{}) {
		if got := a.dst.Digest(); got.Sum != c.Digest || a.dst.Instret() != c.Instret {
			return fmt.Errorf("statesync: after checkpoint %d: %w: the replica is at instruction %d with digest %x, the primary at %d with %x",
				c.Seq, ErrDiverged, a.dst.Instret(), got.Sum[:8], c.Instret, c.Digest[:8])
		}
	}
	return nil
}

// Committed is the sequence number of the last checkpoint applied.
func (a *Applier) Committed() uint64 { return a.committed }

// Pending is the number of bytes received of a checkpoint not yet
// complete.
func (a *Applier) Pending() int64 { return a.dec.Partial() }

// Discard drops the checkpoint being received, if any, and the stream's
// error: the link to the primary broke (the checkpoint is torn), and a
// new stream, from the same primary reconnected or from one that took
// over, continues after the last committed checkpoint.
func (a *Applier) Discard() {
	a.dec.Reset()
	a.dec.Expect(a.committed + 1)
	a.err = nil
}
