package virtio

import (
	"errors"
	"fmt"

	"ftvm/vm"
)

// virtio-blk feature bits, request types and status values (spec 5.2.3,
// 5.2.6).
const (
	blkFSizeMax = 1 << 1 // VIRTIO_BLK_F_SIZE_MAX
	blkFSegMax  = 1 << 2 // VIRTIO_BLK_F_SEG_MAX
	blkFRO      = 1 << 5 // VIRTIO_BLK_F_RO
	blkFFlush   = 1 << 9 // VIRTIO_BLK_F_FLUSH

	blkTIn    = 0 // VIRTIO_BLK_T_IN
	blkTOut   = 1 // VIRTIO_BLK_T_OUT
	blkTFlush = 4 // VIRTIO_BLK_T_FLUSH
	blkTGetID = 8 // VIRTIO_BLK_T_GET_ID

	blkSOK     = 0 // VIRTIO_BLK_S_OK
	blkSIOErr  = 1 // VIRTIO_BLK_S_IOERR
	blkSUnsupp = 2 // VIRTIO_BLK_S_UNSUPP

	blkHdrSize = 16 // struct virtio_blk_req: type u32, reserved u32, sector u64
	blkIDBytes = 20 // VIRTIO_BLK_ID_BYTES

	// SectorSize is the virtio-blk sector unit (spec 5.2.4: capacity and
	// sector are always in 512-byte units).
	SectorSize = 512
	// BlockQueueSize is QueueNumMax of the single request queue.
	BlockQueueSize = 256
	// BlockSegMax and BlockSizeMax are advertised through SEG_MAX and
	// SIZE_MAX so a Linux guest never builds requests larger than
	// MaxBlockRequest, the per-request data cap that bounds the work a
	// single request can cause.
	BlockSegMax     = 128
	BlockSizeMax    = 64 << 10
	MaxBlockRequest = BlockSegMax * BlockSizeMax
	// BlockSerial is returned by VIRTIO_BLK_T_GET_ID.
	BlockSerial = "ftvm-disk"

	blockChunk = 64 << 10 // copy granularity between backend and guest
	// flushCost is the work a flush is charged (pace.go): the host syncs
	// the disk file.
	flushCost = 64 << 10
)

// BlockState is the snapshot state of a Block device. The device keeps no
// requests in flight (they complete inside QueueNotify), so only
// statistics remain.
type BlockState struct {
	Reads, Writes, Flushes, GetIDs uint64 // completed successfully
	Errors                         uint64 // IOERR or UNSUPP completions
}

// Block is a virtio-blk device (spec 5.2) with one request queue.
type Block struct {
	t        Transport
	backend  vm.Disk
	readOnly bool
	capacity uint64 // in sectors
	config   [24]byte
	buf      []byte
	st       BlockState
}

var _ Device = (*Block)(nil)

// NewBlock creates a virtio-blk device over backend. Its capacity is
// backend.Size() rounded down to whole sectors. With readOnly the device
// offers VIRTIO_BLK_F_RO and fails writes.
func NewBlock(backend vm.Disk, readOnly bool) *Block {
	b := &Block{backend: backend, readOnly: readOnly, buf: make([]byte, blockChunk)}
	if sz := backend.Size(); sz > 0 {
		b.capacity = uint64(sz) / SectorSize
	}
	// struct virtio_blk_config (spec 5.2.4): capacity u64, size_max u32,
	// seg_max u32, geometry (unused), blk_size (not offered).
	put64(b.config[0:], b.capacity)
	put32(b.config[8:], BlockSizeMax)
	put32(b.config[12:], BlockSegMax)
	return b
}

// Capacity is the disk size in 512-byte sectors.
func (b *Block) Capacity() uint64 { return b.capacity }

// DeviceID implements Device.
func (b *Block) DeviceID() uint32 { return DeviceIDBlock }

// Features implements Device.
func (b *Block) Features() uint64 {
	f := uint64(blkFFlush | blkFSegMax | blkFSizeMax)
	if b.readOnly {
		f |= blkFRO
	}
	return f
}

// ReadConfig implements Device.
func (b *Block) ReadConfig(offset uint64, p []byte) { readConfigBytes(b.config[:], offset, p) }

// WriteConfig implements Device: nothing is writable (the writeback field
// needs CONFIG_WCE, which is not offered).
func (b *Block) WriteConfig(offset uint64, p []byte) {}

// NumQueues implements Device.
func (b *Block) NumQueues() int { return 1 }

// MaxQueueSize implements Device.
func (b *Block) MaxQueueSize(q int) uint16 { return BlockQueueSize }

// Attach implements Device.
func (b *Block) Attach(t Transport) { b.t = t }

// Reset implements Device: no request survives a reset because none is
// ever in flight.
func (b *Block) Reset() {}

// State returns the device state.
func (b *Block) State() BlockState { return b.st }

// SetState restores a state returned by State.
func (b *Block) SetState(s BlockState) error {
	b.st = s
	return nil
}

var errBlkFrame = errors.New("virtio-blk: request without header or status byte")

// QueueNotify implements Device: process every available request
// synchronously, in ring order (spec 5.2.6).
func (b *Block) QueueNotify(qi int) {
	q := b.t.Queue(qi)
	if qi != 0 || q == nil {
		return
	}
	// At most Size() requests per notification: see Queue.Pop.
	for range q.Size() {
		c, err := q.Pop()
		if err != nil || c == nil {
			break
		}
		written, err := b.handle(c)
		if err != nil {
			b.t.Fail(err)
			break
		}
		if q.Push(c, written) != nil {
			break
		}
	}
	q.Interrupt()
}

// handle executes one request and returns the number of bytes written to
// the device-writable part (data + status byte). A returned error is
// structural (see the package documentation).
func (b *Block) handle(c *Chain) (uint32, error) {
	// Spec 5.2.6.1: a request is a 16-byte device-readable header, data,
	// and a final device-writable status byte. QEMU treats a request that
	// cannot hold both as a device error; so do we.
	if c.ReadLen < blkHdrSize || c.WriteLen < 1 {
		return 0, fmt.Errorf("%w (readable %d, writable %d)", errBlkFrame, c.ReadLen, c.WriteLen)
	}
	status := byte(blkSOK)
	var written uint64
	var hdr [blkHdrSize]byte
	if c.ReadAt(hdr[:], 0) != nil {
		status = blkSIOErr
	} else {
		typ, sector := le32(hdr[0:]), le64(hdr[8:])
		dataIn := c.WriteLen - 1 // writable bytes before the status byte
		switch typ {
		case blkTIn:
			status, written = b.read(c, sector, dataIn)
		case blkTOut:
			status = b.write(c, sector, c.ReadLen-blkHdrSize)
		case blkTFlush:
			c.Charge(flushCost)
			if b.backend.Flush() != nil {
				status = blkSIOErr
			} else {
				b.st.Flushes++
			}
		case blkTGetID:
			// Spec 5.2.6: a 20-byte, NUL-padded ID string; write what the
			// driver's buffer holds.
			var id [blkIDBytes]byte
			copy(id[:], BlockSerial)
			n := min(uint64(len(id)), dataIn)
			if c.WriteAt(id[:n], 0) != nil {
				status = blkSIOErr
			} else {
				written = n
				b.st.GetIDs++
			}
		default:
			// Spec 5.2.6.2: unsupported request types get UNSUPP.
			status = blkSUnsupp
		}
	}
	if status != blkSOK {
		b.st.Errors++
	}
	if c.WriteAt([]byte{status}, c.WriteLen-1) != nil {
		return 0, errors.New("virtio-blk: status byte outside RAM")
	}
	return uint32(written + 1), nil // written <= MaxBlockRequest
}

// rangeOK checks that n bytes starting at sector are a whole number of
// sectors inside the disk (spec 5.2.6.2: length is a multiple of 512;
// out-of-range requests fail with IOERR) and within the request cap.
func (b *Block) rangeOK(sector, n uint64) bool {
	return n%SectorSize == 0 && n <= MaxBlockRequest &&
		sector <= b.capacity && n/SectorSize <= b.capacity-sector
}

func (b *Block) read(c *Chain, sector, n uint64) (status byte, written uint64) {
	if !b.rangeOK(sector, n) {
		return blkSIOErr, 0
	}
	base := int64(sector * SectorSize) // <= backend.Size()
	for written < n {
		k := min(uint64(len(b.buf)), n-written)
		p := b.buf[:k]
		if got, err := b.backend.ReadAt(p, base+int64(written)); got != len(p) {
			_ = err // a full read with io.EOF is still a full read
			return blkSIOErr, written
		}
		if c.WriteAt(p, written) != nil {
			return blkSIOErr, written
		}
		written += k
	}
	b.st.Reads++
	return blkSOK, written
}

func (b *Block) write(c *Chain, sector, n uint64) byte {
	// Spec 5.2.6.2: with VIRTIO_BLK_F_RO offered, writes fail with IOERR
	// and no data is written.
	if b.readOnly || !b.rangeOK(sector, n) {
		return blkSIOErr
	}
	base := int64(sector * SectorSize)
	for done := uint64(0); done < n; {
		k := min(uint64(len(b.buf)), n-done)
		p := b.buf[:k]
		if c.ReadAt(p, blkHdrSize+done) != nil {
			return blkSIOErr
		}
		if got, err := b.backend.WriteAt(p, base+int64(done)); err != nil || got != len(p) {
			return blkSIOErr
		}
		done += k
	}
	b.st.Writes++
	return blkSOK
}
