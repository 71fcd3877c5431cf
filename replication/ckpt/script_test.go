package ckpt

import (
	"bytes"
	"errors"
	"flag"
	"strconv"
	"testing"

	"ftvm/internal/fakevm"
	"ftvm/internal/scripttest"
	"ftvm/replication/core"
	"ftvm/replication/outbuf"
	"ftvm/statesync"
	"ftvm/vm"
)

// The scenarios in testdata/*.txt drive one or two cores through a small
// environment in the style of package core's (and etcd raft's) interaction
// tests: each replica has a real engine (package fakevm, with a disk), a
// real output buffer, and, as its driver would, real checkpoints (package
// statesync's Capture, encoded with the MAC, applied by an Applier) or real
// syncs (statesync.Sync, COLO); the environment moves the link's messages
// and the acknowledgements only when the script says so, answers the
// arbiter from a view it keeps, and steps ticks by hand. Everything the
// cores do and every output that leaves a replica is printed and compared
// with the expected text below the command; go test -run TestScripts
// -rewrite regenerates it (read the diff before committing it).
//
// Commands (a, b: replica names):
//
//	mode checkpoint|colo      the mode of the replicas made from now on
//	primary a                 a runs a new cluster's guest, unprotected
//	join a b                  b asks a to protect it; the state transfer,
//	                          the arbitration and the link follow
//	run a [N]                 N epochs (default 1) of 10 000 instructions
//	                          (a COLO secondary runs its own)
//	input a TEXT              console input for a's guest (answered in the
//	                          next epoch)
//	checkpoint a              a takes a checkpoint if its core lets it
//	deliver a b [N]           the next N (default: all) messages a sent
//	                          reach b, which handles them
//	tear a b                  half of a's next message reaches b, then the
//	                          link breaks
//	corrupt a | forge a       a's next checkpoint has a bit flipped / is
//	                          made with another key
//	damage a                  a byte of a's guest memory changes (a write
//	                          of its guest's, which the other does not make)
//	sync a b                  a takes a COLO checkpoint and the sync with b
//	                          runs to its end
//	ack b a                   b's latest acknowledgement reaches a
//	tick a [N]                N ticks (heartbeats are counted, not listed)
//	fail a ERROR [tampered]   a's link reports ERROR
//	join-request a ID CERT CLUSTER VERSION [MODE]
//	                          a hello as sent (MODE: a's own by default)
//	arbiter a reachable|unreachable
//	arbiter-view G P [B]      someone else stores a view at the arbiter
//	finish a                  a's guest powers off
//	compare a b               is b in a's state of b's last checkpoint?
//	status a
func TestScripts(t *testing.T) {
	scripttest.RunDir(t, *rewrite, func(t *testing.T) scripttest.Env {
		return &env{Base: scripttest.Base{T: t}, nodes: map[string]*node{}, mode: Remus}
	})
}

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of the scripts in testdata")

const (
	epochLen = 10_000
	pages    = 8
	diskSize = 64 << 10
)

var key = []byte("the pair's checkpoint key")

type env struct {
	scripttest.Base
	mode  Mode
	nodes map[string]*node
}

// msg is one message of the link from a primary to its backup.
type msg struct {
	kind   string // header, checkpoint, heartbeat, end
	hdr    Header
	data   []byte
	reason string
}

type node struct {
	env  *env
	name string
	c    *Core
	e    *fakevm.Engine
	disk *vm.MemDisk
	out  *outbuf.Buffer

	unreachable bool
	stopped     bool
	live        bool

	// Primary: the dirty log and disk writes since the last checkpoint,
	// the captures taken, the link's messages not yet delivered, the
	// digests of the checkpoints taken.
	dirty   vm.DirtyLog
	writes  statesync.WriteLog
	capture *statesync.Capture
	wire    []msg
	digests map[uint64][32]byte
	flip    bool
	forge   bool

	// Backup: the primary followed, its applier, the state transferred,
	// the latest acknowledgement not yet delivered.
	peer    *node
	applier *statesync.Applier
	state   [32]byte
	start   uint64
	ack     *SendAck
	broken  bool
}

func (e *env) node(name string) *node {
	n := e.nodes[name]
	if n == nil {
		e.T.Fatalf("no replica %q", name)
	}
	return n
}

func (e *env) newNode(name string) *node {
	n := &node{env: e, name: name, disk: vm.NewMemDisk(make([]byte, diskSize)), digests: map[uint64][32]byte{}}
	n.out = e.OutBuf(name)
	e.nodes[name] = n
	return n
}

func (n *node) outputs() vm.Outputs {
	return vm.Outputs{
		Console: func(i uint64, b []byte) { n.out.Add(false, i, b) },
		Net:     func(i uint64, f []byte) { n.out.Add(true, i, f) },
		Disk:    func(_ uint64, off int64, p []byte) { n.writes.Add(off, p) },
	}
}

func (e *env) cfg(id string) Config {
	return Config{Config: core.Config{ID: id, Cluster: "test", Engine: "fakevm", HeartbeatTicks: 2, TimeoutTicks: 10,
		RetryTicks: 2, MaxRetryTicks: 8}, Mode: e.mode}
}

func (n *node) step(ev core.Event) {
	if err := n.c.Step(ev); err != nil {
		n.env.T.Fatal(err)
	}
	n.process()
}

// process carries out n's actions as the driver would.
func (n *node) process() {
	e := n.env
	for {
		acts := n.c.Ready()
		if len(acts) == 0 {
			return
		}
		var later []func()
		for _, a := range acts {
			e.Action(n.name, a)
			switch a := a.(type) {
			case SendHeader:
				n.wire = append(n.wire, msg{kind: "header", hdr: a.Header})
			case SendCheckpoint:
				if e.mode == Remus {
					n.wire = append(n.wire, msg{kind: "checkpoint", data: n.encode()})
				}
			case SendHeartbeat:
				n.wire = append(n.wire, msg{kind: "heartbeat"})
			case SendEnd:
				n.wire = append(n.wire, msg{kind: "end", reason: a.Reason})
			case SendAck:
				n.ack = &a
			case core.Hold:
				n.out.Hold(a.Frame)
			case core.Release:
				n.out.Release(a.Through)
			case core.ReleaseAll:
				n.out.ReleaseAll()
			case core.DropAll:
				n.out.DropAll()
			case core.Arbitrate:
				won, cur, err := e.Swap(n.name, n.unreachable, a.Old, a.New)
				n.c.Step(core.ArbiterAnswer{Old: a.Old, New: a.New, Won: won, Current: cur, Err: err})
			case core.Welcome:
				later = append(later, func() { e.transfer(n, e.node(a.ID)) })
			case core.Link:
				// Remus holds every output; COLO's driver holds the
				// network's in its comparator and lets the console's
				// leave at once.
				if e.mode == Remus {
					n.out.SetMode(outbuf.Held)
				}
				// The guest is stopped since the transfer: the next
				// checkpoint holds what it writes from now on.
				n.dirty = n.e.TrackDirty()
				n.writes.Take()
			case core.Unlink:
				if n.dirty != nil {
					n.dirty.Stop()
					n.dirty = nil
				}
				n.wire, n.broken = nil, true
			case core.GoLive:
				n.live = true
				if n.applier != nil {
					n.applier.Discard() // a checkpoint cut short
				}
				n.out.SetMode(outbuf.Solo)
			case core.Stop:
				n.stopped = true
			}
		}
		n.out.Flush()
		for _, f := range later {
			f()
		}
	}
}

// encode encodes the last capture (Remus), damaged or forged as asked.
func (n *node) encode() []byte {
	var b bytes.Buffer
	k := key
	if n.forge {
		k, n.forge = []byte("not the pair's key"), false
	}
	if _, err := n.capture.Encode(&b, k); err != nil {
		n.env.T.Fatal(err)
	}
	data := b.Bytes()
	if n.flip {
		data[len(data)/2] ^= 0x10
		n.flip = false
	}
	return data
}

// transfer copies the primary's state (RAM, state, disk) to the joining
// backup b, as the live state transfer ends with the guest stopped.
func (e *env) transfer(p, b *node) {
	var st bytes.Buffer
	if err := p.e.SaveState(&st); err != nil {
		e.T.Fatal(err)
	}
	ram := bytes.Clone(p.e.RAM())
	b.disk = vm.NewMemDisk(bytes.Clone(p.disk.Bytes()))
	eng, err := fakevm.Factory(b.disk, b.outputs())(&st, ram)
	if err != nil {
		e.T.Fatal(err)
	}
	b.e, b.peer = eng.(*fakevm.Engine), p
	b.state, b.start = b.e.Digest().Sum, b.e.Instret()
	b.out.SetMode(outbuf.Discard)
	if e.mode == COLO {
		b.dirty = b.e.TrackDirty()
	}
	e.Printf("transfer %s -> %s at instret %d", p.name, b.name, b.start)
	p.digests[0] = p.e.Digest().Sum
	p.step(core.Transferred{ID: b.name, State: p.e.Digest().Sum, Instret: p.e.Instret()})
}

func (e *env) Run(t *testing.T, line string) []string {
	e.exec(t, line)
	return e.Take()
}

func (e *env) exec(t *testing.T, line string) {
	a := scripttest.Parse(t, line)
	f, arg := a.F, a.Get
	switch f[0] {
	case "mode":
		m, err := ParseMode(arg(1))
		if err != nil {
			t.Fatal(err)
		}
		e.mode = m
	case "primary":
		n := e.newNode(arg(1))
		e.View = e.View.Next(n.name, "")
		var err error
		if n.c, err = NewPrimary(e.cfg(n.name), e.View); err != nil {
			t.Fatal(err)
		}
		n.e = fakevm.New(pages, n.disk, n.outputs())
		e.Printf("%s: primary in %v", n.name, e.View)
	case "join":
		p := e.node(arg(1))
		b := e.newNode(arg(2))
		var err error
		if b.c, err = NewBackup(e.cfg(b.name)); err != nil {
			t.Fatal(err)
		}
		p.step(core.JoinRequest{ID: b.name, CertID: b.name, Cluster: "test", Version: core.ProtocolVersion, Mode: b.c.Mode().String()})
	case "join-request":
		p := e.node(arg(1))
		v, _ := strconv.Atoi(arg(5))
		m := p.c.Mode().String()
		if len(f) > 6 {
			m = f[6]
		}
		p.step(core.JoinRequest{ID: arg(2), CertID: arg(3), Cluster: arg(4), Version: v, Mode: m})
	case "run":
		n := e.node(arg(1))
		for range a.Count(2, 1) {
			if !n.c.MayRun() {
				e.Printf("%s: may not run", n.name)
				break
			}
			n.e.Run(n.e.Instret() + epochLen)
			n.out.Flush()
		}
	case "input":
		n := e.node(arg(1))
		if _, err := n.e.Deliver(vm.ConsoleInput{Data: []byte(arg(2))}); err != nil {
			t.Fatal(err)
		}
	case "checkpoint":
		n := e.node(arg(1))
		seq, ok := n.c.MayCheckpoint()
		if !ok {
			e.Printf("%s: may not checkpoint", n.name)
			break
		}
		n.capture = &statesync.Capture{}
		bits := statesync.Bitmap(n.dirty.Collect(nil))
		if err := n.capture.Take(n.e, seq, bits, n.writes.Take(), true); err != nil {
			t.Fatal(err)
		}
		n.digests[seq] = n.e.Digest().Sum
		e.Printf("%s: captured %d: %d pages, %d disk writes, instret %d", n.name, seq, len(n.capture.Pages), len(n.capture.Writes), n.capture.Instret)
		n.step(Taken{Seq: seq, Instret: n.e.Instret(), Outputs: n.out.Pending()})
	case "deliver", "tear":
		p, b := e.node(arg(1)), e.node(arg(2))
		k := a.Count(3, len(p.wire))
		if f[0] == "tear" {
			k = 1
		}
		for ; k > 0 && len(p.wire) > 0; k-- {
			m := p.wire[0]
			p.wire = p.wire[1:]
			if b.broken || b.stopped {
				continue
			}
			if f[0] == "tear" {
				if m.kind == "checkpoint" {
					b.applier.Write(m.data[:len(m.data)/2])
				}
				e.Printf("%s: link torn inside a %s message", b.name, m.kind)
				b.broken = true
				b.step(core.LinkFailed{Err: errors.New("connection reset")})
				break
			}
			e.receive(p, b, m)
		}
	case "corrupt":
		e.node(arg(1)).flip = true
	case "forge":
		e.node(arg(1)).forge = true
	case "sync":
		e.sync(e.node(arg(1)), e.node(arg(2)))
	case "damage":
		// A guest write on one replica only: a page that differs.
		n := e.node(arg(1))
		p := make([]byte, fakevm.PageSize)
		n.e.ReadPage(3, p)
		p[100] ^= 0x40
		n.e.WritePage(3, p)
	case "ack":
		b, p := e.node(arg(1)), e.node(arg(2))
		if b.ack == nil {
			e.Printf("%s: no acknowledgement to deliver", b.name)
			break
		}
		a := *b.ack
		b.ack = nil
		p.step(Acked{Seq: a.Seq, Ended: a.Ended})
	case "forge-ack":
		n := e.node(arg(1))
		s, _ := strconv.ParseUint(arg(2), 10, 64)
		n.step(Acked{Seq: s})
	case "tick":
		n := e.node(arg(1))
		e.Ticks(n.name, a.Count(2, 1), func() { n.step(core.Tick{}) }, "send-heartbeat", "send-ack")
	case "fail":
		n := e.node(arg(1))
		n.step(core.LinkFailed{Err: errors.New(arg(2)), Tampered: len(f) > 3 && f[3] == "tampered"})
	case "arbiter":
		e.node(arg(1)).unreachable = arg(2) == "unreachable"
	case "arbiter-view":
		e.SetView(a)
	case "finish":
		e.node(arg(1)).step(core.Finish{Reason: vm.StopPowerOff.String()})
	case "compare":
		p, b := e.node(arg(1)), e.node(arg(2))
		seq, _ := b.c.Checkpoints()
		want, ok := p.digests[seq]
		e.Printf("%s: at checkpoint %d, instret %d: same state as %s's: %v", b.name, seq, b.e.Instret(), p.name, ok && want == b.e.Digest().Sum)
	case "status":
		n := e.node(arg(1))
		s := n.c.Status()
		taken, acked := n.c.Checkpoints()
		_, may := n.c.MayCheckpoint()
		e.Printf("%s: %v %v peer=%q instret=%d taken=%d acked=%d may-run=%v may-checkpoint=%v held=%d stopped=%v",
			n.name, s.Role, s.View, s.Peer, s.Instret, taken, acked, n.c.MayRun(), may, n.out.Held(), s.Stopped)
	default:
		t.Fatalf("unknown command %q", line)
	}
}

// receive handles message m from p at b, as the backup's driver does.
func (e *env) receive(p, b *node, m msg) {
	b.step(Received{})
	switch m.kind {
	case "header":
		b.step(Following{Primary: p.name, Header: m.hdr, State: b.state, Instret: b.start})
		if b.c.Status().Role == core.Backup && e.mode == Remus {
			var err error
			b.applier, err = statesync.NewApplier(b.e, b.disk, statesync.ApplierOptions{Key: key})
			if err != nil {
				e.T.Fatal(err)
			}
		}
	case "checkpoint":
		if _, err := b.applier.Write(m.data); err != nil {
			b.step(core.ApplyFailed{Err: err})
			return
		}
		b.step(Committed{Seq: b.applier.Committed(), Instret: b.e.Instret()})
	case "heartbeat":
	case "end":
		b.step(Ended{Reason: m.reason})
	}
}

// sync takes a COLO checkpoint on p and runs the sync with b to its end,
// both paused, as the drivers do over their link.
func (e *env) sync(p, b *node) {
	seq, ok := p.c.MayCheckpoint()
	if !ok {
		e.Printf("%s: may not checkpoint", p.name)
		return
	}
	p.step(Taken{Seq: seq, Instret: p.e.Instret(), Outputs: p.out.Pending()})
	side := func(n *node, role statesync.Party) *statesync.Sync {
		s, err := statesync.NewSync(statesync.SyncConfig{Role: role, ID: seq, Engine: n.e, Key: key})
		if err != nil {
			e.T.Fatal(err)
		}
		return s
	}
	ps, bs := side(p, statesync.Primary), side(b, statesync.Backup)
	toB, err := ps.Start(statesync.Bitmap(p.dirty.Collect(nil)), nil)
	if err != nil {
		e.T.Fatal(err)
	}
	toP, err := bs.Start(statesync.Bitmap(b.dirty.Collect(nil)), nil)
	if err != nil {
		e.T.Fatal(err)
	}
	for len(toB)+len(toP) > 0 {
		var nb, np [][]byte
		for _, m := range toB {
			out, err := bs.Receive(m)
			if err != nil {
				e.T.Fatal(err)
			}
			np = append(np, out...)
		}
		for _, m := range toP {
			out, err := ps.Receive(m)
			if err != nil {
				e.T.Fatal(err)
			}
			nb = append(nb, out...)
		}
		toB, toP = nb, np
	}
	if !ps.Done() || !bs.Done() {
		e.T.Fatal("the sync did not complete")
	}
	// What the sync wrote is the primary's: the next sync starts afresh.
	p.dirty.Collect(nil)
	b.dirty.Collect(nil)
	p.digests[seq] = p.e.Digest().Sum
	st := ps.Stats()
	e.Printf("sync %d %s -> %s: %d pages compared, %d sent", seq, p.name, b.name, st.Pages, len(st.SentPages))
	b.step(Committed{Seq: seq, Instret: b.e.Instret()})
	p.step(Acked{Seq: seq})
}
