package netcompare

import (
	"encoding/binary"
	"time"
)

// Rewriter maps TCP sequence numbers between the secondary's guest and the
// network, on the secondary's host (QEMU's filter-rewriter). The two guests
// chose different initial sequence numbers for a connection opened since
// the last checkpoint; the client knows only the primary's. So:
//
//   - ToSecondary rewrites each frame on its way to the secondary's guest:
//     the client's acknowledgement number and SACK blocks (which count in
//     the primary's sequence space) shift into the secondary's;
//   - Observe sees each frame the secondary's guest sends: it learns the
//     secondary's initial sequence numbers from its SYNs;
//   - FromSecondary, after a failover, rewrites each frame the promoted
//     secondary sends: its sequence number shifts back into the space the
//     client knows.
//
// It learns the primary's initial sequence number of a connection from
// the first frame for the guest that acknowledges anything (the client's
// ACK of the SYN-ACK, or a server's SYN-ACK): that number is the primary's
// ISN plus one; the same frame's timestamp echo is the primary's SYN's
// timestamp, which gives the offset of the two guests' timestamp clocks. The comparator holds the primary's SYN until the
// secondary has sent its own, so when the driver calls Observe before it
// ships the secondary's frames to the comparator, that acknowledgement
// always finds the secondary's ISN known. A checkpoint gives the secondary
// the primary's connections and numbers: Checkpoint forgets every
// mapping.
//
// Only the connections opened since the last checkpoint have a mapping;
// the table is bounded (least recently active first out) and closed
// connections leave it Linger after their last frame. Rewriter is not safe
// for concurrent use.
type Rewriter struct {
	max        int
	linger     time.Duration
	maps       map[flowKey]*mapping
	head, tail *mapping // least recently active first
	failedOver bool
}

type mapping struct {
	key          flowKey
	sBase, pBase uint32 // ISN+1 of the secondary's and the primary's guest
	pKnown       bool
	// The timestamp clocks (RFC 7323): the secondary's SYN's TSval, and
	// the secondary's TSval minus the primary's once the peer's first
	// acknowledgement echoed the primary's.
	sTS            uint32
	sTSOK, tsKnown bool
	tsDelta        uint32
	finOut         bool // the secondary's guest sent a FIN
	finIn          bool // the peer sent one
	closed         bool
	lastSeen       time.Duration
	prev, next     *mapping
}

// NewRewriter returns a rewriter that keeps at most maxConns mappings
// (0: 16384) and closed connections linger long (0: 60 s).
func NewRewriter(maxConns int, linger time.Duration) *Rewriter {
	if maxConns <= 0 {
		maxConns = defaultMaxConns
	}
	if linger <= 0 {
		linger = defaultLinger
	}
	return &Rewriter{max: maxConns, linger: linger, maps: make(map[flowKey]*mapping)}
}

// Observe takes a frame the secondary's guest sent (before a failover: the
// frame itself goes to the comparator unmodified).
func (r *Rewriter) Observe(frame []byte, now time.Duration) {
	var p packet
	parse(frame, true, &p)
	if p.kind != kindTCP {
		return
	}
	r.outbound(&p, now)
}

// outbound learns from a frame of the secondary's guest and returns the
// connection's mapping, if any.
func (r *Rewriter) outbound(p *packet, now time.Duration) *mapping {
	t := &p.tcp
	m := r.maps[p.key]
	if t.flags&tcpSYN != 0 && t.flags&tcpRST == 0 && !r.failedOver {
		if m == nil || m.sBase != t.seq+1 {
			// A new connection, or a new incarnation of the 4-tuple.
			if m == nil {
				m = r.add(p.key)
			}
			*m = mapping{key: m.key, prev: m.prev, next: m.next, sBase: t.seq + 1}
			hdr := p.frame[t.off : t.off+t.hdrLen]
			if off := tsOption(hdr); off > 0 {
				m.sTS, m.sTSOK = binary.BigEndian.Uint32(hdr[off:]), true
			}
		}
	}
	if m == nil {
		return nil
	}
	r.touch(m, now)
	if t.flags&tcpFIN != 0 {
		m.finOut = true
	}
	if t.flags&tcpRST != 0 || (m.finOut && m.finIn) {
		m.closed = true
	}
	return m
}

// ToSecondary maps a frame on its way to the secondary's guest into its
// sequence space, in place: the acknowledgement number (when ACK is set)
// and the edges of SACK blocks (RFC 2018, D-SACK included) shift by the
// difference of the guests' initial sequence numbers, the timestamp
// echo (TSecr) by the difference of their timestamp clocks, and the TCP
// checksum is updated incrementally (RFC 1624). Nothing else changes. It
// reports whether it changed the frame: other protocols, connections
// without a mapping and mappings that are the identity pass unchanged.
//
// The frame's checksum need not be valid: an incremental update keeps it
// as right or as wrong as it was, so a corrupt frame is still dropped by
// the guest's stack. TCP-MD5 and TCP-AO signatures (RFC 2385, 5925) cover
// the acknowledgement number: a connection that uses them breaks on the
// secondary until a checkpoint.
func (r *Rewriter) ToSecondary(frame []byte, now time.Duration) bool {
	var p packet
	parse(frame, false, &p)
	if p.kind != kindTCP {
		return false
	}
	m := r.maps[p.key]
	if m == nil {
		return false
	}
	r.touch(m, now)
	t := &p.tcp
	if t.flags&tcpFIN != 0 {
		m.finIn = true
	}
	if t.flags&tcpRST != 0 || (m.finOut && m.finIn) {
		m.closed = true
	}
	hdr := frame[t.off : t.off+t.hdrLen]
	if !m.pKnown {
		if t.flags&tcpACK == 0 || t.flags&tcpRST != 0 {
			return false
		}
		m.pBase, m.pKnown = t.ack, true
		if off := tsOption(hdr); off > 0 && m.sTSOK {
			m.tsDelta, m.tsKnown = m.sTS-binary.BigEndian.Uint32(hdr[off+4:]), true
		}
	}
	d := m.sBase - m.pBase
	changed := false
	if t.flags&tcpACK != 0 && d != 0 {
		add32(hdr, 8, d)
		changed = true
	}
	tcpOptions(hdr, func(k byte, off int, opt []byte) {
		switch {
		case k == 5 && (len(opt)-2)%8 == 0 && d != 0:
			for i := off + 2; i < off+len(opt); i += 4 {
				add32(hdr, i, d)
				changed = true
			}
		case k == 8 && len(opt) == 10 && m.tsKnown && m.tsDelta != 0 && t.flags&tcpACK != 0:
			// TSecr echoes the primary's clock; it is meaningful only
			// with ACK set (RFC 7323 3.2).
			add32(hdr, off+6, m.tsDelta)
			changed = true
		}
	})
	return changed
}

// tsOption returns the offset of the timestamp option's TSval in a TCP
// header, or 0.
func tsOption(hdr []byte) int {
	at := 0
	tcpOptions(hdr, func(k byte, off int, opt []byte) {
		if k == 8 && len(opt) == 10 && at == 0 {
			at = off + 2
		}
	})
	return at
}

// FromSecondary maps a frame the secondary's guest sent into the
// primary's sequence space, in place: its sequence number and timestamp
// value (TSval), and the checksum; its acknowledgements and SACK blocks
// count in the client's space already. Without the timestamp mapping the
// client would discard the promoted secondary's segments as old
// duplicates (PAWS, RFC 7323 5) whenever its timestamp clock is behind
// the primary's, as it is when the guests derive per-connection offsets
// from different secrets. The driver uses it after a failover, on every frame the
// promoted secondary sends, so that the clients of connections opened
// before it keep the numbers they agreed to with the old primary. It
// reports whether it changed the frame.
func (r *Rewriter) FromSecondary(frame []byte, now time.Duration) bool {
	var p packet
	parse(frame, true, &p)
	if p.kind != kindTCP {
		return false
	}
	m := r.outbound(&p, now)
	if m == nil || !m.pKnown {
		return false
	}
	hdr := frame[p.tcp.off : p.tcp.off+p.tcp.hdrLen]
	changed := false
	if m.sBase != m.pBase {
		add32(hdr, 4, m.pBase-m.sBase)
		changed = true
	}
	if off := tsOption(hdr); off > 0 && m.tsKnown && m.tsDelta != 0 {
		add32(hdr, off, -m.tsDelta)
		changed = true
	}
	return changed
}

// Checkpoint forgets every mapping: call it when the secondary's guest
// takes the primary's state.
func (r *Rewriter) Checkpoint() {
	clear(r.maps)
	r.head, r.tail = nil, nil
}

// Failover stops learning: after it the rewriter maps only the
// connections it knows (new ones are the promoted guest's own).
func (r *Rewriter) Failover() { r.failedOver = true }

// Tick forgets closed connections that lingered long enough.
func (r *Rewriter) Tick(now time.Duration) {
	for m := r.head; m != nil; {
		next := m.next
		if now-m.lastSeen < r.linger {
			break
		}
		if m.closed {
			r.remove(m)
		}
		m = next
	}
}

// Len is the number of mappings.
func (r *Rewriter) Len() int { return len(r.maps) }

func (r *Rewriter) add(k flowKey) *mapping {
	if len(r.maps) >= r.max {
		r.remove(r.head)
	}
	m := &mapping{key: k}
	r.maps[k] = m
	r.link(m)
	return m
}

func (r *Rewriter) touch(m *mapping, now time.Duration) {
	m.lastSeen = now
	if r.tail != m {
		r.unlink(m)
		r.link(m)
	}
}

func (r *Rewriter) link(m *mapping) {
	m.prev, m.next = r.tail, nil
	if r.tail != nil {
		r.tail.next = m
	} else {
		r.head = m
	}
	r.tail = m
}

func (r *Rewriter) unlink(m *mapping) {
	if m.prev != nil {
		m.prev.next = m.next
	} else {
		r.head = m.next
	}
	if m.next != nil {
		m.next.prev = m.prev
	} else {
		r.tail = m.prev
	}
	m.prev, m.next = nil, nil
}

func (r *Rewriter) remove(m *mapping) {
	r.unlink(m)
	delete(r.maps, m.key)
}

// add32 adds d to the 32-bit big-endian field at offset off of the TCP
// header t and updates the header's checksum.
func add32(t []byte, off int, d uint32) {
	old := binary.BigEndian.Uint32(t[off:])
	nw := old + d
	binary.BigEndian.PutUint32(t[off:], nw)
	sum := binary.BigEndian.Uint16(t[16:18])
	binary.BigEndian.PutUint16(t[16:18], checksumUpdate32(sum, old, nw))
}

// checksumUpdate32 returns an Internet checksum updated for a 32-bit word
// of the covered data changing from old to new: RFC 1624's equation 3,
// HC' = ~(~HC + ~m + m'), once for each 16-bit half.
func checksumUpdate32(sum uint16, old, new uint32) uint16 {
	s := uint32(^sum)
	s += uint32(^uint16(old>>16)) + uint32(^uint16(old))
	s += uint32(uint16(new>>16)) + uint32(uint16(new))
	s = (s & 0xffff) + (s >> 16)
	s = (s & 0xffff) + (s >> 16)
	return ^uint16(s)
}
