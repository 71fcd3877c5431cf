package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Ancillary kinds this package defines. They are part of format version 1
// without changing it: a reader that does not know them passes them
// through as opaque records (see the package documentation), so logs that
// carry them still replay on older readers, which just do not check them.
const (
	// KindOutputs carries running hashes of what the guest emitted
	// (console, network, disk writes) up to the record's instruction
	// count, so a replay can check its outputs and not only its state.
	KindOutputs Kind = 0x40
	// KindSnapshot says that a snapshot of the machine was written at the
	// record's instruction count, naming its file and content hash: a
	// replay can start from it and skip the records before.
	KindSnapshot Kind = 0x41
	// KindReached says the recorded run reached the record's instruction
	// count with no input since the record before it. A recorder writes
	// one before it shows the user what the guest printed, so that a
	// replay of its log, cut short when it died, runs at least as far as
	// the user saw. It carries no data.
	KindReached Kind = 0x42
)

// ReachedAt is a Reached record at instruction count instret.
func ReachedAt(instret uint64) Record { return Record{Instret: instret, Kind: KindReached} }

// OutputSum is the running hash of one output stream: Sum chains the
// stream's data in intervals ending at each Outputs record
// (SHA-256(previous Sum || data since)); Count is how many bytes (console)
// or items (frames, disk writes) the stream has carried so far.
type OutputSum struct {
	Name  string
	Count uint64
	Sum   [32]byte
}

// OutputsAt makes an Outputs record.
//
// Payload: uvarint c (the number of streams), then c times: uvarint m
// (1..255), m bytes of stream name, uvarint count, 32 bytes of hash.
func OutputsAt(instret uint64, sums []OutputSum) Record {
	var b []byte
	b = binary.AppendUvarint(b, uint64(len(sums)))
	for _, s := range sums {
		b = binary.AppendUvarint(b, uint64(len(s.Name)))
		b = append(b, s.Name...)
		b = binary.AppendUvarint(b, s.Count)
		b = append(b, s.Sum[:]...)
	}
	return Record{Instret: instret, Kind: KindOutputs, Data: b}
}

// DecodeOutputs decodes the payload of an Outputs record.
func DecodeOutputs(p []byte) ([]OutputSum, error) {
	n, l, err := uvarint(p)
	if err != nil {
		return nil, fmt.Errorf("outputs: stream count: %v", err)
	}
	p = p[l:]
	if n > uint64(len(p))/(1+1+1+32) {
		return nil, fmt.Errorf("outputs: %d streams in %d bytes", n, len(p))
	}
	out := make([]OutputSum, 0, n)
	for range n {
		m, l, err := uvarint(p)
		if err != nil || m == 0 || m > MaxName || m > uint64(len(p)-l) {
			return nil, errors.New("outputs: bad stream name length")
		}
		name := string(p[l : l+int(m)])
		p = p[l+int(m):]
		c, l, err := uvarint(p)
		if err != nil {
			return nil, fmt.Errorf("outputs: %s count: %v", name, err)
		}
		p = p[l:]
		if len(p) < 32 {
			return nil, fmt.Errorf("outputs: %s hash truncated", name)
		}
		s := OutputSum{Name: name, Count: c}
		copy(s.Sum[:], p)
		p = p[32:]
		out = append(out, s)
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("outputs: %d trailing bytes", len(p))
	}
	return out, nil
}

// SnapshotInfo names a snapshot written during a recording.
type SnapshotInfo struct {
	SHA256 Hash   // of the snapshot file's contents
	Name   string // its file name (no directory), 1..255 bytes
}

// SnapshotAt makes a Snapshot record.
//
// Payload: 32 bytes of SHA-256, uvarint m (1..255), m bytes of file name.
func SnapshotAt(instret uint64, s SnapshotInfo) Record {
	b := append([]byte(nil), s.SHA256[:]...)
	b = binary.AppendUvarint(b, uint64(len(s.Name)))
	b = append(b, s.Name...)
	return Record{Instret: instret, Kind: KindSnapshot, Data: b}
}

// DecodeSnapshot decodes the payload of a Snapshot record.
func DecodeSnapshot(p []byte) (SnapshotInfo, error) {
	var s SnapshotInfo
	if len(p) < 33 {
		return s, errors.New("snapshot record truncated")
	}
	copy(s.SHA256[:], p)
	m, l, err := uvarint(p[32:])
	if err != nil || m == 0 || m > MaxName || uint64(len(p)-32-l) != m {
		return s, errors.New("snapshot record: bad name length")
	}
	s.Name = string(p[32+l:])
	return s, nil
}
