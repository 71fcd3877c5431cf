// Package replication keeps a guest alive across the death of its host:
// primary/backup fault tolerance by deterministic replay, after Bressoud &
// Schneider's hypervisor and VMware FT.
//
// The primary runs the guest and records every nondeterministic input
// (package replay) into an event log that streams over mutual TLS to the
// backup, which replays it on its own copy of the machine and stays
// identical. Outputs (network frames, console bytes) leave the primary only
// once the backup has acknowledged the log frame that ends the epoch that
// produced them: the output rule. Heartbeats run both ways. When a replica
// loses its peer it must win a compare-and-swap at the arbiter (a third
// party both can reach) before acting alone: a backup then finishes the
// log, re-issues the outputs the primary may not have sent, announces the
// guest's MAC and goes live; a primary continues unprotected. The loser,
// or a replica that cannot reach the arbiter, never acts alone.
//
// Two more modes replicate state instead of inputs (Config.Mode): in the
// checkpoint mode (Remus) the primary sends a checkpoint of its guest
// every period and its outputs wait for the backup's acknowledgement of
// it; in the COLO mode both replicas execute the same inputs, the primary's
// network output leaves once the secondary produced the same, and a
// mismatch brings the secondary to the primary's state (remus.go, colo.go).
//
// The protocols themselves are package core (replay) and package ckpt
// (Remus, COLO), state machines without I/O; this package is their
// driver: it owns the engine's goroutine, the TLS connections and the
// goroutines that read and write them, the ticker that gives the core its
// time (and sends the heartbeats, whatever the guest does), the arbiter
// client, status and metrics; it steps the core with what happens and
// carries out the actions the core returns. What the protocols share it
// does once (driver.go: arbitration, the join and state transfer, the
// output buffer, go-live, stop, status); what one protocol alone does is
// its mode's (the mode interface in driver.go: replayMode in primary.go,
// ckptMode in ckptmode.go). A new protocol brings a core stepped with
// core's shared events and its own, and a mode.
//
// A backup whose replay finds a state digest that differs in RAM alone (a
// memory error) asks its primary for a repair instead of stopping
// (repair.go).
//
// PLOVER mode (Plover, plover*.go) is another protocol on the same pieces
// (TLS keys and framing, the output buffer, the live state transfer, the
// run loop, status): a consensus group of primary, backup and witness,
// whose core is package replication/plover.
//
// The package knows nothing about RISC-V: it drives a vm.Engine, and builds
// one on a backup through a Factory the caller supplies.
package replication

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"ftvm/host/netdev"
	"ftvm/migrate"
	"ftvm/replay"
	"ftvm/replication/ckpt"
	"ftvm/replication/core"
	"ftvm/replication/outbuf"
	"ftvm/vm"
)

// Engine is what replication needs of a machine: the vm seam, and what a
// live state transfer to a joining backup needs (package migrate).
type Engine = vm.Migratable

// Factory returns the builder of a backup's engine from a transferred state
// (see migrate.Receive), with the engine's outputs going to out.
type Factory func(out vm.Outputs) migrate.Factory

// Host is what the guest is connected to on this replica's host.
type Host struct {
	Console   io.Writer      // released console output (nil: dropped)
	ConsoleIn <-chan []byte  // console input (nil: none)
	Net       netdev.Backend // the guest's NIC here (nil: none)
	// Announce, if set, is called when this replica goes live: it tells
	// the network (switches, bridges) that the guest's MAC now lives here.
	Announce func()
}

// Config configures a replica.
type Config struct {
	ID      string // this replica (the common name of its certificate)
	Cluster string // the pair's name at the arbiter
	TLS     *tls.Config
	Arbiter Arbiter
	Host    Host
	Factory Factory // required on a backup
	// Disk is the guest's disk on this host, which the machine must have
	// been built over (nil: no disk). A primary sends it to a joining
	// backup; a backup receives the primary's into it.
	Disk   *migrate.TrackedDisk
	Engine string // engine name in the log header (e.g. "ftvm-riscv64")

	// Epoch is the number of instructions the guest runs between looks at
	// the host's inputs and the log (default 100 000). Inputs reach the
	// guest only at epoch boundaries, and a primary's outputs wait at least
	// until the end of their epoch.
	Epoch uint64
	// Heartbeat is how often a silent replica tells its peer it is alive
	// (default 20 ms); Timeout is the silence after which the peer is
	// declared dead (default 500 ms).
	Heartbeat, Timeout time.Duration
	// MaxLag bounds how many instructions the backup may trail the primary
	// before the primary waits for it (default 200 M, about 1.5 s of
	// guest computation: the longest a failover has to replay).
	MaxLag uint64
	// Lockstep makes the primary end every epoch as Bressoud and
	// Schneider's protocol does: it waits for the backup to acknowledge
	// the epoch's log before starting the next one. ftvm does not need it
	// (outputs wait, execution does not); it exists to measure what it
	// costs.
	Lockstep bool
	// DigestEvery is how often (in instructions) the primary logs a state
	// digest the backup checks (default 100 M). A checkpointing primary
	// puts its digest into the first checkpoint after each DigestEvery
	// instructions, and the backup checks it after applying.
	DigestEvery uint64

	// Mode is how the pair replicates: Replay (the default), Checkpoint
	// (Remus) or COLO. Both replicas must use the same.
	Mode Mode
	// Period is how often a checkpointing primary takes a checkpoint
	// (default 25 ms, as in Remus).
	Period time.Duration
	// MaxInFlight is how many checkpoints may wait for the backup's
	// acknowledgement while the guest runs on (default 2).
	MaxInFlight int
	// MaxPeriod is how long a COLO pair may run without a checkpoint
	// when the replicas' outputs match (default 10 s).
	MaxPeriod time.Duration

	Log *slog.Logger
}

func (c *Config) setDefaults() error {
	if err := validID(c.ID); err != nil {
		return err
	}
	if c.Cluster == "" {
		return errors.New("replication: a cluster name is required")
	}
	if c.TLS == nil {
		return errors.New("replication: TLS keys are required")
	}
	if c.Epoch == 0 {
		c.Epoch = 100_000
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 20 * time.Millisecond
	}
	if c.Timeout == 0 {
		c.Timeout = 500 * time.Millisecond
	}
	if c.Timeout < 2*c.Heartbeat {
		return fmt.Errorf("replication: timeout %v must be at least twice the heartbeat %v", c.Timeout, c.Heartbeat)
	}
	if c.MaxLag == 0 {
		c.MaxLag = 200_000_000
	}
	if c.DigestEvery == 0 {
		c.DigestEvery = 100_000_000
	}
	if c.Engine == "" {
		c.Engine = "unknown"
	}
	if c.Period <= 0 {
		c.Period = 25 * time.Millisecond
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 2
	}
	if c.MaxPeriod == 0 {
		c.MaxPeriod = 10 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Replica is one replica process: a primary, or a backup that may become
// one. It is the driver of a core.Core.
type Replica struct {
	cfg Config
	log *slog.Logger
	out *outbuf.Buffer
	// hashes, while a log is being written (primary) or followed
	// (backup), takes in every output the guest emits, disk writes
	// included: the primary logs the running hashes and the backup checks
	// its own against them, so a backup that emitted different outputs
	// would stop rather than go live. The engine's goroutine only.
	hashes *replay.Outputs
	// ckWrites, while a checkpointing primary has a backup, takes in the
	// guest's disk writes for the next checkpoint.
	ckWrites ckptWrites
	// coloP, while a COLO primary has a secondary, takes its guest's
	// frames; coloS, while this replica is a COLO secondary, takes its
	// guest's frames and disk writes. nic is a COLO replica's NIC.
	coloP atomic.Pointer[coloPrimary]
	coloS atomic.Pointer[coloSecondary]
	nic   *coloNIC

	d driver

	flips []*flipRequest // memory errors to inject (under d.mu)

	// Warnings anyone on the network can cause, rate-limited.
	acceptWarn, rejectWarn, refuseWarn rareWarn
	// A COLO secondary too far behind, rate-limited too.
	lagWarn rareWarn

	stMu sync.Mutex
	st   Status
}

// New checks cfg and returns a replica. Build the primary's engine with
// Outputs() as its outputs.
func New(cfg Config) (*Replica, error) {
	if cfg.Arbiter == nil {
		return nil, errors.New("replication: TLS keys and an arbiter are required")
	}
	return newReplica(cfg)
}

// newReplica is New without the arbiter, which the modes that agree by
// consensus do not use.
func newReplica(cfg Config) (*Replica, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	r := &Replica{cfg: cfg, log: cfg.Log.With("replica", cfg.ID)}
	if cfg.Mode == COLO && cfg.Host.Net != nil {
		// A secondary that goes live maps its guest's sequence numbers.
		r.nic = &coloNIC{Backend: cfg.Host.Net}
		r.cfg.Host.Net = r.nic
	}
	nb := r.cfg.Host.Net
	r.out = outbuf.New(outbuf.Solo, func(o outbuf.Output) {
		switch {
		case o.Net && nb != nil:
			nb.Transmit(o.Data)
		case !o.Net && cfg.Host.Console != nil:
			cfg.Host.Console.Write(o.Data)
		}
	})
	r.d.init(r)
	r.st = Status{ID: cfg.ID, Cluster: cfg.Cluster, Role: "starting"}
	return r, nil
}

// Outputs is where the engine's outputs must go.
func (r *Replica) Outputs() vm.Outputs {
	return vm.Outputs{
		Console: func(instret uint64, b []byte) {
			if h := r.hashes; h != nil {
				h.Console(b)
			}
			r.out.Add(false, instret, b)
		},
		Net: func(instret uint64, f []byte) {
			if h := r.hashes; h != nil {
				h.Net(f)
			}
			if c := r.coloP.Load(); c != nil && c.primary(instret, f) {
				return
			}
			if c := r.coloS.Load(); c != nil {
				c.output(f)
				return
			}
			r.out.Add(true, instret, f)
		},
		Disk: func(_ uint64, off int64, p []byte) {
			if h := r.hashes; h != nil {
				h.Disk(off, p)
			}
			if w := r.ckWrites.Load(); w != nil {
				w.Add(off, p)
			}
			if c := r.coloP.Load(); c != nil && c.chunks != nil {
				c.chunks.Add(off, len(p))
			}
			if c := r.coloS.Load(); c != nil && c.chunks != nil {
				c.chunks.Add(off, len(p))
			}
		},
	}
}

// coreConfig is the core's configuration: the driver ticks every half
// heartbeat.
func (c *Config) coreConfig() core.Config {
	ticks := func(d time.Duration) int { return max(1, int((d+c.tick()-1)/c.tick())) }
	return core.Config{
		ID: c.ID, Cluster: c.Cluster, Engine: c.Engine,
		HeartbeatTicks: 2, TimeoutTicks: ticks(c.Timeout),
		RetryTicks: ticks(20 * time.Millisecond), MaxRetryTicks: ticks(time.Second),
		MaxLag: c.MaxLag, Lockstep: c.Lockstep,
	}
}

// ckptConfig is a checkpointing core's configuration.
func (c *Config) ckptConfig() ckpt.Config {
	return ckpt.Config{Config: c.coreConfig(), Mode: c.Mode.ckpt(), MaxInFlight: c.MaxInFlight}
}

// Mode is how a pair replicates.
type Mode int

const (
	// Replay: the backup replays the primary's logged inputs.
	Replay Mode = iota
	// Checkpoint: Remus; the backup applies the primary's checkpoints.
	Checkpoint
	// COLO: both replicas execute; output comparison, checkpoints on a
	// mismatch.
	COLO
)

func (m Mode) String() string {
	switch m {
	case Replay:
		return core.ModeName
	case Checkpoint:
		return ckpt.Remus.String()
	case COLO:
		return ckpt.COLO.String()
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

func (m Mode) ckpt() ckpt.Mode {
	switch m {
	case Checkpoint:
		return ckpt.Remus
	case COLO:
		return ckpt.COLO
	}
	return 0
}

// ParseMode reads a mode's name: replay, checkpoint or colo.
func ParseMode(s string) (Mode, error) {
	if s == core.ModeName {
		return Replay, nil
	}
	m, err := ckpt.ParseMode(s)
	if err != nil {
		return 0, fmt.Errorf("unknown replication mode %q (want replay, checkpoint or colo)", s)
	}
	if m == ckpt.Remus {
		return Checkpoint, nil
	}
	return COLO, nil
}

// tick is the period of the core's logical clock.
func (c *Config) tick() time.Duration { return max(time.Millisecond, c.Heartbeat/2) }

// Status is what 'ftvm status' shows of a replica.
type Status struct {
	ID      string `json:"id"`
	Cluster string `json:"cluster"`
	Role    string `json:"role"` // starting, primary, joining, backup, stopped
	View    View   `json:"view"`
	Peer    string `json:"peer,omitempty"` // the other replica's id

	Instret     uint64 `json:"instret"`      // instructions executed (replayed, on a backup)
	PeerInstret uint64 `json:"peer_instret"` // the backup's replayed count, on a primary
	LagInsns    uint64 `json:"lag_instructions"`
	LagBytes    int64  `json:"lag_bytes"` // log bytes sent and not acknowledged, or received and not replayed
	LogBytes    int64  `json:"log_bytes"` // log bytes sent (primary) or received (backup) on this link; in the checkpointing modes, the link's bytes both ways (primary) or the checkpoints' and inputs' (backup)
	LogFrames   int64  `json:"log_frames"`
	HeldOutputs int    `json:"held_outputs"`
	// AckLatency is a moving average of the time from appending a Sync
	// record to its acknowledgement: what the output rule adds to an
	// output's latency.
	AckLatency time.Duration `json:"ack_latency_ns"`
	// LastHeartbeat is when the peer was last heard from.
	LastHeartbeat time.Time `json:"last_heartbeat,omitzero"`
	LinkSince     time.Time `json:"link_since,omitzero"`
	// LogRate is the log's bandwidth on the link, bytes per second, over
	// the last second or so.
	LogRate   float64 `json:"log_rate"`
	Failovers int     `json:"failovers"`
	// The last failover: when the primary was last heard from, when its
	// loss was detected, and when this replica went live.
	PrimaryLastHeard time.Time `json:"primary_last_heard,omitzero"`
	FailoverDetected time.Time `json:"failover_detected,omitzero"`
	FailoverLive     time.Time `json:"failover_live,omitzero"`
	Error            string    `json:"error,omitempty"`

	// Mode is how the pair replicates: replay, checkpoint, colo or plover.
	Mode string `json:"mode,omitempty"`

	// COLO's comparator (primary): TCP payload bytes matched, flows found
	// to differ, frames held now.
	ComparedBytes  uint64 `json:"compared_bytes,omitempty"`
	Mismatches     uint64 `json:"mismatches,omitempty"`
	ComparatorHeld int    `json:"comparator_held_frames,omitempty"`

	// The checkpointing modes: checkpoints taken (primary) or applied
	// (backup) on the current link, their rate over the last second or
	// so, their pages, bytes and pauses in all, and the last ones each.
	Checkpoints       uint64           `json:"checkpoints,omitempty"`
	CheckpointRate    float64          `json:"checkpoint_rate,omitempty"`
	CheckpointPages   uint64           `json:"checkpoint_pages,omitempty"`
	CheckpointBytes   uint64           `json:"checkpoint_bytes,omitempty"`
	CheckpointPause   time.Duration    `json:"checkpoint_pause_ns,omitempty"`
	RecentCheckpoints []CheckpointStat `json:"recent_checkpoints,omitempty"`

	// PLOVER mode: the consensus group and the syncs.
	Term     uint64         `json:"term,omitempty"`
	Leader   string         `json:"leader,omitempty"`
	Members  []string       `json:"members,omitempty"`
	LogIndex uint64         `json:"log_index,omitempty"`
	Syncs    int            `json:"syncs,omitempty"`
	LastSync *SyncReport    `json:"last_sync,omitempty"`
	Totals   *SyncTotals    `json:"sync_totals,omitempty"`
	Repairs  []RepairReport `json:"repairs,omitempty"`

	rateT     time.Time
	rateBytes int64
}

// CheckpointStat describes one checkpoint.
type CheckpointStat struct {
	Seq uint64    `json:"seq"`
	At  time.Time `json:"at"`
	// Pause is how long the guest was paused to take it (primary), or
	// how long it took to apply (backup).
	Pause      time.Duration `json:"pause_ns"`
	Pages      int           `json:"pages"`       // RAM pages in it
	StateBytes int           `json:"state_bytes"` // processor and device state
	DiskBytes  int64         `json:"disk_bytes"`  // disk writes
	Bytes      int64         `json:"bytes"`       // its size on the link (0 until sent)
	// Ack is the time from taking it to the backup's acknowledgement
	// (primary; 0 until then): what the output rule adds to its epoch's
	// outputs.
	Ack time.Duration `json:"ack_ns,omitempty"`
	// Reason says what asked for it (COLO).
	Reason string `json:"reason,omitempty"`
}

// sampleRate updates LogRate from LogBytes, about once a second.
func (s *Status) sampleRate(now time.Time) {
	if s.rateT.IsZero() || s.LogBytes < s.rateBytes {
		s.rateT, s.rateBytes = now, s.LogBytes
		return
	}
	if dt := now.Sub(s.rateT); dt >= time.Second {
		s.LogRate = float64(s.LogBytes-s.rateBytes) / dt.Seconds()
		s.rateT, s.rateBytes = now, s.LogBytes
	}
}

// Status returns the replica's current figures.
func (r *Replica) Status() Status {
	r.stMu.Lock()
	defer r.stMu.Unlock()
	return r.st
}

func (r *Replica) setStatus(f func(*Status)) {
	r.stMu.Lock()
	f(&r.st)
	r.stMu.Unlock()
}

// kindSync is the replication layer's log record (see core.KindSync).
const kindSync = core.KindSync

// ErrDeposed is returned by a replica that lost the arbitration: the other
// replica is live, and this one must stop without emitting anything more.
var ErrDeposed = core.ErrDeposed
