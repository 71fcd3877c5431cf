package kv

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// The durable log is a sequence of records written back to back from offset
// 0 of a raw block device (no filesystem, so a guest write is exactly one
// virtio-blk write and fsync is exactly one flush):
//
//	magic  uint32 LE  0x3156_4b46 ("FKV1")
//	length uint32 LE  payload length, > 0
//	crc    uint32 LE  CRC-32C of the length field and the payload
//	payload           argc uint32 LE, then per argument: len uint32 LE, bytes
//
// Replay stops at the first record whose magic, length or checksum is wrong:
// that is either the never-written (zeroed) rest of the disk or a record torn
// by a crash before its flush, whose command was never acknowledged.
const (
	recordMagic     = 0x31564b46
	recordHeaderLen = 12
	maxPayload      = MaxBulkLen + 1<<20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Device is what the log needs from a block device; *os.File satisfies it.
// Sync must make every completed write durable (fsync on a block device
// becomes a cache flush request to the disk).
type Device interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// ErrLogFull is returned when a record would not fit on the device.
var ErrLogFull = errors.New("log device full")

// Log appends command records to a Device. It is not safe for concurrent
// use, except that writeOut may run while other methods are called: the
// server commits without holding its data lock so that writes arriving
// during a flush are grouped into the next one.
type Log struct {
	dev      Device
	size     int64  // device capacity in bytes
	end      int64  // offset just past the last durable record
	flushing int64  // bytes taken by a commit in progress
	pending  []byte // encoded records not yet taken for writing

	Records int64 // records replayed plus appended
	Syncs   int64 // commits that flushed something
}

// OpenLog replays the records on dev (of the given size in bytes), calling
// apply for each command in order, and returns a Log positioned after the
// last valid record.
func OpenLog(dev Device, size int64, apply func(args [][]byte)) (*Log, error) {
	l := &Log{dev: dev, size: size}
	r := bufio.NewReaderSize(io.NewSectionReader(dev, 0, size), 256<<10)
	var hdr [recordHeaderLen]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			break // end of device
		}
		n := int64(binary.LittleEndian.Uint32(hdr[4:]))
		if binary.LittleEndian.Uint32(hdr[0:]) != recordMagic || n == 0 || n > maxPayload ||
			l.end+recordHeaderLen+n > size {
			break
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			if err == io.ErrUnexpectedEOF || err == io.EOF {
				break
			}
			return nil, err
		}
		if checksum(hdr[4:8], payload) != binary.LittleEndian.Uint32(hdr[8:]) {
			break
		}
		args, err := decodeArgs(payload)
		if err != nil {
			// A valid checksum over a malformed payload means a bug in the
			// writer, not a torn write: refuse rather than silently truncate.
			return nil, fmt.Errorf("log record at offset %d: %v", l.end, err)
		}
		apply(args)
		l.end += recordHeaderLen + n
		l.Records++
	}
	return l, nil
}

// Used returns the bytes of the device taken by records, including ones not
// yet durable. A client that has seen the effect of a record must not be
// answered before Durable() reaches the Used() of that moment.
func (l *Log) Used() int64 { return l.end + l.flushing + int64(len(l.pending)) }

// Durable returns the offset up to which records are on stable storage.
func (l *Log) Durable() int64 { return l.end }

// Size returns the device capacity.
func (l *Log) Size() int64 { return l.size }

// Fits reports whether a record for args would fit on the device; callers
// check before mutating state so a full log never leaves memory ahead of disk.
func (l *Log) Fits(args [][]byte) bool {
	n := int64(payloadLen(args))
	return n <= maxPayload && l.Used()+recordHeaderLen+n <= l.size
}

// Append queues a record for args. It becomes durable at the next Commit.
func (l *Log) Append(args [][]byte) error {
	if !l.Fits(args) {
		return ErrLogFull
	}
	l.pending = appendRecord(l.pending, args)
	l.Records++
	return nil
}

// Commit writes the pending records and syncs the device. Replies to the
// commands they hold must not be sent before Commit returns nil.
func (l *Log) Commit() error {
	buf, off := l.takePending()
	if len(buf) == 0 {
		return nil
	}
	if err := l.writeOut(buf, off); err != nil {
		return err
	}
	l.committed()
	return nil
}

// The three steps of Commit, for callers that flush without holding the
// lock that guards Append: takePending and committed run under that lock,
// writeOut outside it, and only one commit may be in progress at a time.

func (l *Log) takePending() ([]byte, int64) {
	buf := l.pending
	l.pending = nil
	l.flushing = int64(len(buf))
	return buf, l.end
}

func (l *Log) writeOut(buf []byte, off int64) error {
	if _, err := l.dev.WriteAt(buf, off); err != nil {
		return err
	}
	return l.dev.Sync()
}

func (l *Log) committed() {
	l.end += l.flushing
	l.flushing = 0
	l.Syncs++
}

func payloadLen(args [][]byte) int {
	n := 4
	for _, a := range args {
		n += 4 + len(a)
	}
	return n
}

func appendRecord(buf []byte, args [][]byte) []byte {
	start := len(buf)
	buf = binary.LittleEndian.AppendUint32(buf, recordMagic)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(payloadLen(args)))
	buf = binary.LittleEndian.AppendUint32(buf, 0) // checksum, filled below
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(args)))
	for _, a := range args {
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(a)))
		buf = append(buf, a...)
	}
	rec := buf[start:]
	binary.LittleEndian.PutUint32(rec[8:], checksum(rec[4:8], rec[recordHeaderLen:]))
	return buf
}

func checksum(length, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(length, castagnoli), castagnoli, payload)
}

func decodeArgs(p []byte) ([][]byte, error) {
	if len(p) < 4 {
		return nil, errors.New("short payload")
	}
	argc := binary.LittleEndian.Uint32(p)
	p = p[4:]
	if argc == 0 || int64(argc) > int64(len(p))/4 {
		return nil, fmt.Errorf("bad argument count %d", argc)
	}
	args := make([][]byte, argc)
	for i := range args {
		if len(p) < 4 {
			return nil, errors.New("truncated argument length")
		}
		n := binary.LittleEndian.Uint32(p)
		p = p[4:]
		if uint64(n) > uint64(len(p)) {
			return nil, errors.New("truncated argument")
		}
		args[i] = p[:n:n]
		p = p[n:]
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(p))
	}
	return args, nil
}
