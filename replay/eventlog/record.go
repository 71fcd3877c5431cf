package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Version is the format version this package writes and the only one it
// reads.
const Version = 1

// Limits. They are part of the format: a writer never exceeds them and a
// reader treats a larger length as corruption, which bounds what a hostile
// or damaged stream can make a reader allocate.
const (
	MaxHeader  = 64 << 10 // bytes of header JSON
	MaxPayload = 1 << 20  // bytes of record payload
	MaxName    = 255      // bytes of a digest component name
	MaxReason  = 1024     // bytes of an End record's stop reason
)

var magic = [12]byte{0x89, 'F', 'T', 'V', 'M', 'L', 'O', 'G', '\r', '\n', 0x1a, '\n'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Kind says what a record is.
type Kind uint8

const (
	KindConsoleInput Kind = 1 // Data: bytes typed on the console
	KindNetReceive   Kind = 2 // Data: an Ethernet frame received
	KindAdvanceTime  Kind = 3 // Time: the mtime to advance to
	KindDigest       Kind = 4 // Digest: the state hash at Instret
	KindEnd          Kind = 5 // Reason, Digest: how and in what state the run ended

	// Kinds in [AncillaryFirst, AncillaryLast] do not affect the guest; a
	// reader that does not know one returns it with its raw payload in Data
	// rather than failing (see the package documentation).
	AncillaryFirst Kind = 0x40
	AncillaryLast  Kind = 0x7f
)

// Ancillary reports whether k is in the range reserved for records that do
// not affect the guest.
func (k Kind) Ancillary() bool { return k >= AncillaryFirst && k <= AncillaryLast }

func (k Kind) known() bool { return k >= KindConsoleInput && k <= KindEnd || k.Ancillary() }

func (k Kind) String() string {
	switch k {
	case KindConsoleInput:
		return "ConsoleInput"
	case KindNetReceive:
		return "NetReceive"
	case KindAdvanceTime:
		return "AdvanceTime"
	case KindDigest:
		return "Digest"
	case KindEnd:
		return "End"
	case KindOutputs:
		return "Outputs"
	case KindSnapshot:
		return "Snapshot"
	case KindReached:
		return "Reached"
	}
	if k.Ancillary() {
		return fmt.Sprintf("ancillary kind %#x", uint8(k))
	}
	return fmt.Sprintf("kind %d (%#x)", uint8(k), uint8(k))
}

// Record is one entry of the log. Which fields are used depends on Kind;
// the others must be zero (the Writer checks, so that a recorder bug that
// puts data in the wrong field is caught rather than dropped).
type Record struct {
	// Instret is the instruction count at which the record takes effect:
	// inputs are delivered when the machine has executed exactly this many
	// instructions. It never decreases along a log.
	Instret uint64
	Kind    Kind

	Data   []byte // ConsoleInput, NetReceive and ancillary kinds; nil when empty
	Time   uint64 // AdvanceTime
	Digest Digest // Digest and End
	Reason string // End: why the run stopped (e.g. "poweroff")
}

// Digest is a hash of the machine state, overall and optionally per
// component, so that a replayer that diverges can say where.
type Digest struct {
	Sum        [32]byte
	Components []Component // nil when there are none
}

// Component is the hash of one named part of the machine state ("cpu",
// "ram", "uart", ...).
type Component struct {
	Name string
	Sum  [32]byte
}

// Mismatch compares a recorded digest d with the one a replay computed and
// returns what differs: nil if the overall sums agree, otherwise "overall"
// followed by the names of components whose sums differ or that only one
// side has.
func (d Digest) Mismatch(got Digest) []string {
	if d.Sum == got.Sum {
		return nil
	}
	out := []string{"overall"}
	gm := make(map[string][32]byte, len(got.Components))
	for _, c := range got.Components {
		gm[c.Name] = c.Sum
	}
	seen := make(map[string]bool, len(d.Components))
	for _, c := range d.Components {
		seen[c.Name] = true
		if s, ok := gm[c.Name]; !ok || s != c.Sum {
			out = append(out, c.Name)
		}
	}
	for _, c := range got.Components {
		if !seen[c.Name] {
			out = append(out, c.Name)
		}
	}
	return out
}

// Constructors for the usual records.

func ConsoleInputAt(instret uint64, data []byte) Record {
	return Record{Instret: instret, Kind: KindConsoleInput, Data: data}
}

func NetReceiveAt(instret uint64, frame []byte) Record {
	return Record{Instret: instret, Kind: KindNetReceive, Data: frame}
}

func AdvanceTimeAt(instret, mtime uint64) Record {
	return Record{Instret: instret, Kind: KindAdvanceTime, Time: mtime}
}

func DigestAt(instret uint64, d Digest) Record {
	return Record{Instret: instret, Kind: KindDigest, Digest: d}
}

func EndAt(instret uint64, reason string, d Digest) Record {
	return Record{Instret: instret, Kind: KindEnd, Reason: reason, Digest: d}
}

func (d *Digest) isZero() bool { return d.Sum == [32]byte{} && len(d.Components) == 0 }

// check reports a record the format cannot carry or whose fields do not
// match its kind.
func (r *Record) check() error {
	extra := func(field string) error {
		return fmt.Errorf("eventlog: %s record has %s set", r.Kind, field)
	}
	switch {
	case r.Kind == KindConsoleInput || r.Kind == KindNetReceive || r.Kind.Ancillary():
		if len(r.Data) > MaxPayload {
			return fmt.Errorf("eventlog: %s record of %d bytes exceeds the %d-byte limit", r.Kind, len(r.Data), MaxPayload)
		}
		if r.Time != 0 {
			return extra("Time")
		}
		if !r.Digest.isZero() {
			return extra("Digest")
		}
		if r.Reason != "" {
			return extra("Reason")
		}
	case r.Kind == KindAdvanceTime:
		if len(r.Data) != 0 {
			return extra("Data")
		}
		if !r.Digest.isZero() {
			return extra("Digest")
		}
		if r.Reason != "" {
			return extra("Reason")
		}
	case r.Kind == KindDigest || r.Kind == KindEnd:
		if len(r.Data) != 0 {
			return extra("Data")
		}
		if r.Time != 0 {
			return extra("Time")
		}
		if r.Kind == KindDigest && r.Reason != "" {
			return extra("Reason")
		}
		if len(r.Reason) > MaxReason {
			return fmt.Errorf("eventlog: End reason of %d bytes exceeds the %d-byte limit", len(r.Reason), MaxReason)
		}
		for _, c := range r.Digest.Components {
			if len(c.Name) == 0 || len(c.Name) > MaxName {
				return fmt.Errorf("eventlog: digest component name %q: must be 1 to %d bytes", c.Name, MaxName)
			}
		}
		n := 32 + varintLen(uint64(len(r.Digest.Components)))
		if r.Kind == KindEnd {
			n += varintLen(uint64(len(r.Reason))) + len(r.Reason)
		}
		for _, c := range r.Digest.Components {
			n += varintLen(uint64(len(c.Name))) + len(c.Name) + 32
		}
		if n > MaxPayload {
			return fmt.Errorf("eventlog: %s record of %d bytes exceeds the %d-byte limit", r.Kind, n, MaxPayload)
		}
	default:
		return fmt.Errorf("eventlog: cannot write a record of unknown %s", r.Kind)
	}
	return nil
}

// appendPayload encodes the payload of r (already checked) onto dst.
// prevTime is the mtime of the previous AdvanceTime record.
func appendPayload(dst []byte, r *Record, prevTime uint64) []byte {
	switch r.Kind {
	case KindAdvanceTime:
		d := int64(r.Time - prevTime)
		return binary.AppendUvarint(dst, uint64(d<<1)^uint64(d>>63))
	case KindDigest:
		return appendDigest(dst, &r.Digest)
	case KindEnd:
		dst = binary.AppendUvarint(dst, uint64(len(r.Reason)))
		dst = append(dst, r.Reason...)
		return appendDigest(dst, &r.Digest)
	}
	return append(dst, r.Data...)
}

func varintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

func appendDigest(dst []byte, d *Digest) []byte {
	dst = append(dst, d.Sum[:]...)
	dst = binary.AppendUvarint(dst, uint64(len(d.Components)))
	for _, c := range d.Components {
		dst = binary.AppendUvarint(dst, uint64(len(c.Name)))
		dst = append(dst, c.Name...)
		dst = append(dst, c.Sum[:]...)
	}
	return dst
}

var (
	errShortVarint = errors.New("varint runs past the end")
	errLongVarint  = errors.New("varint not in shortest form")
	errBigVarint   = errors.New("varint overflows 64 bits")
)

// uvarint decodes a shortest-form uvarint from the start of p.
func uvarint(p []byte) (uint64, int, error) {
	var v uint64
	for i := 0; i < len(p) && i < binary.MaxVarintLen64; i++ {
		b := p[i]
		if i == binary.MaxVarintLen64-1 && b > 1 {
			return 0, 0, errBigVarint
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			if b == 0 && i > 0 {
				return 0, 0, errLongVarint
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, errShortVarint
}

// decodePayload is the inverse of appendPayload; p is owned by the result.
func decodePayload(kind Kind, p []byte, prevTime uint64) (Record, error) {
	rec := Record{Kind: kind}
	switch {
	case kind == KindConsoleInput || kind == KindNetReceive || kind.Ancillary():
		if len(p) > 0 {
			rec.Data = p
		}
		return rec, nil
	case kind == KindAdvanceTime:
		u, n, err := uvarint(p)
		if err != nil {
			return rec, fmt.Errorf("AdvanceTime payload: %w", err)
		}
		if n != len(p) {
			return rec, fmt.Errorf("AdvanceTime payload: %d trailing bytes", len(p)-n)
		}
		rec.Time = prevTime + uint64(int64(u>>1)^-int64(u&1))
		return rec, nil
	case kind == KindEnd:
		l, n, err := uvarint(p)
		if err != nil {
			return rec, fmt.Errorf("End payload: reason length: %w", err)
		}
		if l > MaxReason || l > uint64(len(p)-n) {
			return rec, fmt.Errorf("End payload: reason length %d exceeds the limit or the payload", l)
		}
		rec.Reason = string(p[n : n+int(l)])
		p = p[n+int(l):]
	}
	// Digest and End.
	d, rest, err := parseDigest(p)
	if err != nil {
		return rec, fmt.Errorf("%s payload: %w", kind, err)
	}
	if len(rest) != 0 {
		return rec, fmt.Errorf("%s payload: %d trailing bytes", kind, len(rest))
	}
	rec.Digest = d
	return rec, nil
}

func parseDigest(p []byte) (Digest, []byte, error) {
	var d Digest
	if len(p) < 32 {
		return d, nil, errors.New("digest shorter than 32 bytes")
	}
	copy(d.Sum[:], p)
	p = p[32:]
	c, n, err := uvarint(p)
	if err != nil {
		return d, nil, fmt.Errorf("component count: %w", err)
	}
	p = p[n:]
	// Each component takes at least 1+1+32 bytes: checking the count
	// against what remains bounds the allocation below.
	if c > uint64(len(p)/34) {
		return d, nil, fmt.Errorf("%d components cannot fit in %d bytes", c, len(p))
	}
	if c > 0 {
		d.Components = make([]Component, c)
	}
	for i := range d.Components {
		l, n, err := uvarint(p)
		if err != nil {
			return d, nil, fmt.Errorf("component %d name length: %w", i, err)
		}
		if l == 0 || l > MaxName || l+32 > uint64(len(p)-n) {
			return d, nil, fmt.Errorf("component %d: name length %d out of range", i, l)
		}
		p = p[n:]
		d.Components[i].Name = string(p[:l])
		copy(d.Components[i].Sum[:], p[l:l+32])
		p = p[l+32:]
	}
	return d, p, nil
}

// crc8 is the ATM HEC: polynomial x^8+x^2+x+1, initial value 0, final XOR
// 0x55.
func crc8(p []byte) byte {
	var c byte
	for _, b := range p {
		c = crc8Table[c^b]
	}
	return c ^ 0x55
}

var crc8Table = func() (t [256]byte) {
	for i := range t {
		c := byte(i)
		for range 8 {
			if c&0x80 != 0 {
				c = c<<1 ^ 0x07
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return
}()
