package migrate

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"ftvm/vm"
)

// Factory builds the receiving engine from the sender's non-RAM state (as
// written by the engine's SaveState) and the received RAM image, which the
// engine takes as it is. It must validate the state like any untrusted
// input. For the ftvm machine it is machine.MigrationFactory, which also
// names the disk and where outputs go.
type Factory func(state io.Reader, ram []byte) (vm.Migratable, error)

// DefaultMaxMemory is the largest RAM a receiver accepts unless told
// otherwise.
const DefaultMaxMemory = 1 << 30

// ReceiveOptions tune Receive. Zero fields take the defaults.
type ReceiveOptions struct {
	// MaxMemory is the largest RAM image the receiver allocates (default
	// DefaultMaxMemory). The sender's hello names the size; a larger one
	// is refused before anything is allocated.
	MaxMemory int64
}

// ReceiveStats describe a finished transfer, from the receiver's side.
type ReceiveStats struct {
	Pages         int64 // RAM pages received with contents
	ZeroPages     int64 // RAM pages received as "all zero"
	Chunks        int   // disk chunks received
	StateBytes    int
	BytesReceived int64
	BytesSent     int64
	Duration      time.Duration
	Instret       uint64
	Digest        [32]byte
}

// Receive is the other end of a Sender. disk is the backup's own copy of
// the disk image (same size as the sender's, any contents; nil when the
// machine has none): Receive hashes it, the sender sends only the chunks
// that differ, and they are written into it. When the sender has sent its
// state, Receive builds the engine with build, checks that its digest and
// instruction count are the sender's, and returns it with the disk
// flushed, ready to run (or to replay the sender's log from there).
//
// The stream is untrusted: anything damaged, truncated, inconsistent or
// out of protocol is an error (wrapping ErrBadStream or ErrDigestMismatch)
// that names what is wrong, and no length read from it makes Receive
// allocate more than the RAM size it accepted. On error the peer is told
// why (best effort); the caller should close conn. Receive reads nothing
// beyond the transfer's last frame.
func Receive(conn io.ReadWriter, disk Disk, build Factory, opts ReceiveOptions) (vm.Migratable, ReceiveStats, error) {
	if opts.MaxMemory <= 0 {
		opts.MaxMemory = DefaultMaxMemory
	}
	r := &receiver{fr: frameReader{r: conn}, disk: disk, opts: opts, start: time.Now()}
	r.bw = bufio.NewWriter(conn)
	r.fw.w = r.bw
	eng, err := r.run(build)
	r.stopHashing()
	if r.hashErr != nil && err != nil {
		err = r.hashErr // the cause; the stream error that follows is its consequence
	}
	if err != nil {
		if !errors.Is(err, ErrPeer) {
			r.send(frameError, []byte(message([]byte(err.Error()))))
		}
		return nil, ReceiveStats{}, err
	}
	r.stats.Duration = time.Since(r.start)
	r.stats.BytesReceived = r.fr.off
	r.wmu.Lock()
	r.stats.BytesSent = r.fw.bytes
	r.wmu.Unlock()
	return eng, r.stats, nil
}

type receiver struct {
	fr    frameReader
	disk  Disk
	opts  ReceiveOptions
	start time.Time
	stats ReceiveStats

	// wmu serialises writes: the hashing goroutine and the main loop both
	// write frames.
	wmu sync.Mutex
	bw  *bufio.Writer
	fw  frameWriter

	pageSize, pages int
	ram             []byte
	diskSize        int64
	nchunks         int
	// sums is the hash of every chunk of the disk: filled by the hashing
	// goroutine, then updated as chunks arrive.
	sums [][32]byte

	hashing   chan struct{} // closed when the hashing goroutine has ended
	stopHash  atomic.Bool
	hashErr   error // set by the hashing goroutine before it ends
	hashEnded bool
}

func (r *receiver) send(t byte, p []byte) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if err := r.fw.write(t, p); err != nil {
		return err
	}
	return r.bw.Flush()
}

func (r *receiver) run(build Factory) (vm.Migratable, error) {
	if err := r.hello(); err != nil {
		return nil, err
	}
	reply := append([]byte(magic), make([]byte, 12)...)
	binary.LittleEndian.PutUint32(reply[8:], Version)
	binary.LittleEndian.PutUint64(reply[12:], uint64(r.diskSize))
	if err := r.send(frameHello, reply); err != nil {
		return nil, fmt.Errorf("migrate: sending hello: %w", err)
	}
	if r.disk != nil {
		r.hashing = make(chan struct{})
		go r.hashDisk()
	}

	var state []byte
	var end struct {
		instret uint64
		digest  vm.Digest
		disk    [32]byte
	}
	for ended := false; !ended; {
		t, p, err := r.fr.next()
		if err != nil {
			return nil, err
		}
		bad := func(format string, a ...any) error {
			return fmt.Errorf("migrate: frame %d (%s): %w: %s", r.fr.frames-1, frameName(t), ErrBadStream, fmt.Sprintf(format, a...))
		}
		d := decoder{p: p}
		switch t {
		case framePages:
			if err := r.pagesFrame(&d); err != nil {
				return nil, bad("%v", err)
			}
		case frameChunk:
			c := int(d.u32())
			if d.bad || r.disk == nil || c >= r.nchunks {
				return nil, bad("chunk %d, the disk has %d chunks", c, r.nchunks)
			}
			off := int64(c) * ChunkSize
			if want := min(ChunkSize, r.diskSize-off); int64(len(d.p)) != want {
				return nil, bad("chunk %d has %d bytes, want %d", c, len(d.p), want)
			}
			// The hashes describe the disk as it was: nothing is written
			// before they are all taken.
			if err := r.waitHashing(); err != nil {
				return nil, err
			}
			if _, err := r.disk.WriteAt(d.p, off); err != nil {
				return nil, fmt.Errorf("migrate: writing disk chunk %d: %w", c, err)
			}
			r.sums[c] = sha256.Sum256(d.p)
			r.stats.Chunks++
		case frameState:
			if len(state)+len(p) > maxState {
				return nil, bad("the state exceeds %d bytes", maxState)
			}
			state = append(state, p...)
		case frameEnd:
			end.instret = d.u64()
			end.digest = d.digest()
			copy(end.disk[:], d.take(32))
			if !d.done() {
				return nil, bad("malformed")
			}
			if len(state) == 0 {
				return nil, bad("end of transfer without the engine state")
			}
			ended = true
		case frameError:
			return nil, fmt.Errorf("migrate: the sender %w: %s", ErrPeer, message(p))
		default:
			return nil, bad("not expected from a sender here")
		}
	}

	if err := r.waitHashing(); err != nil {
		return nil, err
	}
	disk := tableSum(r.sums)
	if disk != end.disk {
		return nil, fmt.Errorf("migrate: %w: the received disk's chunk hashes differ from the sender's", ErrDigestMismatch)
	}
	if r.disk != nil {
		if err := r.disk.Flush(); err != nil {
			return nil, fmt.Errorf("migrate: flushing the disk: %w", err)
		}
	}
	r.stats.StateBytes = len(state)
	eng, err := build(bytes.NewReader(state), r.ram)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w: building the engine from the received state: %v", ErrBadStream, err)
	}
	if eng.PageSize() != r.pageSize || eng.Pages() != r.pages {
		return nil, fmt.Errorf("migrate: %w: the state describes %d pages of %d bytes, the transfer %d of %d",
			ErrBadStream, eng.Pages(), eng.PageSize(), r.pages, r.pageSize)
	}
	dg := eng.Digest()
	if eng.Instret() != end.instret || dg.Sum != end.digest.Sum {
		return nil, fmt.Errorf("migrate: %w: received state at instruction %d with digest %x (parts differing: %v), the sender's at %d with %x",
			ErrDigestMismatch, eng.Instret(), dg.Sum[:8], diffParts(dg, end.digest), end.instret, end.digest.Sum[:8])
	}
	done := appendDigest(binary.LittleEndian.AppendUint64(nil, eng.Instret()), dg)
	if err := r.send(frameDone, append(done, disk[:]...)); err != nil {
		return nil, fmt.Errorf("migrate: sending done: %w", err)
	}
	t, p, err := r.fr.next()
	if err != nil {
		return nil, err
	}
	switch {
	case t == frameError:
		return nil, fmt.Errorf("migrate: the sender %w: %s", ErrPeer, message(p))
	case t != frameVerdict || len(p) == 0:
		return nil, fmt.Errorf("migrate: frame %d (%s): %w: expected the sender's verdict", r.fr.frames-1, frameName(t), ErrBadStream)
	case p[0] != 1:
		return nil, fmt.Errorf("migrate: %w: the sender refused the receiver's state: %s", ErrDigestMismatch, message(p[1:]))
	}
	r.stats.Instret, r.stats.Digest = eng.Instret(), dg.Sum
	return eng, nil
}

// hello reads and checks the sender's first frame and allocates RAM.
func (r *receiver) hello() error {
	t, p, err := r.fr.next()
	if err != nil {
		return err
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("migrate: hello: %w: %s", ErrBadStream, fmt.Sprintf(format, a...))
	}
	if t == frameError {
		return fmt.Errorf("migrate: the sender %w: %s", ErrPeer, message(p))
	}
	if t != frameHello {
		return bad("the stream starts with a %s frame", frameName(t))
	}
	d := decoder{p: p}
	m := string(d.take(8))
	v := d.u32()
	ps := int64(d.u32())
	np := d.u64()
	size := int64(d.u64())
	cs := d.u32()
	var local int64
	if r.disk != nil {
		local = r.disk.Size()
	}
	switch {
	case !d.done() || m != magic:
		return bad("not an ftvm state transfer")
	case v != Version:
		return bad("version %d, this ftvm speaks version %d", v, Version)
	case ps < minPageSize || ps > maxPageSize || ps&(ps-1) != 0:
		return bad("page size %d", ps)
	case np == 0 || np > uint64(r.opts.MaxMemory/ps):
		return bad("%d pages of %d bytes: more than the %d bytes of RAM this receiver accepts", np, ps, r.opts.MaxMemory)
	case cs != ChunkSize:
		return bad("disk chunk size %d, the protocol's is %d", cs, ChunkSize)
	case size < 0 || size != local:
		return bad("the sender's disk has %d bytes, the receiver's %d", size, local)
	}
	r.pageSize, r.pages, r.diskSize, r.nchunks = int(ps), int(np), size, chunks(size)
	r.ram = make([]byte, r.pages*r.pageSize)
	prefault(r.ram)
	r.sums = make([][32]byte, r.nchunks)
	return nil
}

func (r *receiver) pagesFrame(d *decoder) error {
	n := int(d.u32())
	if d.bad || n == 0 || n > len(d.p)/5 {
		return fmt.Errorf("page count %d in %d bytes", n, len(d.p))
	}
	for range n {
		p := int(d.u32())
		kind := d.u8()
		if d.bad || p >= r.pages {
			return fmt.Errorf("page %d, the machine has %d", p, r.pages)
		}
		dst := r.ram[p*r.pageSize : (p+1)*r.pageSize]
		switch kind {
		case 0:
			clear(dst)
			r.stats.ZeroPages++
		case 1:
			src := d.take(r.pageSize)
			if d.bad {
				return fmt.Errorf("page %d truncated", p)
			}
			copy(dst, src)
			r.stats.Pages++
		default:
			return fmt.Errorf("page %d of unknown kind %d", p, kind)
		}
	}
	if !d.done() {
		return fmt.Errorf("%d bytes after the last page", len(d.p))
	}
	return nil
}

// hashDisk sends the hashes of the receiver's disk chunks, in order.
func (r *receiver) hashDisk() {
	defer close(r.hashing)
	buf := make([]byte, ChunkSize)
	frame := make([]byte, 0, 4+32*hashesPerFrame)
	for c := 0; c < r.nchunks; {
		frame = binary.LittleEndian.AppendUint32(frame[:0], uint32(c))
		for ; c < r.nchunks && len(frame) < cap(frame); c++ {
			if r.stopHash.Load() {
				return
			}
			off := int64(c) * ChunkSize
			n := int(min(ChunkSize, r.diskSize-off))
			if k, err := r.disk.ReadAt(buf[:n], off); k < n {
				r.hashErr = fmt.Errorf("migrate: reading disk chunk %d: %v", c, err)
				r.send(frameError, []byte(r.hashErr.Error()))
				return
			}
			r.sums[c] = sha256.Sum256(buf[:n])
			frame = append(frame, r.sums[c][:]...)
		}
		if err := r.send(frameHashes, frame); err != nil {
			r.hashErr = fmt.Errorf("migrate: sending disk hashes: %w", err)
			return
		}
	}
}

// waitHashing waits for the hashing goroutine to end and returns its
// error.
func (r *receiver) waitHashing() error {
	if r.hashing == nil || r.hashEnded {
		return r.hashErr
	}
	<-r.hashing
	r.hashEnded = true
	return r.hashErr
}

// stopHashing ends the hashing goroutine early (on error) and waits for
// it, so nothing touches the disk once Receive has returned.
func (r *receiver) stopHashing() {
	r.stopHash.Store(true)
	r.waitHashing()
}
