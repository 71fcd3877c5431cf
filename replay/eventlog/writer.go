package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// flushAt is how much a Writer buffers before writing on its own. Callers
// that need a record to leave now (the output rule of FT replication) call
// Flush.
const flushAt = 64 << 10

// ErrClosed is returned by a Writer used after Close.
var ErrClosed = errors.New("eventlog: writer is closed")

// Writer appends records to a log. It buffers: nothing is guaranteed to
// have reached the underlying writer until Flush or Close returns. A Writer
// is not safe for concurrent use.
type Writer struct {
	w       io.Writer
	buf     []byte
	scratch []byte
	crc     uint32 // running CRC-32C, see the package documentation
	instret uint64 // of the last record (the header's start before the first)
	time    uint64 // of the last AdvanceTime record
	frames  int64  // frames appended, the header not counted
	flushed int64  // bytes handed to w
	ended   bool
	closed  bool
	err     error // sticky write error
}

// NewWriter starts a log on w with the given header. The header is
// buffered like the records.
func NewWriter(w io.Writer, hdr Header) (*Writer, error) {
	js, err := hdr.marshal()
	if err != nil {
		return nil, fmt.Errorf("eventlog: header: %w", err)
	}
	buf := make([]byte, 0, flushAt+1024)
	buf = append(buf, magic[:]...)
	buf = append(buf, Version)
	buf = binary.AppendUvarint(buf, uint64(len(js)))
	buf = append(buf, crc8(buf))
	buf = append(buf, js...)
	crc := crc32.Checksum(buf, castagnoli)
	buf = binary.LittleEndian.AppendUint32(buf, crc)
	return &Writer{w: w, buf: buf, crc: crc, instret: hdr.StartInstret}, nil
}

// Append adds a record. Records must come in non-decreasing instruction
// count order and carry only the fields of their kind; an invalid record
// is refused with an error and leaves the log as it was. After an End
// record nothing more may be appended.
func (w *Writer) Append(rec Record) error {
	switch {
	case w.err != nil:
		return w.err
	case w.closed:
		return ErrClosed
	case w.ended:
		return errors.New("eventlog: record appended after the End record")
	case rec.Instret < w.instret:
		return fmt.Errorf("eventlog: %s record at instruction %d comes after one at %d: counts must not decrease", rec.Kind, rec.Instret, w.instret)
	}
	if err := rec.check(); err != nil {
		return err
	}
	payload := rec.Data
	if !(rec.Kind == KindConsoleInput || rec.Kind == KindNetReceive || rec.Kind.Ancillary()) {
		w.scratch = appendPayload(w.scratch[:0], &rec, w.time)
		payload = w.scratch
	}
	start := len(w.buf)
	w.buf = append(w.buf, byte(rec.Kind))
	w.buf = binary.AppendUvarint(w.buf, rec.Instret-w.instret)
	w.buf = binary.AppendUvarint(w.buf, uint64(len(payload)))
	w.buf = append(w.buf, crc8(w.buf[start:]))
	w.buf = append(w.buf, payload...)
	w.crc = crc32.Update(w.crc, castagnoli, w.buf[start:])
	w.buf = binary.LittleEndian.AppendUint32(w.buf, w.crc)

	w.frames++
	w.instret = rec.Instret
	switch rec.Kind {
	case KindAdvanceTime:
		w.time = rec.Time
	case KindEnd:
		w.ended = true
	}
	if len(w.buf) >= flushAt {
		return w.Flush()
	}
	return nil
}

// Flush writes the buffered frames to the underlying writer. A write error
// is sticky: the log is unusable after it, since the reader cannot know
// which bytes of a partial write arrived.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if len(w.buf) == 0 {
		return nil
	}
	n, err := w.w.Write(w.buf)
	w.flushed += int64(n)
	if err == nil && n < len(w.buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = fmt.Errorf("eventlog: write: %w", err)
		return w.err
	}
	w.buf = w.buf[:0]
	return nil
}

// Close flushes the log and refuses further records. It does not append an
// End record (a log without one reads as truncated, which is the truth if
// the run did not end) and does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	err := w.Flush()
	w.closed = true
	return err
}

// Offset returns the size of the log so far, buffered bytes included: the
// byte offset at which the next frame will start.
func (w *Writer) Offset() int64 { return w.flushed + int64(len(w.buf)) }

// Frames returns the number of records appended. The next record will be
// frame Frames()+1 (the header is frame 0).
func (w *Writer) Frames() int64 { return w.frames }
