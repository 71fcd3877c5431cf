package gdbstub

import (
	"bufio"
	"fmt"
	"io"
)

// maxPacket bounds an incoming packet's payload (after unescaping). GDB
// never sends more than the PacketSize we advertise; anything longer comes
// from a broken or hostile client and is dropped with a NAK instead of
// growing a buffer without limit.
const maxPacket = 0x4000

// event is what the connection reader hands the command loop.
type event struct {
	kind eventKind
	data []byte // packetEv: the unescaped payload
}

type eventKind int

const (
	packetEv eventKind = iota // a packet with a good checksum
	badEv                     // a packet with a bad checksum or too long: NAK it
	nackEv                    // the client asked for our last packet again
)

// reader splits the byte stream from the client into acks, interrupts and
// packets. Ctrl-C (0x03) is not queued: it calls interrupt at once, because
// it arrives while the command loop is busy running the target and not
// reading the queue.
type reader struct {
	r         *bufio.Reader
	interrupt func()
}

// next returns the next event, or an error when the stream ends. Bytes
// outside packets other than acks and Ctrl-C are ignored, as GDB's own
// stubs do, so line noise cannot wedge the protocol.
func (rd *reader) next() (event, error) {
	for {
		c, err := rd.r.ReadByte()
		if err != nil {
			return event{}, err
		}
		switch c {
		case 0x03:
			rd.interrupt()
		case '-':
			return event{kind: nackEv}, nil
		case '$':
			return rd.packet()
		}
	}
}

// packet reads the rest of a packet after its '$': payload (with '}'
// escapes undone), '#', two hex digits of checksum. The checksum covers the
// payload as sent, escapes included.
func (rd *reader) packet() (event, error) {
	var buf []byte
	var sum byte
	tooLong := false
	for {
		c, err := rd.r.ReadByte()
		if err != nil {
			return event{}, err
		}
		switch c {
		case '#':
			var cs [2]byte
			if _, err := io.ReadFull(rd.r, cs[:]); err != nil {
				return event{}, err
			}
			want, ok := parseHexByte(cs[0], cs[1])
			if !ok || want != sum || tooLong {
				return event{kind: badEv}, nil
			}
			return event{kind: packetEv, data: buf}, nil
		case '$':
			// A new packet start inside a packet: the previous one was
			// truncated. Resynchronise on the new one.
			buf, sum, tooLong = buf[:0], 0, false
			continue
		case '}':
			sum += c
			e, err := rd.r.ReadByte()
			if err != nil {
				return event{}, err
			}
			sum += e
			c = e ^ 0x20
		default:
			sum += c
		}
		if len(buf) >= maxPacket {
			tooLong = true
			continue
		}
		buf = append(buf, c)
	}
}

// frame wraps payload as a packet: $payload#cs, escaping the bytes that
// would end or confuse framing ('#', '$', '}', and '*' which GDB reads as
// run-length encoding).
func frame(payload []byte) []byte {
	out := make([]byte, 0, len(payload)+4)
	out = append(out, '$')
	var sum byte
	for _, c := range payload {
		if c == '#' || c == '$' || c == '}' || c == '*' {
			out = append(out, '}')
			sum += '}'
			c ^= 0x20
		}
		out = append(out, c)
		sum += c
	}
	return fmt.Appendf(out, "#%02x", sum)
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func parseHexByte(a, b byte) (byte, bool) {
	h, ok1 := unhex(a)
	l, ok2 := unhex(b)
	return h<<4 | l, ok1 && ok2
}

// parseHex parses a non-empty hex number of at most 16 digits.
func parseHex(s []byte) (uint64, bool) {
	if len(s) == 0 || len(s) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range s {
		d, ok := unhex(c)
		if !ok {
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}

// decodeHex decodes an even-length hex string.
func decodeHex(s []byte) ([]byte, bool) {
	if len(s)%2 != 0 {
		return nil, false
	}
	out := make([]byte, len(s)/2)
	for i := range out {
		b, ok := parseHexByte(s[2*i], s[2*i+1])
		if !ok {
			return nil, false
		}
		out[i] = b
	}
	return out, true
}

const hexDigits = "0123456789abcdef"

func appendHex(dst, p []byte) []byte {
	for _, b := range p {
		dst = append(dst, hexDigits[b>>4], hexDigits[b&15])
	}
	return dst
}
