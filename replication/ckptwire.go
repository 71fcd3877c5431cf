package replication

import (
	"bufio"
	"encoding/binary"
	"fmt"

	"ftvm/replication/ckpt"
)

// The messages of the checkpointing modes' link (see wire.go for the
// framing and the order).

// ckptHeader opens a checkpointing link: what the backup checks before it
// follows (ckpt.Header).
type ckptHeader struct {
	Mode       string   `json:"mode"`
	Cluster    string   `json:"cluster"`
	Generation uint64   `json:"generation"`
	Primary    string   `json:"primary"`
	Backup     string   `json:"backup"`
	State      [32]byte `json:"state"`
	Instret    uint64   `json:"instret"`
}

func encodeHeader(h ckpt.Header) ckptHeader {
	return ckptHeader{Mode: h.Mode.String(), Cluster: h.Cluster, Generation: h.View.Generation, Primary: h.View.Primary,
		Backup: h.View.Backup, State: h.State, Instret: h.Instret}
}

func (h ckptHeader) decode() (ckpt.Header, error) {
	m, err := ckpt.ParseMode(h.Mode)
	if err != nil {
		return ckpt.Header{}, fmt.Errorf("%w: %v", errProtocol, err)
	}
	return ckpt.Header{Mode: m, Cluster: h.Cluster, View: View{Generation: h.Generation, Primary: h.Primary, Backup: h.Backup},
		State: h.State, Instret: h.Instret}, nil
}

// ckptEnd says the primary's guest stopped.
type ckptEnd struct {
	Reason string `json:"reason"`
}

// ckptAck is a backup's acknowledgement: it has the state of checkpoints
// up to Seq (and, Ended, the end of the run). It doubles as its
// heartbeat.
type ckptAck struct {
	Seq   uint64
	Ended bool
}

func (a ckptAck) encode() []byte {
	b := binary.AppendUvarint(nil, a.Seq)
	if a.Ended {
		return append(b, 1)
	}
	return append(b, 0)
}

func decodeCkptAck(p []byte) (ckptAck, error) {
	seq, n := binary.Uvarint(p)
	if n <= 0 || len(p) != n+1 || p[n] > 1 {
		return ckptAck{}, fmt.Errorf("%w: malformed checkpoint ack", errProtocol)
	}
	return ckptAck{Seq: seq, Ended: p[n] == 1}, nil
}

// chunkWriter cuts what is written into messages of type t of at most
// maxMessage bytes, written to w.
type chunkWriter struct {
	w   interface{ Write([]byte) (int, error) }
	t   msgType
	buf []byte
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), maxMessage)
		c.buf = appendMessage(c.buf[:0], c.t, p[:k])
		if _, err := c.w.Write(c.buf); err != nil {
			return n - len(p), err
		}
		p = p[k:]
	}
	return n, nil
}

// readCkptMessage reads one message of a checkpointing link: at most
// maxMessage bytes, or maxSyncMessage for COLO's sync messages and
// rewriter states.
func readCkptMessage(br *bufio.Reader) (msgType, []byte, error) {
	t, p, err := readMessageMax(br, maxSyncMessage)
	if err == nil && len(p) > maxMessage && t != msgColoSync && t != msgColoMappings {
		err = fmt.Errorf("%w: %v of %d bytes exceeds the %d-byte limit", errProtocol, t, len(p), maxMessage)
	}
	return t, p, err
}
