package replication

import (
	"io"
	"sync"

	"ftvm/host/netdev"
	"ftvm/replay"
	"ftvm/vm"
)

// outputs routes what the guest emits according to the replica's role:
//
//   - solo (a primary with no backup, or a backup that went live): out at
//     once;
//   - paired (a primary with a backup): collected during the epoch, held
//     with the log frame that ends the epoch, and released by the ack
//     reader once the backup holds that frame (the output rule);
//   - backup: kept while uncertain (the primary may not have released them
//     yet) and dropped when a Sync record says the primary did; at go-live
//     the ones still uncertain are emitted again, which is the papers'
//     re-issue of uncertain I/O (a duplicate frame is harmless to TCP; a
//     lost one would not be).
type outputs struct {
	console io.Writer
	net     netdev.Backend

	// Touched only by the goroutine running the engine.
	mode      outputMode
	epoch     []output
	uncertain []output
	// hashes, while a log is being written (primary) or followed (backup),
	// takes in every output the guest emits, disk writes included: the
	// primary logs the running hashes and the backup checks its own
	// against them, so a backup that emitted different outputs would stop
	// rather than go live.
	hashes *replay.Outputs
	// pause, if set, ends the running epoch (vm.Pauser): a primary with a
	// backup calls it on a transmitted frame, whose latency would
	// otherwise include the rest of the epoch. Console bytes do not: the
	// UART emits them one by one and nobody waits on them.
	pause func()

	mu       sync.Mutex // guards held and released
	held     []heldOutputs
	released uint64 // instret of the newest epoch whose outputs left
}

type outputMode int

const (
	modeSolo outputMode = iota
	modePaired
	modeBackup
	modeDiscard // a deposed or stopping replica: nothing leaves
)

type output struct {
	net     bool
	instret uint64
	data    []byte
}

type heldOutputs struct {
	frame   int64  // the Sync frame the backup must hold first
	instret uint64 // the epoch's end
	outs    []output
}

func (o *outputs) callbacks() vm.Outputs {
	return vm.Outputs{
		Console: func(instret uint64, b []byte) { o.add(false, instret, b) },
		Net:     func(instret uint64, f []byte) { o.add(true, instret, f) },
		Disk: func(_ uint64, off int64, p []byte) {
			if o.hashes != nil {
				o.hashes.Disk(off, p)
			}
		},
	}
}

func (o *outputs) add(net bool, instret uint64, b []byte) {
	if h := o.hashes; h != nil {
		if net {
			h.Net(b)
		} else {
			h.Console(b)
		}
	}
	switch o.mode {
	case modeSolo:
		o.emit(output{net, instret, b})
	case modePaired:
		o.epoch = appendOutput(o.epoch, net, instret, b)
		if net && o.pause != nil {
			o.pause()
		}
	case modeBackup:
		o.uncertain = appendOutput(o.uncertain, net, instret, b)
	}
}

// appendOutput copies b onto the list, merging console bytes into the
// previous console output (the UART emits them one by one).
func appendOutput(l []output, net bool, instret uint64, b []byte) []output {
	if !net && len(l) > 0 && !l[len(l)-1].net {
		last := &l[len(l)-1]
		last.data, last.instret = append(last.data, b...), instret
		return l
	}
	return append(l, output{net, instret, append([]byte(nil), b...)})
}

func (o *outputs) emit(out output) {
	if out.net {
		if o.net != nil {
			o.net.Transmit(out.data)
		}
	} else if o.console != nil {
		o.console.Write(out.data)
	}
}

// pendingEpoch reports whether the epoch produced outputs that need a Sync.
func (o *outputs) pendingEpoch() bool { return len(o.epoch) > 0 }

// hold moves the epoch's outputs behind log frame frame.
func (o *outputs) hold(frame int64, instret uint64) {
	if len(o.epoch) == 0 {
		return
	}
	o.mu.Lock()
	o.held = append(o.held, heldOutputs{frame, instret, o.epoch})
	o.mu.Unlock()
	o.epoch = nil
}

// release emits the held outputs whose frame the backup has acknowledged.
// It is called by the ack reader; emission happens outside the lock so
// the engine's goroutine never waits for a slow console or NIC.
func (o *outputs) release(acked int64) {
	for {
		o.mu.Lock()
		if len(o.held) == 0 || o.held[0].frame > acked {
			o.mu.Unlock()
			return
		}
		h := o.held[0]
		o.held = o.held[1:]
		o.mu.Unlock()
		for _, out := range h.outs {
			o.emit(out)
		}
		o.mu.Lock()
		o.released = h.instret
		o.mu.Unlock()
	}
}

// releasedThrough is the end of the newest epoch whose outputs have left.
func (o *outputs) releasedThrough() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.released
}

// heldCount is the number of outputs waiting for the backup.
func (o *outputs) heldCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := len(o.epoch)
	for _, h := range o.held {
		n += len(h.outs)
	}
	return n
}

// flushAll emits everything held and goes solo: the backup is out of the
// view, so nothing the primary emits can be contradicted. Only call it with
// the ack reader stopped.
func (o *outputs) flushAll() {
	o.mu.Lock()
	held := o.held
	o.held = nil
	o.mu.Unlock()
	for _, h := range held {
		for _, out := range h.outs {
			o.emit(out)
		}
	}
	for _, out := range o.epoch {
		o.emit(out)
	}
	o.epoch = nil
	o.mode = modeSolo
}

// dropAll discards what is held: the replica lost the arbitration and its
// outputs must never be seen.
func (o *outputs) dropAll() {
	o.mu.Lock()
	o.held = nil
	o.mu.Unlock()
	o.epoch, o.uncertain = nil, nil
	o.mode = modeDiscard
}

// settled drops the uncertain outputs a Sync record says the primary
// released (those of epochs ending at or before through).
func (o *outputs) settled(through uint64) {
	i := 0
	for i < len(o.uncertain) && o.uncertain[i].instret <= through {
		i++
	}
	o.uncertain = o.uncertain[i:]
}

// goLive re-issues the uncertain outputs and goes solo. It returns how many
// it re-issued.
func (o *outputs) goLive() int {
	n := len(o.uncertain)
	for _, out := range o.uncertain {
		o.emit(out)
	}
	o.uncertain = nil
	o.mode = modeSolo
	return n
}
