package replication

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"ftvm/migrate"
	"ftvm/replay"
	"ftvm/replay/eventlog"
)

// joiner is a backup on its way in: authenticated, welcomed, receiving the
// state transfer.
type joiner struct {
	id   string
	conn *tls.Conn
	br   *bufio.Reader
	ts   *migrate.Sender
	t0   time.Time
}

const handshakeTimeout = 5 * time.Second

// accept takes connections from would-be backups until ctx ends.
func (p *primary) accept(ctx context.Context, ln net.Listener) {
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
			p.r.log.Warn("accept", "err", err.Error())
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go p.handshake(ctx, c)
	}
}

// handshake authenticates a connection and checks its hello before the
// engine goroutine sees it.
func (p *primary) handshake(ctx context.Context, c net.Conn) {
	cfg := &p.r.cfg
	tc := tls.Server(c, cfg.TLS)
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		p.r.log.Warn("rejected a connection", "from", c.RemoteAddr().String(), "err", err.Error())
		c.Close()
		return
	}
	j := &joiner{conn: tc, br: bufio.NewReaderSize(tc, 64<<10)}
	id, _ := peerID(tc)
	var h hello
	err := readJSON(j.br, msgHello, &h)
	switch {
	case err != nil:
	case h.Version != protocolVersion:
		err = fmt.Errorf("protocol version %d, this primary speaks %d", h.Version, protocolVersion)
	case h.Cluster != cfg.Cluster:
		err = fmt.Errorf("cluster %q, this primary serves %q", h.Cluster, cfg.Cluster)
	case h.ID != id:
		err = fmt.Errorf("hello names replica %q but the certificate is %q's", h.ID, id)
	case h.ID == cfg.ID:
		err = fmt.Errorf("replica id %q is this primary's own", h.ID)
	}
	if err != nil {
		p.r.log.Warn("refused a backup", "from", c.RemoteAddr().String(), "id", id, "err", err.Error())
		writeJSON(tc, msgRefuse, refuse{Error: err.Error()})
		tc.Close()
		return
	}
	j.id = h.ID
	tc.SetDeadline(time.Time{})
	select {
	case p.joins <- j:
	case <-ctx.Done():
		tc.Close()
	}
}

func (j *joiner) refuse(why string) {
	j.conn.SetWriteDeadline(time.Now().Add(time.Second))
	writeJSON(j.conn, msgRefuse, refuse{Error: why})
	j.conn.Close()
}

// startJoin begins bringing a backup up to date (engine goroutine).
func (p *primary) startJoin(j *joiner) {
	switch {
	case p.link != nil:
		j.refuse("already protected by " + p.link.id)
		return
	case p.join != nil:
		j.refuse("replica " + p.join.id + " is joining")
		return
	}
	j.conn.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	if err := writeJSON(j.conn, msgWelcome, welcome{Primary: p.r.cfg.ID}); err != nil {
		j.conn.Close()
		return
	}
	j.conn.SetWriteDeadline(time.Time{})
	ts, err := migrate.NewSender(connRW{j.br, j.conn}, p.e, p.r.cfg.Disk, migrate.Options{})
	if err != nil {
		p.r.log.Warn("backup join failed", "backup", j.id, "err", err.Error())
		j.conn.Close()
		return
	}
	j.ts, j.t0 = ts, time.Now()
	p.join = j
	p.r.setStatus(func(s *Status) { s.Role, s.Peer = "primary (backup joining)", j.id })
	p.r.log.Info("backup joining", "backup", j.id, "from", j.conn.RemoteAddr().String())
}

// stepJoin advances the state transfer; when it is complete, the backup
// enters the view at the arbiter and the log starts.
func (p *primary) stepJoin() error {
	j := p.join
	abandon := func(err error) error {
		p.r.log.Warn("backup join failed", "backup", j.id, "err", err.Error())
		j.ts.Close()
		j.conn.Close()
		p.join = nil
		p.r.setStatus(func(s *Status) { s.Role, s.Peer = "primary", "" })
		return nil
	}
	done, err := j.ts.Step()
	if err != nil {
		return abandon(err)
	}
	if !done {
		return nil
	}
	st, err := j.ts.Finish()
	if err != nil {
		return abandon(err)
	}
	stateID := st.Digest
	// The backup may go live only once the view names it, and the view
	// must not name it before it holds the state.
	next := View{Generation: p.view.Generation + 1, Primary: p.r.cfg.ID, Backup: j.id}
	c, cancel := context.WithTimeout(p.ctx, 2*time.Second)
	won, cur, err := p.r.cfg.Arbiter.Swap(c, p.view, next)
	cancel()
	if err != nil {
		return abandon(fmt.Errorf("arbiter: %w", err))
	}
	if !won {
		p.r.out.dropAll()
		j.conn.Close()
		p.join = nil
		p.r.log.Error("the view changed under the primary", "view", cur.String())
		return ErrDeposed
	}
	p.view = next
	l := &link{id: j.id, conn: j.conn, dead: make(chan struct{}), acks: make(chan struct{}, 1)}
	l.snd = newSender(l, p.r.cfg.Timeout)
	hdr := eventlog.Header{
		Engine:       p.r.cfg.Engine,
		StartInstret: p.e.Instret(),
		Images:       []eventlog.Image{{Role: "state", SHA256: stateID}},
		Params: []eventlog.Param{
			{Key: "cluster", Value: p.r.cfg.Cluster},
			{Key: "generation", Value: strconv.FormatUint(next.Generation, 10)},
			{Key: "primary", Value: next.Primary},
			{Key: "backup", Value: next.Backup},
		},
	}
	if l.w, err = eventlog.NewWriter(l.snd, hdr); err != nil {
		return abandon(err)
	}
	l.rec = replay.NewRecorder(p.e, l.w, p.r.cfg.DigestEvery)
	p.r.out.hashes = replay.NewOutputs()
	l.rec.SetOutputs(p.r.out.hashes)
	l.lastAck.Store(time.Now().UnixNano())
	l.readers.Add(1)
	go l.readAcks(p.r, j.br)
	p.link, p.join = l, nil
	p.r.out.mode = modePaired
	now := time.Now()
	p.r.setStatus(func(s *Status) { s.Role, s.View, s.Peer, s.LinkSince = "primary", next, j.id, now })
	p.r.log.Info("backup joined", "backup", j.id, "view", next.String(), "instret", p.e.Instret(),
		"transfer", now.Sub(j.t0).String(), "pause", st.Pause.String(), "rounds", st.Rounds,
		"bytes", st.BytesSent, "disk_chunks", st.ChunksSent)
	return p.flush()
}
