package netcompare

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// A promoted secondary's Rewriter maps, for as long as they stay open, the
// connections its guest had before the failover. A new secondary that
// joins it gets its guest's state, and so those connections' numbers: if
// it is promoted in turn, it must map them the same way, after its own
// mapping (for the connections opened since it joined). AppendState
// writes a rewriter's mappings for the joining secondary, which loads them
// with LoadRewriter.
//
// The state, version 1: a version byte, a mapping count (uvarint), then
// each mapping in stateRecord bytes: EtherType (2), protocol (1), the
// guest's and the peer's addresses (16 each), ports (2 each), the
// secondary's and the primary's ISN+1 (4 each), flags (1: primary's ISN
// known, secondary's SYN timestamp known, timestamp offset known, FIN
// out, FIN in, closed), the secondary's SYN timestamp (4), the timestamp
// offset (4). Integers are big-endian.
const (
	stateVersion = 1
	stateRecord  = 2 + 1 + 16 + 16 + 2 + 2 + 4 + 4 + 1 + 4 + 4
)

// AppendState appends r's mappings to b.
func (r *Rewriter) AppendState(b []byte) []byte {
	b = append(b, stateVersion)
	b = binary.AppendUvarint(b, uint64(len(r.maps)))
	for m := r.head; m != nil; m = m.next {
		k := m.key
		b = binary.BigEndian.AppendUint16(b, k.etherType)
		b = append(b, k.proto)
		b = append(b, k.local[:]...)
		b = append(b, k.remote[:]...)
		b = binary.BigEndian.AppendUint16(b, k.lport)
		b = binary.BigEndian.AppendUint16(b, k.rport)
		b = binary.BigEndian.AppendUint32(b, m.sBase)
		b = binary.BigEndian.AppendUint32(b, m.pBase)
		var f byte
		for i, on := range []bool{m.pKnown, m.sTSOK, m.tsKnown, m.finOut, m.finIn, m.closed} {
			if on {
				f |= 1 << i
			}
		}
		b = append(b, f)
		b = binary.BigEndian.AppendUint32(b, m.sTS)
		b = binary.BigEndian.AppendUint32(b, m.tsDelta)
	}
	return b
}

// LoadRewriter returns a rewriter that maps the connections of a state
// AppendState wrote, failed over (it learns no new connection), keeping
// at most maxConns mappings (0: 16384) and closed connections lingering
// long (0: 60 s) from now. The state comes from another host and is
// checked like any input.
func LoadRewriter(state []byte, maxConns int, linger time.Duration, now time.Duration) (*Rewriter, error) {
	r := NewRewriter(maxConns, linger)
	r.failedOver = true
	if len(state) < 1 || state[0] != stateVersion {
		return nil, errors.New("netcompare: rewriter state of an unknown version")
	}
	n, k := binary.Uvarint(state[1:])
	if k <= 0 || k != len(binary.AppendUvarint(nil, n)) || n > uint64(r.max) || uint64(len(state)-1-k) != n*stateRecord {
		return nil, fmt.Errorf("netcompare: rewriter state of %d bytes does not hold its mappings", len(state))
	}
	p := state[1+k:]
	for range n {
		var key flowKey
		key.etherType = binary.BigEndian.Uint16(p)
		key.proto = p[2]
		copy(key.local[:], p[3:19])
		copy(key.remote[:], p[19:35])
		key.lport = binary.BigEndian.Uint16(p[35:])
		key.rport = binary.BigEndian.Uint16(p[37:])
		if (key.etherType != etherTypeIPv4 && key.etherType != etherTypeIPv6) || key.proto != protoTCP {
			return nil, fmt.Errorf("netcompare: rewriter state maps a flow that is not TCP (EtherType %#04x, protocol %d)", key.etherType, key.proto)
		}
		if _, dup := r.maps[key]; dup {
			return nil, errors.New("netcompare: rewriter state maps a connection twice")
		}
		m := r.add(key)
		m.sBase = binary.BigEndian.Uint32(p[39:])
		m.pBase = binary.BigEndian.Uint32(p[43:])
		f := p[47]
		if f&^0x3f != 0 {
			return nil, fmt.Errorf("netcompare: rewriter state with unknown flags %#02x", f)
		}
		m.pKnown, m.sTSOK, m.tsKnown = f&1 != 0, f&2 != 0, f&4 != 0
		m.finOut, m.finIn, m.closed = f&8 != 0, f&16 != 0, f&32 != 0
		m.sTS = binary.BigEndian.Uint32(p[48:])
		m.tsDelta = binary.BigEndian.Uint32(p[52:])
		m.lastSeen = now
		p = p[stateRecord:]
	}
	return r, nil
}
