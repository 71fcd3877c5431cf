package statesync

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"slices"

	"ftvm/vm"
)

// The checkpoint format. Integers are little-endian.
//
//	header   magic "FTVMCKPT", version uint32, page size uint32, sequence
//	         number uint64
//	records, each a type byte and its fields:
//	  page   index uint32, kind uint8 (0: all zero, 1: the page's bytes
//	         follow), the page for kind 1
//	  state  length uint32 (1 to 1 MiB), that many bytes of the engine's
//	         state (vm.Migratable.SaveState), appended to the previous
//	         state records' bytes
//	  disk   offset uint64, length uint32 (1 to 1 MiB), the bytes written
//	         to the disk there
//	  end    instruction count uint64, digest [32] (the sender's
//	         vm.Engine digest after the checkpoint; all zero: not given),
//	         page records uint32, state bytes uint32, disk records uint32,
//	         length uint64 (the checkpoint's bytes from the magic to this
//	         field included), then
//	         mac [32]: HMAC-SHA256, under the replicas' shared key, of
//	         every byte before it from the magic on.
//
// Records come in any order (a Remus primary sends the epoch's disk writes
// as the guest makes them and its pages and state at the pause); a page
// appears at most once; disk writes are applied in their order. Nothing
// of a checkpoint is applied before its MAC has been checked, so a
// checkpoint cut anywhere (torn) is never applied, and one altered or
// made without the key (forged) is refused. The sequence number lets a
// receiver refuse a checkpoint replayed or skipped; the counts and length
// check the decoder's own framing.
const (
	magic = "FTVMCKPT"
	// Version is the checkpoint format's version.
	Version = 1

	headerSize = 8 + 4 + 4 + 8
	macSize    = sha256.Size
	endSize    = 8 + 32 + 4 + 4 + 4 + 8

	// maxRecord bounds a state or disk record: an encoder splits longer
	// ones.
	maxRecord = 1 << 20

	minPageSize = 512
	maxPageSize = 1 << 20
)

const (
	recPage  byte = 1
	recState byte = 2
	recDisk  byte = 3
	recEnd   byte = 4
)

// ErrBadCheckpoint is wrapped by every error about a checkpoint that is
// damaged, forged, out of sequence, over the limits or otherwise not
// acceptable. Nothing of such a checkpoint has been applied.
var ErrBadCheckpoint = errors.New("checkpoint refused")

// Encoder writes one checkpoint. Records may be added in any order until
// End. Each method returns the first error met (writing to w, or a
// misuse); after an error the checkpoint is unusable.
type Encoder struct {
	w        io.Writer
	mac      hash.Hash
	pageSize int
	n        int64 // bytes written
	pages    int
	state    int
	writes   int
	buf      []byte
	err      error
	ended    bool
}

// NewEncoder starts checkpoint seq of pages of pageSize bytes on w, with
// key the replicas' shared secret (from which the MAC is made; an empty
// key makes the MAC a plain checksum, which catches damage but not
// forgery). It writes the header.
func NewEncoder(w io.Writer, key []byte, seq uint64, pageSize int) (*Encoder, error) {
	if pageSize < minPageSize || pageSize > maxPageSize {
		return nil, fmt.Errorf("statesync: page size %d outside [%d, %d]", pageSize, minPageSize, maxPageSize)
	}
	e := &Encoder{w: w, mac: hmac.New(sha256.New, key), pageSize: pageSize, buf: make([]byte, 0, pageSize)}
	h := append([]byte(magic), make([]byte, headerSize-len(magic))...)
	binary.LittleEndian.PutUint32(h[8:], Version)
	binary.LittleEndian.PutUint32(h[12:], uint32(pageSize))
	binary.LittleEndian.PutUint64(h[16:], seq)
	return e, e.write(h)
}

func (e *Encoder) write(b []byte) error {
	if e.err != nil {
		return e.err
	}
	if e.ended {
		e.err = errors.New("statesync: checkpoint record after End")
		return e.err
	}
	e.mac.Write(b)
	n, err := e.w.Write(b)
	e.n += int64(n)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	e.err = err
	return err
}

// Page adds RAM page i with contents p (PageSize bytes). Each page may be
// added once per checkpoint.
func (e *Encoder) Page(i int, p []byte) error {
	if len(p) != e.pageSize || i < 0 || i > math.MaxUint32 {
		return e.fail(fmt.Errorf("statesync: page %d of %d bytes in a checkpoint of %d-byte pages", i, len(p), e.pageSize))
	}
	b := binary.LittleEndian.AppendUint32(append(e.buf[:0], recPage), uint32(i))
	if isZero(p) {
		b = append(b, 0)
		e.pages++
		return e.write(b)
	}
	b = append(b, 1)
	if err := e.write(b); err != nil {
		return err
	}
	e.pages++
	return e.write(p)
}

// Pages adds the pages of src listed in pages, read from src, and returns
// how many were all zero.
func (e *Encoder) Pages(src PageReader, pages []int) (zero int, err error) {
	buf := make([]byte, e.pageSize)
	for _, p := range pages {
		if err := src.ReadPage(p, buf); err != nil {
			return zero, e.fail(fmt.Errorf("statesync: reading page %d: %w", p, err))
		}
		if isZero(buf) {
			zero++
		}
		if err := e.Page(p, buf); err != nil {
			return zero, err
		}
	}
	return zero, nil
}

// State adds the engine's state (what vm.Migratable.SaveState wrote). It
// may be called several times; the pieces are concatenated.
func (e *Encoder) State(st []byte) error {
	for len(st) > 0 {
		n := min(len(st), maxRecord)
		b := binary.LittleEndian.AppendUint32(append(e.buf[:0], recState), uint32(n))
		if err := e.write(b); err != nil {
			return err
		}
		if err := e.write(st[:n]); err != nil {
			return err
		}
		e.state += n
		st = st[n:]
	}
	return nil
}

// DiskWrite adds a disk write of p at byte offset off, made by the guest
// since the previous checkpoint (vm.Outputs.Disk tells of each).
func (e *Encoder) DiskWrite(off int64, p []byte) error {
	if off < 0 {
		return e.fail(fmt.Errorf("statesync: disk write at offset %d", off))
	}
	for len(p) > 0 {
		n := min(len(p), maxRecord)
		b := binary.LittleEndian.AppendUint64(append(e.buf[:0], recDisk), uint64(off))
		b = binary.LittleEndian.AppendUint32(b, uint32(n))
		if err := e.write(b); err != nil {
			return err
		}
		if err := e.write(p[:n]); err != nil {
			return err
		}
		e.writes++
		off += int64(n)
		p = p[n:]
	}
	return nil
}

// End completes the checkpoint with the sender's instruction count and,
// unless all zero, its digest (which the receiver compares with its own
// after applying), and returns the checkpoint's size in bytes.
func (e *Encoder) End(instret uint64, digest [32]byte) (int64, error) {
	b := binary.LittleEndian.AppendUint64(append(e.buf[:0], recEnd), instret)
	b = append(b, digest[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(e.pages))
	b = binary.LittleEndian.AppendUint32(b, uint32(e.state))
	b = binary.LittleEndian.AppendUint32(b, uint32(e.writes))
	b = binary.LittleEndian.AppendUint64(b, uint64(e.n+int64(len(b))+8))
	if err := e.write(b); err != nil {
		return 0, err
	}
	e.ended = true
	mac := e.mac.Sum(nil)
	n, err := e.w.Write(mac)
	e.n += int64(n)
	if err == nil && n < len(mac) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return 0, e.fail(err)
	}
	return e.n, nil
}

func (e *Encoder) fail(err error) error {
	if e.err == nil {
		e.err = err
	}
	return e.err
}

// Checkpoint is a complete checkpoint, authenticated and checked against
// the receiver's geometry and limits.
type Checkpoint struct {
	Seq     uint64
	Instret uint64
	Digest  [32]byte // all zero: not given
	// Pages are the indices of the pages it carries, in the order
	// received; Data holds their contents (nil for an all-zero page).
	Pages []int
	Data  [][]byte
	State []byte // nil: none
	// Writes are the disk writes, to be applied in this order.
	Writes []DiskWrite
	Size   int64 // bytes on the wire
}

// DiskWrite is one disk write of a checkpoint.
type DiskWrite struct {
	Off  int64
	Data []byte
}

// ZeroPages counts the pages sent as all zero.
func (c *Checkpoint) ZeroPages() int {
	n := 0
	for _, d := range c.Data {
		if d == nil {
			n++
		}
	}
	return n
}

// DiskBytes is the number of bytes the disk writes carry.
func (c *Checkpoint) DiskBytes() int64 {
	var n int64
	for _, w := range c.Writes {
		n += int64(len(w.Data))
	}
	return n
}

// Apply puts the checkpoint into dst and disk: the state first (a state
// dst refuses leaves dst and disk unchanged, and nothing else is
// applied), then the pages, then the disk writes in order, then the state
// once more: writing a page is a write to memory, which clears the
// LR/SC reservations a hart holds on it, and the reservations must be
// the checkpoint's. disk may be nil when the checkpoint has no disk
// writes. An error after the state was loaded (a failing disk) leaves the
// replica partly updated.
func (c *Checkpoint) Apply(dst PageWriter, disk vm.Disk) error {
	var sl interface{ LoadState(io.Reader) error }
	if c.State != nil {
		var ok bool
		if sl, ok = dst.(interface{ LoadState(io.Reader) error }); !ok {
			return errors.New("statesync: the checkpoint carries a state and the replica cannot load one")
		}
		if err := sl.LoadState(bytes.NewReader(c.State)); err != nil {
			return fmt.Errorf("statesync: checkpoint %d: %w: its state: %v", c.Seq, ErrBadCheckpoint, err)
		}
	}
	if len(c.Pages) > 0 {
		zero := make([]byte, dst.PageSize())
		for k, p := range c.Pages {
			d := c.Data[k]
			if d == nil {
				d = zero
			}
			if err := dst.WritePage(p, d); err != nil {
				return fmt.Errorf("statesync: checkpoint %d: %w", c.Seq, err)
			}
		}
	}
	if len(c.Writes) > 0 && disk == nil {
		return fmt.Errorf("statesync: checkpoint %d has disk writes and the replica no disk", c.Seq)
	}
	for _, w := range c.Writes {
		if _, err := disk.WriteAt(w.Data, w.Off); err != nil {
			return fmt.Errorf("statesync: checkpoint %d: disk write at %d: %w", c.Seq, w.Off, err)
		}
	}
	if sl != nil && len(c.Pages) > 0 {
		if err := sl.LoadState(bytes.NewReader(c.State)); err != nil {
			return fmt.Errorf("statesync: checkpoint %d: its state, again: %v", c.Seq, err)
		}
	}
	return nil
}

// Geometry is what a receiver's replica is made of, against which a
// checkpoint is checked: page size and count, disk size (0: no disk).
type Geometry struct {
	PageSize int
	Pages    int
	DiskSize int64
}

// Limits bound what one checkpoint may make a decoder allocate. Zero
// fields take the defaults. Pages are bounded by the geometry (each page
// at most once).
type Limits struct {
	MaxState  int   // engine state bytes (default 16 MiB)
	MaxDisk   int64 // disk write bytes (default 256 MiB)
	MaxWrites int   // disk write records (default 65536)
}

func (l *Limits) setDefaults() {
	if l.MaxState <= 0 {
		l.MaxState = 16 << 20
	}
	if l.MaxDisk <= 0 {
		l.MaxDisk = 256 << 20
	}
	if l.MaxWrites <= 0 {
		l.MaxWrites = 1 << 16
	}
}

type phase uint8

const (
	phHeader phase = iota // the fixed header
	phType                // a record's type byte
	phFields              // a record's fixed fields
	phBody                // a page, state or disk record's bytes
	phMAC                 // the end record's MAC
)

// Decoder reads a stream of checkpoints from an untrusted peer. It is fed
// the bytes as they arrive, in pieces of any size, and hands over each
// checkpoint once it is complete and its MAC checked. It never allocates
// more than what it has been fed (plus one page), and never beyond the
// geometry and the limits.
type Decoder struct {
	geo Geometry
	lim Limits

	expect    uint64
	hasExpect bool

	mac   hash.Hash
	ph    phase
	typ   byte
	fix   [endSize + macSize]byte
	nfix  int // bytes of fix filled
	want  int // bytes fix must hold for the current phase
	body  []byte
	nbody int
	cur   *Checkpoint
	n     int64 // bytes of the current checkpoint fed so far
	seen  Bitmap
	state int
	disk  int64
	err   error
	free  [][]byte // page buffers of applied checkpoints, for reuse
}

// NewDecoder returns a decoder for checkpoints made with key, for a
// replica of geometry geo.
func NewDecoder(key []byte, geo Geometry, lim Limits) (*Decoder, error) {
	if geo.PageSize < minPageSize || geo.PageSize > maxPageSize || geo.Pages <= 0 || geo.Pages > math.MaxUint32 || geo.DiskSize < 0 {
		return nil, fmt.Errorf("statesync: geometry %+v", geo)
	}
	lim.setDefaults()
	d := &Decoder{geo: geo, lim: lim, mac: hmac.New(sha256.New, key),
		seen: NewBitmap(geo.Pages)}
	d.Reset()
	return d, nil
}

// Expect makes the decoder refuse any checkpoint whose sequence number is
// not seq, as soon as its header arrives.
func (d *Decoder) Expect(seq uint64) { d.expect, d.hasExpect = seq, true }

// Reset drops the checkpoint being received, if any (the stream broke: it
// is torn) and any error, and expects a header next.
func (d *Decoder) Reset() {
	d.recycle(d.cur)
	d.err = nil
	d.next()
}

// next gets ready for the header of the next checkpoint.
func (d *Decoder) next() {
	d.cur = nil
	d.ph, d.nfix, d.want, d.n = phHeader, 0, headerSize, 0
	d.body, d.nbody = nil, 0
	d.mac.Reset()
	clear(d.seen)
	d.state, d.disk = 0, 0
}

// Partial is the number of bytes received of a checkpoint not yet
// complete (0 between checkpoints).
func (d *Decoder) Partial() int64 { return d.n }

// Release gives the page buffers of a checkpoint back for reuse, once
// it has been applied (and is no longer used).
func (d *Decoder) Release(c *Checkpoint) { d.recycle(c) }

func (d *Decoder) recycle(c *Checkpoint) {
	if c == nil {
		return
	}
	for _, b := range c.Data {
		if b != nil && len(d.free) < 1024 {
			d.free = append(d.free, b)
		}
	}
	c.Data = nil
}

// Feed consumes bytes of the stream from p, up to and including the end
// of the current checkpoint, and returns how many it took and, when that
// checkpoint is complete and authentic, the checkpoint. The caller feeds
// the rest of p again. An error (wrapping ErrBadCheckpoint) ends the
// stream: the checkpoint being received is dropped and every later Feed
// returns the same error until Reset.
func (d *Decoder) Feed(p []byte) (n int, c *Checkpoint, err error) {
	if d.err != nil {
		return 0, nil, d.err
	}
	for n < len(p) {
		var k int
		k, c, err = d.step(p[n:])
		n += k
		if err != nil {
			d.recycle(d.cur)
			d.cur = nil
			d.err = fmt.Errorf("statesync: checkpoint byte %d: %w: %v", d.n, ErrBadCheckpoint, err)
			return n, nil, d.err
		}
		if c != nil {
			return n, c, nil
		}
	}
	return n, nil, nil
}

// step consumes bytes for the current phase.
func (d *Decoder) step(p []byte) (int, *Checkpoint, error) {
	if d.ph == phBody {
		k := copy(d.body[d.nbody:], p)
		d.nbody += k
		d.consume(p[:k])
		if d.nbody == len(d.body) {
			d.ph, d.want = phType, 1
		}
		return k, nil, nil
	}
	k := copy(d.fix[d.nfix:d.want], p)
	d.nfix += k
	if d.ph != phMAC {
		d.consume(p[:k])
	} else {
		d.n += int64(k)
	}
	if d.nfix < d.want {
		return k, nil, nil
	}
	f := d.fix[:d.want]
	d.nfix = 0
	switch d.ph {
	case phHeader:
		return k, nil, d.header(f)
	case phType:
		return k, nil, d.recordType(f[0])
	case phFields:
		return k, nil, d.fields(f)
	case phMAC:
		c, err := d.finish(f)
		return k, c, err
	}
	return k, nil, errors.New("decoder in an unknown phase")
}

func (d *Decoder) consume(b []byte) {
	d.mac.Write(b)
	d.n += int64(len(b))
}

func (d *Decoder) header(f []byte) error {
	switch {
	case string(f[:8]) != magic:
		return errors.New("not a checkpoint (bad magic)")
	case binary.LittleEndian.Uint32(f[8:]) != Version:
		return fmt.Errorf("version %d, this ftvm reads version %d", binary.LittleEndian.Uint32(f[8:]), Version)
	case int(binary.LittleEndian.Uint32(f[12:])) != d.geo.PageSize:
		return fmt.Errorf("pages of %d bytes, the replica's are %d", binary.LittleEndian.Uint32(f[12:]), d.geo.PageSize)
	}
	seq := binary.LittleEndian.Uint64(f[16:])
	if d.hasExpect && seq != d.expect {
		return fmt.Errorf("sequence number %d, expected %d", seq, d.expect)
	}
	d.cur = &Checkpoint{Seq: seq}
	d.ph, d.want = phType, 1
	return nil
}

func (d *Decoder) recordType(t byte) error {
	d.typ = t
	switch t {
	case recPage:
		d.want = 5
	case recState:
		d.want = 4
	case recDisk:
		d.want = 12
	case recEnd:
		d.want = endSize
	default:
		return fmt.Errorf("unknown record type %d", t)
	}
	d.ph = phFields
	return nil
}

func (d *Decoder) fields(f []byte) error {
	c := d.cur
	switch d.typ {
	case recPage:
		i := int(binary.LittleEndian.Uint32(f))
		if i >= d.geo.Pages {
			return fmt.Errorf("page %d, the replica has %d", i, d.geo.Pages)
		}
		if d.seen.Has(i) {
			return fmt.Errorf("page %d twice", i)
		}
		d.seen.Set(i)
		c.Pages = append(c.Pages, i)
		switch f[4] {
		case 0:
			c.Data = append(c.Data, nil)
			d.ph, d.want = phType, 1
			return nil
		case 1:
			buf := d.page()
			c.Data = append(c.Data, buf)
			d.startBody(buf)
			return nil
		}
		return fmt.Errorf("page %d of unknown kind %d", i, f[4])
	case recState:
		n := int(binary.LittleEndian.Uint32(f))
		if n == 0 || n > maxRecord || d.state+n > d.lim.MaxState {
			return fmt.Errorf("state record of %d bytes after %d (limit %d)", n, d.state, d.lim.MaxState)
		}
		d.state += n
		start := len(c.State)
		c.State = slices.Grow(c.State, n)[:start+n]
		d.startBody(c.State[start:])
		return nil
	case recDisk:
		off := binary.LittleEndian.Uint64(f)
		n := int64(binary.LittleEndian.Uint32(f[8:]))
		switch {
		case d.geo.DiskSize == 0:
			return errors.New("disk write for a replica without a disk")
		case n == 0 || n > maxRecord:
			return fmt.Errorf("disk record of %d bytes", n)
		case off > uint64(d.geo.DiskSize) || n > d.geo.DiskSize-int64(off):
			return fmt.Errorf("disk write of %d bytes at %d, the disk has %d", n, off, d.geo.DiskSize)
		case d.disk+n > d.lim.MaxDisk || len(c.Writes) >= d.lim.MaxWrites:
			return fmt.Errorf("more than %d bytes or %d disk writes", d.lim.MaxDisk, d.lim.MaxWrites)
		}
		d.disk += n
		buf := make([]byte, n)
		c.Writes = append(c.Writes, DiskWrite{Off: int64(off), Data: buf})
		d.startBody(buf)
		return nil
	case recEnd:
		c.Instret = binary.LittleEndian.Uint64(f)
		copy(c.Digest[:], f[8:40])
		pages := int(binary.LittleEndian.Uint32(f[40:]))
		state := int(binary.LittleEndian.Uint32(f[44:]))
		writes := int(binary.LittleEndian.Uint32(f[48:]))
		length := binary.LittleEndian.Uint64(f[52:])
		if pages != len(c.Pages) || state != d.state || writes != len(c.Writes) || length != uint64(d.n) {
			return fmt.Errorf("end record counts (%d pages, %d state bytes, %d disk writes, %d bytes) differ from the checkpoint's (%d, %d, %d, %d)",
				pages, state, writes, length, len(c.Pages), d.state, len(c.Writes), d.n)
		}
		d.ph, d.want = phMAC, macSize
		return nil
	}
	return errors.New("unknown record")
}

// page returns a page buffer, reused when possible.
func (d *Decoder) page() []byte {
	if n := len(d.free); n > 0 {
		b := d.free[n-1]
		d.free = d.free[:n-1]
		return b
	}
	return make([]byte, d.geo.PageSize)
}

func (d *Decoder) startBody(b []byte) {
	d.body, d.nbody, d.ph = b, 0, phBody
}

// finish checks the MAC and hands the checkpoint over.
func (d *Decoder) finish(mac []byte) (*Checkpoint, error) {
	if !hmac.Equal(mac, d.mac.Sum(nil)) {
		return nil, errors.New("MAC mismatch (forged, made with another key, or damaged)")
	}
	c := d.cur
	c.Size = d.n
	if c.State != nil && len(c.State) == 0 {
		c.State = nil
	}
	d.next()
	return c, nil
}
