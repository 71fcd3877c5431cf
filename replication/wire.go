package replication

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// The replica protocol, version 1. A backup dials its primary (TLS) and the
// two exchange framed messages:
//
//	backup  -> primary: hello
//	primary -> backup:  welcome (or refuse, and the connection ends)
//	primary -> backup:  the state transfer (package migrate's stream)
//	primary -> backup:  an event log stream (package eventlog), to the end
//	backup  -> primary: ack messages, until the connection ends
//
// A message is: type (1 byte), payload length (uvarint), payload, CRC-32C
// of all that (4 bytes, little endian). Payloads are bounded (maxMessage),
// so a hostile peer cannot make a replica allocate more than that. The log
// stream after the welcome is the event log's own framing: what a backup
// receives is a log 'ftvm replay' can read.
const protocolVersion = 1

type msgType uint8

const (
	msgHello    msgType = 1 // JSON hello
	msgWelcome  msgType = 2 // JSON welcome
	msgRefuse   msgType = 3 // JSON refuse
	msgAck      msgType = 4 // uvarint frames, bytes and instret (see ack)
	msgState    msgType = 5 // a chunk of the saved state
	msgStateEnd msgType = 6 // JSON stateEnd: the state is complete
)

const maxMessage = 64 << 10

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func (t msgType) String() string {
	switch t {
	case msgHello:
		return "hello"
	case msgWelcome:
		return "welcome"
	case msgRefuse:
		return "refuse"
	case msgAck:
		return "ack"
	case msgState:
		return "state"
	case msgStateEnd:
		return "state end"
	}
	return fmt.Sprintf("message type %d", uint8(t))
}

// hello is a backup's request to protect a primary.
type hello struct {
	Version int    `json:"version"`
	Cluster string `json:"cluster"`
	ID      string `json:"id"`
}

// welcome accepts a backup: the view it is part of once the transfer is
// done is sent in the log stream's header.
type welcome struct {
	Primary string `json:"primary"`
}

// refuse says why a primary will not take a backup.
type refuse struct {
	Error string `json:"error"`
}

func appendMessage(dst []byte, t msgType, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, byte(t))
	dst = binary.AppendUvarint(dst, uint64(len(payload)))
	dst = append(dst, payload...)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], crcTable))
}

func writeMessage(w io.Writer, t msgType, payload []byte) error {
	_, err := w.Write(appendMessage(nil, t, payload))
	return err
}

func writeJSON(w io.Writer, t msgType, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeMessage(w, t, b)
}

// errProtocol marks a peer that broke the protocol (as opposed to one that
// went away).
var errProtocol = errors.New("protocol error")

// readMessage reads one message. io.EOF means the peer closed cleanly
// between messages.
func readMessage(r *bufio.Reader) (msgType, []byte, error) {
	return readMessageMax(r, maxMessage)
}

// readMessageMax reads one message whose payload may be up to limit
// bytes.
func readMessageMax(r *bufio.Reader, limit uint64) (msgType, []byte, error) {
	t, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, nil, unexpected(err)
	}
	if n > limit {
		return 0, nil, fmt.Errorf("%w: %v of %d bytes exceeds the %d-byte limit", errProtocol, msgType(t), n, limit)
	}
	buf := make([]byte, 1+binary.MaxVarintLen64+int(n)+4)
	buf[0] = t
	h := 1 + binary.PutUvarint(buf[1:], n)
	body := buf[h : h+int(n)+4]
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, unexpected(err)
	}
	payload, sum := body[:n], binary.LittleEndian.Uint32(body[n:])
	if crc32.Checksum(buf[:h+int(n)], crcTable) != sum {
		return 0, nil, fmt.Errorf("%w: %v message fails its checksum", errProtocol, msgType(t))
	}
	return msgType(t), payload, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readJSON reads a message of type want (or a refuse, turned into an error)
// into v.
func readJSON(r *bufio.Reader, want msgType, v any) error {
	t, p, err := readMessage(r)
	if err != nil {
		return err
	}
	if t == msgRefuse && want != msgRefuse {
		var rf refuse
		if json.Unmarshal(p, &rf) != nil {
			return fmt.Errorf("%w: malformed refuse message", errProtocol)
		}
		return &RefusedError{Reason: rf.Error}
	}
	if t != want {
		return fmt.Errorf("%w: got %v, want %v", errProtocol, t, want)
	}
	return readJSONPayload(p, v)
}

func readJSONPayload(p []byte, v any) error {
	if err := json.Unmarshal(p, v); err != nil {
		return fmt.Errorf("%w: %T: %v", errProtocol, v, err)
	}
	return nil
}

// RefusedError is a primary's refusal of a backup.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "the primary refused: " + e.Reason }

// ack is a backup's acknowledgement: it holds log frames 1..Frames, which
// end at byte Bytes of the log stream (checked and queued for replay), and
// has replayed up to instruction Replayed. It doubles as the backup's
// heartbeat.
type ack struct {
	Frames   uint64
	Bytes    uint64
	Replayed uint64
}

func (a ack) encode() []byte {
	b := binary.AppendUvarint(nil, a.Frames)
	b = binary.AppendUvarint(b, a.Bytes)
	return binary.AppendUvarint(b, a.Replayed)
}

func decodeAck(p []byte) (ack, error) {
	var v [3]uint64
	for i := range v {
		x, n := binary.Uvarint(p)
		if n <= 0 {
			return ack{}, fmt.Errorf("%w: malformed ack", errProtocol)
		}
		v[i], p = x, p[n:]
	}
	if len(p) != 0 {
		return ack{}, fmt.Errorf("%w: malformed ack", errProtocol)
	}
	return ack{v[0], v[1], v[2]}, nil
}
