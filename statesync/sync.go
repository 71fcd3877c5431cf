package statesync

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"ftvm/vm"
)

// Party names a participant: the primary and the backup replicas (the
// backup is COLO's secondary), and for repair a witness that executes
// nothing but keeps page hashes.
type Party uint8

const (
	Primary Party = iota
	Backup
	Witness
)

func (p Party) String() string {
	switch p {
	case Primary:
		return "primary"
	case Backup:
		return "backup"
	case Witness:
		return "witness"
	}
	return fmt.Sprintf("party %d", p)
}

// ErrPeer is wrapped when the peer gave up a sync and said why.
var ErrPeer = errors.New("the peer gave up")

// ErrProtocol is wrapped when the peer's messages are malformed or do not
// follow the sync protocol.
var ErrProtocol = errors.New("bad sync message")

// Sync messages. Each is one unit the caller carries whole and in order
// over a reliable, authenticated link (the replicas' mutual-TLS channel):
//
//	type uint8, sync id uint64, then by type:
//	bitmap   page count uint32, disk chunk count uint32, chunk size
//	         uint32, the dirty bitmap of the pages (count/64 words, uint64
//	         each), that of the disk chunks
//	list     the same sets as lists, when they are sparse (the usual
//	         case: a bitmap of 256 MiB of pages is 8 KiB): page count,
//	         disk chunk count and chunk size uint32, how many pages and
//	         chunks are set uint32 each, then their indices uint32,
//	         ascending
//	hashes   first position uint32, then SHA-256 sums (at most 1 MiB) of
//	         the union's pages and chunks from that position on (positions:
//	         the union's pages ascending, then its chunks ascending)
//	ckpt     a piece (at most 1 MiB) of a checkpoint (wire.go) whose
//	         sequence number is the sync id
//	done     instruction count uint64, digest [32], union sum [32]: what
//	         the backup has after applying
//	error    a message: the peer gives up, and says why
const (
	msgBitmap byte = 1 + iota
	msgHashes
	msgCkpt
	msgDone
	msgError
	msgList

	msgHeader  = 9
	maxMessage = 1 << 20
	maxText    = 1024
)

// SyncConfig describes one side of a sync.
type SyncConfig struct {
	Role Party // Primary or Backup
	// ID numbers the sync, the same on both sides (a count of syncs, say):
	// messages of another sync are refused.
	ID uint64
	// Engine is the replica's, stopped for the whole sync (between Run
	// calls); the backup's must be a vm.Syncable.
	Engine vm.Migratable
	// Disk, optional, is the replica's disk (the same size on both sides),
	// compared in ChunkSize chunks (default DefaultChunkSize).
	Disk      vm.Disk
	ChunkSize int
	// Key is the replicas' shared secret for the checkpoint's MAC.
	Key    []byte
	Hasher *Hasher // default NewHasher(0)
	Limits Limits  // of the checkpoint the backup receives
}

// SyncStats describe a sync, from one side.
type SyncStats struct {
	Pages, Chunks         int   // in the union of both sides' dirty sets, compared
	SamePages, SameChunks int   // of those, identical on both sides
	SentPages             []int // the divergent pages, sent (primary) or received (backup)
	SentChunks            []int // the divergent disk chunks
	StateBytes            int
	CheckpointBytes       int64
	BytesOut, BytesIn     int64 // sync messages
}

// Sync brings an executing backup to the primary's state by sending only
// what differs, as PLOVER does at an idle point and COLO on an output
// mismatch. Both replicas are paused. Each side starts with the pages (and
// disk chunks) it wrote since the replicas were last identical; they
// exchange these dirty bitmaps and take their union (a page neither wrote
// is the same on both); each hashes the union's pages in parallel; the
// backup sends its hashes; the primary compares and sends, as one
// checkpoint, the pages and chunks that differ and its engine state; the
// backup applies it, checks that its digest is now the primary's, and says
// what it has; the primary checks that.
//
// A Sync does no I/O: Start and Receive return the messages to send to the
// peer, and the caller delivers each message the peer sent to Receive.
// Messages may arrive before Start (the peer paused first). On an error
// the returned messages (telling the peer) should still be sent, and the
// sync is over. A page or chunk corrupted on one side outside both dirty
// sets is not compared: the digests then differ and the sync ends with
// ErrDiverged, which a repair (Compare over every page) resolves.
//
// The backup's pages written by the sync are reported by its dirty logs;
// the caller drops what they collected up to the end of the sync, since
// the replicas are identical from then on.
type Sync struct {
	cfg      SyncConfig
	dst      vm.Syncable // the backup's engine
	chunks   DiskChunks
	nchunks  int
	started  bool
	ram, dsk Bitmap // own dirty sets
	havePeer bool
	peerRAM  Bitmap
	peerDsk  Bitmap
	// The union, its own hashes (pages then chunks) and the peer's.
	union, unionChunks []int
	own, peer          []Sum
	npeer              int
	hashed             bool
	sentCkpt           bool
	digest             vm.Digest // the primary's, sent with the checkpoint
	dec                *Decoder
	done               bool
	err                error
	stats              SyncStats
}

// NewSync prepares one side of sync cfg.ID.
func NewSync(cfg SyncConfig) (*Sync, error) {
	if cfg.Role != Primary && cfg.Role != Backup {
		return nil, fmt.Errorf("statesync: a sync is between a primary and a backup, not a %v", cfg.Role)
	}
	if cfg.Hasher == nil {
		cfg.Hasher = NewHasher(0)
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	s := &Sync{cfg: cfg}
	if cfg.Disk != nil {
		s.chunks = DiskChunks{Disk: cfg.Disk, ChunkSize: cfg.ChunkSize}
		s.nchunks = s.chunks.Pages()
	}
	if cfg.Role == Backup {
		dst, ok := cfg.Engine.(vm.Syncable)
		if !ok {
			return nil, errors.New("statesync: the backup's engine cannot take state in place (not a vm.Syncable)")
		}
		s.dst = dst
		geo := Geometry{PageSize: dst.PageSize(), Pages: dst.Pages()}
		if cfg.Disk != nil {
			geo.DiskSize = cfg.Disk.Size()
		}
		dec, err := NewDecoder(cfg.Key, geo, cfg.Limits)
		if err != nil {
			return nil, err
		}
		dec.Expect(cfg.ID)
		s.dec = dec
	}
	return s, nil
}

// Done reports whether the sync completed. On the primary: the backup
// answered with the primary's instruction count, digest and union hashes.
// On the backup: it applied the primary's pages and state and its digest
// is the primary's; it may resume at once (nothing of a backup leaves),
// and should the primary find the disk chunks wrong after all, its error
// message comes next.
func (s *Sync) Done() bool { return s.done }

// Stats describe the sync so far.
func (s *Sync) Stats() SyncStats { return s.stats }

// UnionHashes returns this side's hashes of the union's pages (after the
// sync, the backup's are the primary's): what a witness keeps of the
// state both replicas share.
func (s *Sync) UnionHashes() Hashes {
	n := min(len(s.union), len(s.own))
	return Hashes{Pages: s.union[:n:n], Sums: s.own[:n:n]}
}

// Start begins this side's part with its dirty sets: the pages and disk
// chunks written since the replicas were last identical (from a dirty log
// of the engine's and the disk's write tracking; disk nil without a
// disk). It returns the messages to send.
func (s *Sync) Start(ram, disk Bitmap) ([][]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.started {
		return nil, s.fail(errors.New("statesync: sync started twice"))
	}
	if !ram.within(s.cfg.Engine.Pages()) || !disk.within(s.nchunks) {
		return nil, s.fail(fmt.Errorf("statesync: dirty sets beyond the replica's %d pages and %d disk chunks", s.cfg.Engine.Pages(), s.nchunks))
	}
	s.started = true
	// Copies of the caller's bitmaps, as long as the protocol's (the
	// caller's may be shorter, or longer with nothing set beyond).
	s.ram, s.dsk = NewBitmap(s.cfg.Engine.Pages()), NewBitmap(s.nchunks)
	copy(s.ram, ram)
	copy(s.dsk, disk)
	out := [][]byte{s.bitmapMsg()}
	if s.havePeer {
		more, err := s.afterBitmaps()
		out = append(out, more...)
		if err != nil {
			return s.out(out), s.fail(err)
		}
	}
	return s.out(out), nil
}

// Receive handles one message from the peer and returns the messages to
// send.
func (s *Sync) Receive(msg []byte) ([][]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	s.stats.BytesIn += int64(len(msg))
	out, err := s.receive(msg)
	if err != nil {
		s.fail(err)
		if !errors.Is(err, ErrPeer) {
			out = append(out, s.msg(msgError, []byte(truncate(err.Error(), maxText))))
		}
		return s.out(out), s.err
	}
	return s.out(out), nil
}

func (s *Sync) receive(msg []byte) ([][]byte, error) {
	if len(msg) < msgHeader {
		return nil, s.bad("a message of %d bytes", len(msg))
	}
	t, id, p := msg[0], binary.LittleEndian.Uint64(msg[1:]), msg[msgHeader:]
	if id != s.cfg.ID {
		return nil, s.bad("a message of sync %d during sync %d", id, s.cfg.ID)
	}
	if s.done && t != msgError {
		return nil, s.bad("a message after the sync completed")
	}
	if len(p) > maxMessage+64 && t != msgBitmap && t != msgList {
		return nil, s.bad("a message of %d bytes", len(msg))
	}
	switch t {
	case msgBitmap, msgList:
		if s.havePeer {
			return nil, s.bad("a second bitmap")
		}
		decode := s.peerBitmap
		if t == msgList {
			decode = s.peerList
		}
		if err := decode(p); err != nil {
			return nil, err
		}
		s.havePeer = true
		if !s.started {
			return nil, nil
		}
		return s.afterBitmaps()
	case msgHashes:
		if s.cfg.Role != Primary || !s.hashed || s.sentCkpt {
			return nil, s.bad("hashes not expected here")
		}
		if len(p) < 4+32 || (len(p)-4)%32 != 0 {
			return nil, s.bad("hashes message of %d bytes", len(p))
		}
		first, n := int(binary.LittleEndian.Uint32(p)), (len(p)-4)/32
		if first != s.npeer || n > len(s.peer)-s.npeer {
			return nil, s.bad("hashes %d to %d, expected from %d of %d", first, first+n, s.npeer, len(s.peer))
		}
		for k := range n {
			copy(s.peer[first+k][:], p[4+32*k:])
		}
		s.npeer += n
		if s.npeer < len(s.peer) {
			return nil, nil
		}
		return s.sendCheckpoint()
	case msgCkpt:
		if s.cfg.Role != Backup || !s.hashed {
			return nil, s.bad("checkpoint not expected here")
		}
		for len(p) > 0 {
			n, c, err := s.dec.Feed(p)
			if err != nil {
				return nil, err
			}
			p = p[n:]
			if c != nil {
				if len(p) > 0 {
					return nil, s.bad("%d bytes after the checkpoint", len(p))
				}
				return s.apply(c)
			}
		}
		return nil, nil
	case msgDone:
		if s.cfg.Role != Primary || !s.sentCkpt || len(p) != 8+32+32 {
			return nil, s.bad("done not expected here")
		}
		instret := binary.LittleEndian.Uint64(p)
		var dg, us [32]byte
		copy(dg[:], p[8:])
		copy(us[:], p[40:])
		if instret != s.cfg.Engine.Instret() || dg != s.digest.Sum {
			return nil, fmt.Errorf("statesync: sync %d: %w: the backup is at instruction %d with digest %x, the primary at %d with %x (%s)",
				s.cfg.ID, ErrDiverged, instret, dg[:8], s.cfg.Engine.Instret(), s.digest.Sum[:8], partSums(s.digest))
		}
		if us != unionSum(s.own) {
			return nil, fmt.Errorf("statesync: sync %d: %w: the backup's pages or disk chunks of the union differ from the primary's", s.cfg.ID, ErrDiverged)
		}
		s.done = true
		return nil, nil
	case msgError:
		return nil, fmt.Errorf("statesync: sync %d: the %v %w: %s", s.cfg.ID, s.other(), ErrPeer, printable(p))
	}
	return nil, s.bad("unknown message type %d", t)
}

func (s *Sync) other() Party { return 1 - s.cfg.Role }

// IsErrorMessage reports whether msg is a sync's (or a mend's) error
// message: a side that gave up, telling the other why.
func IsErrorMessage(msg []byte) bool { return len(msg) > 0 && msg[0] == msgError }

func (s *Sync) bitmapMsg() []byte {
	np := s.cfg.Engine.Pages()
	p := binary.LittleEndian.AppendUint32(nil, uint32(np))
	p = binary.LittleEndian.AppendUint32(p, uint32(s.nchunks))
	p = binary.LittleEndian.AppendUint32(p, uint32(s.cfg.ChunkSize))
	nr, nd := s.ram.Count(), s.dsk.Count()
	if 4*(nr+nd+2) < 8*(len(s.ram)+len(s.dsk)) {
		p = binary.LittleEndian.AppendUint32(p, uint32(nr))
		p = binary.LittleEndian.AppendUint32(p, uint32(nd))
		for _, set := range []Bitmap{s.ram, s.dsk} {
			for _, i := range set.Indices(nil) {
				p = binary.LittleEndian.AppendUint32(p, uint32(i))
			}
		}
		return s.msg(msgList, p)
	}
	for _, w := range s.ram {
		p = binary.LittleEndian.AppendUint64(p, w)
	}
	for _, w := range s.dsk {
		p = binary.LittleEndian.AppendUint64(p, w)
	}
	return s.msg(msgBitmap, p)
}

// peerList reads the peer's sets sent as lists.
func (s *Sync) peerList(p []byte) error {
	np, nc := s.cfg.Engine.Pages(), s.nchunks
	if len(p) < 20 {
		return s.bad("list of %d bytes", len(p))
	}
	pn, pc, cs := binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint32(p[4:]), binary.LittleEndian.Uint32(p[8:])
	if int64(pn) != int64(np) || int64(pc) != int64(nc) || (nc > 0 && int64(cs) != int64(s.cfg.ChunkSize)) {
		return s.bad("the %v has %d pages and %d disk chunks of %d bytes, this replica %d and %d of %d",
			s.other(), pn, pc, cs, np, nc, s.cfg.ChunkSize)
	}
	nr, nd := int64(binary.LittleEndian.Uint32(p[12:])), int64(binary.LittleEndian.Uint32(p[16:]))
	if nr > int64(np) || nd > int64(nc) || int64(len(p)) != 20+4*(nr+nd) {
		return s.bad("list of %d pages and %d chunks in %d bytes", nr, nd, len(p))
	}
	s.peerRAM, s.peerDsk = NewBitmap(np), NewBitmap(nc)
	q := p[20:]
	for k, set := range []Bitmap{s.peerRAM, s.peerDsk} {
		n, limit := nr, np
		if k == 1 {
			n, limit = nd, nc
		}
		prev := -1
		for range n {
			i := int(binary.LittleEndian.Uint32(q))
			q = q[4:]
			if i >= limit || i <= prev {
				return s.bad("list with index %d (after %d, of %d)", i, prev, limit)
			}
			set.Set(i)
			prev = i
		}
	}
	return nil
}

func (s *Sync) peerBitmap(p []byte) error {
	np, nc := s.cfg.Engine.Pages(), s.nchunks
	if len(p) < 12 {
		return s.bad("bitmap of %d bytes", len(p))
	}
	pn, pc, cs := binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint32(p[4:]), binary.LittleEndian.Uint32(p[8:])
	if int64(pn) != int64(np) || int64(pc) != int64(nc) || (nc > 0 && int64(cs) != int64(s.cfg.ChunkSize)) {
		return s.bad("the %v has %d pages and %d disk chunks of %d bytes, this replica %d and %d of %d",
			s.other(), pn, pc, cs, np, nc, s.cfg.ChunkSize)
	}
	wr, wc := (np+63)/64, (nc+63)/64
	if len(p) != 12+8*(wr+wc) {
		return s.bad("bitmap of %d bytes, want %d", len(p), 12+8*(wr+wc))
	}
	s.peerRAM, s.peerDsk = NewBitmap(np), NewBitmap(nc)
	for i := range s.peerRAM {
		s.peerRAM[i] = binary.LittleEndian.Uint64(p[12+8*i:])
	}
	for i := range s.peerDsk {
		s.peerDsk[i] = binary.LittleEndian.Uint64(p[12+8*(wr+i):])
	}
	if !s.peerRAM.within(np) || !s.peerDsk.within(nc) {
		return s.bad("bitmap with bits beyond the last page or chunk")
	}
	return nil
}

// afterBitmaps hashes the union; the backup sends its hashes.
func (s *Sync) afterBitmaps() ([][]byte, error) {
	s.union = Union(nil, s.ram, s.peerRAM).Indices(nil)
	s.unionChunks = Union(nil, s.dsk, s.peerDsk).Indices(nil)
	own, err := s.cfg.Hasher.Hash(s.cfg.Engine, s.union, nil)
	if err != nil {
		return nil, err
	}
	if len(s.unionChunks) > 0 {
		cs, err := s.cfg.Hasher.Hash(s.chunks, s.unionChunks, nil)
		if err != nil {
			return nil, err
		}
		own = append(own, cs...)
	}
	s.own, s.hashed = own, true
	s.stats.Pages, s.stats.Chunks = len(s.union), len(s.unionChunks)
	if s.cfg.Role == Primary {
		s.peer = make([]Sum, len(own))
		if len(own) == 0 {
			return s.sendCheckpoint()
		}
		return nil, nil
	}
	var out [][]byte
	const per = maxMessage / 32
	for first := 0; first < len(own); first += per {
		p := binary.LittleEndian.AppendUint32(nil, uint32(first))
		for _, h := range own[first:min(first+per, len(own))] {
			p = append(p, h[:]...)
		}
		out = append(out, s.msg(msgHashes, p))
	}
	return out, nil
}

// sendCheckpoint compares the hashes and sends what differs, with the
// state.
func (s *Sync) sendCheckpoint() ([][]byte, error) {
	s.sentCkpt = true
	eng := s.cfg.Engine
	for k, p := range s.union {
		if s.own[k] == s.peer[k] {
			s.stats.SamePages++
		} else {
			s.stats.SentPages = append(s.stats.SentPages, p)
		}
	}
	for k, c := range s.unionChunks {
		if s.own[len(s.union)+k] == s.peer[len(s.union)+k] {
			s.stats.SameChunks++
		} else {
			s.stats.SentChunks = append(s.stats.SentChunks, c)
		}
	}
	var buf bytes.Buffer
	enc, err := NewEncoder(&buf, s.cfg.Key, s.cfg.ID, eng.PageSize())
	if err != nil {
		return nil, err
	}
	if _, err := enc.Pages(eng, s.stats.SentPages); err != nil {
		return nil, err
	}
	chunk := make([]byte, s.cfg.ChunkSize)
	for _, c := range s.stats.SentChunks {
		if err := s.chunks.ReadPage(c, chunk); err != nil {
			return nil, err
		}
		off, n, _ := s.chunks.chunk(c, chunk)
		if err := enc.DiskWrite(off, chunk[:n]); err != nil {
			return nil, err
		}
	}
	var st bytes.Buffer
	if err := eng.SaveState(&st); err != nil {
		return nil, fmt.Errorf("statesync: saving the engine state: %w", err)
	}
	if err := enc.State(st.Bytes()); err != nil {
		return nil, err
	}
	s.digest = eng.Digest()
	size, err := enc.End(eng.Instret(), s.digest.Sum)
	if err != nil {
		return nil, err
	}
	s.stats.StateBytes, s.stats.CheckpointBytes = st.Len(), size
	var out [][]byte
	for b := buf.Bytes(); len(b) > 0; {
		n := min(len(b), maxMessage)
		out = append(out, s.msg(msgCkpt, b[:n]))
		b = b[n:]
	}
	return out, nil
}

// apply puts the primary's checkpoint into the backup and reports.
func (s *Sync) apply(c *Checkpoint) ([][]byte, error) {
	defer s.dec.Release(c)
	if err := c.Apply(s.dst, s.cfg.Disk); err != nil {
		return nil, err
	}
	s.stats.SentPages = append([]int(nil), c.Pages...)
	s.stats.StateBytes, s.stats.CheckpointBytes = len(c.State), c.Size
	// Bring the union's hashes up to date with what was written.
	var pos []int
	for _, p := range c.Pages {
		if k := sort.SearchInts(s.union, p); k < len(s.union) && s.union[k] == p {
			pos = append(pos, k)
		}
	}
	rehash := make([]int, len(pos))
	for i, k := range pos {
		rehash[i] = s.union[k]
	}
	sums, err := s.cfg.Hasher.Hash(s.dst, rehash, nil)
	if err != nil {
		return nil, err
	}
	for i, k := range pos {
		s.own[k] = sums[i]
	}
	if len(c.Writes) > 0 {
		touched := NewBitmap(s.nchunks)
		for _, w := range c.Writes {
			for ch := w.Off / int64(s.cfg.ChunkSize); ch*int64(s.cfg.ChunkSize) < w.Off+int64(len(w.Data)); ch++ {
				touched.Set(int(ch))
			}
		}
		s.stats.SentChunks = touched.Indices(nil)
		var pos, rehash []int
		for _, ch := range s.stats.SentChunks {
			if k := sort.SearchInts(s.unionChunks, ch); k < len(s.unionChunks) && s.unionChunks[k] == ch {
				pos, rehash = append(pos, len(s.union)+k), append(rehash, ch)
			}
		}
		sums, err := s.cfg.Hasher.Hash(s.chunks, rehash, nil)
		if err != nil {
			return nil, err
		}
		for i, k := range pos {
			s.own[k] = sums[i]
		}
	}
	dg := s.dst.Digest()
	us := unionSum(s.own)
	p := binary.LittleEndian.AppendUint64(nil, s.dst.Instret())
	p = append(p, dg.Sum[:]...)
	p = append(p, us[:]...)
	out := [][]byte{s.msg(msgDone, p)}
	if dg.Sum != c.Digest || s.dst.Instret() != c.Instret {
		return out, fmt.Errorf("statesync: sync %d: %w: after applying, the backup is at instruction %d with digest %x (%s), the primary at %d with %x",
			s.cfg.ID, ErrDiverged, s.dst.Instret(), dg.Sum[:8], partSums(dg), c.Instret, c.Digest[:8])
	}
	s.done = true
	return out, nil
}

func (s *Sync) msg(t byte, p []byte) []byte {
	m := make([]byte, msgHeader, msgHeader+len(p))
	m[0] = t
	binary.LittleEndian.PutUint64(m[1:], s.cfg.ID)
	return append(m, p...)
}

func (s *Sync) out(msgs [][]byte) [][]byte {
	for _, m := range msgs {
		s.stats.BytesOut += int64(len(m))
	}
	return msgs
}

func (s *Sync) bad(format string, a ...any) error {
	return fmt.Errorf("statesync: sync %d: %w from the %v: %s", s.cfg.ID, ErrProtocol, s.other(), fmt.Sprintf(format, a...))
}

func (s *Sync) fail(err error) error {
	if s.err == nil {
		s.err = err
	}
	return s.err
}

// unionSum digests the hashes of the union, in order.
func unionSum(sums []Sum) [32]byte {
	d := sha256.New()
	for i := range sums {
		d.Write(sums[i][:])
	}
	var out [32]byte
	d.Sum(out[:0])
	return out
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// printable returns a bounded, printable copy of a peer's message.
func printable(p []byte) string {
	r := []rune(truncate(string(p), maxText))
	for i, c := range r {
		if c < 0x20 || c == 0x7f {
			r[i] = '?'
		}
	}
	return string(r)
}

// partSums names the parts of a digest with the start of each one's sum.
// A replica that finds its digest differs from its peer's says so in its
// error; the peer's error says the same of its own, and the parts whose
// sums differ are the state that differs.
func partSums(dg vm.Digest) string {
	var b strings.Builder
	for i, p := range dg.Parts {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s %x", p.Name, p.Sum[:4])
	}
	return b.String()
}

// diffParts names the parts of two digests that differ (a part one of
// them lacks counts as differing), or says the peer sent none.
func diffParts(own, peer []vm.Component) string {
	if len(peer) == 0 {
		return "the peer named no parts"
	}
	var diff []string
	for _, a := range own {
		same := false
		for _, b := range peer {
			if b.Name == a.Name {
				same = b.Sum == a.Sum
			}
		}
		if !same {
			diff = append(diff, a.Name)
		}
	}
	for _, b := range peer {
		if !slices.ContainsFunc(own, func(a vm.Component) bool { return a.Name == b.Name }) {
			diff = append(diff, b.Name)
		}
	}
	if len(diff) == 0 {
		return "none of the parts"
	}
	return strings.Join(diff, ", ")
}
