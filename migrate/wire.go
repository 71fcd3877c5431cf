package migrate

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"

	"ftvm/vm"
)

// Frame layout (integers little-endian):
//
//	type    uint8
//	length  uint32   payload length, at most maxPayload (1 MiB)
//	payload
//	crc     uint32   CRC-32C of type, length and payload
//
// Frame types and payloads, sender to receiver:
//
//	hello    magic "FTVMXFER", version uint32, page size uint32, pages uint64,
//	         disk size uint64, chunk size uint32
//	pages    count uint32, then count times: page index uint32, kind uint8
//	         (0: all zero, 1: contents follow), page contents for kind 1
//	chunk    chunk index uint32, the chunk's bytes (ChunkSize, or what is
//	         left at the end of the disk)
//	state    a piece of the engine's non-RAM state (appended in order)
//	end      instruction count uint64, digest (see appendDigest), disk sum
//	         (see tableSum)
//	verdict  ok uint8, message (why the sender refuses the receiver's digest)
//
// receiver to sender:
//
//	hello    magic, version uint32, disk size uint64
//	hashes   first chunk index uint32, then SHA-256 sums of consecutive chunks
//	done     instruction count uint64, digest, disk sum: what the receiver
//	         built
//
// either way:
//
//	error    a message: the peer gives up, and says why
//
// A transfer: the sender's hello; the receiver's hello and its hashes, in
// chunk order, while the sender sends pages and chunks in any order; state
// frames, then end; the receiver's done (or error); the sender's verdict.
// Nothing follows on either side, so the connection can carry the input
// log next.
const (
	magic   = "FTVMXFER"
	Version = 1

	// ChunkSize is the unit in which disks are compared and sent.
	ChunkSize = 64 << 10

	frameHeader  = 5
	frameTrailer = 4
	// maxPayload bounds every frame: no frame makes a reader allocate
	// more than this, whatever its length field says.
	maxPayload = 1 << 20
	// maxState bounds the engine's non-RAM state (a few KiB in practice).
	maxState = 16 << 20
	// Page sizes a receiver accepts. A pages frame must hold at least one.
	minPageSize = 512
	maxPageSize = 256 << 10
	// hashesPerFrame is how many chunk sums one hashes frame carries.
	hashesPerFrame = 2048
	maxMessage     = 1024
)

const (
	frameHello byte = 1 + iota
	framePages
	frameChunk
	frameState
	frameEnd
	frameVerdict
	frameHashes
	frameDone
	frameError
)

var frameNames = [...]string{"", "hello", "pages", "chunk", "state", "end", "verdict", "hashes", "done", "error"}

func frameName(t byte) string {
	if int(t) < len(frameNames) && t != 0 {
		return frameNames[t]
	}
	return fmt.Sprintf("unknown type %d", t)
}

// ErrBadStream is wrapped by every error about a stream that is damaged,
// truncated or does not follow the protocol.
var ErrBadStream = errors.New("bad state transfer stream")

// ErrDigestMismatch is wrapped when the receiver's state differs from the
// sender's at the end of the transfer.
var ErrDigestMismatch = errors.New("state digests differ")

// ErrPeer is wrapped when the peer sent an error frame.
var ErrPeer = errors.New("the peer gave up")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameWriter frames payloads onto w and counts the bytes.
type frameWriter struct {
	w     io.Writer
	bytes int64
}

func (fw *frameWriter) write(t byte, payload []byte) error {
	var hdr [frameHeader]byte
	hdr[0] = t
	binary.LittleEndian.PutUint32(hdr[1:], uint32(len(payload)))
	crc := crc32.Update(crc32.Checksum(hdr[:], castagnoli), castagnoli, payload)
	var tr [frameTrailer]byte
	binary.LittleEndian.PutUint32(tr[:], crc)
	for _, b := range [][]byte{hdr[:], payload, tr[:]} {
		n, err := fw.w.Write(b)
		fw.bytes += int64(n)
		if err != nil {
			return err
		}
	}
	return nil
}

// frameReader reads frames from an untrusted stream. It reads exactly the
// bytes of each frame and nothing beyond, so whoever uses the connection
// after the transfer (the log stream) finds it where the transfer ended.
type frameReader struct {
	r      io.Reader
	buf    []byte
	frames int   // frames read so far
	off    int64 // bytes consumed
}

// next returns the next frame's type and payload; the payload is valid
// until the following call. Errors wrap ErrBadStream and name the frame
// and its byte offset; a connection error is wrapped as it is.
func (fr *frameReader) next() (byte, []byte, error) {
	at := fr.off
	fail := func(format string, a ...any) error {
		return fmt.Errorf("migrate: frame %d at byte %d: %w: %s", fr.frames, at, ErrBadStream, fmt.Sprintf(format, a...))
	}
	var hdr [frameHeader]byte
	if err := fr.read(hdr[:]); err != nil {
		if err == io.EOF {
			return 0, nil, fail("stream ended (truncated)")
		}
		return 0, nil, fr.readErr(fail, "header", err)
	}
	t := hdr[0]
	n := binary.LittleEndian.Uint32(hdr[1:])
	if t == 0 || int(t) >= len(frameNames) {
		return 0, nil, fail("unknown frame type %d", t)
	}
	if n > maxPayload {
		return 0, nil, fail("%s frame of %d bytes, more than the limit of %d", frameName(t), n, maxPayload)
	}
	if cap(fr.buf) < int(n) {
		fr.buf = make([]byte, n)
	}
	p := fr.buf[:n]
	if err := fr.read(p); err != nil {
		return 0, nil, fr.readErr(fail, frameName(t)+" payload", err)
	}
	var tr [frameTrailer]byte
	if err := fr.read(tr[:]); err != nil {
		return 0, nil, fr.readErr(fail, frameName(t)+" checksum", err)
	}
	if crc32.Update(crc32.Checksum(hdr[:], castagnoli), castagnoli, p) != binary.LittleEndian.Uint32(tr[:]) {
		return 0, nil, fail("%s frame: checksum mismatch", frameName(t))
	}
	fr.frames++
	return t, p, nil
}

func (fr *frameReader) read(p []byte) error {
	n, err := io.ReadFull(fr.r, p)
	fr.off += int64(n)
	return err
}

func (fr *frameReader) readErr(fail func(string, ...any) error, what string, err error) error {
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return fail("stream ended inside the %s (truncated)", what)
	}
	return fmt.Errorf("migrate: frame %d at byte %d: reading the %s: %w", fr.frames, fr.off, what, err)
}

// decoder reads fields from a payload; the first shortfall is remembered
// and reported by err.
type decoder struct {
	p   []byte
	bad bool
}

func (d *decoder) take(n int) []byte {
	if d.bad || n < 0 || len(d.p) < n {
		d.bad = true
		return make([]byte, max(n, 0))
	}
	b := d.p[:n]
	d.p = d.p[n:]
	return b
}

func (d *decoder) u8() uint8   { return d.take(1)[0] }
func (d *decoder) u32() uint32 { return binary.LittleEndian.Uint32(d.take(4)) }
func (d *decoder) u64() uint64 { return binary.LittleEndian.Uint64(d.take(8)) }

// done reports whether the payload was exactly consumed.
func (d *decoder) done() bool { return !d.bad && len(d.p) == 0 }

// appendDigest encodes a digest: sum [32], part count uint8, then per part
// name length uint8, name, sum [32].
func appendDigest(b []byte, dg vm.Digest) []byte {
	b = append(b, dg.Sum[:]...)
	b = append(b, byte(len(dg.Parts)))
	for _, p := range dg.Parts {
		b = append(b, byte(len(p.Name)))
		b = append(b, p.Name...)
		b = append(b, p.Sum[:]...)
	}
	return b
}

const maxDigestParts = 32

func (d *decoder) digest() vm.Digest {
	var dg vm.Digest
	copy(dg.Sum[:], d.take(32))
	n := int(d.u8())
	if n > maxDigestParts {
		d.bad = true
		return dg
	}
	for i := 0; i < n && !d.bad; i++ {
		name := string(d.take(int(d.u8())))
		var c vm.Component
		c.Name = name
		copy(c.Sum[:], d.take(32))
		dg.Parts = append(dg.Parts, c)
	}
	return dg
}

// diffParts names the parts of two digests that differ.
func diffParts(a, b vm.Digest) []string {
	var out []string
	for _, pa := range a.Parts {
		found := false
		for _, pb := range b.Parts {
			if pb.Name == pa.Name {
				found = true
				if pb.Sum != pa.Sum {
					out = append(out, pa.Name)
				}
			}
		}
		if !found {
			out = append(out, pa.Name+" (missing)")
		}
	}
	return out
}

// message returns a printable, bounded copy of a peer's message.
func message(p []byte) string {
	if len(p) > maxMessage {
		p = p[:maxMessage]
	}
	r := []rune(string(p))
	for i, c := range r {
		if c < 0x20 || c == 0x7f {
			r[i] = '?'
		}
	}
	return string(r)
}

func bitmapCount(b []uint64) int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

func bitSet(b []uint64, i int) bool { return b[i/64]&(1<<(i%64)) != 0 }
func setBit(b []uint64, i int)      { b[i/64] |= 1 << (i % 64) }

// tableSum digests a table of chunk hashes (all zero for no disk).
func tableSum(sums [][32]byte) [32]byte {
	if len(sums) == 0 {
		return [32]byte{}
	}
	d := sha256.New()
	for i := range sums {
		d.Write(sums[i][:])
	}
	var out [32]byte
	d.Sum(out[:0])
	return out
}

func same(ok bool) string {
	if ok {
		return "same"
	}
	return "differs"
}
