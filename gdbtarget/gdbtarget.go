// Package gdbtarget puts the RISC-V machine under GDB's control through
// package gdbstub: the target (registers, CSRs and memory through the
// guest's page tables), a session that waits for GDB and sits in the
// engine seam between a run loop and the machine (surviving a guest
// reboot), and replays that GDB can run backwards (replay.Timeline).
//
// A session makes the machine wait, stopped at its first instruction, for
// GDB to connect, then run under its control. The run loop (or the
// replay) still drives the machine, delivering events at the counts it
// chooses; the debugger sits in the engine seam, between the loop and the
// machine.
package gdbtarget

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"

	"ftvm/gdbstub"
	"ftvm/machine"
	"ftvm/replay"
	"ftvm/riscv"
	"ftvm/vm"
)

// Session is a listening GDB endpoint and, once GDB has connected, its
// connection. One session outlives machine restarts (a guest reboot): the
// new machine is attached to the same connection.
type Session struct {
	ln    net.Listener
	srv   *gdbstub.Server
	tgt   *target
	flush func()
	log   io.Writer
	err   error // accepting the connection failed
}

// Listen opens addr for GDB, or returns nil when addr is empty. A bare
// port or ":port" listens on loopback only: a GDB stub gives whoever
// connects full control of the guest. flush (nil: none) is called when
// the machine stops under GDB, to show the console output so far; log
// receives the messages for the user.
func Listen(addr string, flush func(), log io.Writer) (*Session, error) {
	if addr == "" {
		return nil, nil
	}
	if !strings.Contains(addr, ":") {
		addr = ":" + addr
	}
	if strings.HasPrefix(addr, ":") {
		addr = "127.0.0.1" + addr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for GDB: %w", err)
	}
	if flush == nil {
		flush = func() {}
	}
	if log == nil {
		log = io.Discard
	}
	return &Session{ln: ln, flush: flush, log: log}, nil
}

// attach puts the debugger between a run loop and e, which runs m (e is m
// or a wrapper of it). The first attach waits for GDB to connect. With no
// session it returns e unchanged.
func (g *Session) attach(m *machine.Machine, e vm.Engine) (vm.Engine, error) {
	if g == nil {
		return e, nil
	}
	t := &target{m: m, e: e, flush: g.flush}
	if g.srv == nil {
		fmt.Fprintf(g.log, "ftvm: waiting for GDB on %s (target remote %s)\r\n", g.ln.Addr(), g.ln.Addr())
		conn, err := g.ln.Accept()
		if err != nil {
			return nil, fmt.Errorf("waiting for GDB: %w", err)
		}
		g.ln.Close() // one debugger per run
		g.tgt = t
		g.srv = gdbstub.NewServer(conn, t)
	} else {
		*g.tgt = *t // after a reboot: the same connection, the new machine
	}
	return &engine{Engine: e, g: g}, nil
}

// Finish ends the session when the run or replay loop is over: GDB can
// still inspect the final state until it detaches, kills or resumes. It
// returns an error if GDB killed the run.
func (g *Session) Finish() error {
	if g == nil {
		return nil
	}
	if g.srv == nil {
		g.ln.Close()
		return g.err
	}
	g.flush()
	g.srv.Finish()
	g.srv.Close()
	return g.srv.Err()
}

// engine is the engine a run loop sees while GDB is attached: Run goes
// through the stub, everything else straight to the machine.
type engine struct {
	vm.Engine
	g *Session
}

func (d *engine) Run(until uint64) vm.StopReason {
	switch d.g.srv.Run(until) {
	case gdbstub.StopIdle:
		return vm.StopIdle
	case gdbstub.StopFault: // GDB has detached
		return vm.StopLockup
	case gdbstub.StopExited:
		if d.g.srv.Err() != nil {
			return vm.StopPowerOff // killed: end the loop; finish reports why
		}
		return d.g.tgt.last
	}
	return vm.StopLimit
}

// target is the RISC-V machine as gdbstub sees it: one thread per hart.
// Register numbers follow the target description below (GDB's own riscv
// numbering for x, pc and f; fflags, frm, fcsr, priv and a few CSRs after
// them).
type target struct {
	m     *machine.Machine
	sel   int // the hart GDB looks at (its selected thread)
	e     vm.Engine
	flush func()
	last  vm.StopReason // why the machine stopped, after StopExited
}

var _ gdbstub.Threads = (*target)(nil)

// h is the selected hart.
func (t *target) h() *riscv.Hart { return t.m.Hart(t.sel) }

func (t *target) NumThreads() int    { return t.m.NumHarts() }
func (t *target) SelectThread(i int) { t.sel = i }
func (t *target) CurrentThread() int { return t.m.CurrentHart() }

// nextPC is the PC of the machine's next instruction, on the hart that
// executes it: what a breakpoint is checked against.
func (t *target) nextPC() uint64 { return t.m.Hart(t.m.CurrentHart()).PC }

const (
	regPC     = 32
	regF0     = 33
	regFflags = 65
	regFrm    = 66
	regFcsr   = 67
	regPriv   = 68
	regCSR0   = 69 // csrs[i] is register regCSR0+i
	numGRegs  = regPriv + 1
)

// csrs are the CSRs shown to GDB (info registers sstatus, p $satp).
var csrs = []struct {
	name string
	num  uint32
}{
	{"sstatus", riscv.CSRSstatus}, {"sie", riscv.CSRSie}, {"stvec", riscv.CSRStvec},
	{"sscratch", riscv.CSRSscratch}, {"sepc", riscv.CSRSepc}, {"scause", riscv.CSRScause},
	{"stval", riscv.CSRStval}, {"sip", riscv.CSRSip}, {"satp", riscv.CSRSatp},
	{"mstatus", riscv.CSRMstatus}, {"misa", riscv.CSRMisa}, {"medeleg", riscv.CSRMedeleg},
	{"mideleg", riscv.CSRMideleg}, {"mie", riscv.CSRMie}, {"mtvec", riscv.CSRMtvec},
	{"mscratch", riscv.CSRMscratch}, {"mepc", riscv.CSRMepc}, {"mcause", riscv.CSRMcause},
	{"mtval", riscv.CSRMtval}, {"mip", riscv.CSRMip},
	{"cycle", riscv.CSRCycle}, {"time", riscv.CSRTime}, {"instret", riscv.CSRInstret},
}

var targetXML = func() string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
<architecture>riscv:rv64</architecture>
<feature name="org.gnu.gdb.riscv.cpu">
`)
	abi := []string{"zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "fp", "s1",
		"a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "s2", "s3", "s4", "s5",
		"s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4", "t5", "t6"}
	for i, n := range abi {
		typ := "int"
		if n == "sp" || n == "gp" || n == "tp" || n == "fp" {
			typ = "data_ptr"
		}
		fmt.Fprintf(&b, "<reg name=%q bitsize=\"64\" type=%q regnum=\"%d\"/>\n", n, typ, i)
	}
	fmt.Fprintf(&b, "<reg name=\"pc\" bitsize=\"64\" type=\"code_ptr\" regnum=\"%d\"/>\n</feature>\n", regPC)
	b.WriteString("<feature name=\"org.gnu.gdb.riscv.fpu\">\n")
	fabi := []string{"ft0", "ft1", "ft2", "ft3", "ft4", "ft5", "ft6", "ft7", "fs0", "fs1",
		"fa0", "fa1", "fa2", "fa3", "fa4", "fa5", "fa6", "fa7", "fs2", "fs3", "fs4", "fs5",
		"fs6", "fs7", "fs8", "fs9", "fs10", "fs11", "ft8", "ft9", "ft10", "ft11"}
	for i, n := range fabi {
		fmt.Fprintf(&b, "<reg name=%q bitsize=\"64\" type=\"ieee_double\" regnum=\"%d\"/>\n", n, regF0+i)
	}
	fmt.Fprintf(&b, `<reg name="fflags" bitsize="32" type="int" regnum="%d" group="float"/>
<reg name="frm" bitsize="32" type="int" regnum="%d" group="float"/>
<reg name="fcsr" bitsize="32" type="int" regnum="%d" group="float"/>
</feature>
<feature name="org.gnu.gdb.riscv.virtual">
<reg name="priv" bitsize="64" type="int" regnum="%d"/>
</feature>
<feature name="org.gnu.gdb.riscv.csr">
`, regFflags, regFrm, regFcsr, regPriv)
	for i, c := range csrs {
		fmt.Fprintf(&b, "<reg name=%q bitsize=\"64\" type=\"int\" regnum=\"%d\" group=\"csr\"/>\n", c.name, regCSR0+i)
	}
	b.WriteString("</feature>\n</target>\n")
	return b.String()
}()

func (t *target) TargetXML() string { return targetXML }
func (t *target) NumRegisters() int { return numGRegs }

func (t *target) RegisterSize(n int) int {
	switch {
	case n >= 0 && n < regFflags, n == regPriv, n >= regCSR0 && n < regCSR0+len(csrs):
		return 8
	case n >= regFflags && n <= regFcsr:
		return 4
	}
	return 0
}

// register returns a pointer-free view of register n: its value, whether
// it exists.
func (t *target) register(n int) (uint64, bool) {
	h := t.h()
	switch {
	case n >= 0 && n < 32:
		return h.X[n], true
	case n == regPC:
		return h.PC, true
	case n >= regF0 && n < regF0+32:
		return h.F[n-regF0], true
	case n == regFflags:
		return h.DebugReadCSR(riscv.CSRFflags)
	case n == regFrm:
		return h.DebugReadCSR(riscv.CSRFrm)
	case n == regFcsr:
		return h.DebugReadCSR(riscv.CSRFcsr)
	case n == regPriv:
		return uint64(h.Priv), true
	case n >= regCSR0 && n < regCSR0+len(csrs):
		return h.DebugReadCSR(csrs[n-regCSR0].num)
	}
	return 0, false
}

func (t *target) ReadRegister(n int, p []byte) bool {
	v, ok := t.register(n)
	if !ok || len(p) != t.RegisterSize(n) {
		return false
	}
	if len(p) == 4 {
		binary.LittleEndian.PutUint32(p, uint32(v))
	} else {
		binary.LittleEndian.PutUint64(p, v)
	}
	return true
}

func (t *target) WriteRegister(n int, p []byte) bool {
	if len(p) != t.RegisterSize(n) {
		return false
	}
	var v uint64
	if len(p) == 4 {
		v = uint64(binary.LittleEndian.Uint32(p))
	} else {
		v = binary.LittleEndian.Uint64(p)
	}
	h := t.h()
	switch {
	case n == 0:
		return true // x0 stays zero, as GDB expects of a hard-wired register
	case n > 0 && n < 32:
		h.X[n] = v
	case n == regPC:
		h.PC = v
	case n >= regF0 && n < regF0+32:
		h.F[n-regF0] = v
	case n == regFflags:
		return h.DebugWriteCSR(riscv.CSRFflags, v)
	case n == regFrm:
		return h.DebugWriteCSR(riscv.CSRFrm, v)
	case n == regFcsr:
		return h.DebugWriteCSR(riscv.CSRFcsr, v)
	case n == regPriv:
		return h.SetPriv(uint8(v))
	case n >= regCSR0 && n < regCSR0+len(csrs):
		return h.DebugWriteCSR(csrs[n-regCSR0].num, v)
	default:
		return false
	}
	return true
}

// memory accesses p at virtual address addr page by page (each page has
// its own translation) and returns how many leading bytes it managed.
func (t *target) memory(addr uint64, p []byte, write bool) int {
	done := 0
	for done < len(p) {
		va := addr + uint64(done)
		n := min(len(p)-done, int(4096-va&4095))
		pa, ok := t.h().DebugTranslate(va)
		if !ok {
			break
		}
		if write {
			ok = t.m.DebugWritePhys(pa, p[done:done+n])
		} else {
			ok = t.h().DebugReadPhys(pa, p[done:done+n])
		}
		if !ok {
			break
		}
		done += n
	}
	return done
}

func (t *target) ReadMemory(addr uint64, p []byte) int  { return t.memory(addr, p, false) }
func (t *target) WriteMemory(addr uint64, p []byte) int { return t.memory(addr, p, true) }
func (t *target) PC() uint64                            { return t.h().PC }
func (t *target) SetPC(pc uint64)                       { t.h().PC = pc }
func (t *target) Instret() uint64                       { return t.e.Instret() }
func (t *target) ExitCode() int                         { return int(t.m.ExitCode()) }

// slice is how many instructions run between looks at Ctrl-C when no
// breakpoint is set (a fraction of a millisecond).
const slice = 1 << 16

// Run runs the machine through its engine (so a recorder still logs and a
// timer still cuts slices where it must). With breakpoints it goes one
// instruction at a time to look at every PC; how Run is sliced is not
// visible to the guest, so this changes nothing it computes.
func (t *target) Run(until uint64, breakAt func(uint64) bool, interrupted func() bool) gdbstub.RunStop {
	for {
		if t.e.Instret() >= until {
			return gdbstub.StopLimit
		}
		if breakAt != nil && breakAt(t.nextPC()) {
			t.flush()
			return gdbstub.StopBreak
		}
		if interrupted != nil && interrupted() {
			t.flush()
			return gdbstub.StopInterrupted
		}
		next := min(until, t.e.Instret()+slice)
		if breakAt != nil {
			next = t.e.Instret() + 1
		}
		switch r := t.e.Run(next); r {
		case vm.StopLimit:
		case vm.StopIdle:
			return gdbstub.StopIdle
		case vm.StopLockup:
			t.flush()
			t.last = r
			return gdbstub.StopFault
		default:
			t.flush()
			t.last = r
			return gdbstub.StopExited
		}
	}
}

// Engine is m with the debugger attached when there is a session (the
// first call waits for GDB to connect), for a run loop to run. After a
// reboot, the new machine's Engine keeps the same connection.
func (g *Session) Engine(m *machine.Machine) (vm.Engine, error) {
	if g == nil {
		return m, nil
	}
	return g.attach(m, m)
}

// CheckpointEvery is the initial interval between the in-memory
// checkpoints a replay under GDB keeps for reverse execution (about a
// tenth of a second of re-execution); it doubles as the run grows.
const CheckpointEvery = 1 << 24

// Replay runs the replay tl to its end, under GDB when addr is not
// empty: the replay starts stopped and waits for GDB, which can run it
// forward (the log's events are still delivered at their counts and every
// digest is checked) and backward (reverse-stepi, reverse-continue). The
// end of the log, or a divergence, is the end of the history: GDB is told
// so and can look around and go back. The replay is over when GDB
// detaches (the rest is replayed without it) or kills it.
func Replay(addr string, m *machine.Machine, tl *replay.Timeline, flush func() error, log io.Writer) error {
	if addr == "" {
		tl.Run(^uint64(0))
		return tl.Err()
	}
	g, err := Listen(addr, func() { flush() }, log)
	if err != nil {
		return err
	}
	t := &replayTarget{target: &target{m: m, e: tl, flush: g.flush}, tl: tl, log: g.log}
	fmt.Fprintf(g.log, "ftvm: waiting for GDB on %s (target remote %s)\n", g.ln.Addr(), g.ln.Addr())
	conn, err := g.ln.Accept()
	g.ln.Close()
	if err != nil {
		return fmt.Errorf("waiting for GDB: %w", err)
	}
	srv := gdbstub.NewServer(conn, t)
	defer srv.Close()
	for {
		r := srv.Run(^uint64(0))
		if err := srv.Err(); err != nil {
			return err // killed
		}
		if r == gdbstub.StopHistoryEnd || r == gdbstub.StopExited {
			return tl.Err()
		}
	}
}

// replayTarget is a replay as GDB sees it: a target whose history can
// be run backwards.
type replayTarget struct {
	*target
	tl       *replay.Timeline
	log      io.Writer
	reported error
}

var _ gdbstub.Reverser = (*replayTarget)(nil)

// Run is target.Run, except that the end of the log (or a divergence)
// is the end of the history rather than the end of the machine.
func (t *replayTarget) Run(until uint64, breakAt func(uint64) bool, interrupted func() bool) gdbstub.RunStop {
	r := t.target.Run(until, breakAt, interrupted)
	if r == gdbstub.StopExited || r == gdbstub.StopFault {
		t.report()
		return gdbstub.StopHistoryEnd
	}
	return r
}

// report prints a divergence once, where the user of GDB can see it.
func (t *replayTarget) report() {
	if err := t.tl.Err(); err != nil && err != t.reported {
		t.reported = err
		fmt.Fprintf(t.log, "ftvm: %v\n", err)
	}
}

func (t *replayTarget) StepBack() gdbstub.RunStop {
	ok, err := t.tl.StepBack()
	t.flush()
	if err != nil {
		t.report()
	}
	if !ok {
		return gdbstub.StopHistoryBegin
	}
	return gdbstub.StopLimit
}

func (t *replayTarget) RunBack(breakAt func(uint64) bool, interrupted func() bool) gdbstub.RunStop {
	fired := false
	intr := func() bool {
		fired = fired || interrupted != nil && interrupted()
		return fired
	}
	found, err := t.tl.RunBack(func() bool { return breakAt(t.nextPC()) }, intr)
	t.flush()
	if err != nil {
		t.report()
	}
	switch {
	case fired:
		return gdbstub.StopInterrupted
	case found:
		return gdbstub.StopBreak
	}
	return gdbstub.StopHistoryBegin
}

// WriteRegister and WriteMemory change the run: the history after this
// point is no longer the one recorded.
func (t *replayTarget) WriteRegister(n int, p []byte) bool {
	t.tl.Forget()
	return t.target.WriteRegister(n, p)
}

func (t *replayTarget) WriteMemory(addr uint64, p []byte) int {
	t.tl.Forget()
	return t.target.WriteMemory(addr, p)
}
