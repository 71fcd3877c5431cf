package replication

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"ftvm/migrate"
	"ftvm/replication/core"
)

// joiner is a backup on its way in: authenticated, its hello read.
type joiner struct {
	id   string
	conn *tls.Conn
	br   *bufio.Reader
	t0   time.Time
}

const handshakeTimeout = 5 * time.Second

// accept takes connections until ctx ends, whatever the replica's role: a
// primary may take a backup, and a backup (or a replica still joining)
// answers with a refusal naming the primary, so that whoever dials it
// learns at once what is wrong instead of waiting on a silent port.
func (d *driver) accept(ctx context.Context, ln net.Listener) {
	acceptLoop(ctx, ln, func(err error) { d.r.warnRare(&d.r.acceptWarn, "accept", "err", err.Error()) },
		func(c net.Conn) { d.handshake(ctx, c) })
}

// acceptLoop takes connections from ln until ctx ends (it closes ln then),
// each served on a goroutine of its own; a failed Accept is reported to
// failed (which may be nil) and retried after a short pause.
func acceptLoop(ctx context.Context, ln net.Listener, failed func(error), serve func(net.Conn)) {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			if failed != nil {
				failed(err)
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go serve(c)
	}
}

// handshake authenticates a connection and reads its hello, then asks the
// core.
func (d *driver) handshake(ctx context.Context, c net.Conn) {
	cfg := &d.r.cfg
	tc := tls.Server(c, cfg.TLS)
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		// Anyone can connect: these are rate-limited.
		d.r.warnRare(&d.r.rejectWarn, "rejected a connection", "from", c.RemoteAddr().String(), "err", err.Error())
		c.Close()
		return
	}
	j := &joiner{conn: tc, br: bufio.NewReaderSize(tc, 64<<10)}
	id, _ := peerID(tc)
	var h hello
	t, p, err := readMessage(j.br)
	if err == nil && t == msgRepairHello {
		var rh repairHello
		if err = readJSONPayload(p, &rh); err == nil {
			j.id = rh.ID
			tc.SetDeadline(time.Time{})
			d.repairRequest(j, rh, id)
			return
		}
	}
	if err == nil && t != msgHello {
		err = fmt.Errorf("%w: got %v, want %v", errProtocol, t, msgHello)
	}
	if err == nil {
		err = readJSONPayload(p, &h)
	}
	if err != nil {
		d.r.warnRare(&d.r.rejectWarn, "rejected a connection", "from", c.RemoteAddr().String(), "id", id, "err", err.Error())
		tc.Close()
		return
	}
	j.id = h.ID
	d.mu.Lock()
	d.candidate = j
	m := h.Mode
	if m == "" {
		m = core.ModeName
	}
	_, later := d.stepLocked(core.JoinRequest{ID: h.ID, CertID: id, Cluster: h.Cluster, Version: h.Version, Mode: m})
	d.candidate = nil
	d.mu.Unlock()
	d.finish(later)
}

// refused answers a join request the core refused.
func (d *driver) refused(j *joiner, why string) {
	d.r.warnRare(&d.r.refuseWarn, "refused a backup", "from", j.conn.RemoteAddr().String(), "id", j.id, "err", why)
	j.conn.SetWriteDeadline(time.Now().Add(time.Second))
	writeJSON(j.conn, msgRefuse, refuse{Error: why})
	j.conn.Close()
}

// startTransfer welcomes a backup and starts the state transfer to it
// (engine's goroutine).
func (p *primary) startTransfer(j *joiner) {
	r := p.r
	fail := func(err error) {
		j.conn.Close()
		r.d.step(core.JoinFailed{ID: j.id, Err: err})
	}
	j.conn.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := writeJSON(j.conn, msgWelcome, welcome{Primary: r.cfg.ID}); err != nil {
		fail(err)
		return
	}
	j.conn.SetDeadline(time.Time{})
	ts, err := migrate.NewSender(connRW{j.br, j.conn}, p.e, r.cfg.Disk, migrate.Options{})
	if err != nil {
		fail(err)
		return
	}
	j.t0 = time.Now()
	r.d.mu.Lock()
	r.d.joiner = j
	r.d.mu.Unlock()
	p.ts, p.tsJoin = ts, j
	r.log.Info("backup joining", "backup", j.id, "from", j.conn.RemoteAddr().String())
}

// stepTransfer advances the state transfer, and reports whether it is
// complete (the guest is stopped; the core must change the view before it
// runs again).
func (p *primary) stepTransfer() bool {
	r, j, ts := p.r, p.tsJoin, p.ts
	fail := func(err error) bool {
		ts.Close()
		p.ts, p.tsJoin = nil, nil
		r.d.step(core.JoinFailed{ID: j.id, Err: err})
		return false
	}
	done, err := ts.Step()
	if err != nil {
		return fail(err)
	}
	if !done {
		return false
	}
	st, err := ts.Finish()
	if err != nil {
		return fail(err)
	}
	p.ts, p.tsJoin = nil, nil
	r.log.Info("state transferred", "backup", j.id, "instret", p.e.Instret(), "transfer", time.Since(j.t0).String(),
		"pause", st.Pause.String(), "rounds", st.Rounds, "bytes", st.BytesSent, "disk_chunks", st.ChunksSent)
	r.d.step(core.Transferred{ID: j.id, State: st.Digest, Instret: p.e.Instret()})
	return true
}

// rareWarn rate-limits a warning that anyone on the network can cause.
type rareWarn struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// warnInterval is the least time between two lines of one rare warning.
const warnInterval = 10 * time.Second

// warnRare logs a warning at most once per warnInterval; the next line
// says how many were not logged.
func (r *Replica) warnRare(w *rareWarn, msg string, args ...any) {
	w.mu.Lock()
	now := time.Now()
	if !w.last.IsZero() && now.Sub(w.last) < warnInterval {
		w.suppressed++
		w.mu.Unlock()
		return
	}
	n := w.suppressed
	w.last, w.suppressed = now, 0
	w.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_since_last", n)
	}
	r.log.Warn(msg, args...)
}
