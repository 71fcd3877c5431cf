package virtio

import (
	"bytes"
	"testing"

	"ftvm/internal/testsupport"
)

// floodBlock posts n block requests of MaxBlockRequest bytes each: every
// chain is one indirect descriptor naming the same table, a header, 128
// descriptors of 64 KiB over the same guest buffer, and a status byte. It
// returns the addresses of the buffer and of the status byte.
func floodBlock(e *blkEnv, typ uint32, n int) (data, status uint64) {
	q := e.q[0]
	hdr := e.alloc(16, 16)
	e.mem.w32(hdr, typ)
	data = e.alloc(BlockSizeMax, 8)
	status = e.alloc(1, 1)
	tbl := e.alloc(16*(BlockSegMax+2), 16)
	dataFlag := uint16(descFNext)
	if typ == blkTIn {
		dataFlag |= descFWrite
	}
	e.mem.desc(tbl, 0, hdr, 16, descFNext, 1)
	for i := 1; i <= BlockSegMax; i++ {
		e.mem.desc(tbl, i, data, BlockSizeMax, dataFlag, uint16(i+1))
	}
	e.mem.desc(tbl, BlockSegMax+1, status, 1, descFWrite, 0)
	for i := range n {
		head := q.free[len(q.free)-1]
		q.free = q.free[:len(q.free)-1]
		q.chains[head] = []uint16{head}
		e.mem.desc(q.desc, int(head), tbl, 16*(BlockSegMax+2), descFIndirect, 0)
		e.mem.w16(q.avail+4+2*uint64((int(q.availIdx)+i)%int(q.num)), head)
	}
	q.availIdx += uint16(n)
	e.mem.w16(q.avail+2, q.availIdx)
	return data, status
}

// TestPacedNotifyBounded: a hostile driver makes 256 requests of 8 MiB
// available (2 GiB of copying) and notifies again and again. With a pace,
// one notification does at most Burst bytes of work plus one request,
// further notifications do nothing until guest time passes, the work then
// resumes at the transport's Deadline, all requests complete, and a
// legitimate request made behind them completes too.
func TestPacedNotifyBounded(t *testing.T) {
	disk := testsupport.NewDisk(bytes.Repeat([]byte{0xa5}, MaxBlockRequest))
	e := newBlkEnv(t, disk, false, 256)
	var now uint64
	changed := 0
	const burst, rate = 1 << 20, 4096
	e.m.SetPace(Pace{Now: func() uint64 { return now }, Changed: func() { changed++ }, BytesPerTick: rate, Burst: burst})
	const maxChain = MaxBlockRequest + 16 + 1 + ChainCost
	moved := func() uint64 { return e.mem.readBytes + e.mem.writtenBytes }

	const n = 253 // and 3 descriptors for a legitimate request
	_, status := floodBlock(e, blkTIn, n)
	before := moved()
	e.notify(0)
	first := moved() - before
	t.Logf("the first notification moved %d bytes (burst %d, one request %d)", first, burst, maxChain)
	if first > burst+maxChain {
		t.Fatalf("one notification moved %d bytes, more than the burst plus one request (%d)", first, burst+maxChain)
	}
	if changed != 1 || e.m.Deadline() == ^uint64(0) || e.m.Deadline() <= now {
		t.Fatalf("queue not deferred: %d changes, deadline %d at %d", changed, e.m.Deadline(), now)
	}
	for range 100 {
		before = moved()
		e.notify(0)
		if d := moved() - before; d > 64 {
			t.Fatalf("a notification while the device waits moved %d bytes", d)
		}
	}
	// A legitimate request behind the flood.
	_, _, legitStatus := e.req(blkTOut, 3, pattern(512, 7), 512)
	e.notify(0)

	done := len(e.used(0))
	steps := 0
	for done < n+1 {
		dl := e.m.Deadline()
		if dl == ^uint64(0) {
			t.Fatalf("%d of %d requests done and nothing deferred (needs reset %v: %v)", done, n+1, e.needsReset(), e.m.Err())
		}
		// Just before the deadline nothing happens.
		now = dl - 1
		before = moved()
		e.m.Update()
		if moved() != before {
			t.Fatalf("work resumed before the deadline")
		}
		now = dl
		e.m.Update()
		if d := moved() - before; d > burst+maxChain {
			t.Fatalf("resuming moved %d bytes", d)
		}
		done += len(e.used(0))
		steps++
	}
	t.Logf("%d requests of %d bytes took %d resumptions and %d ticks of guest time", n, MaxBlockRequest, steps, now)
	if e.mem.bytes(status, 1)[0] != blkSOK || e.mem.bytes(legitStatus, 1)[0] != blkSOK {
		t.Fatalf("statuses %d and %d", e.mem.bytes(status, 1)[0], e.mem.bytes(legitStatus, 1)[0])
	}
	if !bytes.Equal(disk.Bytes()[3*512:4*512], pattern(512, 7)) {
		t.Fatalf("the legitimate write did not reach the disk")
	}
	// Guest time paid for the work: at least what was moved beyond the
	// burst, at the device's rate.
	if min := (uint64(n)*MaxBlockRequest - burst) / rate; now < min {
		t.Errorf("all done after %d ticks, the pace allows no less than %d", now, min)
	}
}
