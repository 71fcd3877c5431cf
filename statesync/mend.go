package statesync

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"ftvm/vm"
)

// Mend is the repair of two paused replicas whose states should be
// identical and are not, by page-hash comparison over the whole memory
// (repair.go's Compare, as a step-wise protocol object like Sync): a
// memory error flipped a bit in one of them, where no dirty log sees it.
//
//	backup  -> primary: mhashes, the hashes of every page (in pieces)
//	                    (the primary compares, with the witness's hashes if
//	                    it has some: Decide)
//	primary -> backup:  mpages, a checkpoint (seq = the mend's id) of the
//	                    pages the backup has wrong, with the primary's state
//	                    if the config says so; mwant, the pages the primary
//	                    has wrong
//	backup  -> primary: mpages, a checkpoint of the pages wanted; mdone,
//	                    its instruction count and digest (with the
//	                    digest's parts, which an error names)
//	primary -> backup:  mdone, its own, once it applied the pages: both
//	                    sides check that the digests are equal
//
// Messages have Sync's header (type, id); an error message ends it as in
// Sync.
const (
	msgMendHashes byte = 16 + iota
	msgMendPages
	msgMendWant
	msgMendDone
)

// MendConfig describes one side of a mend.
type MendConfig struct {
	Role Party  // Primary or Backup
	ID   uint64 // the same on both sides
	// Engine is the replica's, paused; it must be a vm.Syncable (either
	// side may be the one with wrong pages).
	Engine vm.Migratable
	Key    []byte
	Hasher *Hasher
	// State (primary): send the primary's engine state along with the
	// pages, for a backup whose processor or devices may differ too (a
	// replay-based backup, whose only other copy of the state is the
	// primary's).
	State bool
	// Limits of the checkpoints received.
	Limits Limits
}

// MendStats describe a mend, from one side.
type MendStats struct {
	Compared int    // pages compared
	Report   Report // the primary's comparison (on the backup: its findings only)
	// Received and Sent are the pages this side took from the other and
	// gave it.
	Received, Sent    []int
	BytesOut, BytesIn int64
}

// Mend is one side of a mend.
type Mend struct {
	cfg     MendConfig
	dst     vm.Syncable
	started bool
	own     []Sum
	peer    []Sum
	npeer   int
	diff    []int // pages whose hashes differ (primary)
	decided bool
	dec     *Decoder
	applied bool // the checkpoint from the peer is applied
	want    []int
	wantOK  bool
	peerDg  [32]byte
	peerAt  uint64
	// peerParts are the parts of the peer's digest.
	peerParts []vm.Component
	done      bool
	err       error
	stats     MendStats
}

// NewMend prepares one side of mend cfg.ID.
func NewMend(cfg MendConfig) (*Mend, error) {
	if cfg.Role != Primary && cfg.Role != Backup {
		return nil, fmt.Errorf("statesync: a mend is between a primary and a backup, not a %v", cfg.Role)
	}
	dst, ok := cfg.Engine.(vm.Syncable)
	if !ok {
		return nil, errors.New("statesync: the replica cannot take pages in place (not a vm.Syncable)")
	}
	if cfg.Hasher == nil {
		cfg.Hasher = NewHasher(0)
	}
	lim := cfg.Limits
	if cfg.Role == Primary {
		lim.MaxState = 1 // the backup never sends its state
	}
	dec, err := NewDecoder(cfg.Key, Geometry{PageSize: dst.PageSize(), Pages: dst.Pages()}, lim)
	if err != nil {
		return nil, err
	}
	dec.Expect(cfg.ID)
	return &Mend{cfg: cfg, dst: dst, dec: dec}, nil
}

// Done reports whether the mend completed: both replicas' digests are
// equal.
func (m *Mend) Done() bool { return m.done }

// Stats describe the mend so far.
func (m *Mend) Stats() MendStats { return m.stats }

// NeedWitness (primary) returns the pages whose hashes differ, once the
// backup's hashes are in, when Decide has not been called: the caller may
// get a witness's hashes of them (or give nil).
func (m *Mend) NeedWitness() ([]int, bool) {
	return m.diff, m.cfg.Role == Primary && m.npeer == len(m.peer) && m.peer != nil && !m.decided && m.err == nil
}

// Start hashes every page and returns the messages to send.
func (m *Mend) Start() ([][]byte, error) {
	if m.err != nil {
		return nil, m.err
	}
	if m.started {
		return nil, m.fail(errors.New("statesync: mend started twice"))
	}
	m.started = true
	hs, err := HashPages(m.cfg.Hasher, m.dst, nil)
	if err != nil {
		return nil, m.fail(err)
	}
	m.own = hs.Sums
	m.stats.Compared = len(m.own)
	if m.cfg.Role == Primary {
		m.peer = make([]Sum, len(m.own))
		return nil, nil
	}
	var out [][]byte
	const per = maxMessage / 32
	for first := 0; first < len(m.own); first += per {
		p := binary.LittleEndian.AppendUint32(nil, uint32(first))
		for _, h := range m.own[first:min(first+per, len(m.own))] {
			p = append(p, h[:]...)
		}
		out = append(out, m.msg(msgMendHashes, p))
	}
	return m.out(out), nil
}

// Decide (primary) compares the hashes, with the witness's (nil: none),
// and returns the messages to send.
func (m *Mend) Decide(witness *Hashes) ([][]byte, error) {
	if _, ok := m.NeedWitness(); !ok {
		return nil, m.fail(errors.New("statesync: mend: nothing to decide"))
	}
	m.decided = true
	a, b := Hashes{Pages: m.diff}, Hashes{Pages: m.diff}
	for _, p := range m.diff {
		a.Sums = append(a.Sums, m.own[p])
		b.Sums = append(b.Sums, m.peer[p])
	}
	r, err := Compare(a, b, witness)
	if err != nil {
		return nil, m.fail(err)
	}
	r.Compared = len(m.own)
	m.stats.Report = r
	toBackup, toPrimary := r.Faulty(Backup), r.Faulty(Primary)
	m.stats.Sent = toBackup
	m.want = toPrimary
	var buf bytes.Buffer
	enc, err := NewEncoder(&buf, m.cfg.Key, m.cfg.ID, m.dst.PageSize())
	if err != nil {
		return nil, m.fail(err)
	}
	if _, err := enc.Pages(m.dst, toBackup); err != nil {
		return nil, m.fail(err)
	}
	if m.cfg.State {
		var st bytes.Buffer
		if err := m.dst.SaveState(&st); err != nil {
			return nil, m.fail(err)
		}
		if err := enc.State(st.Bytes()); err != nil {
			return nil, m.fail(err)
		}
	}
	if _, err := enc.End(m.dst.Instret(), [32]byte{}); err != nil {
		return nil, m.fail(err)
	}
	out := m.pieces(buf.Bytes())
	w := binary.LittleEndian.AppendUint32(nil, uint32(len(toPrimary)))
	for _, p := range toPrimary {
		w = binary.LittleEndian.AppendUint32(w, uint32(p))
	}
	out = append(out, m.msg(msgMendWant, w))
	return m.out(out), nil
}

func (m *Mend) pieces(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := min(len(b), maxMessage)
		out = append(out, m.msg(msgMendPages, b[:n]))
		b = b[n:]
	}
	return out
}

// Receive handles one message from the peer and returns the messages to
// send.
func (m *Mend) Receive(msg []byte) ([][]byte, error) {
	if m.err != nil {
		return nil, m.err
	}
	m.stats.BytesIn += int64(len(msg))
	out, err := m.receive(msg)
	if err != nil {
		m.fail(err)
		if !errors.Is(err, ErrPeer) {
			out = append(out, m.msg(msgError, []byte(truncate(err.Error(), maxText))))
		}
		return m.out(out), m.err
	}
	return m.out(out), nil
}

func (m *Mend) receive(msg []byte) ([][]byte, error) {
	if len(msg) < msgHeader {
		return nil, m.bad("a message of %d bytes", len(msg))
	}
	t, id, p := msg[0], binary.LittleEndian.Uint64(msg[1:]), msg[msgHeader:]
	if id != m.cfg.ID {
		return nil, m.bad("a message of mend %d during mend %d", id, m.cfg.ID)
	}
	if m.done {
		return nil, m.bad("a message after the mend completed")
	}
	if len(p) > maxMessage+64 {
		return nil, m.bad("a message of %d bytes", len(msg))
	}
	primary := m.cfg.Role == Primary
	switch t {
	case msgMendHashes:
		if !primary || !m.started || m.decided {
			return nil, m.bad("hashes not expected here")
		}
		if len(p) < 4+32 || (len(p)-4)%32 != 0 {
			return nil, m.bad("hashes message of %d bytes", len(p))
		}
		first, n := int(binary.LittleEndian.Uint32(p)), (len(p)-4)/32
		if first != m.npeer || n > len(m.peer)-m.npeer {
			return nil, m.bad("hashes %d to %d, expected from %d of %d", first, first+n, m.npeer, len(m.peer))
		}
		for k := range n {
			copy(m.peer[first+k][:], p[4+32*k:])
		}
		m.npeer += n
		if m.npeer == len(m.peer) {
			for i := range m.own {
				if m.own[i] != m.peer[i] {
					m.diff = append(m.diff, i)
				}
			}
		}
		return nil, nil
	case msgMendPages:
		if m.applied || (primary && !m.decided) || (!primary && !m.started) {
			return nil, m.bad("pages not expected here")
		}
		for len(p) > 0 {
			n, c, err := m.dec.Feed(p)
			if err != nil {
				return nil, err
			}
			p = p[n:]
			if c == nil {
				continue
			}
			if len(p) > 0 {
				return nil, m.bad("%d bytes after the pages", len(p))
			}
			err = c.Apply(m.dst, nil)
			m.stats.Received = append([]int(nil), c.Pages...)
			m.dec.Release(c)
			if err != nil {
				return nil, err
			}
			m.applied = true
			if primary {
				if !slices.Equal(m.stats.Received, m.want) {
					return nil, m.bad("pages %v sent, %v wanted", m.stats.Received, m.want)
				}
				return m.finish()
			}
			return m.answer()
		}
		return nil, nil
	case msgMendWant:
		if primary || m.wantOK {
			return nil, m.bad("a list of pages not expected here")
		}
		if len(p) < 4 || len(p) != 4+4*int(binary.LittleEndian.Uint32(p)) || int(binary.LittleEndian.Uint32(p)) > m.dst.Pages() {
			return nil, m.bad("a list of pages of %d bytes", len(p))
		}
		for k := range int(binary.LittleEndian.Uint32(p)) {
			pg := int(binary.LittleEndian.Uint32(p[4+4*k:]))
			if pg >= m.dst.Pages() || (k > 0 && pg <= m.want[k-1]) {
				return nil, m.bad("page %d wanted", pg)
			}
			m.want = append(m.want, pg)
		}
		m.wantOK = true
		return m.answer()
	case msgMendDone:
		if len(p) < 8+32 || (len(p)-8-32)%partSize != 0 || (len(p)-8-32)/partSize > maxParts {
			return nil, m.bad("done of %d bytes", len(p))
		}
		m.peerAt = binary.LittleEndian.Uint64(p)
		copy(m.peerDg[:], p[8:])
		m.peerParts = m.peerParts[:0]
		for q := p[8+32:]; len(q) > 0; q = q[partSize:] {
			var c vm.Component
			c.Name = string(bytes.TrimRight(q[:partName], "\x00"))
			copy(c.Sum[:], q[partName:partSize])
			m.peerParts = append(m.peerParts, c)
		}
		if primary && !m.applied {
			return nil, m.bad("done before the pages")
		}
		return nil, m.check()
	case msgError:
		return nil, fmt.Errorf("statesync: mend %d: the %v %w: %s", m.cfg.ID, 1-m.cfg.Role, ErrPeer, printable(p))
	}
	return nil, m.bad("unknown message type %d", t)
}

// answer (backup): once the primary's pages are applied and its list of
// wanted pages is in, send those pages and this side's digest.
func (m *Mend) answer() ([][]byte, error) {
	if m.cfg.Role != Backup || !m.applied || !m.wantOK {
		return nil, nil
	}
	var buf bytes.Buffer
	if _, err := EncodePages(&buf, m.cfg.Key, m.cfg.ID, m.dst, m.want); err != nil {
		return nil, err
	}
	m.stats.Sent = m.want
	out := m.pieces(buf.Bytes())
	return append(out, m.doneMsg()), nil
}

func (m *Mend) doneMsg() []byte {
	dg := m.dst.Digest()
	p := binary.LittleEndian.AppendUint64(nil, m.dst.Instret())
	p = append(p, dg.Sum[:]...)
	for _, c := range dg.Parts[:min(len(dg.Parts), maxParts)] {
		var name [partName]byte
		copy(name[:], c.Name)
		p = append(append(p, name[:]...), c.Sum[:]...)
	}
	return m.msg(msgMendDone, p)
}

// A mend's done message carries the digest's parts after the digest, each
// a name (zero-padded) and a sum, so that a digest that still differs
// after the repair is reported with the state that differs.
const (
	partName = 16
	partSize = partName + 32
	maxParts = 16
)

// finish (primary): the backup's pages are applied; its done follows
// them on the link, and the primary's own digest goes now.
func (m *Mend) finish() ([][]byte, error) {
	return [][]byte{m.doneMsg()}, nil
}

// check compares the peer's digest with this side's.
func (m *Mend) check() error {
	dg := m.dst.Digest()
	if m.peerAt != m.dst.Instret() || m.peerDg != dg.Sum {
		return fmt.Errorf("statesync: mend %d: %w: after the repair the %v is at instruction %d with digest %x, this replica at %d with %x (differing state: %s)",
			m.cfg.ID, ErrDiverged, 1-m.cfg.Role, m.peerAt, m.peerDg[:8], m.dst.Instret(), dg.Sum[:8], diffParts(dg.Parts, m.peerParts))
	}
	m.done = true
	return nil
}

func (m *Mend) msg(t byte, p []byte) []byte {
	b := make([]byte, msgHeader, msgHeader+len(p))
	b[0] = t
	binary.LittleEndian.PutUint64(b[1:], m.cfg.ID)
	return append(b, p...)
}

func (m *Mend) out(msgs [][]byte) [][]byte {
	for _, b := range msgs {
		m.stats.BytesOut += int64(len(b))
	}
	return msgs
}

func (m *Mend) bad(format string, a ...any) error {
	return fmt.Errorf("statesync: mend %d: %w from the %v: %s", m.cfg.ID, ErrProtocol, 1-m.cfg.Role, fmt.Sprintf(format, a...))
}

func (m *Mend) fail(err error) error {
	if m.err == nil {
		m.err = err
	}
	return m.err
}
