package replication

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
)

// The state transfer brings a joining backup to the primary's state.
// Today it is a snapshot taken with the guest paused (Engine.Save, sent in
// chunks and checked by SHA-256); the joiner's Step/Finish split is where
// an iterative pre-copy fits.

// stateSender moves the primary's state to a joining backup. Step is called
// between epochs while the guest runs and reports when the rest can be sent
// in a short pause; Finish is called with the guest stopped, sends the
// rest, and returns a hash that names the state in the log's header.
type stateSender interface {
	Step() (converged bool, err error)
	Finish() (id [32]byte, err error)
}

// maxState bounds what a backup accepts as a transferred state.
const maxState = 64 << 30

type snapshotSender struct {
	w io.Writer
	e Engine
}

func (s *snapshotSender) Step() (bool, error) { return true, nil }

func (s *snapshotSender) Finish() ([32]byte, error) {
	cw := &chunkWriter{w: bufio.NewWriterSize(s.w, 1<<20), h: sha256.New()}
	if err := s.e.Save(cw); err != nil {
		return [32]byte{}, fmt.Errorf("saving the state: %w", err)
	}
	if err := cw.flushChunk(); err != nil {
		return [32]byte{}, err
	}
	var id [32]byte
	cw.h.Sum(id[:0])
	if err := writeJSON(cw.w, msgStateEnd, stateEnd{Size: cw.n, SHA256: id[:]}); err != nil {
		return id, err
	}
	return id, cw.w.Flush()
}

type stateEnd struct {
	Size   int64  `json:"size"`
	SHA256 []byte `json:"sha256"`
}

// chunkWriter cuts a stream into state messages.
type chunkWriter struct {
	w   *bufio.Writer
	h   hash.Hash
	buf []byte
	n   int64
}

const stateChunk = maxMessage - 64

func (c *chunkWriter) Write(p []byte) (int, error) {
	c.h.Write(p)
	c.n += int64(len(p))
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), stateChunk-len(c.buf))
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
		if len(c.buf) == stateChunk {
			if err := c.flushChunk(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (c *chunkWriter) flushChunk() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.w.Write(appendMessage(nil, msgState, c.buf))
	c.buf = c.buf[:0]
	return err
}

// receiveState reads a transferred state, checking its size and hash.
func receiveState(br *bufio.Reader) ([]byte, [32]byte, error) {
	var buf bytes.Buffer
	h := sha256.New()
	for {
		t, p, err := readMessage(br)
		if err != nil {
			return nil, [32]byte{}, fmt.Errorf("receiving the state: %w", err)
		}
		switch t {
		case msgState:
			if int64(buf.Len()+len(p)) > maxState {
				return nil, [32]byte{}, fmt.Errorf("%w: the state exceeds %d bytes", errProtocol, int64(maxState))
			}
			buf.Write(p)
			h.Write(p)
		case msgStateEnd:
			var end stateEnd
			if err := readJSONPayload(p, &end); err != nil {
				return nil, [32]byte{}, err
			}
			var id [32]byte
			h.Sum(id[:0])
			if end.Size != int64(buf.Len()) || !bytes.Equal(end.SHA256, id[:]) {
				return nil, id, fmt.Errorf("%w: the state received (%d bytes) does not match what was sent (%d bytes)", errProtocol, buf.Len(), end.Size)
			}
			return buf.Bytes(), id, nil
		default:
			return nil, [32]byte{}, fmt.Errorf("%w: %v during the state transfer", errProtocol, t)
		}
	}
}
