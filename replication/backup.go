package replication

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"ftvm/migrate"
	"ftvm/replay"
	"ftvm/replay/eventlog"
	"ftvm/vm"
)

// RunBackup joins the primary at addr, follows its log, and, if the primary
// dies and this replica wins the arbitration, goes live and continues as
// the primary (accepting a new backup on ln). It returns when the guest
// powers off, ctx ends, the log is refused (corrupt, forged, divergent) or
// the replica is deposed.
func (r *Replica) RunBackup(ctx context.Context, addr string, ln net.Listener) (vm.StopReason, error) {
	if r.cfg.Factory == nil {
		return vm.StopLimit, errors.New("replication: a backup needs a Factory")
	}
	r.setStatus(func(s *Status) { s.Role = "joining" })
	b, err := r.join(ctx, addr)
	if err != nil {
		r.setStatus(func(s *Status) { s.Role, s.Error = "stopped", err.Error() })
		return vm.StopLimit, err
	}
	reason, err := b.follow(ctx)
	if !errors.Is(err, errPrimaryLost) {
		if err != nil {
			r.setStatus(func(s *Status) { s.Role, s.Error = "stopped", err.Error() })
		}
		return reason, err
	}
	return r.failover(ctx, b, ln)
}

// backup is a replica following a primary's log.
type backup struct {
	r       *Replica
	e       Engine
	view    View
	conn    *tls.Conn
	br      *bufio.Reader
	rd      *eventlog.Reader
	primary string

	q        chan queued
	readErr  error // set before q is closed
	frames   atomic.Int64
	bytes    atomic.Int64
	replayed atomic.Uint64
	// replayedBytes is where in the stream the last replayed record ends.
	replayedBytes atomic.Int64
	lastRecv      atomic.Int64 // unix nanoseconds
	batch         chan struct{}
	stop          chan struct{} // closed when follow returns
	cause         error         // why the primary was declared lost
}

var errPrimaryLost = errors.New("primary lost")

// queued is a received record and the stream offset where it ends.
type queued struct {
	rec eventlog.Record
	end int64
}

// deadlineReader gives every read on a connection the peer timeout: a
// primary silent for that long (no log, no heartbeat) is declared dead.
// A reader blocked elsewhere (a full replay queue) is not reading, so a
// slow backup does not mistake its own lag for the primary's death.
type deadlineReader struct {
	c       net.Conn
	timeout atomic.Int64 // nanoseconds
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	d.c.SetReadDeadline(time.Now().Add(time.Duration(d.timeout.Load())))
	return d.c.Read(p)
}

func (r *Replica) join(ctx context.Context, addr string) (*backup, error) {
	cfg := &r.cfg
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: handshakeTimeout}, Config: cfg.TLS}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("joining the primary at %s: %w", addr, err)
	}
	tc := c.(*tls.Conn)
	b := &backup{r: r, conn: tc, q: make(chan queued, 4096), batch: make(chan struct{}, 1), stop: make(chan struct{})}
	b.primary, _ = peerID(tc)
	dr := &deadlineReader{c: tc}
	dr.timeout.Store(int64(max(cfg.Timeout, handshakeTimeout)))
	b.br = bufio.NewReaderSize(dr, 256<<10)
	tc.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	if err := writeJSON(tc, msgHello, hello{Version: protocolVersion, Cluster: cfg.Cluster, ID: cfg.ID}); err != nil {
		tc.Close()
		return nil, fmt.Errorf("joining the primary at %s: %w", addr, err)
	}
	tc.SetWriteDeadline(time.Time{})
	var w welcome
	if err := readJSON(b.br, msgWelcome, &w); err != nil {
		tc.Close()
		return nil, fmt.Errorf("joining the primary at %s: %w", addr, err)
	}
	if w.Primary != b.primary {
		tc.Close()
		return nil, fmt.Errorf("joining %s: the welcome names %q but the certificate is %q's", addr, w.Primary, b.primary)
	}
	r.log.Info("joining", "primary", b.primary, "at", addr)
	t0 := time.Now()
	var disk migrate.Disk
	if cfg.Disk != nil {
		disk = cfg.Disk
	}
	e, st, err := migrate.Receive(connRW{b.br, tc}, disk, cfg.Factory(r.Outputs()), migrate.ReceiveOptions{MaxMemory: maxGuestMemory})
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("the state transfer from %s: %w", b.primary, err)
	}
	b.e = e
	stateID := st.Digest
	r.out.mode = modeBackup
	// From here on the primary is followed with the peer timeout.
	dr.timeout.Store(int64(cfg.Timeout))
	if b.rd, err = eventlog.NewReader(b.br); err != nil {
		tc.Close()
		return nil, fmt.Errorf("the primary's log: %w", err)
	}
	if err := b.checkHeader(b.rd.Header(), stateID); err != nil {
		tc.Close()
		return nil, err
	}
	now := time.Now()
	r.setStatus(func(s *Status) {
		s.Role, s.View, s.Peer, s.LinkSince, s.Instret = "backup", b.view, b.primary, now, b.e.Instret()
	})
	r.log.Info("following the primary", "primary", b.primary, "view", b.view.String(), "instret", b.e.Instret(),
		"received_bytes", st.BytesReceived, "disk_chunks", st.Chunks, "transfer", now.Sub(t0).String())
	return b, nil
}

// checkHeader makes sure the log continues the state this backup holds and
// names it in the view.
func (b *backup) checkHeader(h eventlog.Header, stateID [32]byte) error {
	cfg := &b.r.cfg
	param := func(k string) string {
		for _, p := range h.Params {
			if p.Key == k {
				return p.Value
			}
		}
		return ""
	}
	gen, err := strconv.ParseUint(param("generation"), 10, 64)
	switch {
	case h.Engine != cfg.Engine:
		return fmt.Errorf("the primary runs engine %q, this backup %q", h.Engine, cfg.Engine)
	case len(h.Images) != 1 || h.Images[0].Role != "state" || h.Images[0].SHA256 != stateID:
		return errors.New("the primary's log does not start from the state it transferred")
	case h.StartInstret != b.e.Instret():
		return fmt.Errorf("the primary's log starts at instruction %d, the transferred state is at %d", h.StartInstret, b.e.Instret())
	case err != nil || param("cluster") != cfg.Cluster || param("backup") != cfg.ID || param("primary") != b.primary:
		return fmt.Errorf("the primary's log header names another pair: %v", h.Params)
	}
	b.view = View{Generation: gen, Primary: b.primary, Backup: cfg.ID}
	return nil
}

// follow replays the log as it arrives. It returns errPrimaryLost when the
// stream stops without an End record and without a fault of its own.
func (b *backup) follow(ctx context.Context) (vm.StopReason, error) {
	defer func() {
		close(b.stop)
		b.conn.Close()
	}()
	go b.read()
	acksDone := make(chan struct{})
	stopAcks := make(chan struct{})
	go b.acks(stopAcks, acksDone)
	defer func() {
		close(stopAcks)
		<-acksDone
	}()
	p := replay.NewPlayer(b.e)
	b.r.out.hashes = replay.NewOutputs()
	p.SetOutputs(b.r.out.hashes)
	defer func() { b.r.out.hashes = nil }()
	b.replayed.Store(b.e.Instret())
	b.lastRecv.Store(time.Now().UnixNano())
	for {
		var qr queued
		var ok bool
		select {
		case qr, ok = <-b.q:
		case <-ctx.Done():
			return vm.StopLimit, ctx.Err()
		}
		if !ok {
			break
		}
		rec := qr.rec
		if err := b.apply(p, rec); err != nil {
			b.r.log.Error("refusing the primary's log", "err", err.Error())
			return vm.StopLimit, fmt.Errorf("refusing the primary's log: %w", err)
		}
		b.replayed.Store(b.e.Instret())
		b.replayedBytes.Store(qr.end)
		if rec.Kind == eventlog.KindEnd {
			b.r.log.Info("the primary's guest stopped", "reason", rec.Reason, "instret", rec.Instret)
			return vm.ParseStopReason(rec.Reason), nil
		}
	}
	err := b.readErr
	var fe *eventlog.FormatError
	switch {
	case errors.Is(err, eventlog.ErrCorrupt), errors.Is(err, eventlog.ErrVersion), errors.Is(err, eventlog.ErrUnknownKind), errors.Is(err, errProtocol),
		tampered(err):
		b.r.log.Error("refusing the primary's log", "err", err.Error())
		return vm.StopLimit, fmt.Errorf("refusing the primary's log: %w", err)
	case errors.As(err, &fe) && errors.Is(err, eventlog.ErrTruncated), err != nil:
		b.cause = err
		return vm.StopLimit, errPrimaryLost
	}
	return vm.StopLimit, errPrimaryLost
}

// tampered reports a TLS record that failed its integrity check here:
// someone altered the stream in transit. That is not evidence that the
// primary died, so the backup refuses the stream rather than taking over
// (crypto/tls reports its own alerts as a net.OpError "local error").
func tampered(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "local error"
}

// apply replays one record.
func (b *backup) apply(p *replay.Player, rec eventlog.Record) error {
	if rec.Kind == kindSync {
		through, n := binary.Uvarint(rec.Data)
		if n <= 0 || n != len(rec.Data) {
			return fmt.Errorf("%w: malformed sync record at instruction %d", errProtocol, rec.Instret)
		}
		if err := replay.RunTo(b.e, rec.Instret); err != nil {
			return err
		}
		b.r.out.settled(through)
		return nil
	}
	return p.Apply(rec)
}

// read moves checked log records into the replay queue. A full queue stops
// it, which stops the TCP window and so slows the primary.
func (b *backup) read() {
	defer close(b.q)
	for {
		rec, err := b.rd.Next()
		if err != nil {
			if err != io.EOF {
				b.readErr = err
			}
			return
		}
		b.frames.Store(b.rd.Frame())
		b.bytes.Store(b.rd.Offset())
		b.lastRecv.Store(time.Now().UnixNano())
		if b.br.Buffered() == 0 {
			select {
			case b.batch <- struct{}{}:
			default:
			}
		}
		select {
		case b.q <- queued{rec, b.rd.Offset()}:
		case <-b.stop:
			return
		}
		if rec.Kind == eventlog.KindEnd {
			b.signal()
			return
		}
	}
}

func (b *backup) signal() {
	select {
	case b.batch <- struct{}{}:
	default:
	}
}

// acks acknowledges what has been received (at the end of every batch the
// primary sent, and at least every heartbeat) and drops what the host NIC
// receives while the guest is not live here.
func (b *backup) acks(stop, done chan struct{}) {
	defer close(done)
	cfg := &b.r.cfg
	t := time.NewTicker(cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-b.batch:
		case <-t.C:
		}
		// Sent even when nothing changed: the ack is the heartbeat.
		a := ack{Frames: uint64(b.frames.Load()), Bytes: uint64(b.bytes.Load()), Replayed: b.replayed.Load()}
		b.conn.SetWriteDeadline(time.Now().Add(cfg.Timeout))
		if err := writeMessage(b.conn, msgAck, a.encode()); err != nil {
			return
		}
		if nb := cfg.Host.Net; nb != nil {
			for {
				if _, ok := nb.TryReceive(); !ok {
					break
				}
			}
		}
		rep := a.Replayed
		b.r.setStatus(func(s *Status) {
			s.Instret, s.LogFrames, s.LogBytes = rep, int64(a.Frames), int64(a.Bytes)
			s.LastHeartbeat = time.Unix(0, b.lastRecv.Load())
			s.sampleRate(time.Now())
			if s.Instret > 0 {
				s.LagBytes = max(0, int64(a.Bytes)-b.replayedBytes.Load())
			}
		})
	}
}

// failover is a backup whose primary is gone: once the log is replayed to
// its last record, it must win the arbitration, then it re-issues the
// outputs the primary may not have sent, announces the guest's MAC, and
// runs on as the primary.
func (r *Replica) failover(ctx context.Context, b *backup, ln net.Listener) (vm.StopReason, error) {
	detected, heard := time.Now(), time.Unix(0, b.lastRecv.Load())
	r.log.Warn("primary lost", "primary", b.primary, "cause", fmt.Sprint(b.cause), "instret", b.e.Instret(),
		"silent_for", detected.Sub(heard).String())
	r.setStatus(func(s *Status) {
		s.Role, s.PrimaryLastHeard, s.FailoverDetected, s.Instret = "taking over", heard, detected, b.e.Instret()
	})
	next := View{Generation: b.view.Generation + 1, Primary: r.cfg.ID}
	won, err := r.arbitrate(ctx, b.view, next)
	if err != nil {
		return vm.StopLimit, err
	}
	if !won {
		r.out.dropAll()
		r.setStatus(func(s *Status) { s.Role, s.Error = "stopped", ErrDeposed.Error() })
		return vm.StopLimit, ErrDeposed
	}
	if nb := r.cfg.Host.Net; nb != nil {
		for {
			if _, ok := nb.TryReceive(); !ok {
				break
			}
		}
	}
	reissued := r.out.goLive()
	if r.cfg.Host.Announce != nil {
		r.cfg.Host.Announce()
	}
	live := time.Now()
	r.setStatus(func(s *Status) { s.Failovers, s.FailoverLive = s.Failovers+1, live })
	r.log.Warn("live", "view", next.String(), "instret", b.e.Instret(), "reissued_outputs", reissued,
		"takeover", time.Since(detected).String())
	return r.primaryLoop(ctx, b.e, next, ln)
}
