// Package gdbstub serves the GDB remote serial protocol for one target,
// with one thread or several (Threads: a machine's harts), in all-stop
// mode: GDB (gdb-multiarch) can read and write
// registers and memory, set breakpoints, single-step, continue and
// interrupt with Ctrl-C.
//
// Control is inverted with respect to a classic stub. The machine is driven
// by its owner's run loop (ftvm run, ftvm replay), which must keep
// delivering events at the instruction counts it chooses; so the stub does
// not own a loop that runs the target. Instead Server.Run(until) is called
// where the owner would run the machine: it talks to GDB while the target
// is stopped and runs the target only as far as until, returning so the
// owner can deliver its events; the next call carries on with whatever GDB
// asked for (a continue, a step in progress).
//
// Breakpoints are kept by the stub and checked against the PC between
// instructions (Target.Run's breakAt), never written into guest memory:
// patching code would change what the guest reads and the state digests a
// replay checks. Z0 and Z1 are therefore the same thing.
//
// Positions are instruction counts (Target.Instret): a step retires exactly
// one instruction. That is the coordinate deterministic replay uses, so
// reverse execution (bs, bc) can later be added as "rebuild the machine and
// re-execute to count n" without changing this protocol layer: a target
// that implements Reverser gets the bs and bc packets.
package gdbstub

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
)

// RunStop says why Target.Run (and Server.Run) returned.
type RunStop int

const (
	StopLimit       RunStop = iota // the instruction count reached until
	StopBreak                      // breakAt was true for the PC of the next instruction
	StopInterrupted                // interrupted returned true
	StopIdle                       // the target waits for an external event (its owner must deliver one)
	StopExited                     // the target ended (powered off, rebooted)
	// StopFault: the target can make no progress (it locked up). GDB is
	// told it stopped with SIGSEGV, so that the state it is stuck in can
	// be looked at; resuming it ends it (terminated by SIGSEGV), and the
	// owner gets StopExited.
	StopFault
	// StopHistoryEnd: a replay reached the end of its recorded history
	// (or a point past which it cannot go); GDB is told "replaylog:end"
	// and may go back.
	StopHistoryEnd
	// StopHistoryBegin: going backwards reached the start of the history.
	StopHistoryBegin
)

// Reverser is a Target that can execute backwards: a replay that keeps its
// history. With it the stub offers GDB the bs and bc packets
// (reverse-stepi and reverse-continue, from which GDB builds reverse-step,
// reverse-next and reverse-finish).
type Reverser interface {
	// StepBack undoes the last instruction (StopLimit), or reports
	// StopHistoryBegin at the start of the history.
	StepBack() RunStop
	// RunBack goes back to the latest earlier position at which breakAt
	// (never nil) is true for the PC (StopBreak), to the start of the
	// history if there is none (StopHistoryBegin), or stops where it is
	// when interrupted returns true (StopInterrupted).
	RunBack(breakAt func(pc uint64) bool, interrupted func() bool) RunStop
}

// Target is the machine being debugged. Register numbers are GDB's, as
// laid out in TargetXML; register contents are in target byte order.
type Target interface {
	// TargetXML is the target description GDB reads with
	// qXfer:features:read (empty: none, GDB uses its default for the
	// architecture).
	TargetXML() string
	// NumRegisters is how many registers the g packet carries (0 .. n-1).
	NumRegisters() int
	// RegisterSize is register n's size in bytes, 0 if there is none.
	RegisterSize(n int) int
	ReadRegister(n int, p []byte) bool
	WriteRegister(n int, p []byte) bool
	// ReadMemory and WriteMemory access virtual memory as the code being
	// debugged sees it, without side effects on the guest (no traps, no
	// device access). They return how many leading bytes they managed.
	ReadMemory(addr uint64, p []byte) int
	WriteMemory(addr uint64, p []byte) int
	// PC is the address of the next instruction; SetPC moves it.
	PC() uint64
	SetPC(pc uint64)
	// Instret is the number of instructions retired so far.
	Instret() uint64
	// Run executes until the instruction count reaches until (StopLimit),
	// breakAt (if not nil) is true for the PC of the instruction about to
	// execute (checked after the limit, before every instruction including
	// the first), interrupted (if not nil) returns true (checked at least
	// every few thousand instructions), or the target idles or ends.
	Run(until uint64, breakAt func(pc uint64) bool, interrupted func() bool) RunStop
	// ExitCode is the target's exit status after StopExited.
	ExitCode() int
}

// Threads is a Target with several threads, such as the harts of a
// machine. GDB numbers them from 1. The Target's register, PC and memory
// methods act on the selected thread (GDB's Hg); running is all-stop: the
// whole target runs, and a stop names the thread that executes the
// target's next instruction, which becomes the selected one. A step is one
// instruction of the target, whichever thread executes it.
type Threads interface {
	NumThreads() int
	// SelectThread makes thread i (0-based) the one the Target's methods
	// act on.
	SelectThread(i int)
	// CurrentThread is the thread (0-based) that executes the target's
	// next instruction.
	CurrentThread() int
}

type state int

const (
	stopped  state = iota // waiting for GDB's commands
	running               // continue
	stepping              // one instruction, to stepTo
	detached              // GDB left (D or connection closed): run freely
	killed                // GDB sent k: the owner should end the run
	ended                 // the target exited; only Finish's reply is left
)

// Server is a GDB connection to one target.
type Server struct {
	t      Target
	w      io.Writer
	closer io.Closer
	events chan event

	wmu       sync.Mutex // serialises writes (acks from the loop, Close)
	noAck     bool
	lastSent  []byte
	interrupt atomic.Bool
	faulted   bool // GDB was told of a StopFault

	st       state
	stepTo   uint64
	bps      map[uint64]bool
	lastStop string
	err      error
}

// ErrKilled is Server.Err after GDB killed the target.
var ErrKilled = errors.New("killed by the debugger")

// NewServer starts serving GDB on conn. The target is stopped until GDB
// resumes it: the owner's first Run call waits for GDB's commands.
func NewServer(conn io.ReadWriteCloser, t Target) *Server {
	s := &Server{t: t, w: conn, closer: conn, events: make(chan event, 16),
		bps: map[uint64]bool{}}
	rd := &reader{r: bufio.NewReader(conn), interrupt: func() { s.interrupt.Store(true) }}
	go func() {
		defer close(s.events)
		for {
			ev, err := rd.next()
			if err != nil {
				return
			}
			s.events <- ev
		}
	}()
	return s
}

// Err is ErrKilled after GDB killed the target, nil otherwise.
func (s *Server) Err() error { return s.err }

// Active reports whether GDB still controls the target (it has not
// detached, killed it or gone away).
func (s *Server) Active() bool { return s.st == stopped || s.st == running || s.st == stepping }

// Run does what GDB asks until the target's instruction count reaches
// until (StopLimit), the target idles (StopIdle: the owner must deliver an
// event before calling again) or ends (StopExited), or GDB kills it
// (StopExited with Err() == ErrKilled). Breakpoint and step stops, and the
// end of a replay's history, are handled inside: they are reported to GDB,
// not to the owner, except once GDB has detached, when a target that
// reaches the end of its history returns StopHistoryEnd.
func (s *Server) Run(until uint64) RunStop {
	for {
		switch s.st {
		case stopped:
			s.serve()
		case detached:
			return s.t.Run(until, nil, nil)
		case killed, ended:
			return StopExited
		case running:
			var breakAt func(uint64) bool
			if len(s.bps) > 0 { // no breakpoints: let the target run in large slices
				breakAt = s.breakAt
			}
			r := s.t.Run(until, breakAt, s.interrupted)
			switch r {
			case StopBreak:
				s.stop(s.stopReply(5, ""))
			case StopInterrupted:
				s.stop(s.stopReply(2, ""))
			case StopExited:
				s.exited()
				return r
			case StopFault:
				if s.fault() {
					return StopExited
				}
			case StopHistoryEnd:
				s.stop(s.stopReply(5, historyEnd))
			default:
				return r
			}
		case stepping:
			lim := min(until, s.stepTo)
			r := s.t.Run(lim, nil, s.interrupted)
			switch {
			case r == StopExited:
				s.exited()
				return r
			case r == StopFault:
				if s.fault() {
					return StopExited
				}
			case r == StopInterrupted:
				s.stop(s.stopReply(2, ""))
			case r == StopHistoryEnd:
				s.stop(s.stopReply(5, historyEnd))
			case s.t.Instret() >= s.stepTo:
				s.stop(s.stopReply(5, ""))
			default:
				return r // the owner's limit, or idle: come back later
			}
		}
	}
}

// Finish tells GDB the run is over (the owner's loop has ended with the
// target still alive: the end of a replay, an instruction limit) and lets
// the user inspect the final state: the target is reported stopped, and
// commands are served until GDB resumes, detaches or kills it. A resume
// gets an exit reply, as there is nothing more to run.
func (s *Server) Finish() {
	if s.st == running || s.st == stepping {
		s.stop(s.stopReply(5, ""))
	}
	for s.st == stopped {
		s.serve()
	}
	if s.st == running || s.st == stepping {
		s.send([]byte("W00"))
		s.st = ended
	}
}

// Close ends the connection.
func (s *Server) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.closer.Close()
}

func (s *Server) breakAt(pc uint64) bool { return s.bps[pc] }

// stopReply is the T packet for a stop with signal sig, naming the thread
// that executes next, which becomes the selected one; extra is appended.
func (s *Server) stopReply(sig int, extra string) string {
	th := 1
	if ts, ok := s.t.(Threads); ok {
		cur := ts.CurrentThread()
		ts.SelectThread(cur)
		th = cur + 1
	}
	return fmt.Sprintf("T%02xthread:%x;%s", sig, th, extra)
}

// threads is the number of threads GDB sees.
func (s *Server) threads() int {
	if ts, ok := s.t.(Threads); ok {
		return ts.NumThreads()
	}
	return 1
}

// thread serves H and T: select thread id for register and memory
// accesses (Hg; Hc is moot in all-stop mode), or say whether it exists.
func (s *Server) thread(p []byte) []byte {
	if len(p) < 2 {
		return errReply(1)
	}
	op, arg := p[1], p[2:]
	if p[0] == 'H' && op != 'g' {
		return replyOK
	}
	if p[0] == 'T' {
		arg = p[1:]
	}
	if string(arg) == "0" || string(arg) == "-1" {
		return replyOK // any thread: keep the selected one
	}
	id, ok := parseHex(arg)
	if !ok || id < 1 || id > uint64(s.threads()) {
		return errReply(1)
	}
	if ts, ok := s.t.(Threads); ok && p[0] == 'H' {
		ts.SelectThread(int(id - 1))
	}
	return replyOK
}

func (s *Server) interrupted() bool { return s.interrupt.Load() }

// stop reports a stop to GDB and waits for its commands. A Ctrl-C that
// arrived while stopping is moot: the target is stopped.
func (s *Server) stop(reply string) {
	s.st = stopped
	s.lastStop = reply
	s.interrupt.Store(false)
	s.send([]byte(reply))
}

// fault reports a target that can make no progress: the first time as a
// stop with SIGSEGV (GDB can look at it), then, when GDB resumes it
// anyway, as its end (terminated by SIGSEGV); it reports whether the
// target has ended.
func (s *Server) fault() bool {
	if !s.faulted {
		s.faulted = true
		s.stop(s.stopReply(0x0b, ""))
		return false
	}
	s.lastStop = "X0b"
	s.send([]byte(s.lastStop))
	s.st = ended
	return true
}

func (s *Server) exited() {
	s.lastStop = fmt.Sprintf("W%02x", s.t.ExitCode()&0xff)
	s.send([]byte(s.lastStop))
	s.st = ended
}

// serve handles packets until GDB resumes the target or goes away.
func (s *Server) serve() {
	for s.st == stopped {
		ev, ok := <-s.events
		if !ok {
			s.st = detached // connection gone: let the guest run on
			return
		}
		switch ev.kind {
		case nackEv:
			if !s.noAck && s.lastSent != nil {
				s.write(s.lastSent)
			}
		case badEv:
			if !s.noAck {
				s.write([]byte{'-'})
			}
		case packetEv:
			if !s.noAck {
				s.write([]byte{'+'})
			}
			if reply, ok := s.handle(ev.data); ok {
				s.send(reply)
			}
		}
	}
}

func (s *Server) write(b []byte) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, err := s.w.Write(b); err != nil {
		// The reader will see the connection close; nothing to do here.
		return
	}
}

func (s *Server) send(payload []byte) {
	f := frame(payload)
	s.lastSent = f
	s.write(f)
}

var (
	replyOK    = []byte("OK")
	replyEmpty = []byte{} // "unsupported"
)

func errReply(n int) []byte { return fmt.Appendf(nil, "E%02x", n) }

// handle executes one packet and returns its reply; ok=false when the
// packet gets none (it resumed the target: the reply is the stop that
// comes later; or k).
func (s *Server) handle(p []byte) (reply []byte, ok bool) {
	if len(p) == 0 {
		return replyEmpty, true
	}
	arg := p[1:]
	switch p[0] {
	case '?':
		if s.lastStop == "" { // stopped at the start, before any run
			s.lastStop = s.stopReply(5, "")
		}
		return []byte(s.lastStop), true
	case 'g':
		return s.readAllRegisters(), true
	case 'G':
		return s.writeAllRegisters(arg), true
	case 'p':
		n, ok := parseHex(arg)
		if !ok || n > 1<<16 {
			return errReply(1), true
		}
		size := s.t.RegisterSize(int(n))
		if size == 0 {
			return errReply(1), true
		}
		buf := make([]byte, size)
		if !s.t.ReadRegister(int(n), buf) {
			return errReply(1), true
		}
		return appendHex(nil, buf), true
	case 'P':
		ns, vs, found := bytes.Cut(arg, []byte("="))
		n, ok := parseHex(ns)
		v, ok2 := decodeHex(vs)
		if !found || !ok || !ok2 || n > 1<<16 || len(v) != s.t.RegisterSize(int(n)) || len(v) == 0 {
			return errReply(1), true
		}
		if !s.t.WriteRegister(int(n), v) {
			return errReply(1), true
		}
		return replyOK, true
	case 'm':
		addr, n, _, ok := parseAddrLen(arg, false)
		if !ok {
			return errReply(1), true
		}
		n = min(n, maxPacket/2-8)
		buf := make([]byte, n)
		got := s.t.ReadMemory(addr, buf)
		if got == 0 && n > 0 {
			return errReply(0x14), true
		}
		return appendHex(nil, buf[:got]), true
	case 'M', 'X':
		addr, n, data, ok := parseAddrLen(arg, true)
		if !ok {
			return errReply(1), true
		}
		if p[0] == 'M' {
			if data, ok = decodeHex(data); !ok {
				return errReply(1), true
			}
		}
		if uint64(len(data)) != n {
			return errReply(1), true
		}
		if s.t.WriteMemory(addr, data) != len(data) {
			return errReply(0x14), true
		}
		return replyOK, true
	case 'Z', 'z':
		return s.breakpoint(p[0] == 'Z', arg), true
	case 'c', 's':
		if len(arg) > 0 {
			addr, ok := parseHex(arg)
			if !ok {
				return errReply(1), true
			}
			s.t.SetPC(addr)
		}
		s.resume(p[0] == 's')
		return nil, false
	case 'C', 'S':
		// Signals mean nothing to a machine: resume as c/s would.
		s.resume(p[0] == 'S')
		return nil, false
	case 'k':
		s.st, s.err = killed, ErrKilled
		return nil, false
	case 'D':
		s.st = detached
		return replyOK, true
	case 'H', 'T':
		return s.thread(p), true
	case 'v':
		return s.handleV(p)
	case 'q', 'Q':
		return s.handleQuery(p), true
	case 'b':
		return s.reverse(arg), true
	}
	return replyEmpty, true
}

// Stop reply suffixes for the ends of a replay's history: GDB reports "No
// more reverse-execution history" and stays stopped there.
const (
	historyEnd   = "replaylog:end;"
	historyBegin = "replaylog:begin;"
)

// reverse serves bs (one instruction back) and bc (back to the previous
// breakpoint hit). They run to completion while GDB waits, then the stop is
// the reply; Ctrl-C interrupts a bc.
func (s *Server) reverse(arg []byte) []byte {
	rv, ok := s.t.(Reverser)
	if !ok || len(arg) != 1 {
		return replyEmpty // unsupported: GDB says the target cannot go back
	}
	var r RunStop
	switch arg[0] {
	case 's':
		r = rv.StepBack()
	case 'c':
		r = rv.RunBack(s.breakAt, s.interrupted)
	default:
		return replyEmpty
	}
	switch r {
	case StopHistoryBegin:
		s.lastStop = s.stopReply(5, historyBegin)
	case StopInterrupted:
		s.lastStop = s.stopReply(2, "")
	default:
		s.lastStop = s.stopReply(5, "")
	}
	s.interrupt.Store(false)
	return []byte(s.lastStop)
}

func (s *Server) resume(step bool) {
	if step {
		s.st, s.stepTo = stepping, s.t.Instret()+1
	} else {
		s.st = running
	}
}

func (s *Server) handleV(p []byte) ([]byte, bool) {
	switch {
	case bytes.Equal(p, []byte("vCont?")):
		return []byte("vCont;c;C;s;S"), true
	case bytes.HasPrefix(p, []byte("vCont;")):
		// All-stop: the first action applies to the whole target (GDB
		// lists the action for the selected thread first, then a
		// default); a step is one instruction of the target.
		act, _, _ := bytes.Cut(p[len("vCont;"):], []byte(";"))
		act, _, _ = bytes.Cut(act, []byte(":"))
		if len(act) == 0 {
			return errReply(1), true
		}
		switch act[0] {
		case 'c', 'C':
			s.resume(false)
		case 's', 'S':
			s.resume(true)
		default:
			return errReply(1), true
		}
		return nil, false
	case bytes.HasPrefix(p, []byte("vKill")):
		s.st, s.err = killed, ErrKilled
		return replyOK, true
	}
	return replyEmpty, true // includes vMustReplyEmpty
}

func (s *Server) handleQuery(p []byte) []byte {
	if rest, ok := bytes.CutPrefix(p, []byte("qRcmd,")); ok {
		return s.monitor(rest)
	}
	if rest, ok := bytes.CutPrefix(p, []byte("qThreadExtraInfo,")); ok {
		id, ok := parseHex(rest)
		if !ok || id < 1 || id > uint64(s.threads()) {
			return errReply(1)
		}
		return appendHex(nil, fmt.Appendf(nil, "hart %d", id-1))
	}
	name, _, _ := bytes.Cut(p, []byte(":"))
	switch string(name) {
	case "qSupported":
		feats := fmt.Sprintf("PacketSize=%x;QStartNoAckMode+;vContSupported+", maxPacket)
		if _, ok := s.t.(Reverser); ok {
			feats += ";ReverseStep+;ReverseContinue+"
		}
		if s.t.TargetXML() != "" {
			feats += ";qXfer:features:read+"
		}
		return []byte(feats)
	case "QStartNoAckMode":
		// The OK still goes out acked-mode; the serve loop sends no ack
		// for packets after this one.
		s.noAck = true
		return replyOK
	case "qAttached":
		return []byte("1") // the machine existed before GDB: detach, not kill, on quit
	case "qC":
		if ts, ok := s.t.(Threads); ok {
			return fmt.Appendf(nil, "QC%x", ts.CurrentThread()+1)
		}
		return []byte("QC1")
	case "qfThreadInfo":
		out := []byte("m")
		for i := range s.threads() {
			if i > 0 {
				out = append(out, ',')
			}
			out = fmt.Appendf(out, "%x", i+1)
		}
		return out
	case "qsThreadInfo":
		return []byte("l")
	case "qSymbol":
		return replyOK
	case "qXfer":
		return s.xfer(p)
	}
	return replyEmpty
}

// xfer serves qXfer:features:read:target.xml:OFF,LEN.
func (s *Server) xfer(p []byte) []byte {
	parts := bytes.SplitN(p, []byte(":"), 5)
	if len(parts) != 5 || string(parts[1]) != "features" || string(parts[2]) != "read" {
		return replyEmpty
	}
	if string(parts[3]) != "target.xml" || s.t.TargetXML() == "" {
		return errReply(0)
	}
	offs, lens, found := bytes.Cut(parts[4], []byte(","))
	off, ok1 := parseHex(offs)
	n, ok2 := parseHex(lens)
	if !found || !ok1 || !ok2 {
		return errReply(1)
	}
	doc := s.t.TargetXML()
	if off >= uint64(len(doc)) {
		return []byte("l")
	}
	n = min(n, maxPacket/2, uint64(len(doc))-off)
	out := []byte("m")
	if off+n == uint64(len(doc)) {
		out[0] = 'l'
	}
	return append(out, doc[off:off+n]...) // frame escapes what needs it
}

// monitor serves "monitor CMD" (qRcmd,HEX): "instret" prints the
// instruction count, the debugger's notion of time.
func (s *Server) monitor(arg []byte) []byte {
	cmd, ok := decodeHex(arg)
	if !ok {
		return errReply(1)
	}
	var text string
	switch string(bytes.TrimSpace(cmd)) {
	case "instret":
		text = strconv.FormatUint(s.t.Instret(), 10) + "\n"
	case "breakpoints":
		addrs := make([]uint64, 0, len(s.bps))
		for a := range s.bps {
			addrs = append(addrs, a)
		}
		sort.Slice(addrs, func(i, j int) bool { return addrs[i] < addrs[j] })
		for _, a := range addrs {
			text += fmt.Sprintf("%#x\n", a)
		}
	default:
		text = "monitor commands: instret, breakpoints\n"
	}
	return appendHex(nil, []byte(text))
}

func (s *Server) breakpoint(insert bool, arg []byte) []byte {
	f := bytes.SplitN(arg, []byte(","), 3)
	if len(f) < 2 || len(f[0]) != 1 {
		return errReply(1)
	}
	if f[0][0] != '0' && f[0][0] != '1' {
		return replyEmpty // watchpoints are not supported
	}
	addr, ok := parseHex(f[1])
	if !ok {
		return errReply(1)
	}
	if insert {
		if len(s.bps) >= 4096 && !s.bps[addr] {
			return errReply(0x0c) // bound a hostile client's memory use
		}
		s.bps[addr] = true
	} else {
		delete(s.bps, addr)
	}
	return replyOK
}

// parseAddrLen parses "ADDR,LEN" (m) or "ADDR,LEN:DATA" (M, X).
func parseAddrLen(arg []byte, withData bool) (addr, n uint64, data []byte, ok bool) {
	head := arg
	if withData {
		var found bool
		head, data, found = bytes.Cut(arg, []byte(":"))
		if !found {
			return 0, 0, nil, false
		}
	}
	as, ls, found := bytes.Cut(head, []byte(","))
	if !found {
		return 0, 0, nil, false
	}
	if addr, ok = parseHex(as); !ok {
		return 0, 0, nil, false
	}
	if n, ok = parseHex(ls); !ok || n > maxPacket {
		return 0, 0, nil, false
	}
	return addr, n, data, true
}

func (s *Server) readAllRegisters() []byte {
	var out []byte
	for i := 0; i < s.t.NumRegisters(); i++ {
		buf := make([]byte, s.t.RegisterSize(i))
		if !s.t.ReadRegister(i, buf) {
			for range buf {
				out = append(out, 'x', 'x') // unavailable
			}
			continue
		}
		out = appendHex(out, buf)
	}
	return out
}

func (s *Server) writeAllRegisters(arg []byte) []byte {
	v, ok := decodeHex(arg)
	if !ok {
		return errReply(1)
	}
	for i := 0; i < s.t.NumRegisters() && len(v) > 0; i++ {
		n := s.t.RegisterSize(i)
		if len(v) < n {
			return errReply(1)
		}
		s.t.WriteRegister(i, v[:n])
		v = v[n:]
	}
	return replyOK
}
