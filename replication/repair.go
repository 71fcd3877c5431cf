package replication

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"ftvm/replay"
	"ftvm/replay/eventlog"
	"ftvm/replication/core"
	"ftvm/statesync"
	"ftvm/vm"
)

// Repair of a corrupted backup in the replay-based pair. A memory error
// that flips a bit of the backup's RAM makes the next state digest in the
// log differ in its RAM part only; rather than stop as divergent, the
// backup asks its primary for a repair on a connection of its own:
//
//	backup  -> primary: repairHello (its id, the instruction where it
//	                    found the difference)
//	primary -> backup:  repairAt: the guest is paused at instruction
//	                    Instret, after log frame Frames
//	                    (the backup replays to there, not checking the
//	                    digests on the way, and both compare every page:
//	                    statesync's Mend, its messages as repair messages)
//
// With no third party keeping page hashes the primary is assumed right:
// the backup takes its pages where they differ (and its processor and
// devices, in case the error reached them), and the report says so; a
// flip in the primary's memory is found the same way and copied to the
// backup, both replicas then agreeing on the primary's contents. The
// guest's outputs are held as usual meanwhile, so no client sees anything
// but a pause.
const (
	msgRepairHello msgType = 48 + iota // JSON repairHello
	msgRepairAt                        // JSON repairAt
	msgRepair                          // a statesync mend message
)

type repairHello struct {
	Version int    `json:"version"`
	Cluster string `json:"cluster"`
	ID      string `json:"id"`
	At      uint64 `json:"at"`
}

type repairAt struct {
	Instret uint64 `json:"instret"`
	Frames  int64  `json:"frames"`
}

// repairTimeout bounds each step of a repair.
const repairTimeout = 30 * time.Second

// repairable reports whether err is a divergence a repair can mend: a
// state digest that differs in RAM alone.
func repairable(err error) (*replay.Divergence, bool) {
	var d *replay.Divergence
	if !errors.As(err, &d) || d.What != "state digest mismatch" {
		return nil, false
	}
	ram := false
	for _, part := range d.Parts {
		switch part {
		case "ram":
			ram = true
		case "overall":
		default:
			return d, false // the processor or a device differs too
		}
	}
	return d, ram
}

// repairKey is the mend's MAC key: its messages travel inside the
// replicas' mutual-TLS connection, which authenticates them.
func (r *Replica) repairKey() []byte {
	k := sha256.Sum256([]byte("ftvm repair " + r.cfg.Cluster))
	return k[:]
}

// backupRepair is a repair in progress on a backup.
type backupRepair struct {
	conn *tls.Conn
	br   *bufio.Reader
	at   repairAt
	from uint64 // where the difference was found
	t0   time.Time
}

// startRepair (backup) asks the primary for a repair of the difference d
// found: it returns once the primary is paused and said where.
func (r *Replica) startRepair(ctx context.Context, s *stream, d *replay.Divergence) (*backupRepair, error) {
	if s.addr == "" {
		return nil, errors.New("no primary address")
	}
	r.log.Warn("the state digest differs in RAM only: asking the primary for a repair", "instret", d.Instret)
	dl := tls.Dialer{NetDialer: &net.Dialer{Timeout: handshakeTimeout}, Config: r.cfg.TLS}
	c, err := dl.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*tls.Conn)
	if id, _ := peerID(tc); id != s.primary {
		tc.Close()
		return nil, fmt.Errorf("the repair connection reached %q, not the primary %q", id, s.primary)
	}
	br := bufio.NewReaderSize(tc, 256<<10)
	tc.SetDeadline(time.Now().Add(repairTimeout))
	if err := writeJSON(tc, msgRepairHello, repairHello{Version: core.ProtocolVersion, Cluster: r.cfg.Cluster, ID: r.cfg.ID, At: d.Instret}); err != nil {
		tc.Close()
		return nil, err
	}
	var at repairAt
	if err := readJSON(br, msgRepairAt, &at); err != nil {
		tc.Close()
		return nil, err
	}
	return &backupRepair{conn: tc, br: br, at: at, from: d.Instret, t0: time.Now()}, nil
}

// finishRepair (backup) runs the mend once the backup has replayed to
// where the primary paused.
func (r *Replica) finishRepair(ctx context.Context, br *backupRepair, e Engine) error {
	defer br.conn.Close()
	if err := replay.RunTo(e, br.at.Instret); err != nil {
		return err
	}
	m, err := statesync.NewMend(statesync.MendConfig{Role: statesync.Backup, ID: br.at.Instret, Engine: e, Key: r.repairKey()})
	if err != nil {
		return err
	}
	out, err := m.Start()
	if err := mendOver(ctx, br.conn, br.br, m, out, err); err != nil {
		return err
	}
	st := m.Stats()
	rep := RepairReport{At: time.Now(), Pages: append(append([]int(nil), st.Received...), st.Sent...), Faulty: "backup",
		Detail: fmt.Sprintf("found at instruction %d, repaired at %d: took %d pages (and the processor and devices) from the primary, no witness: the primary is assumed right",
			br.from, br.at.Instret, len(st.Received))}
	r.setStatus(func(s *Status) { s.Repairs = append(s.Repairs, rep) })
	r.log.Warn("memory repaired", "pages", fmt.Sprint(rep.Pages), "found_at", br.from, "repaired_at", br.at.Instret,
		"took", time.Since(br.t0).String(), "report", rep.Detail)
	return nil
}

// mendOver carries a mend's messages over c until it completes.
func mendOver(ctx context.Context, c *tls.Conn, br *bufio.Reader, m *statesync.Mend, out [][]byte, err error) error {
	for {
		c.SetDeadline(time.Now().Add(repairTimeout))
		for _, msg := range out {
			if werr := writeMessage(c, msgRepair, msg); werr != nil && err == nil {
				err = werr
			}
		}
		if err != nil || m.Done() {
			return err
		}
		if diff, need := m.NeedWitness(); need {
			_ = diff // no witness in the pair: the primary is assumed right
			out, err = m.Decide(nil)
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		t, p, rerr := readMessageMax(br, maxPloverMessage)
		if rerr != nil {
			return rerr
		}
		if t != msgRepair {
			return fmt.Errorf("%w: %v during a repair", errProtocol, t)
		}
		out, err = m.Receive(p)
	}
}

// repairRequest (primary) takes a backup's repair connection, on the
// acceptor's goroutine: the engine's goroutine serves it.
func (d *driver) repairRequest(j *joiner, h repairHello, certID string) {
	d.mu.Lock()
	l, _ := d.link.(*link) // the replay-based pair's log channel: the other modes have no repair
	ok := l != nil && l.id == h.ID && h.ID == certID && h.Cluster == d.r.cfg.Cluster && h.Version == core.ProtocolVersion && d.repair == nil
	if ok {
		d.repair = j
	}
	d.mu.Unlock()
	if !ok {
		d.r.warnRare(&d.r.refuseWarn, "refused a repair", "from", j.conn.RemoteAddr().String(), "id", h.ID)
		j.conn.SetWriteDeadline(time.Now().Add(time.Second))
		writeJSON(j.conn, msgRefuse, refuse{Error: "no such backup"})
		j.conn.Close()
		return
	}
	d.signal()
}

// serveRepair (primary, the engine's goroutine, the guest paused) tells
// the backup where the guest stopped and mends with it.
func (p *primary) serveRepair(ctx context.Context, j *joiner) {
	r := p.r
	defer j.conn.Close()
	r.d.step(core.Flush{})
	cs, _ := r.d.coreStatus()
	at := repairAt{Instret: p.e.Instret(), Frames: cs.Frames}
	j.conn.SetDeadline(time.Now().Add(repairTimeout))
	fail := func(err error) {
		r.log.Warn("repair failed", "backup", j.id, "err", err.Error())
	}
	if err := writeJSON(j.conn, msgRepairAt, at); err != nil {
		fail(err)
		return
	}
	t0 := time.Now()
	m, err := statesync.NewMend(statesync.MendConfig{Role: statesync.Primary, ID: at.Instret, Engine: p.e, Key: r.repairKey(), State: true})
	if err != nil {
		fail(err)
		return
	}
	out, err := m.Start()
	if err := mendOver(ctx, j.conn, j.br, m, out, err); err != nil {
		fail(err)
		return
	}
	rp := m.Stats().Report
	rep := RepairReport{At: time.Now(), Faulty: "backup", Detail: rp.String()}
	for _, f := range rp.Findings {
		rep.Pages = append(rep.Pages, f.Page)
	}
	r.setStatus(func(s *Status) { s.Repairs = append(s.Repairs, rep) })
	r.log.Warn("memory repaired", "backup", j.id, "instret", at.Instret, "pages", fmt.Sprint(rep.Pages), "pause", time.Since(t0).String(), "report", rep.Detail)
}

// InjectBitFlip flips a bit of this replica's guest memory, as a memory
// error would, between two slices of the guest (or two records of the log
// on a backup). It returns the bit flipped.
func (r *Replica) InjectBitFlip(ctx context.Context, f BitFlip) (BitFlip, error) {
	req := &flipRequest{f: f, done: make(chan struct{})}
	r.d.mu.Lock()
	r.flips = append(r.flips, req)
	r.d.mu.Unlock()
	r.d.signal()
	select {
	case <-req.done:
		return req.f, req.err
	case <-ctx.Done():
		return f, ctx.Err()
	}
}

// doFlips carries out the bit flips asked for (the engine's goroutine).
func (r *Replica) doFlips(e Engine) {
	r.d.mu.Lock()
	reqs := r.flips
	r.flips = nil
	r.d.mu.Unlock()
	for _, q := range reqs {
		q.f, q.err = flip(e, q.f)
		if q.err == nil {
			r.log.Warn("memory error injected", "page", q.f.Page, "offset", q.f.Offset, "bit", q.f.Bit)
		}
		close(q.done)
	}
}

// skipDigest replays a digest record without checking it (a backup on its
// way to a repair: the digests differ until then).
func skipDigest(e Engine, rec eventlog.Record) error {
	return replay.RunTo(e, rec.Instret)
}

var _ vm.Engine = Engine(nil)
