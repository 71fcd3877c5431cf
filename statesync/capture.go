package statesync

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"ftvm/vm"
)

// Capture is a checkpoint taken from a paused engine and not yet encoded:
// a copy of the pages written since the previous checkpoint, the engine's
// state and the disk writes of the epoch. Taking it is all a Remus
// primary does while its guest is paused (copies, no hashing); the
// checkpoint is encoded, with its MAC, while the guest runs on.
type Capture struct {
	Seq, Instret uint64
	Digest       [32]byte // all zero: not sent
	Pages        []int
	data         []byte // the pages' contents, PageSize each, in Pages' order
	pageSize     int
	State        []byte
	Writes       []DiskWrite
}

// Take fills c (reusing its buffers) with checkpoint seq of src, which
// must be paused (between Run calls): the pages set in dirty, src's state
// (vm.Migratable.SaveState), and writes, the disk writes made since the
// previous checkpoint (c keeps the slice). With digest, the engine's
// digest is taken too, for the receiver to check after applying; it costs
// a hash of the pages written since the last digest.
func (c *Capture) Take(src vm.Migratable, seq uint64, dirty Bitmap, writes []DiskWrite, digest bool) error {
	ps := src.PageSize()
	if !dirty.within(src.Pages()) {
		return fmt.Errorf("statesync: a dirty set beyond the engine's %d pages", src.Pages())
	}
	c.Seq, c.Instret, c.pageSize, c.Writes = seq, src.Instret(), ps, writes
	c.Pages = dirty.Indices(c.Pages[:0])
	need := len(c.Pages) * ps
	if cap(c.data) < need {
		c.data = make([]byte, need, need+need/4)
	}
	c.data = c.data[:need]
	for k, p := range c.Pages {
		if err := src.ReadPage(p, c.data[k*ps:(k+1)*ps]); err != nil {
			return fmt.Errorf("statesync: reading page %d: %w", p, err)
		}
	}
	st := bytes.NewBuffer(c.State[:0])
	if err := src.SaveState(st); err != nil {
		return fmt.Errorf("statesync: saving the state: %w", err)
	}
	c.State = st.Bytes()
	c.Digest = [32]byte{}
	if digest {
		c.Digest = src.Digest().Sum
	}
	return nil
}

// Bytes is the size of the captured pages, state and disk writes.
func (c *Capture) Bytes() int64 {
	n := int64(len(c.data) + len(c.State))
	for _, w := range c.Writes {
		n += int64(len(w.Data))
	}
	return n
}

// Encode writes the capture as checkpoint c.Seq in the checkpoint format,
// with key the replicas' shared secret, and returns its size. w should be
// buffered: the encoder writes each record's header apart.
func (c *Capture) Encode(w io.Writer, key []byte) (int64, error) {
	e, err := NewEncoder(w, key, c.Seq, c.pageSize)
	if err != nil {
		return 0, err
	}
	// The disk writes first, in their order: the receiver stages them as
	// they come, as it would from a primary sending them during the epoch.
	for _, d := range c.Writes {
		if err := e.DiskWrite(d.Off, d.Data); err != nil {
			return 0, err
		}
	}
	ps := c.pageSize
	for k, p := range c.Pages {
		if err := e.Page(p, c.data[k*ps:(k+1)*ps]); err != nil {
			return 0, err
		}
	}
	if err := e.State(c.State); err != nil {
		return 0, err
	}
	return e.End(c.Instret, c.Digest)
}

// WriteLog collects the disk writes a guest makes between two checkpoints
// (feed it from vm.Outputs.Disk), for Capture.Take. It is safe for
// concurrent use: the harts of a parallel machine write from their own
// goroutines.
type WriteLog struct {
	mu     sync.Mutex
	writes []DiskWrite
	bytes  int64
}

// Add records a write of p (copied) at byte offset off.
func (l *WriteLog) Add(off int64, p []byte) {
	l.mu.Lock()
	l.writes = append(l.writes, DiskWrite{Off: off, Data: bytes.Clone(p)})
	l.bytes += int64(len(p))
	l.mu.Unlock()
}

// Take returns the writes recorded since the last Take, and forgets them.
func (l *WriteLog) Take() []DiskWrite {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.writes
	l.writes, l.bytes = nil, 0
	return w
}

// Bytes is the size of the writes recorded since the last Take.
func (l *WriteLog) Bytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bytes
}

// ChunkLog records which chunks of a disk the guest writes (feed it from
// vm.Outputs.Disk), for a Sync's dirty set of disk chunks. It is safe for
// concurrent use.
type ChunkLog struct {
	mu     sync.Mutex
	chunk  int64
	chunks int
	bits   Bitmap
}

// NewChunkLog returns a log of the chunkSize-byte chunks of a disk of
// size bytes (chunkSize 0: DefaultChunkSize).
func NewChunkLog(size int64, chunkSize int) *ChunkLog {
	if chunkSize <= 0 {
		chunkSize = DefaultChunkSize
	}
	n := int((size + int64(chunkSize) - 1) / int64(chunkSize))
	return &ChunkLog{chunk: int64(chunkSize), chunks: n, bits: NewBitmap(n)}
}

// Add records a write of n bytes at byte offset off.
func (l *ChunkLog) Add(off int64, n int) {
	if n <= 0 || off < 0 {
		return
	}
	l.mu.Lock()
	for c := off / l.chunk; c <= (off+int64(n)-1)/l.chunk && c < int64(l.chunks); c++ {
		l.bits.Set(int(c))
	}
	l.mu.Unlock()
}

// Take returns the chunks written since the last Take, and forgets them.
func (l *ChunkLog) Take() Bitmap {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bits
	l.bits = NewBitmap(l.chunks)
	return b
}
