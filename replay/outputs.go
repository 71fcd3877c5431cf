package replay

import (
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"fmt"
	"hash"

	"ftvm/replay/eventlog"
)

// Outputs keeps running hashes of what a guest emits: console bytes,
// transmitted frames and disk writes. The caller feeds it from the
// machine's output callbacks (and its disk backend); a Recorder logs its
// sums at every digest point and at the end, and a Player compares its own
// with them, so a replay checks the outputs of the run and not only its
// state (the papers' requirement: the same outputs on the network and the
// disk).
//
// Each stream's hash is chained at every logged point:
// Sum = SHA-256(previous Sum || data since), so a replay that starts from
// a snapshot in the middle of a log picks up the chain from the Outputs
// record logged with the snapshot.
type Outputs struct {
	streams [numStreams]outStream
}

const (
	streamConsole = iota
	streamNet
	streamDisk
	numStreams
)

var streamNames = [numStreams]string{"console", "net", "disk"}

type outStream struct {
	h     hash.Hash
	sum   [32]byte
	count uint64
}

// NewOutputs returns output hashes with nothing emitted yet.
func NewOutputs() *Outputs {
	o := &Outputs{}
	for i := range o.streams {
		o.streams[i].h = sha256.New()
	}
	return o
}

// Console records bytes written to the console.
func (o *Outputs) Console(b []byte) {
	s := &o.streams[streamConsole]
	s.h.Write(b)
	s.count += uint64(len(b))
}

// Net records a transmitted frame.
func (o *Outputs) Net(frame []byte) {
	s := &o.streams[streamNet]
	var n [binary.MaxVarintLen64]byte
	s.h.Write(n[:binary.PutUvarint(n[:], uint64(len(frame)))])
	s.h.Write(frame)
	s.count++
}

// Disk records a write of p at byte offset off of the disk.
func (o *Outputs) Disk(off int64, p []byte) {
	s := &o.streams[streamDisk]
	var n [2 * binary.MaxVarintLen64]byte
	l := binary.PutUvarint(n[:], uint64(off))
	l += binary.PutUvarint(n[l:], uint64(len(p)))
	s.h.Write(n[:l])
	s.h.Write(p)
	s.count++
}

// seal ends an interval: every stream's sum takes in what was emitted
// since the last seal, and the sums are returned.
func (o *Outputs) seal() []eventlog.OutputSum {
	out := make([]eventlog.OutputSum, numStreams)
	for i := range o.streams {
		s := &o.streams[i]
		s.h.Sum(s.sum[:0])
		s.h.Reset()
		s.h.Write(s.sum[:])
		out[i] = eventlog.OutputSum{Name: streamNames[i], Count: s.count, Sum: s.sum}
	}
	return out
}

// resume starts the chains from sums logged by a recorder (a replay that
// begins in the middle of a log).
func (o *Outputs) resume(sums []eventlog.OutputSum) {
	for _, ls := range sums {
		for i, n := range streamNames {
			if ls.Name == n {
				s := &o.streams[i]
				s.sum, s.count = ls.Sum, ls.Count
				s.h.Reset()
				s.h.Write(s.sum[:])
			}
		}
	}
}

// Sums returns the current sums without sealing: what the next Outputs
// record would say, for a final report.
func (o *Outputs) Sums() []eventlog.OutputSum {
	out := make([]eventlog.OutputSum, numStreams)
	for i := range o.streams {
		s := &o.streams[i]
		var sum [32]byte
		s.h.Sum(sum[:0])
		out[i] = eventlog.OutputSum{Name: streamNames[i], Count: s.count, Sum: sum}
	}
	return out
}

// check seals and compares with a logged Outputs record; it returns the
// names of the streams that differ.
func (o *Outputs) check(logged []eventlog.OutputSum) []string {
	got := o.seal()
	var bad []string
	for _, ls := range logged {
		for _, g := range got {
			if g.Name == ls.Name && (g.Sum != ls.Sum || g.Count != ls.Count) {
				bad = append(bad, fmt.Sprintf("%s (%d logged, %d replayed)", ls.Name, ls.Count, g.Count))
			}
		}
	}
	return bad
}

// outputsState is a copy of Outputs for a checkpoint.
type outputsState [numStreams]struct {
	h     []byte
	sum   [32]byte
	count uint64
}

func (o *Outputs) save() (st outputsState) {
	for i := range o.streams {
		s := &o.streams[i]
		st[i].h, _ = s.h.(encoding.BinaryMarshaler).MarshalBinary()
		st[i].sum, st[i].count = s.sum, s.count
	}
	return st
}

func (o *Outputs) load(st outputsState) {
	for i := range o.streams {
		s := &o.streams[i]
		s.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st[i].h)
		s.sum, s.count = st[i].sum, st[i].count
	}
}
