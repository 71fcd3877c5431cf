package core

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"ftvm/arbiter/view"
	"ftvm/internal/fakevm"
	"ftvm/replay"
	"ftvm/replay/eventlog"
	"ftvm/replication/outbuf"
	"ftvm/vm"
)

// The scenarios in testdata/*.txt drive one or two cores through a small
// environment in the style of etcd raft's interaction tests: each replica
// has a real engine (package fakevm), a real recorder or replayer, a real
// output buffer (package outbuf) and a real event log; the environment
// moves the log bytes and acknowledgements between them only when the
// script says so, answers the arbiter's questions from a view it keeps,
// and steps ticks by hand. Everything the cores do (their actions) and
// every output that leaves a replica is printed, and compared with the
// expected text below the command. go test -run TestScripts -rewrite
// regenerates the expected text (read the diff before committing it).
//
// Commands (a, b: replica names):
//
//	primary a                 a runs a new cluster's guest, unprotected
//	join a b                  b asks a to protect it; the state transfer,
//	                          the arbitration and the link follow
//	run a [N]                 N epochs (default 1) of 10 000 instructions
//	input a TEXT              console input for a's guest (its answer
//	                          comes out in the next epoch)
//	deliver a b               the log bytes a sent reach b, and b reads
//	                          them (a's sender has written them)
//	apply b                   b replays what it has read
//	ack b a                   b's latest acknowledgement reaches a
//	tick a [N]                N ticks (sends and acknowledgements are
//	                          counted, not listed)
//	fail a ERROR [tampered]   a's link reports ERROR
//	corrupt a b               the next bytes from a to b get a bit flipped
//	damage b                  a byte of b's guest memory changes
//	forge-ack a F B R         a receives an acknowledgement of F frames, B
//	                          bytes, instruction R
//	arbiter a reachable|unreachable
//	arbiter-view G P [B]      someone else stores a view at the arbiter
//	finish a                  a's guest powers off
//	status a
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScript(t, f) })
	}
}

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of the scripts in testdata")

// runScript runs the blocks of a script: command lines, "----", the
// expected output, a blank line.
func runScript(t *testing.T, path string) {
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := newEnv(t)
	var out bytes.Buffer
	lines := strings.Split(string(src), "\n")
	for i := 0; i < len(lines); {
		l := lines[i]
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			out.WriteString(l + "\n")
			i++
			continue
		}
		start := i
		var cmds []string
		for i < len(lines) && lines[i] != "----" {
			cmds = append(cmds, lines[i])
			i++
		}
		if i == len(lines) {
			t.Fatalf("%s:%d: no ---- after the command", path, start+1)
		}
		i++
		var want []string
		for i < len(lines) && lines[i] != "" {
			want = append(want, lines[i])
			i++
		}
		env.trace = nil
		for _, c := range cmds {
			env.run(t, c)
		}
		got := env.trace
		if !*rewrite && strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", path, start+1, strings.Join(cmds, "; "),
				strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		for _, c := range cmds {
			out.WriteString(c + "\n")
		}
		out.WriteString("----\n")
		for _, g := range got {
			out.WriteString(g + "\n")
		}
	}
	if *rewrite {
		b := bytes.TrimRight(out.Bytes(), "\n")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const (
	epochLen    = 10_000
	digestEvery = 30_000
)

type env struct {
	t     *testing.T
	nodes map[string]*node
	view  view.View // the arbiter's
	trace []string
	// counted, not listed, while ticking
	counting bool
	counts   map[string]int
}

func newEnv(t *testing.T) *env {
	return &env{t: t, nodes: map[string]*node{}}
}

func (e *env) printf(format string, args ...any) {
	e.trace = append(e.trace, fmt.Sprintf(format, args...))
}

// node is one replica: its core and what its driver would hold.
type node struct {
	env  *env
	name string
	c    *Core
	e    *fakevm.Engine
	out  *outbuf.Buffer
	rec  *replay.Recorder

	unreachable bool // the arbiter, from here
	stopped     bool

	// Primary: log bytes sent and not yet delivered, and what the peer
	// owes as a flip.
	wire    [][]byte
	frames  []int64 // the frame count through each chunk of wire
	written int64
	flip    bool

	// Backup: the log as read, records waiting to be replayed, the latest
	// acknowledgement not yet delivered.
	peer   *node
	feed   *feed
	rd     *eventlog.Reader
	queue  []queued
	player *replay.Player
	hashes *replay.Outputs
	state  [32]byte // digest of the transferred state
	start  uint64
	ack    *SendAck
	broken bool // the stream failed: nothing more is read
}

type queued struct {
	rec   eventlog.Record
	frame int64
	off   int64
}

// feed is the backup's end of the connection: bytes delivered so far.
type feed struct{ b bytes.Buffer }

func (f *feed) Read(p []byte) (int, error) {
	if f.b.Len() == 0 {
		return 0, io.EOF // never reached: records are read only once delivered whole
	}
	return f.b.Read(p)
}

func (e *env) node(name string) *node {
	n := e.nodes[name]
	if n == nil {
		e.t.Fatalf("no replica %q", name)
	}
	return n
}

func (e *env) newNode(name string) *node {
	n := &node{env: e, name: name}
	n.out = outbuf.New(outbuf.Solo, func(o outbuf.Output) {
		if o.Net {
			e.printf("%s: emit frame %q @%d", name, o.Data, o.Instret)
		} else {
			e.printf("%s: emit console %q @%d", name, o.Data, o.Instret)
		}
	})
	e.nodes[name] = n
	return n
}

func (n *node) outputs() vm.Outputs {
	return vm.Outputs{
		Console: func(i uint64, b []byte) {
			if n.hashes != nil {
				n.hashes.Console(b)
			}
			n.out.Add(false, i, b)
		},
		Net: func(i uint64, f []byte) {
			if n.hashes != nil {
				n.hashes.Net(f)
			}
			n.out.Add(true, i, f)
		},
	}
}

func cfg(id string) Config {
	return Config{ID: id, Cluster: "test", Engine: "fakevm", HeartbeatTicks: 2, TimeoutTicks: 10,
		RetryTicks: 2, MaxRetryTicks: 8, MaxLag: 50_000}
}

// step steps an event into n's core and carries out what comes of it.
func (n *node) step(ev Event) error {
	err := n.c.Step(ev)
	n.process()
	return err
}

// process carries out n's actions, as the driver would: in order, with
// what needs the engine (starting a recorder, a state transfer) after the
// batch, as the engine's goroutine would get to it.
func (n *node) process() {
	e := n.env
	for {
		acts := n.c.Ready()
		if len(acts) == 0 {
			break
		}
		var later []func()
		for _, a := range acts {
			kind := strings.Fields(fmt.Sprint(a))[0]
			if e.counting && (kind == "send" || kind == "send-ack") {
				e.counts[n.name+": "+kind]++
			} else {
				e.printf("%s: %v", n.name, a)
			}
			switch a := a.(type) {
			case Send:
				n.wire = append(n.wire, a.Data)
				n.frames = append(n.frames, a.Frames)
			case SendAck:
				n.ack = &a
			case Hold:
				n.out.Hold(a.Frame)
			case Release:
				n.out.Release(a.Through)
			case ReleaseAll:
				n.out.ReleaseAll()
			case DropAll:
				n.out.DropAll()
			case Settle:
				n.out.Settle(a.Through)
			case Reissue:
				n.out.Reissue()
			case Arbitrate:
				n.c.Step(e.swap(n, a.Old, a.New))
			case Welcome:
				later = append(later, func() { e.transfer(n, e.node(a.ID)) })
			case Link:
				n.out.SetMode(outbuf.Held)
				later = append(later, func() {
					n.hashes = replay.NewOutputs()
					n.rec = replay.NewRecorder(n.e, coreLog{n}, digestEvery)
					n.rec.SetOutputs(n.hashes)
				})
			case Unlink:
				if n.rec != nil { // a primary's recorder and its hashes go with the link
					n.rec, n.hashes = nil, nil
				}
				n.wire, n.frames, n.broken = nil, nil, true
			case GoLive:
				n.hashes = nil
			case Stop:
				n.stopped = true
			}
		}
		n.out.Flush()
		for _, f := range later {
			f()
		}
	}
}

// coreLog is the recorder's log: the core's writer.
type coreLog struct{ n *node }

func (l coreLog) Append(r eventlog.Record) error { return l.n.step(Append{Record: r}) }
func (l coreLog) Flush() error                   { return l.n.step(Flush{}) }

// swap answers n's question to the arbiter, as an etcd arbiter would.
func (e *env) swap(n *node, old, new view.View) ArbiterAnswer {
	ans := ArbiterAnswer{Old: old, New: new}
	switch {
	case n.unreachable:
		ans.Err = errors.New("arbiter unreachable")
		e.printf("arbiter: %s cannot reach it", n.name)
		return ans
	case e.view == old || e.view == new:
		e.view, ans.Won, ans.Current = new, true, new
	default:
		ans.Current = e.view
	}
	e.printf("arbiter: %s swaps to %v: won=%v", n.name, new, ans.Won)
	return ans
}

// transfer copies the primary's state to the joining backup b, as the
// live state transfer ends: the guest is stopped, b's engine is built
// from the state.
func (e *env) transfer(p, b *node) {
	var st bytes.Buffer
	if err := p.e.SaveState(&st); err != nil {
		e.t.Fatal(err)
	}
	ram := bytes.Clone(p.e.RAM())
	eng, err := fakevm.Factory(nil, b.outputs())(&st, ram)
	if err != nil {
		e.t.Fatal(err)
	}
	b.e, b.peer = eng.(*fakevm.Engine), p
	b.state, b.start = b.e.Digest().Sum, b.e.Instret()
	b.out.SetMode(outbuf.Uncertain)
	e.printf("transfer %s -> %s at instret %d", p.name, b.name, b.start)
	p.step(Transferred{ID: b.name, State: p.e.Digest().Sum, Instret: p.e.Instret()})
}

// engine is what runs n's guest: through the recorder while a backup
// listens.
func (n *node) engine() vm.Engine {
	if n.rec != nil {
		return n.rec
	}
	return n.e
}

func (e *env) run(t *testing.T, line string) {
	f := fields(t, line)
	arg := func(i int) string {
		if i >= len(f) {
			t.Fatalf("%q: missing argument %d", line, i)
		}
		return f[i]
	}
	count := func(i int) int {
		if i >= len(f) {
			return 1
		}
		n, err := strconv.Atoi(f[i])
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		return n
	}
	switch f[0] {
	case "primary":
		n := e.newNode(arg(1))
		e.view = e.view.Next(n.name, "")
		n.c, _ = NewPrimary(cfg(n.name), e.view)
		n.e = fakevm.New(4, nil, n.outputs())
		e.printf("%s: primary in %v", n.name, e.view)
	case "join":
		p := e.node(arg(1))
		b := e.newNode(arg(2))
		b.c, _ = NewBackup(cfg(b.name))
		p.step(JoinRequest{ID: b.name, CertID: b.name, Cluster: "test", Version: ProtocolVersion})
	case "join-request":
		// join-request a ID CERT CLUSTER VERSION: a hello as sent
		p := e.node(arg(1))
		v, _ := strconv.Atoi(arg(5))
		p.step(JoinRequest{ID: arg(2), CertID: arg(3), Cluster: arg(4), Version: v})
	case "run":
		n := e.node(arg(1))
		for range count(2) {
			if !n.c.MayRun() {
				e.printf("%s: may not run", n.name)
				break
			}
			n.engine().Run(n.e.Instret() + epochLen)
			n.step(EpochEnded{Instret: n.e.Instret(), Outputs: n.out.Pending()})
		}
	case "input":
		n := e.node(arg(1))
		if _, err := n.engine().Deliver(vm.ConsoleInput{Data: []byte(arg(2))}); err != nil {
			t.Fatal(err)
		}
		n.step(Flush{})
	case "deliver":
		e.deliver(e.node(arg(1)), e.node(arg(2)))
	case "apply":
		e.apply(e.node(arg(1)))
	case "ack":
		b, p := e.node(arg(1)), e.node(arg(2))
		if b.ack == nil {
			e.printf("%s: no acknowledgement to deliver", b.name)
			break
		}
		a := *b.ack
		b.ack = nil
		p.step(Acked{Frames: a.Frames, Bytes: a.Bytes, Replayed: a.Replayed})
	case "tick":
		n := e.node(arg(1))
		e.counting, e.counts = true, map[string]int{}
		for range count(2) {
			n.step(Tick{})
		}
		e.counting = false
		for _, k := range []string{n.name + ": send", n.name + ": send-ack"} {
			if c := e.counts[k]; c > 0 {
				e.printf("%s x%d", k, c)
			}
		}
	case "fail":
		n := e.node(arg(1))
		n.step(LinkFailed{Err: errors.New(arg(2)), Tampered: len(f) > 3 && f[3] == "tampered"})
	case "corrupt":
		e.node(arg(1)).flip = true
	case "damage":
		n := e.node(arg(1))
		n.e.RAM()[7] ^= 0x40
	case "forge-ack":
		n := e.node(arg(1))
		fr, _ := strconv.ParseInt(arg(2), 10, 64)
		by, _ := strconv.ParseInt(arg(3), 10, 64)
		r, _ := strconv.ParseUint(arg(4), 10, 64)
		n.step(Acked{Frames: fr, Bytes: by, Replayed: r})
	case "arbiter":
		e.node(arg(1)).unreachable = arg(2) == "unreachable"
	case "arbiter-view":
		g, _ := strconv.ParseUint(arg(1), 10, 64)
		v := view.View{Generation: g, Primary: arg(2)}
		if len(f) > 3 {
			v.Backup = f[3]
		}
		e.view = v
		e.printf("arbiter: view is %v", v)
	case "finish":
		n := e.node(arg(1))
		if n.rec != nil {
			n.rec.Close(vm.StopPowerOff)
		}
		n.step(Finish{Reason: vm.StopPowerOff.String()})
	case "status":
		n := e.node(arg(1))
		s := n.c.Status()
		e.printf("%s: %v %v peer=%q instret=%d peer-instret=%d frames=%d bytes=%d done-bytes=%d may-run=%v held=%d uncertain=%d stopped=%v",
			n.name, s.Role, s.View, s.Peer, s.Instret, s.PeerInstret, s.Frames, s.Bytes, s.DoneBytes, n.c.MayRun(),
			n.out.Held(), n.out.Uncertain(), s.Stopped)
	default:
		t.Fatalf("unknown command %q", line)
	}
}

// deliver moves what p sent to b, and b reads it.
func (e *env) deliver(p, b *node) {
	for len(p.wire) > 0 {
		data, through := p.wire[0], p.frames[0]
		p.wire, p.frames = p.wire[1:], p.frames[1:]
		p.written += int64(len(data))
		p.step(Written{Bytes: p.written})
		if b.broken || b.stopped {
			continue
		}
		if p.flip {
			data = bytes.Clone(data)
			data[len(data)/2] ^= 0x10
			p.flip = false
		}
		if b.feed == nil {
			b.feed = &feed{}
		}
		b.feed.b.Write(data)
		if b.rd == nil {
			rd, err := eventlog.NewReader(bufio.NewReaderSize(b.feed, 1<<20))
			if err != nil {
				e.t.Fatalf("the log's header: %v", err)
			}
			b.rd = rd
			b.player = replay.NewPlayer(b.e)
			b.hashes = replay.NewOutputs()
			b.player.SetOutputs(b.hashes)
			b.step(Following{Primary: p.name, Header: rd.Header(), State: b.state, Instret: b.start})
		}
		for !b.broken && b.rd.Frame() < through {
			rec, err := b.rd.Next()
			if err != nil {
				b.broken = true
				b.step(LinkFailed{Err: err})
				break
			}
			b.queue = append(b.queue, queued{rec, b.rd.Frame(), b.rd.Offset()})
			b.step(Received{Record: rec, Frame: b.rd.Frame(), Offset: b.rd.Offset(), Batch: b.rd.Frame() == through})
		}
	}
}

// apply replays what b has read.
func (e *env) apply(b *node) {
	for len(b.queue) > 0 && !b.stopped {
		q := b.queue[0]
		b.queue = b.queue[1:]
		var err error
		if q.rec.Kind == KindSync {
			err = replay.RunTo(b.e, q.rec.Instret)
		} else {
			err = b.player.Apply(q.rec)
		}
		if err != nil {
			b.step(ApplyFailed{Err: err})
			return
		}
		b.step(Applied{Record: q.rec, Frame: q.frame, Offset: q.off, Instret: b.e.Instret()})
	}
}

// fields splits a command line; "quoted strings" (Go syntax) are one field.
func fields(t *testing.T, line string) []string {
	var f []string
	for s := strings.TrimSpace(line); s != ""; s = strings.TrimSpace(s) {
		if s[0] == '"' {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			u, _ := strconv.Unquote(q)
			f = append(f, u)
			s = s[len(q):]
			continue
		}
		i := strings.IndexByte(s, ' ')
		if i < 0 {
			i = len(s)
		}
		f = append(f, s[:i])
		s = s[i:]
	}
	return f
}
