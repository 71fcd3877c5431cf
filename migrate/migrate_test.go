package migrate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"ftvm/internal/fakevm"
	"ftvm/internal/testsupport"
	"ftvm/vm"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (a, b net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		acc <- c
	}()
	a, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-acc
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

type recvResult struct {
	eng   vm.Migratable
	stats ReceiveStats
	err   error
}

// receiveAsync runs Receive on conn in a goroutine.
func receiveAsync(conn io.ReadWriter, disk Disk, build Factory, opts ReceiveOptions) <-chan recvResult {
	ch := make(chan recvResult, 1)
	go func() {
		e, s, err := Receive(conn, disk, build, opts)
		ch <- recvResult{e, s, err}
	}()
	return ch
}

// migrateRunning transfers src while running it slice instructions
// between Steps, the way a primary's run loop does.
func migrateRunning(t testing.TB, conn io.ReadWriter, src vm.Migratable, disk *TrackedDisk, opts Options, slice uint64) (Stats, error) {
	t.Helper()
	s, err := NewSender(conn, src, disk, opts)
	if err != nil {
		return Stats{}, err
	}
	// A fake engine runs no time at all, so while the sender waits for the
	// receiver (its disk hashes, its error) Steps come back at once: bound
	// the wait by time, not by a number of steps.
	deadline := time.Now().Add(time.Minute)
	for {
		src.Run(src.Instret() + slice)
		done, err := s.Step()
		if err != nil {
			return Stats{}, err
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pre-copy never converged")
		}
	}
	return s.Finish()
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b
}

// TestTransferWhileRunning moves a running fake engine with a disk it
// writes to over TCP: the receiver ends at the same instruction count with
// the same digest and the same disk bytes, stays identical when both run
// on, and the connection is left exactly at the end of the transfer. The
// engine writes slowly enough for pre-copy to converge in a few rounds,
// and in the second case so fast that it only ends at the round limit.
func TestTransferWhileRunning(t *testing.T) {
	for _, c := range []struct {
		name      string
		writesPer int
		converges bool
	}{{"converging", 1, true}, {"round limit", 64, false}} {
		t.Run(c.name, func(t *testing.T) {
			srcDisk := TrackWrites(vm.NewMemDisk(randomBytes(1<<20+3*512, 1))) // a partial last chunk
			dstDisk := vm.NewMemDisk(make([]byte, srcDisk.Size()))
			src := fakevm.New(2048, srcDisk, vm.Outputs{})
			src.WritesPer = c.writesPer
			src.Run(1e6)
			a, b := tcpPair(t)
			res := receiveAsync(b, dstDisk, fakevm.Factory(dstDisk, vm.Outputs{}), ReceiveOptions{})
			opts := Options{StepBytes: 256 << 10, ConvergePages: 64, MaxRounds: 8}
			st, err := migrateRunning(t, a, src, srcDisk, opts, 20000)
			if err != nil {
				t.Fatal(err)
			}
			r := <-res
			if r.err != nil {
				t.Fatal(r.err)
			}
			t.Logf("sender %+v", st)
			t.Logf("receiver %+v", r.stats)
			dst := r.eng.(*fakevm.Engine)
			if dst.Instret() != src.Instret() || dst.Digest().Sum != src.Digest().Sum || st.Digest != src.Digest().Sum {
				t.Fatalf("receiver at %d, sender at %d; digests equal: %v", dst.Instret(), src.Instret(), dst.Digest().Sum == src.Digest().Sum)
			}
			if !bytes.Equal(dstDisk.Bytes(), srcDisk.Unwrap().(*vm.MemDisk).Bytes()) {
				t.Fatal("the receiver's disk differs from the sender's")
			}
			if st.Rounds < 2 || (st.Rounds < opts.MaxRounds) != c.converges {
				t.Errorf("%d rounds (limit %d), converging expected: %v", st.Rounds, opts.MaxRounds, c.converges)
			}
			if c.converges && st.PausePages > opts.ConvergePages*2 {
				t.Errorf("%d pages sent in the pause after converging at %d", st.PausePages, opts.ConvergePages)
			}
			if st.ChunksDiffer != chunks(srcDisk.Size()) || st.ChunksSent <= st.ChunksDiffer {
				t.Errorf("expected every chunk differing and guest writes sent again: %+v", st)
			}
			if r.stats.Pages+r.stats.ZeroPages != st.PagesSent+st.ZeroPagesSent || r.stats.Chunks != st.ChunksSent {
				t.Errorf("sent and received counts differ: %+v vs %+v", st, r.stats)
			}
			if r.stats.BytesReceived != st.BytesSent || r.stats.BytesSent != st.BytesReceived {
				t.Errorf("byte counts differ: sent %d received %d, replies %d/%d", st.BytesSent, r.stats.BytesReceived, r.stats.BytesSent, st.BytesReceived)
			}
			src.Run(src.Instret() + 3e6)
			dst.Run(dst.Instret() + 3e6)
			if dst.Digest().Sum != src.Digest().Sum || !bytes.Equal(dstDisk.Bytes(), srcDisk.Unwrap().(*vm.MemDisk).Bytes()) {
				t.Fatal("the two engines diverged after the transfer")
			}
			// What follows the transfer on the connection (the input log)
			// arrives intact.
			go a.Write([]byte("log follows"))
			buf := make([]byte, 11)
			if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "log follows" {
				t.Fatalf("after the transfer the connection gave %q, %v", buf, err)
			}
		})
	}
}

// TestStaleDisk gives the receiver a copy of the disk that differs in a
// few chunks: exactly those are sent.
func TestStaleDisk(t *testing.T) {
	img := randomBytes(2<<20, 2)
	srcDisk := TrackWrites(vm.NewMemDisk(img))
	stale := append([]byte(nil), img...)
	differ := []int{0, 3, 17, 31}
	for _, c := range differ {
		stale[c*ChunkSize+100] ^= 0x55
	}
	dstDisk := vm.NewMemDisk(stale)
	src := fakevm.New(256, nil, vm.Outputs{}) // the engine itself writes no disk
	a, b := tcpPair(t)
	res := receiveAsync(b, dstDisk, fakevm.Factory(dstDisk, vm.Outputs{}), ReceiveOptions{})
	st, err := migrateRunning(t, a, src, srcDisk, Options{}, 5000)
	if err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if st.ChunksDiffer != len(differ) || st.ChunksSent != len(differ) || r.stats.Chunks != len(differ) {
		t.Fatalf("sent %d chunks (%d differing, %d received), want %d", st.ChunksSent, st.ChunksDiffer, r.stats.Chunks, len(differ))
	}
	if !bytes.Equal(stale, img) {
		t.Fatal("the receiver's disk was not brought up to date")
	}

	// A guest write during the transfer adds exactly the chunk it hits.
	stale = append([]byte(nil), img...)
	stale[5*ChunkSize] ^= 1
	dstDisk = vm.NewMemDisk(stale)
	a, b = tcpPair(t)
	res = receiveAsync(b, dstDisk, fakevm.Factory(dstDisk, vm.Outputs{}), ReceiveOptions{})
	s, err := NewSender(a, src, srcDisk, Options{})
	if err != nil {
		t.Fatal(err)
	}
	srcDisk.WriteAt([]byte("written during the transfer"), 9*ChunkSize+ChunkSize-10) // spans chunks 9 and 10
	for done := false; !done; {
		if done, err = s.Step(); err != nil {
			t.Fatal(err)
		}
	}
	if st, err = s.Finish(); err != nil {
		t.Fatal(err)
	}
	if r = <-res; r.err != nil {
		t.Fatal(r.err)
	}
	if st.ChunksDiffer != 3 || st.ChunksSent != 3 {
		t.Fatalf("sent %d chunks, %d differing; want chunk 5 and the written chunks 9 and 10", st.ChunksSent, st.ChunksDiffer)
	}
	if !bytes.Equal(stale, img) {
		t.Fatal("the receiver's disk differs")
	}
}

// recordStream runs a complete small transfer and returns the bytes the
// sender wrote, with the receiver's disk contents it was made against.
func recordStream(t testing.TB) (stream, receiverDisk []byte) {
	t.Helper()
	// Small, so that the fuzzer's mutations and minimisation stay fast:
	// 8 pages, half of them zero, and a disk of one partial chunk that
	// differs from the receiver's.
	img := randomBytes(8<<10, 3)
	receiverDisk = append([]byte(nil), img...)
	receiverDisk[100] ^= 1
	srcDisk := TrackWrites(vm.NewMemDisk(img))
	src := fakevm.New(8, srcDisk, vm.Outputs{})
	a, b := tcpPair(t)
	var rec bytes.Buffer
	dst := vm.NewMemDisk(append([]byte(nil), receiverDisk...))
	res := receiveAsync(b, dst, fakevm.Factory(dst, vm.Outputs{}), ReceiveOptions{})
	conn := struct {
		io.Reader
		io.Writer
	}{a, io.MultiWriter(a, &rec)}
	if _, err := migrateRunning(t, conn, src, srcDisk, Options{StepBytes: 8 << 10}, 3000); err != nil {
		t.Fatal(err)
	}
	if r := <-res; r.err != nil {
		t.Fatal(r.err)
	}
	return rec.Bytes(), receiverDisk
}

type frame struct {
	t byte
	p []byte
}

func parseFrames(t testing.TB, b []byte) []frame {
	t.Helper()
	fr := frameReader{r: bytes.NewReader(b)}
	var out []frame
	for fr.off < int64(len(b)) {
		ty, p, err := fr.next()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, frame{ty, append([]byte(nil), p...)})
	}
	return out
}

func encodeFrames(fs []frame) []byte {
	var buf bytes.Buffer
	fw := frameWriter{w: &buf}
	for _, f := range fs {
		fw.write(f.t, f.p)
	}
	return buf.Bytes()
}

// replayConn feeds a recorded stream to a receiver and drops its replies.
type replayConn struct{ io.Reader }

func (replayConn) Write(p []byte) (int, error) { return len(p), nil }

func replay(stream, disk []byte, maxMem int64) (vm.Migratable, error) {
	d := vm.NewMemDisk(append([]byte(nil), disk...))
	e, _, err := Receive(replayConn{bytes.NewReader(stream)}, d, fakevm.Factory(d, vm.Outputs{}), ReceiveOptions{MaxMemory: maxMem})
	return e, err
}

// TestDamagedStreams feeds a receiver recorded streams that are truncated,
// corrupted or forged (checksums recomputed): each is refused with an
// error that says what is wrong.
func TestDamagedStreams(t *testing.T) {
	stream, disk := recordStream(t)
	if _, err := replay(stream, disk, 0); err != nil {
		t.Fatalf("the recorded stream itself is refused: %v", err)
	}
	frames := parseFrames(t, stream)
	find := func(ty byte) int {
		for i, f := range frames {
			if f.t == ty {
				return i
			}
		}
		t.Fatalf("no %s frame in the recording", frameName(ty))
		return 0
	}
	forge := func(i int, edit func(p []byte) []byte) []byte {
		fs := append([]frame(nil), frames...)
		fs[i].p = edit(append([]byte(nil), fs[i].p...))
		return encodeFrames(fs)
	}
	drop := func(ty byte) []byte {
		var fs []frame
		for _, f := range frames {
			if f.t != ty {
				fs = append(fs, f)
			}
		}
		return encodeFrames(fs)
	}
	findLast := func(ty byte) int {
		for i := len(frames) - 1; i >= 0; i-- {
			if frames[i].t == ty {
				return i
			}
		}
		t.Fatalf("no %s frame in the recording", frameName(ty))
		return 0
	}
	hello, pages, chunk, state := find(frameHello), find(framePages), find(frameChunk), find(frameState)
	// The last pages frame and the last chunk frame are not overwritten
	// by later ones: a change in them must show in the final digests.
	lastPages, lastChunk := findLast(framePages), findLast(frameChunk)
	changePage := func(p []byte) []byte {
		for at := 4; at < len(p); at += 5 {
			if p[at+4] == 1 {
				p[at+5] ^= 1
				return p
			}
		}
		t.Fatal("the last pages frame has no page with contents")
		return p
	}
	put32 := func(at int, v uint32) func([]byte) []byte {
		return func(p []byte) []byte { binary.LittleEndian.PutUint32(p[at:], v); return p }
	}
	put64 := func(at int, v uint64) func([]byte) []byte {
		return func(p []byte) []byte { binary.LittleEndian.PutUint64(p[at:], v); return p }
	}
	flip := func(at int) []byte {
		b := append([]byte(nil), stream...)
		b[at] ^= 0x10
		return b
	}
	cases := []struct {
		name   string
		stream []byte
		is     error
		want   string
	}{
		{"empty", nil, ErrBadStream, "stream ended"},
		{"truncated in a header", stream[:len(encodeFrames(frames[:2]))+2], ErrBadStream, "truncated"},
		{"truncated in the middle", stream[:len(stream)/2], ErrBadStream, "truncated"},
		{"truncated before the end", stream[:len(stream)-12], ErrBadStream, "truncated"},
		{"flipped payload byte", flip(len(stream) / 2), ErrBadStream, "frame"},
		{"flipped checksum byte", flip(frameHeader + 36), ErrBadStream, "checksum mismatch"},
		{"not a transfer", forge(hello, func(p []byte) []byte { p[0] = 'X'; return p }), ErrBadStream, "not an ftvm state transfer"},
		{"newer version", forge(hello, put32(8, 2)), ErrBadStream, "version 2"},
		{"odd page size", forge(hello, put32(12, 3000)), ErrBadStream, "page size 3000"},
		{"huge memory", forge(hello, put64(16, 1<<40)), ErrBadStream, "more than the"},
		{"wrong disk size", forge(hello, put64(24, 16<<10)), ErrBadStream, "disk has"},
		{"wrong chunk size", forge(hello, put32(32, 4096)), ErrBadStream, "chunk size"},
		{"page outside RAM", forge(pages, put32(4, 1000)), ErrBadStream, "page 1000, the machine has 8"},
		{"page count too large", forge(pages, put32(0, 1<<30)), ErrBadStream, "page count"},
		{"unknown page kind", forge(pages, func(p []byte) []byte { p[8] = 7; return p }), ErrBadStream, "unknown kind"},
		{"page truncated", forge(pages, func(p []byte) []byte { return p[:len(p)-1] }), ErrBadStream, "truncated"},
		{"changed page contents", forge(lastPages, changePage), ErrDigestMismatch, "ram"},
		{"chunk outside the disk", forge(chunk, put32(0, 1)), ErrBadStream, "chunk 1, the disk has 1"},
		{"short chunk", forge(chunk, func(p []byte) []byte { return p[:100] }), ErrBadStream, "want 8192"},
		{"changed chunk", forge(lastChunk, func(p []byte) []byte { p[9] ^= 1; return p }), ErrDigestMismatch, "chunk hashes differ"},
		{"chunk left out", drop(frameChunk), ErrDigestMismatch, "chunk hashes differ"},
		{"garbage state", forge(state, func(p []byte) []byte { return []byte("{") }), ErrBadStream, "building the engine"},
		{"no state", drop(frameState), ErrBadStream, "without the engine state"},
		{"no verdict", drop(frameVerdict), ErrBadStream, "truncated"},
		{"refusing verdict", forge(find(frameVerdict), func([]byte) []byte { return []byte("\x00no") }), ErrDigestMismatch, "refused"},
		{"hashes from a sender", encodeFrames(append(append([]frame(nil), frames[:2]...), frame{frameHashes, make([]byte, 36)})), ErrBadStream, "not expected"},
		{"sender error", encodeFrames(append(append([]frame(nil), frames[:2]...), frame{frameError, []byte("disk\x00gone")})), ErrPeer, "disk?gone"},
	}
	for _, c := range cases {
		_, err := replay(c.stream, disk, 0)
		if err == nil || !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %v containing %q", c.name, err, c.is, c.want)
		}
	}
	// An oversized frame is refused from its header, before allocating.
	huge := []byte{framePages, 0xff, 0xff, 0xff, 0x7f}
	if _, err := replay(append(encodeFrames(frames[:1]), huge...), disk, 0); err == nil || !strings.Contains(err.Error(), "more than the limit") {
		t.Errorf("oversized frame: %v", err)
	}
	if _, err := replay([]byte{0xee, 0, 0, 0, 0, 0, 0, 0, 0}, disk, 0); err == nil || !strings.Contains(err.Error(), "unknown frame type 238") {
		t.Errorf("unknown frame type: %v", err)
	}
}

// TestLyingReceiver: a receiver that confirms a state other than the
// sender's is caught by the sender.
func TestLyingReceiver(t *testing.T) {
	src := fakevm.New(64, nil, vm.Outputs{})
	a, b := tcpPair(t)
	go func() {
		fr := frameReader{r: b}
		fw := frameWriter{w: b}
		for {
			ty, p, err := fr.next()
			if err != nil {
				return
			}
			switch ty {
			case frameHello:
				reply := append([]byte(magic), make([]byte, 12)...)
				binary.LittleEndian.PutUint32(reply[8:], Version)
				fw.write(frameHello, reply)
			case frameEnd:
				d := decoder{p: p}
				instret := d.u64()
				dg := d.digest()
				dg.Sum[0] ^= 1
				dg.Parts[0].Sum[0] ^= 1
				done := appendDigest(binary.LittleEndian.AppendUint64(nil, instret), dg)
				fw.write(frameDone, append(done, make([]byte, 32)...))
			}
		}
	}()
	_, err := migrateRunning(t, a, src, nil, Options{}, 1000)
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), "parts differing: [ram]") {
		t.Fatalf("got %v, want a digest mismatch naming ram", err)
	}
}

// TestReceiverRefuses: when the receiver cannot take the transfer (its
// disk has another size), the sender's next call says why.
func TestReceiverRefuses(t *testing.T) {
	srcDisk := TrackWrites(vm.NewMemDisk(make([]byte, 4*ChunkSize)))
	src := fakevm.New(64, nil, vm.Outputs{})
	a, b := tcpPair(t)
	res := receiveAsync(b, vm.NewMemDisk(make([]byte, 2*ChunkSize)), fakevm.Factory(nil, vm.Outputs{}), ReceiveOptions{})
	_, err := migrateRunning(t, a, src, srcDisk, Options{StepBytes: 4096}, 1000)
	if !errors.Is(err, ErrPeer) || !strings.Contains(err.Error(), "the sender's disk has 262144 bytes, the receiver's 131072") {
		t.Fatalf("sender: %v", err)
	}
	if r := <-res; !errors.Is(r.err, ErrBadStream) {
		t.Fatalf("receiver: %v", r.err)
	}
}

// TestAbandon: a sender closed half-way tells the receiver, and the
// engine keeps no dirty log for it.
func TestAbandon(t *testing.T) {
	src := fakevm.New(64, nil, vm.Outputs{})
	a, b := tcpPair(t)
	res := receiveAsync(b, nil, fakevm.Factory(nil, vm.Outputs{}), ReceiveOptions{})
	s, err := NewSender(a, src, nil, Options{StepBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	src.Run(1000)
	if _, err := s.Step(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if n := src.DirtyLogs(); n != 0 {
		t.Errorf("%d dirty logs left on the engine", n)
	}
	if r := <-res; !errors.Is(r.err, ErrPeer) || !strings.Contains(r.err.Error(), "abandoned") {
		t.Fatalf("receiver: %v", r.err)
	}
	if _, err := s.Step(); err == nil {
		t.Error("Step after Close succeeded")
	}
}

// TestReceiverDiskFails: a receiver that cannot read its own disk says so,
// and the sender reports it.
func TestReceiverDiskFails(t *testing.T) {
	srcDisk := TrackWrites(vm.NewMemDisk(make([]byte, 4*ChunkSize)))
	src := fakevm.New(64, nil, vm.Outputs{})
	a, b := tcpPair(t)
	dst := testsupport.NewDisk(make([]byte, 4*ChunkSize))
	dst.FailReads, dst.FailFrom, dst.Err = true, ChunkSize, errors.New("sector 128 unreadable")
	res := receiveAsync(b, dst, fakevm.Factory(dst, vm.Outputs{}), ReceiveOptions{})
	_, err := migrateRunning(t, a, src, srcDisk, Options{StepBytes: 4096}, 1000)
	if !errors.Is(err, ErrPeer) || !strings.Contains(err.Error(), "reading disk chunk 1: sector 128 unreadable") {
		t.Fatalf("sender: %v", err)
	}
	if r := <-res; r.err == nil || !strings.Contains(r.err.Error(), "sector 128 unreadable") {
		t.Fatalf("receiver: %v", r.err)
	}
}

// FuzzReceive feeds arbitrary streams to the receiver: it must refuse or
// accept them without panicking, hanging or allocating beyond its limit.
//
//	go test -run '^$' -fuzz FuzzReceive -fuzztime 60s -fuzzminimizetime 10s ./migrate
func FuzzReceive(f *testing.F) {
	stream, disk := recordStream(f)
	f.Add(stream)
	frames := parseFrames(f, stream)
	for i := 1; i < len(frames); i++ {
		f.Add(encodeFrames(frames[:i]))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// A receiver that waits forever on a finished stream is a bug too.
		ch := make(chan struct{})
		go func() {
			select {
			case <-ch:
			case <-time.After(5 * time.Second):
				panic(fmt.Sprintf("hang on %x", b))
			}
		}()
		defer close(ch)
		e, err := replay(b, disk, 1<<20)
		if err == nil && (e.Pages() != 8 || e.PageSize() != fakevm.PageSize) {
			t.Fatalf("accepted an engine of %d pages", e.Pages())
		}
	})
}
