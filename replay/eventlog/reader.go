package eventlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
)

// Error categories. Errors from a Reader are *FormatError values that wrap
// one of these (or the underlying reader's error), so callers can tell them
// apart with errors.Is.
var (
	// ErrTruncated: the log ends before an End record, either between
	// frames or inside one. Every frame before the cut was returned and
	// is intact.
	ErrTruncated = errors.New("truncated")
	// ErrCorrupt: a check failed (bad magic, checksum, malformed varint or
	// payload, a length over its limit, a decreasing instruction count).
	ErrCorrupt = errors.New("corrupt")
	// ErrVersion: the log uses a format version this package does not read.
	ErrVersion = errors.New("unsupported format version")
	// ErrUnknownKind: an intact frame has a kind this package does not
	// know and may not skip (probably written by a newer ftvm).
	ErrUnknownKind = errors.New("unknown record kind")
)

// FormatError says where a log went wrong.
type FormatError struct {
	Frame  int64 // 0 for the header, records from 1
	Offset int64 // byte offset at which that frame starts
	Err    error // ErrTruncated, ErrCorrupt, ErrVersion, ErrUnknownKind or an I/O error
	Detail string
}

func (e *FormatError) Error() string {
	where := "header"
	if e.Frame > 0 {
		where = fmt.Sprintf("frame %d", e.Frame)
	}
	return fmt.Sprintf("eventlog: %s at byte %d: %s", where, e.Offset, e.Detail)
}

func (e *FormatError) Unwrap() error { return e.Err }

// Reader reads a log written by a Writer, checking everything as it goes.
// Next returns a record only once its whole frame has been read and
// checked, and never reads past the End record. A Reader is not safe for
// concurrent use.
type Reader struct {
	br      *bufio.Reader
	hdr     Header
	crc     uint32
	instret uint64
	time    uint64
	frame   int64 // number of the last frame read (0: the header)
	off     int64 // bytes consumed
	ended   bool
	err     error

	// Scratch space kept here rather than on the stack, where passing it
	// to the io.Reader interface would make it escape (an allocation per
	// frame).
	head [1 + 2*binary.MaxVarintLen64 + 1]byte
	sum  [4]byte
	pbuf []byte // payloads that are decoded, not returned

	// ignoreChecksums lets the fuzzer get past the CRCs to the decoders
	// behind them. Tests only.
	ignoreChecksums bool
}

// NewReader reads and checks the header of a log. r is read through a
// buffer; a *bufio.Reader is used as it is.
func NewReader(r io.Reader) (*Reader, error) {
	return newReader(r, false)
}

func newReader(r io.Reader, ignoreChecksums bool) (*Reader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	rd := &Reader{br: br, ignoreChecksums: ignoreChecksums}
	if err := rd.readHeader(); err != nil {
		return nil, err
	}
	return rd, nil
}

// Header returns the header read by NewReader.
func (r *Reader) Header() Header { return r.hdr }

// Frame returns the number of the last frame read (0 after NewReader).
func (r *Reader) Frame() int64 { return r.frame }

// Offset returns the number of bytes read so far: after a successful Next,
// the offset of the end of the frame just returned.
func (r *Reader) Offset() int64 { return r.off }

// Instret returns the instruction count of the last record read (the
// header's start count before the first).
func (r *Reader) Instret() uint64 { return r.instret }

func (r *Reader) fail(start int64, kind error, format string, args ...any) error {
	r.err = &FormatError{Frame: r.frame, Offset: start, Err: kind, Detail: fmt.Sprintf(format, args...)}
	return r.err
}

// ioFail turns a read error into a FormatError: end of input is truncation,
// anything else is passed on (a network error is not a format problem).
func (r *Reader) ioFail(start int64, err error, what string) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return r.fail(start, ErrTruncated, "truncated in %s at byte %d", what, r.off)
	}
	return r.fail(start, err, "reading %s at byte %d: %v", what, r.off, err)
}

func (r *Reader) readFull(p []byte) error {
	n, err := io.ReadFull(r.br, p)
	r.off += int64(n)
	return err
}

// readN reads n bytes into a new slice, growing it as the data arrives so
// that a length that lies costs at most twice the bytes actually received.
func (r *Reader) readN(n int) ([]byte, error) {
	const step = 64 << 10
	buf := make([]byte, min(n, step))
	got := 0
	for {
		m, err := io.ReadFull(r.br, buf[got:])
		got += m
		r.off += int64(m)
		if err != nil {
			return nil, err
		}
		if got == n {
			return buf, nil
		}
		nb := make([]byte, min(n, 2*len(buf)))
		copy(nb, buf)
		buf = nb
	}
}

// readUvarint reads a shortest-form uvarint, appending its bytes to *raw.
func (r *Reader) readUvarint(raw *[]byte) (uint64, error) {
	var v uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		b, err := r.br.ReadByte()
		if err != nil {
			return 0, err
		}
		r.off++
		*raw = append(*raw, b)
		if i == binary.MaxVarintLen64-1 && b > 1 {
			return 0, errBigVarint
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			if b == 0 && i > 0 {
				return 0, errLongVarint
			}
			return v, nil
		}
	}
	return 0, errBigVarint // unreachable: the tenth byte is at most 1
}

func (r *Reader) readHeader() error {
	var m [len(magic)]byte
	n, err := io.ReadFull(r.br, m[:])
	r.off += int64(n)
	if string(m[:n]) != string(magic[:n]) {
		return r.fail(0, ErrCorrupt, "bad magic % x: not an ftvm event log", m[:n])
	}
	if err != nil {
		return r.ioFail(0, err, "magic")
	}
	v, err := r.br.ReadByte()
	if err != nil {
		return r.ioFail(0, err, "version")
	}
	r.off++
	if v != Version {
		return r.fail(0, ErrVersion, "format version %d, this reader supports version %d only", v, Version)
	}
	raw := make([]byte, 0, 32)
	raw = append(raw, magic[:]...)
	raw = append(raw, v)
	l, err := r.readUvarint(&raw)
	if err == errLongVarint || err == errBigVarint {
		return r.fail(0, ErrCorrupt, "JSON length: %v", err)
	} else if err != nil {
		return r.ioFail(0, err, "JSON length")
	}
	hc, err := r.br.ReadByte()
	if err != nil {
		return r.ioFail(0, err, "head check")
	}
	r.off++
	if want := crc8(raw); hc != want && !r.ignoreChecksums {
		return r.fail(0, ErrCorrupt, "head check mismatch (stored %02x, computed %02x)", hc, want)
	}
	raw = append(raw, hc)
	if l == 0 || l > MaxHeader {
		return r.fail(0, ErrCorrupt, "JSON length %d out of range 1..%d", l, MaxHeader)
	}
	js, err := r.readN(int(l))
	if err != nil {
		return r.ioFail(0, err, "JSON")
	}
	raw = append(raw, js...)
	var sum [4]byte
	if err := r.readFull(sum[:]); err != nil {
		return r.ioFail(0, err, "checksum")
	}
	r.crc = crc32.Checksum(raw, castagnoli)
	if got := binary.LittleEndian.Uint32(sum[:]); got != r.crc && !r.ignoreChecksums {
		return r.fail(0, ErrCorrupt, "checksum mismatch (stored %08x, computed %08x)", got, r.crc)
	}
	h, err := unmarshalHeader(js)
	if err != nil {
		return r.fail(0, ErrCorrupt, "bad header JSON: %v", err)
	}
	r.hdr = h
	r.instret = h.StartInstret
	return nil
}

// Next returns the next record. At the end of a complete log (after its End
// record) it returns io.EOF; any other error is a *FormatError, and is
// returned again by every later call.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	if r.ended {
		return Record{}, io.EOF
	}
	start := r.off
	r.frame++
	head := r.head[:0]

	k, err := r.br.ReadByte()
	if err == io.EOF {
		return Record{}, r.fail(start, ErrTruncated, "log ends after frame %d without an End record", r.frame-1)
	} else if err != nil {
		return Record{}, r.ioFail(start, err, "kind")
	}
	r.off++
	head = append(head, k)
	kind := Kind(k)

	delta, err := r.readUvarint(&head)
	if err == errLongVarint || err == errBigVarint {
		return Record{}, r.fail(start, ErrCorrupt, "instruction delta: %v", err)
	} else if err != nil {
		return Record{}, r.ioFail(start, err, "instruction delta")
	}
	l, err := r.readUvarint(&head)
	if err == errLongVarint || err == errBigVarint {
		return Record{}, r.fail(start, ErrCorrupt, "payload length: %v", err)
	} else if err != nil {
		return Record{}, r.ioFail(start, err, "payload length")
	}
	hc, err := r.br.ReadByte()
	if err != nil {
		return Record{}, r.ioFail(start, err, "head check")
	}
	r.off++
	if want := crc8(head); hc != want && !r.ignoreChecksums {
		return Record{}, r.fail(start, ErrCorrupt, "head check mismatch (stored %02x, computed %02x)", hc, want)
	}
	head = append(head, hc)
	if l > MaxPayload {
		return Record{}, r.fail(start, ErrCorrupt, "payload length %d exceeds the %d-byte limit", l, MaxPayload)
	}
	var payload []byte
	if kind == KindConsoleInput || kind == KindNetReceive || kind.Ancillary() {
		payload, err = r.readN(int(l)) // the record keeps it
	} else if int(l) <= cap(r.pbuf) {
		// Decoded into fresh values: reuse the buffer.
		payload = r.pbuf[:l]
		err = r.readFull(payload)
	} else {
		payload, err = r.readN(int(l))
		r.pbuf = payload
	}
	if err != nil {
		return Record{}, r.ioFail(start, err, "payload")
	}
	if err := r.readFull(r.sum[:]); err != nil {
		return Record{}, r.ioFail(start, err, "checksum")
	}
	crc := crc32.Update(r.crc, castagnoli, head)
	crc = crc32.Update(crc, castagnoli, payload)
	if got := binary.LittleEndian.Uint32(r.sum[:]); got != crc && !r.ignoreChecksums {
		return Record{}, r.fail(start, ErrCorrupt, "checksum mismatch (stored %08x, computed %08x)", got, crc)
	}

	// The frame is intact; now its meaning.
	if delta > math.MaxUint64-r.instret {
		return Record{}, r.fail(start, ErrCorrupt, "instruction count decreases (delta %d from %d wraps around)", delta, r.instret)
	}
	if !kind.known() {
		return Record{}, r.fail(start, ErrUnknownKind, "unknown record %s (written by a newer ftvm?)", kind)
	}
	rec, err := decodePayload(kind, payload, r.time)
	if err != nil {
		return Record{}, r.fail(start, ErrCorrupt, "%v", err)
	}
	rec.Instret = r.instret + delta
	r.crc = crc
	r.instret = rec.Instret
	switch kind {
	case KindAdvanceTime:
		r.time = rec.Time
	case KindEnd:
		r.ended = true
	}
	return rec, nil
}
