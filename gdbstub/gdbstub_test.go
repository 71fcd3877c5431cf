package gdbstub

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeTarget is a machine whose "program" adds 4 to the PC per
// instruction, with 4 registers of 8 bytes (the last is the PC) and 64
// bytes of memory at 0x1000.
type fakeTarget struct {
	regs    [4]uint64
	mem     [64]byte
	instret uint64
	exitAt  uint64 // the program ends when instret reaches it (0: never)
	faultAt uint64 // the program locks up when instret reaches it (0: never)
}

func (f *fakeTarget) TargetXML() string      { return "<target><architecture>test</architecture></target>" }
func (f *fakeTarget) NumRegisters() int      { return 4 }
func (f *fakeTarget) RegisterSize(n int) int { return map[bool]int{true: 8}[n >= 0 && n < 4] }
func (f *fakeTarget) ReadRegister(n int, p []byte) bool {
	binary.LittleEndian.PutUint64(p, f.regs[n])
	return true
}
func (f *fakeTarget) WriteRegister(n int, p []byte) bool {
	f.regs[n] = binary.LittleEndian.Uint64(p)
	return true
}
func (f *fakeTarget) mem2(addr uint64, p []byte) []byte {
	if addr < 0x1000 || addr >= 0x1040 {
		return nil
	}
	return f.mem[addr-0x1000:][:min(len(p), int(0x1040-addr))]
}
func (f *fakeTarget) ReadMemory(addr uint64, p []byte) int  { return copy(p, f.mem2(addr, p)) }
func (f *fakeTarget) WriteMemory(addr uint64, p []byte) int { return copy(f.mem2(addr, p), p) }
func (f *fakeTarget) PC() uint64                            { return f.regs[3] }
func (f *fakeTarget) SetPC(pc uint64)                       { f.regs[3] = pc }
func (f *fakeTarget) Instret() uint64                       { return f.instret }
func (f *fakeTarget) ExitCode() int                         { return 7 }
func (f *fakeTarget) Run(until uint64, breakAt func(uint64) bool, interrupted func() bool) RunStop {
	for {
		if f.instret >= until {
			return StopLimit
		}
		if breakAt != nil && breakAt(f.regs[3]) {
			return StopBreak
		}
		if interrupted != nil && interrupted() {
			return StopInterrupted
		}
		if f.exitAt != 0 && f.instret >= f.exitAt {
			return StopExited
		}
		if f.faultAt != 0 && f.instret >= f.faultAt {
			return StopFault
		}
		f.regs[3] += 4
		f.instret++
	}
}

// client is the GDB side of a pipe, with the server's owner loop running
// in a goroutine: Run(until) in slices, as ftvm's run loop would.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	done chan RunStop
}

func start(t *testing.T, ft *fakeTarget, until uint64) (*client, *Server) {
	t.Helper()
	a, b := net.Pipe()
	srv := NewServer(a, ft)
	c := &client{t: t, conn: b, r: bufio.NewReader(b), done: make(chan RunStop, 1)}
	go func() {
		var r RunStop
		for ft.instret < until {
			if r = srv.Run(until); r == StopExited {
				break
			}
		}
		c.done <- r
	}()
	t.Cleanup(func() { b.Close() })
	return c, srv
}

func (c *client) raw(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// recv reads one packet (skipping acks), checks its checksum and returns
// the unescaped payload.
func (c *client) recv() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			c.t.Fatalf("reading reply: %v", err)
		}
		if b == '$' {
			break
		}
	}
	body, err := c.r.ReadString('#')
	if err != nil {
		c.t.Fatal(err)
	}
	body = body[:len(body)-1]
	cs := make([]byte, 2)
	if _, err := io.ReadFull(c.r, cs); err != nil {
		c.t.Fatal(err)
	}
	var sum byte
	for i := 0; i < len(body); i++ {
		sum += body[i]
	}
	if fmt.Sprintf("%02x", sum) != string(cs) {
		c.t.Fatalf("bad checksum on %q: %s, want %02x", body, cs, sum)
	}
	var out []byte
	for i := 0; i < len(body); i++ {
		if body[i] == '}' && i+1 < len(body) {
			i++
			out = append(out, body[i]^0x20)
		} else {
			out = append(out, body[i])
		}
	}
	return string(out)
}

func (c *client) send(payload string) { c.raw(string(frame([]byte(payload)))) }

// cmd sends a packet and returns the reply.
func (c *client) cmd(payload string) string {
	c.t.Helper()
	c.send(payload)
	return c.recv()
}

func (c *client) expect(payload, want string) {
	c.t.Helper()
	if got := c.cmd(payload); got != want {
		c.t.Errorf("%s: got %q, want %q", payload, got, want)
	}
}

func TestFrameRoundTrip(t *testing.T) {
	for _, p := range []string{"", "OK", "a#b$c}d*e", strings.Repeat("}", 100), "\x00\xff"} {
		f := frame([]byte(p))
		rd := &reader{r: bufio.NewReader(bytes.NewReader(f)), interrupt: func() {}}
		ev, err := rd.next()
		if err != nil || ev.kind != packetEv || string(ev.data) != p {
			t.Errorf("%q: framed %q, read back %v %q %v", p, f, ev.kind, ev.data, err)
		}
	}
}

func TestReaderEvents(t *testing.T) {
	var intr int
	rd := &reader{r: bufio.NewReader(strings.NewReader(
		"+\x03-junk$m0,4#fd$m0,4#00$abc$g#67\x03")), interrupt: func() { intr++ }}
	var kinds []eventKind
	var data []string
	for {
		ev, err := rd.next()
		if err != nil {
			break
		}
		kinds = append(kinds, ev.kind)
		data = append(data, string(ev.data))
	}
	want := []eventKind{nackEv, packetEv, badEv, packetEv}
	if fmt.Sprint(kinds) != fmt.Sprint(want) || data[1] != "m0,4" || data[3] != "g" {
		t.Errorf("events %v %q, want %v with m0,4 and g (a '$' inside a packet restarts it)", kinds, data, want)
	}
	if intr != 2 {
		t.Errorf("%d interrupts, want 2", intr)
	}
}

func TestOversizedPacketIsRejected(t *testing.T) {
	big := strings.Repeat("A", maxPacket+10)
	rd := &reader{r: bufio.NewReader(bytes.NewReader(frame([]byte(big)))), interrupt: func() {}}
	ev, err := rd.next()
	if err != nil || ev.kind != badEv {
		t.Fatalf("oversized packet: %v %v, want a NAK", ev.kind, err)
	}
}

func TestProtocol(t *testing.T) {
	ft := &fakeTarget{}
	ft.regs = [4]uint64{1, 2, 0xdeadbeef, 0x100}
	copy(ft.mem[:], "hello, world")
	c, _ := start(t, ft, 1000)

	c.expect("?", "T05thread:1;")
	if got := c.cmd("qSupported:multiprocess+;swbreak+"); !strings.Contains(got, "PacketSize=4000") || !strings.Contains(got, "qXfer:features:read+") {
		t.Errorf("qSupported = %q", got)
	}
	c.expect("qXfer:features:read:target.xml:0,1000", "l"+ft.TargetXML())
	c.expect("qXfer:features:read:target.xml:8,4", "m<arc")
	c.expect("qXfer:features:read:other.xml:0,10", "E00")
	c.expect("qAttached", "1")
	c.expect("qC", "QC1")
	c.expect("qfThreadInfo", "m1")
	c.expect("qsThreadInfo", "l")
	c.expect("Hg0", "OK")
	c.expect("vMustReplyEmpty", "")
	c.expect("g", "0100000000000000"+"0200000000000000"+"efbeadde00000000"+"0001000000000000")
	c.expect("p2", "efbeadde00000000")
	c.expect("p9", "E01")
	c.expect("P1=2a00000000000000", "OK")
	if ft.regs[1] != 42 {
		t.Errorf("P1 wrote %#x", ft.regs[1])
	}
	c.expect("P1=2a", "E01") // wrong size
	c.expect("m1000,5", hexs("hello"))
	c.expect("m103e,8", hexs(string(ft.mem[62:]))) // short read at the end of memory
	c.expect("m0,4", "E14")
	c.expect("M1000,2:4a45", "OK")
	c.raw(sent("X1002,3:a}]b")) // binary with an escaped '}'
	if got := c.recv(); got != "OK" {
		t.Errorf("X: %q", got)
	}
	if got := string(ft.mem[:5]); got != "JEa}b" {
		t.Errorf("memory after M/X = %q", got)
	}
	c.expect("M2000,1:00", "E14")
	c.expect("Z2,1000,4", "") // watchpoints: unsupported
	c.expect("qRcmd,"+hexs("instret"), hexs("0\n"))

	// Breakpoint, continue, step.
	c.expect("Z0,110,4", "OK")
	c.expect("Z1,120,4", "OK")
	c.expect("c", "T05thread:1;")
	if ft.regs[3] != 0x110 || ft.instret != 4 {
		t.Errorf("stopped at pc %#x after %d, want 0x110 after 4", ft.regs[3], ft.instret)
	}
	// A continue from a breakpoint stops there again: stepping over it is
	// GDB's job (it removes it and steps), as with a hardware breakpoint.
	c.expect("z0,110,4", "OK")
	c.expect("s", "T05thread:1;")
	if ft.regs[3] != 0x114 || ft.instret != 5 {
		t.Errorf("after step: pc %#x instret %d", ft.regs[3], ft.instret)
	}
	c.expect("vCont?", "vCont;c;C;s;S")
	c.expect("vCont;s:1;c", "T05thread:1;")
	c.expect("vCont;c", "T05thread:1;")
	if ft.regs[3] != 0x120 {
		t.Errorf("vCont;c stopped at %#x, want 0x120", ft.regs[3])
	}
	c.expect("z1,120,4", "OK")
	c.expect("qRcmd,"+hexs("instret"), hexs("8\n"))

	// Ctrl-C interrupts a continue with nowhere to stop... until the
	// owner's limit: here the owner's loop would keep calling Run; the
	// fake target runs 1000 instructions, so exit first to test W.
	ft.exitAt = 20
	c.expect("c", "W07")
	if r := <-c.done; r != StopExited {
		t.Errorf("owner loop got %v, want StopExited", r)
	}
}

// TestFault: a target that locks up stops with SIGSEGV, where GDB can
// look at it (it used to be reported as a normal exit, with no registers
// left to see); resumed, it is over: terminated by SIGSEGV, and the
// owner's loop gets StopExited.
func TestFault(t *testing.T) {
	ft := &fakeTarget{faultAt: 5}
	ft.regs[3] = 0x100
	c, _ := start(t, ft, 1000)
	c.expect("c", "T0bthread:1;")
	c.expect("p3", "1401000000000000") // the PC where it is stuck
	c.expect("?", "T0bthread:1;")
	c.expect("s", "X0b")
	if r := <-c.done; r != StopExited {
		t.Errorf("owner loop got %v, want StopExited", r)
	}
}

func TestInterrupt(t *testing.T) {
	ft := &fakeTarget{}
	a, b := net.Pipe()
	srv := NewServer(a, ft)
	c := &client{t: t, conn: b, r: bufio.NewReader(b)}
	defer b.Close()
	done := make(chan RunStop, 1)
	go func() {
		// The owner's loop with no limit in sight: only Ctrl-C stops it.
		for {
			r := srv.Run(ft.instret + 1000)
			if r != StopLimit {
				done <- r
				return
			}
		}
	}()
	c.send("c")
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if ack, _ := c.r.ReadByte(); ack != '+' { // net.Pipe has no buffer: take the ack
		t.Fatalf("no ack: %q", ack)
	}
	time.Sleep(20 * time.Millisecond)
	c.raw("\x03")
	if got := c.recv(); got != "T02thread:1;" {
		t.Fatalf("after Ctrl-C: %q", got)
	}
	if ft.instret == 0 {
		t.Error("the target did not run before the interrupt")
	}
	c.send("k")
	if ack, _ := c.r.ReadByte(); ack != '+' {
		t.Fatalf("no ack for k: %q", ack)
	}
	if r := <-done; r != StopExited || srv.Err() != ErrKilled {
		t.Errorf("after k: %v %v", r, srv.Err())
	}
}

// TestStepAcrossOwnerLimit: a step requested when the owner's limit is
// reached first returns StopLimit to the owner (so it can deliver its
// event) and completes in the next Run.
func TestStepAcrossOwnerLimit(t *testing.T) {
	ft := &fakeTarget{}
	a, b := net.Pipe()
	srv := NewServer(a, ft)
	c := &client{t: t, conn: b, r: bufio.NewReader(b)}
	defer b.Close()
	res := make(chan RunStop)
	go func() { res <- srv.Run(0) }()
	c.send("s")
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if ack, _ := c.r.ReadByte(); ack != '+' {
		t.Fatalf("no ack: %q", ack)
	}
	if r := <-res; r != StopLimit || ft.instret != 0 {
		t.Fatalf("Run(0) = %v at %d, want StopLimit at 0", r, ft.instret)
	}
	go func() { res <- srv.Run(10) }()
	if got := c.recv(); got != "T05thread:1;" || ft.instret != 1 {
		t.Fatalf("step reply %q at %d", got, ft.instret)
	}
	c.send("D")
	if got := c.recv(); got != "OK" {
		t.Fatalf("D: %q", got)
	}
	if r := <-res; r != StopLimit || ft.instret != 10 {
		t.Errorf("after detach Run(10) = %v at %d", r, ft.instret)
	}
}

func TestNoAckModeAndNak(t *testing.T) {
	ft := &fakeTarget{}
	c, _ := start(t, ft, 1000)
	// A bad checksum gets a NAK; a NAK from us gets a retransmission.
	c.raw("$g#00")
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := c.r.ReadByte(); b != '-' {
		t.Fatalf("bad checksum answered with %q", b)
	}
	first := c.cmd("p3")
	c.raw("-")
	if again := c.recv(); again != first {
		t.Errorf("retransmission %q, want %q", again, first)
	}
	c.expect("QStartNoAckMode", "OK")
	// Now no '+' precedes replies: read the raw bytes.
	c.send("p0")
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := c.r.ReadByte(); b != '$' {
		t.Errorf("reply in no-ack mode starts with %q", b)
	}
}

// TestHostileClient throws malformed packets at the stub: it must answer
// every one (an error or empty reply) and keep working, never panic.
func TestHostileClient(t *testing.T) {
	ft := &fakeTarget{}
	c, _ := start(t, ft, 1000)
	bad := []string{
		"m", "m,", "mzz,4", "m1000", "m1000,", "m1000,ffffffffffffffffff", "m1000,100000",
		"M1000,4:zz", "M1000,4:00", "M1000:00", "M", "X1000,2", "X1000,ffff:",
		"p", "pzz", "p99999999999999999", "pffffffff", "P", "P1", "P1=", "P1=zz", "Pffff=00",
		"G", "Gzz", "G0", "G00",
		"Z", "Z0", "Z0,", "Z0,zz,4", "Z9,1,1", "z0,", "Zx,1000,4",
		"qXfer", "qXfer:features:read:target.xml:", "qXfer:features:read:target.xml:zz,1",
		"qXfer:features:read:target.xml:ffffffffffffffff,ffffffffffffffff",
		"qRcmd,zz", "qRcmd,1", "vCont;", "vCont;x", "vCont", "v", "q", "Q", "",
		"cfoo", "bs", "bc", "\x00\x01\x02", strings.Repeat("m", 2000),
	}
	for _, p := range bad {
		got := c.cmd(p)
		if got != "" && got[0] != 'E' && got != "OK" && got != "l" {
			t.Errorf("%q answered %q", p, got)
		}
	}
	// Garbage between packets and a truncated packet, then a good one.
	c.raw("garbage}}}#$$$m1000")
	c.expect("p3", "0000000000000000")
	if ft.instret != 0 {
		t.Errorf("hostile packets ran the target to %d", ft.instret)
	}
}

func FuzzServer(f *testing.F) {
	f.Add([]byte("$g#67$m1000,4#00+-\x03$Z0,10,4#00"))
	f.Add([]byte(sent("X1000,3:}]}]}]")))
	f.Fuzz(func(t *testing.T, in []byte) {
		ft := &fakeTarget{exitAt: 100}
		a, b := net.Pipe()
		srv := NewServer(a, ft)
		go io.Copy(io.Discard, b)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for ft.instret < 50 {
				if srv.Run(50) == StopExited {
					return
				}
			}
		}()
		b.Write(in)
		b.Close() // connection gone: the stub detaches and the run ends
		<-done
	})
}

// sent frames a payload that is already escaped.
func sent(p string) string {
	var sum byte
	for i := 0; i < len(p); i++ {
		sum += p[i]
	}
	return fmt.Sprintf("$%s#%02x", p, sum)
}

func hexs(s string) string { return string(appendHex(nil, []byte(s))) }

// reverseTarget is fakeTarget with a history: it can go back to any
// count it has been at (its state is a function of the count), and the
// history ends at end.
type reverseTarget struct {
	fakeTarget
	end uint64
}

func (f *reverseTarget) Run(until uint64, breakAt func(uint64) bool, interrupted func() bool) RunStop {
	r := f.fakeTarget.Run(min(until, f.end), breakAt, interrupted)
	if r == StopLimit && f.instret >= f.end && until > f.end {
		return StopHistoryEnd
	}
	return r
}

func (f *reverseTarget) at(n uint64) { f.instret, f.regs[3] = n, 0x100+4*n }

func (f *reverseTarget) StepBack() RunStop {
	if f.instret == 0 {
		return StopHistoryBegin
	}
	f.at(f.instret - 1)
	return StopLimit
}

func (f *reverseTarget) RunBack(breakAt func(uint64) bool, interrupted func() bool) RunStop {
	for n := f.instret; n > 0; {
		n--
		f.at(n)
		if breakAt(f.regs[3]) {
			return StopBreak
		}
	}
	return StopHistoryBegin
}

// TestReverse: with a Reverser target the stub offers bs and bc; bs steps
// back one instruction, bc goes back to the previous breakpoint hit (not
// the one it is at) and then to the start, which is reported as
// replaylog:begin; going forward past the history's end is replaylog:end.
func TestReverse(t *testing.T) {
	ft := &reverseTarget{end: 50}
	ft.regs[3] = 0x100
	a, b := net.Pipe()
	srv := NewServer(a, ft)
	gc := &client{t: t, conn: b, r: bufio.NewReader(b), done: make(chan RunStop, 1)}
	go func() { gc.done <- srv.Run(^uint64(0)) }()
	t.Cleanup(func() { b.Close() })

	if got := gc.cmd("qSupported"); !strings.Contains(got, "ReverseStep+;ReverseContinue+") {
		t.Errorf("qSupported = %q, want reverse support", got)
	}
	gc.expect("bs", "T05thread:1;replaylog:begin;")
	gc.expect("Z0,128,4", "OK") // instret 10
	gc.expect("Z0,150,4", "OK") // instret 20
	gc.expect("c", "T05thread:1;")
	if ft.instret != 10 {
		t.Fatalf("continue stopped at %d, want 10", ft.instret)
	}
	gc.expect("z0,128,4", "OK")
	gc.expect("s", "T05thread:1;")
	gc.expect("Z0,128,4", "OK")
	gc.expect("c", "T05thread:1;")
	if ft.instret != 20 {
		t.Fatalf("second continue stopped at %d, want 20", ft.instret)
	}
	gc.expect("z0,150,4", "OK")
	gc.expect("c", "T05thread:1;replaylog:end;")
	if ft.instret != 50 {
		t.Fatalf("continue to the end stopped at %d, want 50", ft.instret)
	}
	gc.expect("c", "T05thread:1;replaylog:end;")
	gc.expect("?", "T05thread:1;replaylog:end;")
	gc.expect("Z0,150,4", "OK")
	gc.expect("bs", "T05thread:1;")
	if ft.instret != 49 {
		t.Fatalf("bs from the end: at %d, want 49", ft.instret)
	}
	for _, want := range []uint64{20, 10} {
		gc.expect("bc", "T05thread:1;")
		if ft.instret != want {
			t.Fatalf("bc: at %d, want %d", ft.instret, want)
		}
	}
	gc.expect("bc", "T05thread:1;replaylog:begin;")
	if ft.instret != 0 {
		t.Fatalf("bc past the first hit: at %d, want 0", ft.instret)
	}
	gc.expect("bx", "")
	gc.expect("D", "OK")
	if r := <-gc.done; r != StopHistoryEnd {
		t.Errorf("after detach the owner got %v, want StopHistoryEnd (ran to the end)", r)
	}
}

// TestNoReverse: a target without history tells GDB it cannot go back.
func TestNoReverse(t *testing.T) {
	ft := &fakeTarget{}
	c, _ := start(t, ft, 1000)
	if got := c.cmd("qSupported"); strings.Contains(got, "Reverse") {
		t.Errorf("qSupported = %q offers reverse execution", got)
	}
	c.expect("bs", "")
	c.expect("bc", "")
}

// threadedTarget is a fakeTarget with two threads that take turns, one
// instruction each: thread i's PC is regs[3] of its own register file.
type threadedTarget struct {
	fakeTarget
	files [2][4]uint64
	sel   int
}

func (f *threadedTarget) NumThreads() int    { return 2 }
func (f *threadedTarget) CurrentThread() int { return int(f.instret % 2) }
func (f *threadedTarget) SelectThread(i int) {
	f.files[f.sel] = f.regs
	f.sel = i
	f.regs = f.files[i]
}
func (f *threadedTarget) Run(until uint64, breakAt func(uint64) bool, interrupted func() bool) RunStop {
	for f.instret < until {
		cur := f.CurrentThread()
		f.SelectThread(cur)
		if breakAt != nil && breakAt(f.regs[3]) {
			return StopBreak
		}
		f.regs[3] += 4
		f.instret++
	}
	return StopLimit
}

// TestThreads: GDB sees one thread per hart, reads the selected one's
// registers, and every stop names the thread that runs next.
func TestThreads(t *testing.T) {
	ft := &threadedTarget{}
	ft.files[1][3] = 0x2000
	a, b := net.Pipe()
	srv := NewServer(a, ft)
	c := &client{t: t, conn: b, r: bufio.NewReader(b), done: make(chan RunStop, 1)}
	go func() {
		for ft.instret < 100 {
			srv.Run(100)
		}
		c.done <- StopLimit
	}()
	t.Cleanup(func() { b.Close() })
	c.expect("?", "T05thread:1;")
	c.expect("qfThreadInfo", "m1,2")
	c.expect("qsThreadInfo", "l")
	c.expect("qC", "QC1")
	c.expect("T2", "OK")
	c.expect("T3", "E01")
	c.expect("Hg2", "OK")
	c.expect("p3", hexs("\x00\x20\x00\x00\x00\x00\x00\x00"))
	c.expect("Hg1", "OK")
	c.expect("p3", hexs("\x00\x00\x00\x00\x00\x00\x00\x00"))
	c.expect("qThreadExtraInfo,2", hexs("hart 1"))
	c.expect("s", "T05thread:2;") // thread 1 ran; thread 2 is next
	c.expect("p3", hexs("\x00\x20\x00\x00\x00\x00\x00\x00"))
	c.expect("Z0,2008,4", "OK")
	c.expect("c", "T05thread:2;")
	if ft.files[1][3] != 0x2008 && ft.regs[3] != 0x2008 {
		t.Errorf("stopped with thread 2 at %#x", ft.regs[3])
	}
}
