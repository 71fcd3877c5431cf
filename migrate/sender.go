package migrate

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"sync"
	"time"

	"ftvm/vm"
)

// Options tune a Sender. Zero fields take the defaults.
type Options struct {
	// StepBytes is roughly how much one Step sends or reads (default
	// 4 MiB): the caller runs the guest between Steps, so this bounds how
	// long each Step keeps the guest waiting.
	StepBytes int
	// Pre-copy ends when a round would send again at most ConvergePages
	// RAM pages (default 1024, 4 MiB) and ConvergeChunks disk chunks
	// (default 16, 1 MiB), which Finish then sends with the guest
	// stopped; or after MaxRounds rounds (default 30) whatever the guest
	// keeps writing, so a guest that dirties memory faster than it can
	// be sent still gets moved (with a longer pause, see Stats).
	ConvergePages  int
	ConvergeChunks int
	MaxRounds      int
}

func (o *Options) setDefaults() {
	if o.StepBytes <= 0 {
		o.StepBytes = 4 << 20
	}
	if o.ConvergePages <= 0 {
		o.ConvergePages = 1024
	}
	if o.ConvergeChunks <= 0 {
		o.ConvergeChunks = 16
	}
	if o.MaxRounds <= 0 {
		o.MaxRounds = 30
	}
}

// Stats describe a finished transfer, from the sender's side.
type Stats struct {
	Rounds        int   // pre-copy rounds, the first (full) pass included
	PagesSent     int64 // RAM pages sent with their contents
	ZeroPagesSent int64 // RAM pages sent as "all zero"
	PausePages    int   // of those, pages sent by Finish
	ChunksDiffer  int   // disk chunks that differed from the receiver's copy
	ChunksSent    int   // disk chunks sent, the differing ones and the ones the guest wrote
	PauseChunks   int   // of those, chunks sent by Finish
	StateBytes    int   // the engine's non-RAM state
	BytesSent     int64
	BytesReceived int64
	PreCopy       time.Duration // from NewSender to Finish
	Pause         time.Duration // Finish, the guest stopped, confirmation included
	Confirm       time.Duration // the part of Pause spent waiting for the receiver's digest
	Instret       uint64        // where the receiver continues
	Digest        [32]byte      // the state both sides agreed on
}

// pagesFrameBytes is the size at which a pages frame is sent.
const pagesFrameBytes = 256 << 10

// Sender transfers an engine's state to a Receive at the other end of a
// connection while the engine keeps running. It is driven by the caller's
// run loop, which owns the engine: Step and Finish are called between Run
// calls, from the goroutine that runs the engine.
//
//	s, err := migrate.NewSender(conn, m, td, migrate.Options{})
//	for done := false; !done && err == nil; {
//		m.Run(m.Instret() + slice) // the guest keeps running
//		done, err = s.Step()       // sends a bounded amount
//	}
//	stats, err := s.Finish() // guest stopped: last pages, chunks, state; waits for the digest
//
// The connection may be used for something else (the input log) once
// Finish has returned without error: the transfer reads nothing beyond its
// last frame. After an error the transfer is over; the caller should close
// the connection, which also ends the goroutine that reads the receiver's
// replies.
type Sender struct {
	bw   *bufio.Writer
	fw   frameWriter
	src  vm.Migratable
	disk *TrackedDisk
	opts Options
	log  vm.DirtyLog
	rx   *inbox

	pageSize, pages int
	zero            []byte // an all-zero page

	// RAM: round is the number of rounds started; todo the pages still to
	// send in the current round from cursor on (the first round looks at
	// every page and skips zero ones: the receiver's RAM starts zeroed).
	round      int
	firstRound bool
	todo       []uint64
	cursor     int
	frame      []byte // pages frame being built (count, entries)
	frameCount int
	pending    []uint64 // pages written during the last round, for Finish
	converged  bool

	// Disk: chunks compared with the receiver's hashes so far, chunks the
	// guest wrote still to send from chunkCursor on, and those written
	// during the last round, for Finish.
	nchunks       int
	compared      int
	chunkTodo     []uint64
	chunkCursor   int
	pendingChunks []uint64
	chunkBuf      []byte
	// sums is the SHA-256 of each chunk as the receiver has it: its own
	// hash where the chunks agreed, the hash of what was sent otherwise.
	// Both sides digest their table at the end, which catches a chunk
	// lost or altered on the way.
	sums [][32]byte

	pausing bool      // in Finish: count what is sent as pause traffic
	final   vm.Digest // the digest sent in the end frame
	start   time.Time
	stats   Stats
	err     error
	done    bool
}

// NewSender starts a transfer of src over conn. disk is the machine's disk
// backend as installed with TrackWrites (nil when the machine has none).
// It sends the first frame; the rest is sent by Step and Finish.
func NewSender(conn io.ReadWriter, src vm.Migratable, disk *TrackedDisk, opts Options) (*Sender, error) {
	opts.setDefaults()
	ps, np := src.PageSize(), src.Pages()
	if ps < minPageSize || ps > maxPageSize || ps&(ps-1) != 0 || np <= 0 || uint64(np) > math.MaxUint32 {
		return nil, fmt.Errorf("migrate: the engine has %d pages of %d bytes, which the protocol cannot carry", np, ps)
	}
	s := &Sender{src: src, disk: disk, opts: opts, pageSize: ps, pages: np,
		zero: make([]byte, ps), firstRound: true, round: 1, start: time.Now()}
	s.bw = bufio.NewWriterSize(conn, 256<<10)
	s.fw.w = s.bw
	var size int64
	if disk != nil {
		size = disk.Size()
		s.nchunks = chunks(size)
		s.chunkTodo = make([]uint64, (s.nchunks+63)/64)
		s.chunkBuf = make([]byte, 4+ChunkSize)
		s.sums = make([][32]byte, s.nchunks)
		// Writes from now on are sent again; what was written before is
		// what the comparison with the receiver's copy looks at.
		disk.collect(nil)
	}
	s.log = src.TrackDirty()
	// The digest keeps page hashes of its own; bringing them up to date
	// now, and at each round, keeps the final digest (taken while the
	// guest is stopped) down to the pages written in the last round.
	src.Digest()
	s.rx = newInbox(s.nchunks)
	fr := &frameReader{r: conn}
	go s.rx.readLoop(fr, size)

	hello := append([]byte(magic), make([]byte, 28)...)
	binary.LittleEndian.PutUint32(hello[8:], Version)
	binary.LittleEndian.PutUint32(hello[12:], uint32(ps))
	binary.LittleEndian.PutUint64(hello[16:], uint64(np))
	binary.LittleEndian.PutUint64(hello[24:], uint64(size))
	binary.LittleEndian.PutUint32(hello[32:], ChunkSize)
	if err := s.fw.write(frameHello, hello); err != nil {
		s.log.Stop()
		return nil, fmt.Errorf("migrate: sending hello: %w", err)
	}
	if err := s.bw.Flush(); err != nil {
		s.log.Stop()
		return nil, fmt.Errorf("migrate: sending hello: %w", err)
	}
	return s, nil
}

// Step sends about Options.StepBytes of pre-copy traffic (pages, disk
// chunks) and reports whether pre-copy has converged: then the caller
// should stop running the guest and call Finish. Step never waits for the
// receiver, except when the connection itself pushes back.
func (s *Sender) Step() (converged bool, err error) {
	if s.done {
		return false, errors.New("migrate: Step after Finish")
	}
	if s.err != nil {
		return false, s.err
	}
	if err := s.rx.failed(); err != nil {
		return false, s.fail(err)
	}
	if s.converged {
		return true, nil
	}
	budget := s.opts.StepBytes
	for budget > 0 && !s.converged {
		var err error
		switch {
		case s.cursor < s.pages:
			err = s.sendRound(&budget)
		case s.chunksLeft():
			err = s.sendChunks(&budget)
		case s.compared < s.nchunks:
			var progressed bool
			progressed, err = s.compareDisk(&budget, false)
			if err == nil && !progressed {
				budget = 0 // waiting for the receiver's hashes
			}
		default:
			s.endRound()
		}
		if err != nil {
			return false, s.fail(err)
		}
	}
	if err := s.flush(); err != nil {
		return false, s.fail(err)
	}
	return s.converged, nil
}

// endRound looks at what the guest wrote during the round that just ended
// and either starts another round with it or declares convergence.
func (s *Sender) endRound() {
	d := s.log.Collect(nil)
	var cd []uint64
	if s.disk != nil {
		cd = s.disk.collect(nil)
	}
	s.src.Digest()
	n, nc := bitmapCount(d), bitmapCount(cd)
	if (n <= s.opts.ConvergePages && nc <= s.opts.ConvergeChunks) || s.round >= s.opts.MaxRounds {
		s.pending, s.pendingChunks = d, cd
		s.converged = true
		return
	}
	s.round++
	s.firstRound = false
	s.todo, s.cursor = d, 0
	orInto(s.chunkTodo, cd)
	s.chunkCursor = 0
}

// Finish completes the transfer with the guest stopped (between Run
// calls): it sends what is left of the current round and every page and
// chunk written since, then the engine's non-RAM state and its digest,
// and waits until the receiver has built its engine and confirmed the same
// digest at the same instruction count. It may be called before Step has
// converged (the pause is then longer). Do not run the engine until
// Finish has returned.
func (s *Sender) Finish() (Stats, error) {
	if s.done {
		return Stats{}, errors.New("migrate: Finish called twice")
	}
	s.done = true
	if s.err != nil {
		return Stats{}, s.err
	}
	defer s.log.Stop()
	pauseStart := time.Now()
	s.stats.PreCopy = pauseStart.Sub(s.start)
	s.pausing = true
	if err := s.finish(); err != nil {
		return Stats{}, s.fail(err)
	}
	confirmStart := time.Now()
	done, err := s.rx.waitDone()
	if err != nil {
		return Stats{}, s.fail(err)
	}
	s.stats.Confirm = time.Since(confirmStart)
	dg := s.final
	disk := tableSum(s.sums)
	if done.instret != s.src.Instret() || done.digest.Sum != dg.Sum || done.disk != disk {
		msg := fmt.Sprintf("the receiver is at instruction %d with digest %x (parts differing: %v, disk %s), the sender at %d with %x",
			done.instret, done.digest.Sum[:8], diffParts(dg, done.digest), same(done.disk == disk), s.src.Instret(), dg.Sum[:8])
		s.fw.write(frameVerdict, append([]byte{0}, msg...))
		s.bw.Flush()
		return Stats{}, s.fail(fmt.Errorf("migrate: %w: %s", ErrDigestMismatch, msg))
	}
	if err := s.fw.write(frameVerdict, []byte{1}); err != nil {
		return Stats{}, s.fail(err)
	}
	if err := s.bw.Flush(); err != nil {
		return Stats{}, s.fail(err)
	}
	s.stats.Pause = time.Since(pauseStart)
	s.stats.Rounds = s.round
	s.stats.BytesSent = s.fw.bytes
	s.stats.BytesReceived = s.rx.bytesRead()
	s.stats.Instret = s.src.Instret()
	s.stats.Digest = dg.Sum
	return s.stats, nil
}

func (s *Sender) finish() error {
	unlimited := math.MaxInt
	if err := s.sendRound(&unlimited); err != nil {
		return err
	}
	final := s.log.Collect(nil)
	if s.pending != nil {
		orInto(final, s.pending)
	}
	s.firstRound = false
	s.todo, s.cursor = final, 0
	if err := s.sendRound(&unlimited); err != nil {
		return err
	}
	if s.disk != nil {
		if _, err := s.compareDisk(&unlimited, true); err != nil {
			return err
		}
		orInto(s.chunkTodo, s.disk.collect(nil))
		if s.pendingChunks != nil {
			orInto(s.chunkTodo, s.pendingChunks)
		}
		s.chunkCursor = 0
		if err := s.sendChunks(&unlimited); err != nil {
			return err
		}
	}
	var st bytes.Buffer
	if err := s.src.SaveState(&st); err != nil {
		return fmt.Errorf("migrate: saving the engine state: %w", err)
	}
	if st.Len() == 0 || st.Len() > maxState {
		return fmt.Errorf("migrate: the engine state has %d bytes (the protocol carries 1 to %d)", st.Len(), maxState)
	}
	s.stats.StateBytes = st.Len()
	for b := st.Bytes(); len(b) > 0; {
		n := min(len(b), maxPayload)
		if err := s.fw.write(frameState, b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	end := binary.LittleEndian.AppendUint64(nil, s.src.Instret())
	s.final = s.src.Digest()
	end = appendDigest(end, s.final)
	sum := tableSum(s.sums)
	end = append(end, sum[:]...)
	if err := s.fw.write(frameEnd, end); err != nil {
		return err
	}
	return s.bw.Flush()
}

// Close abandons a transfer that has not finished: the engine stops
// keeping dirty bits for it and the receiver is told (best effort). It does
// nothing after Finish or an error; it does not close the connection.
func (s *Sender) Close() {
	if !s.done && s.err == nil {
		s.fail(errors.New("migrate: the sender abandoned the transfer"))
	}
	s.done = true
}

// fail ends the transfer with err, telling the receiver why (best effort).
func (s *Sender) fail(err error) error {
	if s.err == nil {
		s.err = err
		s.log.Stop() // the transfer is over: the engine need not keep its bits
		// Even when the receiver gave up first: its main loop may be
		// waiting for a frame (its disk hashing failed, say) and this
		// ends the wait.
		s.fw.write(frameError, []byte(message([]byte(err.Error()))))
		s.bw.Flush()
	}
	return s.err
}

func (s *Sender) flush() error {
	if err := s.flushPages(); err != nil {
		return err
	}
	return s.bw.Flush()
}

// sendRound sends pages of the current round until the budget is spent or
// the round is complete.
func (s *Sender) sendRound(budget *int) error {
	for s.cursor < s.pages && *budget > 0 {
		p := s.cursor
		if !s.firstRound {
			w := s.todo[p/64] >> (p % 64)
			if w == 0 {
				s.cursor = (p/64 + 1) * 64
				continue
			}
			p += bits.TrailingZeros64(w)
			if p >= s.pages {
				s.cursor = s.pages
				break
			}
		}
		s.cursor = p + 1
		cost, err := s.addPage(p)
		if err != nil {
			return err
		}
		*budget -= cost
	}
	if s.cursor >= s.pages {
		return s.flushPages()
	}
	return nil
}

// addPage puts page p into the pages frame being built and returns what
// it cost against the step budget.
func (s *Sender) addPage(p int) (int, error) {
	if s.frameCount > 0 && len(s.frame)+5+s.pageSize > pagesFrameBytes {
		if err := s.flushPages(); err != nil {
			return 0, err
		}
	}
	if s.frame == nil {
		s.frame = make([]byte, 4, pagesFrameBytes+5+s.pageSize)
	}
	at := len(s.frame)
	s.frame = binary.LittleEndian.AppendUint32(s.frame, uint32(p))
	s.frame = append(s.frame, 1)
	s.frame = append(s.frame, s.zero...)
	pg := s.frame[at+5:]
	if err := s.src.ReadPage(p, pg); err != nil {
		return 0, fmt.Errorf("migrate: reading page %d: %w", p, err)
	}
	if bytes.Equal(pg, s.zero) {
		if s.firstRound {
			s.frame = s.frame[:at] // the receiver's RAM starts zeroed
			return 64, nil
		}
		s.frame[at+4] = 0
		s.frame = s.frame[:at+5]
		s.frameCount++
		s.stats.ZeroPagesSent++
		return 5, nil
	}
	s.frameCount++
	s.stats.PagesSent++
	if s.pausing {
		s.stats.PausePages++
	}
	return 5 + s.pageSize, nil
}

func (s *Sender) flushPages() error {
	if s.frameCount == 0 {
		return nil
	}
	binary.LittleEndian.PutUint32(s.frame, uint32(s.frameCount))
	err := s.fw.write(framePages, s.frame)
	s.frame, s.frameCount = s.frame[:4], 0
	return err
}

func (s *Sender) chunksLeft() bool {
	for w := s.chunkCursor / 64; w < len(s.chunkTodo); w++ {
		if s.chunkTodo[w] != 0 {
			return true
		}
	}
	return false
}

// sendChunks sends the chunks in chunkTodo until the budget is spent.
func (s *Sender) sendChunks(budget *int) error {
	for c := s.chunkCursor; c < s.nchunks && *budget > 0; c++ {
		s.chunkCursor = c + 1
		if !bitSet(s.chunkTodo, c) {
			continue
		}
		s.chunkTodo[c/64] &^= 1 << (c % 64)
		n, err := s.readChunk(c)
		if err != nil {
			return err
		}
		if err := s.sendChunk(c, n, sha256.Sum256(s.chunkBuf[4:4+n])); err != nil {
			return err
		}
		*budget -= n
	}
	return nil
}

// readChunk reads chunk c into chunkBuf[4:] and returns its length. The
// chunk's written bit is cleared first: whatever is read goes to the
// receiver (or is found equal to its copy), and a write that lands after
// the clear marks the chunk again.
func (s *Sender) readChunk(c int) (int, error) {
	s.disk.clearChunk(c)
	off := int64(c) * ChunkSize
	n := int(min(ChunkSize, s.disk.Size()-off))
	if k, err := s.disk.d.ReadAt(s.chunkBuf[4:4+n], off); k < n {
		return 0, fmt.Errorf("migrate: reading disk chunk %d: %v", c, err)
	}
	return n, nil
}

// sendChunk sends chunk c, read into chunkBuf, whose hash is sum.
func (s *Sender) sendChunk(c, n int, sum [32]byte) error {
	s.sums[c] = sum
	binary.LittleEndian.PutUint32(s.chunkBuf, uint32(c))
	if err := s.fw.write(frameChunk, s.chunkBuf[:4+n]); err != nil {
		return err
	}
	s.stats.ChunksSent++
	if s.pausing {
		s.stats.PauseChunks++
	}
	return nil
}

// compareDisk hashes the sender's chunks against the receiver's hashes as
// they arrive and sends those that differ. Unless wait is set it stops at
// the first hash not yet received; it reports whether it did anything.
func (s *Sender) compareDisk(budget *int, wait bool) (bool, error) {
	progressed := false
	for s.compared < s.nchunks && *budget > 0 {
		c := s.compared
		theirs, ok, err := s.rx.hash(c, wait)
		if err != nil {
			return progressed, err
		}
		if !ok {
			return progressed, nil
		}
		n, err := s.readChunk(c)
		if err != nil {
			return progressed, err
		}
		s.compared++
		progressed = true
		*budget -= n
		ours := sha256.Sum256(s.chunkBuf[4 : 4+n])
		if ours == theirs {
			s.sums[c] = theirs
			continue
		}
		s.stats.ChunksDiffer++
		// A chunk also marked as written is sent now with its current
		// contents; it needs no second copy unless written again.
		s.chunkTodo[c/64] &^= 1 << (c % 64)
		if err := s.sendChunk(c, n, ours); err != nil {
			return progressed, err
		}
		*budget -= n
	}
	return progressed, nil
}

func orInto(dst, src []uint64) {
	for i := range min(len(dst), len(src)) {
		dst[i] |= src[i]
	}
}

// inbox holds what the receiver has sent, filled by readLoop.
type inbox struct {
	mu      sync.Mutex
	wake    chan struct{} // signalled after every change
	hello   bool
	hashes  [][32]byte
	nhashes int
	done    *doneMsg
	err     error
	bytes   int64
}

type doneMsg struct {
	instret uint64
	digest  vm.Digest
	disk    [32]byte
}

func newInbox(nchunks int) *inbox {
	return &inbox{wake: make(chan struct{}, 1), hashes: make([][32]byte, nchunks)}
}

// readLoop reads the receiver's frames until its done frame or an error.
// The receiver is as untrusted as any peer: what it sends is checked.
func (in *inbox) readLoop(fr *frameReader, diskSize int64) {
	err := in.read(fr, diskSize)
	in.mu.Lock()
	if err != nil && in.err == nil {
		in.err = err
	}
	in.bytes = fr.off
	in.mu.Unlock()
	in.signal()
}

func (in *inbox) read(fr *frameReader, diskSize int64) error {
	for {
		t, p, err := fr.next()
		if err != nil {
			return err
		}
		bad := func(format string, a ...any) error {
			return fmt.Errorf("migrate: the receiver's frame %d (%s): %w: %s", fr.frames-1, frameName(t), ErrBadStream, fmt.Sprintf(format, a...))
		}
		in.mu.Lock()
		hello := in.hello
		in.mu.Unlock()
		if t != frameHello && t != frameError && !hello {
			return bad("before the hello")
		}
		d := decoder{p: p}
		switch t {
		case frameHello:
			m := string(d.take(8))
			v := d.u32()
			size := int64(d.u64())
			switch {
			case hello:
				return bad("a second hello")
			case !d.done() || m != magic:
				return bad("not an ftvm state transfer")
			case v != Version:
				return bad("version %d, this ftvm speaks version %d", v, Version)
			case size != diskSize:
				return bad("the receiver's disk has %d bytes, the sender's %d", size, diskSize)
			}
			in.update(func() { in.hello = true })
		case frameHashes:
			first := int(d.u32())
			if d.bad || len(d.p)%32 != 0 {
				return bad("malformed")
			}
			n := len(d.p) / 32
			in.mu.Lock()
			ok := first == in.nhashes && n > 0 && n <= len(in.hashes)-first
			if ok {
				for i := range n {
					copy(in.hashes[first+i][:], d.p[i*32:])
				}
				in.nhashes += n
			}
			in.mu.Unlock()
			if !ok {
				return bad("hashes of chunks %d..%d, expected the next from chunk %d of %d", first, first+n, in.nhashes, len(in.hashes))
			}
			in.signal()
		case frameDone:
			var dm doneMsg
			dm.instret = d.u64()
			dm.digest = d.digest()
			copy(dm.disk[:], d.take(32))
			if !d.done() {
				return bad("malformed")
			}
			in.update(func() { in.done, in.bytes = &dm, fr.off })
			return nil // the receiver's last frame: nothing more is read
		case frameError:
			return fmt.Errorf("migrate: the receiver %w: %s", ErrPeer, message(p))
		default:
			return bad("not a frame a receiver sends")
		}
	}
}

func (in *inbox) update(f func()) {
	in.mu.Lock()
	f()
	in.mu.Unlock()
	in.signal()
}

func (in *inbox) signal() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

func (in *inbox) failed() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.err
}

func (in *inbox) bytesRead() int64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.bytes
}

// hash returns the receiver's hash of chunk c, waiting for it if wait is
// set.
func (in *inbox) hash(c int, wait bool) ([32]byte, bool, error) {
	for {
		in.mu.Lock()
		h, have, err, done := in.hashes[c], c < in.nhashes, in.err, in.done != nil
		in.mu.Unlock()
		if have {
			return h, true, nil
		}
		if err != nil {
			return h, false, err
		}
		if done {
			return h, false, fmt.Errorf("migrate: %w: the receiver finished without hashing disk chunk %d", ErrBadStream, c)
		}
		if !wait {
			return h, false, nil
		}
		<-in.wake
	}
}

// waitDone waits for the receiver's done frame.
func (in *inbox) waitDone() (doneMsg, error) {
	for {
		in.mu.Lock()
		d, err := in.done, in.err
		in.mu.Unlock()
		if d != nil {
			return *d, nil
		}
		if err != nil {
			return doneMsg{}, err
		}
		<-in.wake
	}
}
