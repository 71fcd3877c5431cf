package plover

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// What the consensus log holds. A normal entry's data starts with its
// kind:
//
//	inputs  kind 1, then inputs: each a kind byte (1 a received frame,
//	        2 console bytes), a uvarint length and the bytes
//	sync    kind 2, then uvarints: sequence number, term, the primary's
//	        and the backup's raft ids, and 1 for the last sync of a
//	        guest that stopped (0 otherwise)
//
// An entry with no data is a new leader's empty entry. Membership changes
// are raft's own conf change entries, whose context is a Member in JSON.
const (
	entryInputs byte = 1
	entrySync   byte = 2

	inputFrame   byte = 1
	inputConsole byte = 2
)

// maxInputs bounds the inputs decoded from one entry (a frame is at least
// a byte, so a 1 MiB entry cannot hold more).
const maxInputs = 1 << 20

// Input is one input for the guest: a frame its NIC received, or console
// bytes.
type Input struct {
	Net  bool
	Data []byte
}

// appendInput adds in to an inputs entry being built (b empty: a new one).
func appendInput(b []byte, in Input) []byte {
	if len(b) == 0 {
		b = append(b, entryInputs)
	}
	k := inputConsole
	if in.Net {
		k = inputFrame
	}
	b = append(b, k)
	b = binary.AppendUvarint(b, uint64(len(in.Data)))
	return append(b, in.Data...)
}

// decodeInputs reads an inputs entry (after its kind byte).
func decodeInputs(p []byte) ([]Input, error) {
	var ins []Input
	for len(p) > 0 {
		if len(ins) >= maxInputs {
			return nil, errors.New("too many inputs in one entry")
		}
		k := p[0]
		n, w := binary.Uvarint(p[1:])
		if w <= 0 || n > uint64(len(p)-1-w) || (k != inputFrame && k != inputConsole) {
			return nil, errors.New("malformed inputs entry")
		}
		p = p[1+w:]
		ins = append(ins, Input{Net: k == inputFrame, Data: p[:n:n]})
		p = p[n:]
	}
	return ins, nil
}

// marker is a sync entry: when primary and backup apply it, they pause and
// synchronise their states.
type marker struct {
	seq, term       uint64
	primary, backup uint64
	final           bool
}

func (m marker) encode() []byte {
	b := []byte{entrySync}
	for _, v := range []uint64{m.seq, m.term, m.primary, m.backup} {
		b = binary.AppendUvarint(b, v)
	}
	f := uint64(0)
	if m.final {
		f = 1
	}
	return binary.AppendUvarint(b, f)
}

func decodeMarker(p []byte) (marker, error) {
	var v [5]uint64
	for i := range v {
		x, n := binary.Uvarint(p)
		if n <= 0 {
			return marker{}, errors.New("malformed sync entry")
		}
		v[i], p = x, p[n:]
	}
	if len(p) != 0 || v[4] > 1 {
		return marker{}, errors.New("malformed sync entry")
	}
	return marker{seq: v[0], term: v[1], primary: v[2], backup: v[3], final: v[4] == 1}, nil
}

// Kind is what a member of the group is.
type Kind uint8

const (
	// Replica members run the guest: the primary and the backup.
	Replica Kind = iota + 1
	// Witness members take part in consensus only: they keep the log and
	// the page hashes of the last sync, execute nothing, and never become
	// the primary.
	Witness
)

func (k Kind) String() string {
	switch k {
	case Replica:
		return "replica"
	case Witness:
		return "witness"
	}
	return fmt.Sprintf("kind %d", k)
}

// Member is one member of the group: its raft id (new for every
// incarnation: members are crash-stop, a restarted process joins as a new
// member), the replica id its certificate names, what it is, and where it
// listens.
type Member struct {
	RaftID uint64 `json:"raft_id"`
	ID     string `json:"id"`
	Kind   Kind   `json:"kind"`
	Addr   string `json:"addr"`
}

func (m Member) String() string {
	return fmt.Sprintf("%s (%v %x at %s)", m.ID, m.Kind, m.RaftID, m.Addr)
}

func (m Member) valid() error {
	switch {
	case m.RaftID == 0:
		return errors.New("raft id 0")
	case m.ID == "":
		return errors.New("no id")
	case m.Kind != Replica && m.Kind != Witness:
		return fmt.Errorf("unknown kind %d", m.Kind)
	case m.Addr == "" || len(m.Addr) > 256:
		return errors.New("no address")
	}
	return nil
}

func (m Member) encode() []byte {
	b, _ := json.Marshal(m)
	return b
}

func decodeMember(b []byte) (Member, error) {
	var m Member
	if err := json.Unmarshal(b, &m); err != nil {
		return Member{}, fmt.Errorf("member: %w", err)
	}
	if err := m.valid(); err != nil {
		return Member{}, fmt.Errorf("member: %w", err)
	}
	return m, nil
}

// Directory is the members a node knows, by raft id.
type Directory map[uint64]Member

// List returns the members ordered by raft id.
func (d Directory) List() []Member {
	out := make([]Member, 0, len(d))
	for _, m := range d {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RaftID < out[j].RaftID })
	return out
}

// EncodeDirectory writes members in JSON (the snapshot's data and the
// welcome's directory).
func EncodeDirectory(ms []Member) []byte {
	b, _ := json.Marshal(ms)
	return b
}

// DecodeDirectory reads what EncodeDirectory wrote, from an untrusted
// peer.
func DecodeDirectory(b []byte) ([]Member, error) {
	var ms []Member
	if err := json.Unmarshal(b, &ms); err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	if len(ms) > 16 {
		return nil, fmt.Errorf("directory of %d members", len(ms))
	}
	for _, m := range ms {
		if err := m.valid(); err != nil {
			return nil, fmt.Errorf("directory: %w", err)
		}
	}
	return ms, nil
}
