package replication

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"ftvm/host"
	"ftvm/host/netdev"
	"ftvm/netcompare"
	"ftvm/replication/ckpt"
	"ftvm/replication/core"
	"ftvm/replication/outbuf"
	"ftvm/runloop"
	"ftvm/statesync"
	"ftvm/vm"
)

// The COLO mode (package netcompare's doc.go is the wiring guide). Both
// replicas execute. The primary forwards every input its guest takes (a
// frame, console bytes) to the secondary over the link, tagged with the
// number of the last sync (its generation); the secondary delivers those
// of its own generation to its guest, frames through the Rewriter. The
// primary's network output goes to the comparator, and the secondary's,
// tagged likewise, comes over the link to it; what the comparator
// releases leaves on the primary's NIC at once. When the comparator asks
// for a checkpoint (a mismatch, a frame held too long, the period), the
// primary pauses, hands the frames still held to the output buffer
// behind the checkpoint, and runs package statesync's Sync with the
// secondary, which pauses when the first sync message reaches it; both
// continue from the primary's state, and the held frames leave once the
// sync is complete. The console's output is not compared: the primary's
// leaves at once.

// coloInput kinds.
const (
	coloFrame   byte = 1
	coloConsole byte = 2
)

// coloPrimary is a COLO primary's side of its link: the comparator and
// what the engine's goroutine must know of it.
type coloPrimary struct {
	r     *Replica
	l     *ckptLink
	start time.Time

	mu       sync.Mutex
	cmp      *netcompare.Comparator
	gen      uint64 // the sync the secondary's frames must come from
	detached bool
	want     *netcompare.Trigger
	out      [][]byte

	syncIn chan []byte // sync messages from the secondary
	// The guest's disk chunks written since the last sync.
	chunks *statesync.ChunkLog
	// pause ends the guest's current Run (set by the engine's goroutine
	// before the guest runs with this link).
	pause func()
}

func newColoPrimary(r *Replica, l *ckptLink) *coloPrimary {
	c := &coloPrimary{r: r, l: l, start: time.Now(), syncIn: make(chan []byte, 64)}
	c.cmp = netcompare.New(netcompare.Config{MaxPeriod: r.cfg.MaxPeriod}, 0)
	if r.cfg.Disk != nil {
		c.chunks = statesync.NewChunkLog(r.cfg.Disk.Size(), 0)
	}
	return c
}

func (c *coloPrimary) now() time.Duration { return time.Since(c.start) }

// primary takes a frame the primary's guest sent; false: the comparator
// is detached (the secondary is lost), the frame goes to the output
// buffer.
func (c *coloPrimary) primary(instret uint64, f []byte) bool {
	c.mu.Lock()
	if c.detached {
		c.mu.Unlock()
		return false
	}
	c.cmp.Primary(bytes.Clone(f), c.now())
	out, want := c.drain()
	c.mu.Unlock()
	c.emit(instret, out)
	if want && c.pause != nil {
		c.pause() // end the epoch here: the checkpoint is taken at once
	}
	return true
}

// secondary takes a frame the secondary's guest sent in generation gen.
func (c *coloPrimary) secondary(gen uint64, f []byte) {
	c.mu.Lock()
	if c.detached || gen != c.gen {
		c.mu.Unlock()
		return // produced before the secondary had the last sync's state
	}
	c.cmp.Secondary(f, c.now())
	out, want := c.drain()
	c.mu.Unlock()
	c.emit(0, out)
	if want {
		c.r.d.signal()
	}
}

// tick lets the comparator's time pass (the driver's ticker).
func (c *coloPrimary) tick() {
	c.mu.Lock()
	if c.detached {
		c.mu.Unlock()
		return
	}
	c.cmp.Tick(c.now())
	out, want := c.drain()
	c.mu.Unlock()
	c.emit(0, out)
	if want {
		c.r.d.signal()
	}
}

// drain takes the released frames and reports a new checkpoint request.
// Called with mu held.
func (c *coloPrimary) drain() ([][]byte, bool) {
	c.out = c.cmp.Released(c.out[:0])
	out := append([][]byte(nil), c.out...)
	if c.want != nil {
		return out, false
	}
	t, ok := c.cmp.Want()
	if ok {
		c.want = &t
	}
	return out, ok
}

// emit sends released frames (through the output buffer, which is Solo
// for the network while the comparator is attached).
func (c *coloPrimary) emit(instret uint64, frames [][]byte) {
	for _, f := range frames {
		c.r.out.Add(true, instret, f)
	}
}

// wanted returns the pending checkpoint request, if any.
func (c *coloPrimary) wanted() (netcompare.Trigger, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.want == nil || c.detached {
		return netcompare.Trigger{}, false
	}
	return *c.want, true
}

// checkpoint is called with both guests about to be synced: the frames
// the comparator still holds are returned (they wait for the sync), and
// from now on only the secondary's frames of generation seq count.
func (c *coloPrimary) checkpoint(seq uint64) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	held := c.cmp.Checkpoint(c.now())
	c.gen, c.want = seq, nil
	return held
}

// detach ends the comparison (the link is gone): the frames still held
// wait in the output buffer for the arbitration, as every output does
// from now on (ReleaseAll, or DropAll).
func (c *coloPrimary) detach() {
	c.mu.Lock()
	if c.detached {
		c.mu.Unlock()
		return
	}
	// Held before the guest's next frame can miss the comparator.
	c.r.out.SetMode(outbuf.Held)
	c.detached = true
	held := c.cmp.Checkpoint(c.now())
	c.mu.Unlock()
	c.r.coloP.CompareAndSwap(c, nil)
	c.r.out.HoldOutputs(1<<62, frameOutputs(held))
}

func (c *coloPrimary) stats() netcompare.Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cmp.Stats()
}

func frameOutputs(frames [][]byte) []outbuf.Output {
	outs := make([]outbuf.Output, len(frames))
	for i, f := range frames {
		outs[i] = outbuf.Output{Net: true, Data: f}
	}
	return outs
}

// coloEngine is a COLO primary's engine: while a secondary is linked,
// every input its guest takes is forwarded to it, tagged with the
// generation.
type coloEngine struct {
	Engine
	p *ckptPrimary
}

func (e coloEngine) Deliver(ev vm.Event) (int, error) {
	n, err := e.Engine.Deliver(ev)
	c := e.p.colo
	if c == nil {
		return n, err
	}
	c.mu.Lock()
	detached, gen := c.detached, c.gen
	c.mu.Unlock()
	if err != nil || detached {
		return n, err
	}
	var kind byte
	var data []byte
	switch ev := ev.(type) {
	case vm.NetReceive:
		kind, data = coloFrame, ev.Frame
	case vm.ConsoleInput:
		kind, data = coloConsole, ev.Data[:n]
	default:
		return n, err // the clock is each replica's own
	}
	if len(data) > 0 {
		p := binary.AppendUvarint(nil, gen)
		p = append(append(p, kind), data...)
		c.l.queue(ckptItem{msg: appendMessage(nil, msgColoInput, p)})
	}
	return n, err
}

// syncPrimary takes a COLO checkpoint, if the comparator asks for one
// (or force) and the core lets it: with the guest paused, the frames
// still held go behind the checkpoint, and the sync with the secondary
// runs to its end. It reports whether the guest may run on (false: ctx
// ended).
func (c *ckptPrimary) syncPrimary(ctx context.Context, force bool) {
	r, d := c.r, &c.r.d
	cp := c.colo
	if cp == nil {
		return
	}
	trig, want := cp.wanted()
	if !want && !force {
		return
	}
	d.mu.Lock()
	seq, ok := d.core.(*ckpt.Core).MayCheckpoint()
	l := d.link
	d.mu.Unlock()
	if !ok {
		return
	}
	t0 := time.Now()
	held := cp.checkpoint(seq)
	r.out.HoldOutputs(int64(seq), frameOutputs(held))
	d.step(ckpt.Taken{Seq: seq, Instret: c.e.Instret(), Outputs: len(held) > 0})
	var chunks statesync.Bitmap
	if cp.chunks != nil {
		chunks = cp.chunks.Take()
	}
	c.bits = c.dirty.Collect(c.bits)
	var disk vm.Disk
	if r.cfg.Disk != nil {
		disk = r.cfg.Disk
	}
	s, err := statesync.NewSync(statesync.SyncConfig{Role: statesync.Primary, ID: seq, Engine: c.e, Disk: disk, Key: cp.l.key})
	var out [][]byte
	if err == nil {
		out, err = s.Start(statesync.Bitmap(c.bits), chunks)
	}
	for err == nil {
		for _, m := range out {
			cp.l.queue(ckptItem{msg: appendMessage(nil, msgColoSync, append(binary.AppendUvarint(nil, seq), m...))})
		}
		out = nil
		if s.Done() {
			break
		}
		var msg []byte
		select {
		case msg = <-cp.syncIn:
		case <-d.changed:
			d.mu.Lock()
			gone := d.link != l || d.stop != nil
			d.mu.Unlock()
			if gone {
				return // the secondary is lost: the core arbitrates
			}
			continue
		case <-ctx.Done():
			return
		}
		out, err = s.Receive(msg)
	}
	if err != nil {
		for _, m := range out { // telling the secondary why
			cp.l.queue(ckptItem{msg: appendMessage(nil, msgColoSync, append(binary.AppendUvarint(nil, seq), m...))})
		}
		d.step(core.LinkFailed{Err: fmt.Errorf("sync %d with the secondary: %w", seq, err)})
		return
	}
	// The replicas are identical: what either wrote until now is the
	// same on both.
	c.bits = c.dirty.Collect(c.bits)
	if cp.chunks != nil {
		cp.chunks.Take()
	}
	st := s.Stats()
	c.m.stats.add(CheckpointStat{Seq: seq, At: t0, Pause: time.Since(t0), Pages: len(st.SentPages), StateBytes: st.StateBytes,
		DiskBytes: int64(len(st.SentChunks)) * statesync.DefaultChunkSize, Bytes: st.BytesOut + st.BytesIn, Reason: trig.String()})
	r.log.Debug("sync", "seq", seq, "reason", trig.String(), "pause", time.Since(t0).String(), "compared_pages", st.Pages,
		"sent_pages", len(st.SentPages), "sent_chunks", len(st.SentChunks), "bytes", st.BytesOut+st.BytesIn)
	d.step(ckpt.Acked{Seq: seq})
}

// receive takes a COLO message from the secondary (the link's reader).
func (c *coloPrimary) receive(t msgType, p []byte) error {
	gen, n := binary.Uvarint(p)
	if n <= 0 {
		return fmt.Errorf("%w: malformed %v message", errProtocol, t)
	}
	switch t {
	case msgColoOutput:
		c.secondary(gen, p[n:])
	case msgColoSync:
		select {
		case c.syncIn <- bytes.Clone(p[n:]):
		default:
			return fmt.Errorf("%w: the secondary sent sync messages unasked", errProtocol)
		}
		c.r.d.signal()
	}
	return nil
}

// coloSecondary is a COLO secondary's engine goroutine: it runs the guest
// on the inputs the primary forwards, ships its outputs to the primary,
// and syncs when the primary asks.
type coloSecondary struct {
	r  *Replica
	s  *ckptStream
	e  Engine
	rw *rewriter
	// inherited are the rewriters of the primary's NIC, for its guest's
	// connections from before it was promoted.
	inherited []*rewriter

	mu      sync.Mutex
	gen     uint64 // the last sync completed
	inputs  []coloIn
	dropped int      // inputs dropped: the guest was too far behind
	syncs   [][]byte // sync messages waiting (each prefixed with its id)
	ready   chan struct{}
	console []byte

	dirty  vm.DirtyLog
	bits   []uint64
	chunks *statesync.ChunkLog
}

// maxColoInputs bounds the inputs a COLO secondary holds for its guest.
const maxColoInputs = 4096

type coloIn struct {
	gen  uint64
	kind byte
	data []byte
}

// receive takes a COLO message from the primary (the stream's reader).
func (c *coloSecondary) receive(t msgType, p []byte) error {
	gen, n := binary.Uvarint(p)
	if n <= 0 || (t == msgColoInput && len(p) < n+1) {
		return fmt.Errorf("%w: malformed %v message", errProtocol, t)
	}
	c.mu.Lock()
	switch t {
	case msgColoInput:
		kind := p[n]
		if kind != coloFrame && kind != coloConsole {
			c.mu.Unlock()
			return fmt.Errorf("%w: input of kind %d", errProtocol, kind)
		}
		if len(c.inputs) >= maxColoInputs {
			// The guest is far behind: this input is lost to it, as a
			// frame may be on a network. Its output will differ or lag,
			// and the comparator asks for the checkpoint that ends it.
			c.dropped++
			c.r.warnRare(&c.r.lagWarn, "the secondary's guest is far behind: an input for it was dropped", "dropped", c.dropped)
			break
		}
		c.inputs = append(c.inputs, coloIn{gen, kind, bytes.Clone(p[n+1:])})
	case msgColoSync:
		c.syncs = append(c.syncs, bytes.Clone(p))
	}
	c.mu.Unlock()
	select {
	case c.ready <- struct{}{}:
	default:
	}
	c.r.d.signal()
	return nil
}

// output ships a frame the secondary's guest sent to the primary.
func (c *coloSecondary) output(f []byte) {
	c.rw.observe(f)
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	c.s.send(msgColoOutput, append(binary.AppendUvarint(nil, gen), f...))
}

// The secondary's NIC, for the run loop: the frames the primary forwarded
// for the current generation, mapped into the secondary's sequence
// numbers.
var _ netdev.Backend = (*coloSecondary)(nil)

func (c *coloSecondary) TryReceive() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, in := range c.inputs {
		if in.gen < c.gen {
			continue // dropped below
		}
		if in.gen > c.gen || in.kind != coloFrame {
			break // console bytes go first, in order
		}
		c.inputs = append(c.inputs[:i:i], c.inputs[i+1:]...)
		c.dropOld()
		c.rw.toSecondary(in.data)
		return in.data, true
	}
	c.dropOld()
	return nil, false
}

func (c *coloSecondary) Ready() <-chan struct{} { return c.ready }
func (c *coloSecondary) Transmit([]byte)        {}
func (c *coloSecondary) Close() error           { return nil }

// dropOld forgets the inputs of generations before the current one: the
// sync gave the guest the primary's state, which has taken them. Called
// with mu held.
func (c *coloSecondary) dropOld() {
	i := 0
	for i < len(c.inputs) && c.inputs[i].gen < c.gen {
		i++
	}
	c.inputs = c.inputs[i:]
}

// deliverConsole hands the guest the console bytes at the head of its
// inputs.
func (c *coloSecondary) deliverConsole() {
	c.mu.Lock()
	c.dropOld()
	for len(c.inputs) > 0 && c.inputs[0].gen == c.gen && c.inputs[0].kind == coloConsole {
		c.console = append(c.console, c.inputs[0].data...)
		c.inputs = c.inputs[1:]
	}
	c.mu.Unlock()
	if len(c.console) > 0 {
		n, _ := c.e.Deliver(vm.ConsoleInput{Data: c.console})
		c.console = c.console[n:]
	}
}

// errLive ends the secondary's run loop: the core says go live (or stop).
var errLive = errors.New("go live")

// run runs the secondary's guest until the core stops the replica or
// tells it to go live.
func (c *coloSecondary) run(ctx context.Context) error {
	d := &c.r.d
	check := func() error {
		if err := d.wait(ctx, func() bool { return d.stop != nil || d.live || d.core.MayRun() }); err != nil {
			return err
		}
		if d.stopped() != nil || d.golive() {
			return errLive
		}
		if err := c.sync(ctx); err != nil {
			return err
		}
		c.deliverConsole()
		return nil
	}
	reason, err := runloop.Run(runloop.Config{
		Engine:  c.e,
		Inputs:  host.NewInputs(nil, c),
		Slice:   c.r.cfg.Epoch,
		Context: ctx,
		Hooks: runloop.Hooks{
			Before: check,
			Wake:   d.changed,
			Tick:   check,
		},
	})
	switch {
	case errors.Is(err, errLive):
		return nil
	case err == nil:
		// The guest stopped here (it powered off, say, on the input that
		// stops the primary's too): the primary's end, or its loss,
		// decides what follows.
		c.r.log.Info("the secondary's guest stopped", "reason", reason.String())
		return d.wait(ctx, func() bool { return d.stop != nil || d.live })
	}
	return err
}

// sync runs the sync the primary asks for, if its first message is here,
// to its end, with the guest paused.
func (c *coloSecondary) sync(ctx context.Context) error {
	d, r := &c.r.d, c.r
	next := func() ([]byte, uint64, bool) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.syncs) == 0 {
			return nil, 0, false
		}
		m := c.syncs[0]
		c.syncs = c.syncs[1:]
		id, n := binary.Uvarint(m)
		return m[n:], id, true
	}
	msg, seq, ok := next()
	if !ok {
		return nil
	}
	t0 := time.Now()
	var disk vm.Disk
	if r.cfg.Disk != nil {
		disk = r.cfg.Disk
	}
	s, err := statesync.NewSync(statesync.SyncConfig{Role: statesync.Backup, ID: seq, Engine: c.e, Disk: disk, Key: c.s.key})
	if err != nil {
		d.step(core.ApplyFailed{Err: err})
		return errLive
	}
	var chunks statesync.Bitmap
	if c.chunks != nil {
		chunks = c.chunks.Take()
	}
	c.bits = c.dirty.Collect(c.bits)
	send := func(out [][]byte) {
		for _, m := range out {
			c.s.send(msgColoSync, append(binary.AppendUvarint(nil, seq), m...))
		}
	}
	out, err := s.Start(statesync.Bitmap(c.bits), chunks)
	send(out)
	for err == nil {
		out, err = s.Receive(msg)
		send(out)
		if err != nil || s.Done() {
			break
		}
		for {
			var id uint64
			if msg, id, ok = next(); ok {
				if id != seq {
					err = fmt.Errorf("%w: sync %d message during sync %d", errProtocol, id, seq)
				}
				break
			}
			select {
			case <-c.ready:
			case <-d.changed:
				if d.stopped() != nil || d.golive() {
					return errLive // the primary is lost mid-sync: the state is this replica's own
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if err != nil {
		d.step(core.ApplyFailed{Err: fmt.Errorf("sync %d: %w", seq, err)})
		return errLive
	}
	c.bits = c.dirty.Collect(c.bits)
	if c.chunks != nil {
		c.chunks.Take()
	}
	c.mu.Lock()
	c.gen = seq
	c.dropOld()
	c.console = nil
	c.mu.Unlock()
	c.rw.checkpoint()
	st := s.Stats()
	c.s.m.stats.add(CheckpointStat{Seq: seq, At: t0, Pause: time.Since(t0), Pages: len(st.SentPages), StateBytes: st.StateBytes,
		DiskBytes: int64(len(st.SentChunks)) * statesync.DefaultChunkSize, Bytes: st.BytesOut + st.BytesIn})
	d.step(ckpt.Committed{Seq: seq, Instret: c.e.Instret()})
	return nil
}

// rewriter is the secondary's sequence-number rewriter (package
// netcompare), shared by its engine's goroutine and, once it is live, the
// goroutines that send its frames.
type rewriter struct {
	start time.Time
	mu    sync.Mutex
	rw    *netcompare.Rewriter
}

func newRewriter() *rewriter {
	return &rewriter{start: time.Now(), rw: netcompare.NewRewriter(0, 0)}
}

func (r *rewriter) now() time.Duration { return time.Since(r.start) }

func (r *rewriter) observe(f []byte) {
	r.mu.Lock()
	r.rw.Observe(f, r.now())
	r.mu.Unlock()
}

func (r *rewriter) toSecondary(f []byte) {
	r.mu.Lock()
	r.rw.ToSecondary(f, r.now())
	r.mu.Unlock()
}

func (r *rewriter) fromSecondary(f []byte) {
	r.mu.Lock()
	r.rw.FromSecondary(f, r.now())
	r.mu.Unlock()
}

func (r *rewriter) checkpoint() {
	r.mu.Lock()
	r.rw.Checkpoint()
	r.mu.Unlock()
}

func (r *rewriter) failover() {
	r.mu.Lock()
	r.rw.Failover()
	r.mu.Unlock()
}

func (r *rewriter) tick() {
	r.mu.Lock()
	r.rw.Tick(r.now())
	r.mu.Unlock()
}

// coloNIC is the guest's NIC on a COLO replica's host. Once a secondary
// has gone live, its guest's connections opened before keep the
// secondary's sequence numbers: every frame is mapped on its way out and
// in (Rewriter.FromSecondary and ToSecondary). A secondary that joined a
// promoted one holds its guest's connections with that one's numbers, and
// maps them with its rewriter too, after its own: chain is the promoted
// guest's own rewriter first, then those it inherited, newest first.
type coloNIC struct {
	netdev.Backend
	chain atomic.Pointer[[]*rewriter]
}

func (n *coloNIC) rewriters() []*rewriter {
	if c := n.chain.Load(); c != nil {
		return *c
	}
	return nil
}

func (n *coloNIC) Transmit(f []byte) {
	if c := n.rewriters(); len(c) > 0 {
		f = bytes.Clone(f)
		for _, rw := range c {
			rw.fromSecondary(f)
		}
	}
	n.Backend.Transmit(f)
}

func (n *coloNIC) TryReceive() ([]byte, bool) {
	f, ok := n.Backend.TryReceive()
	if !ok {
		return f, ok
	}
	c := n.rewriters()
	for i := len(c) - 1; i >= 0; i-- {
		c[i].toSecondary(f)
	}
	return f, ok
}

// appendChain appends the states of the NIC's rewriters (msgColoMappings:
// a count, then each state with its length, uvarints).
func (n *coloNIC) appendChain(b []byte) []byte {
	c := n.rewriters()
	b = binary.AppendUvarint(b, uint64(len(c)))
	for _, rw := range c {
		rw.mu.Lock()
		st := rw.rw.AppendState(nil)
		rw.mu.Unlock()
		b = binary.AppendUvarint(b, uint64(len(st)))
		b = append(b, st...)
	}
	return b
}

// loadChain reads the rewriters a primary's NIC maps with.
func loadChain(p []byte) ([]*rewriter, error) {
	n, k := binary.Uvarint(p)
	if k <= 0 || n > 64 {
		return nil, fmt.Errorf("%w: malformed rewriter states", errProtocol)
	}
	p = p[k:]
	var c []*rewriter
	for range n {
		l, k := binary.Uvarint(p)
		if k <= 0 || l > uint64(len(p)-k) {
			return nil, fmt.Errorf("%w: malformed rewriter states", errProtocol)
		}
		rw := newRewriter()
		var err error
		if rw.rw, err = netcompare.LoadRewriter(p[k:k+int(l)], 0, 0, 0); err != nil {
			return nil, fmt.Errorf("%w: %v", errProtocol, err)
		}
		c = append(c, rw)
		p = p[k+int(l):]
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%w: malformed rewriter states", errProtocol)
	}
	return c, nil
}
