package replication

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"ftvm/arbiter"
	"ftvm/internal/testsupport"
	"ftvm/machine"
	"ftvm/migrate"
	"ftvm/replay/eventlog"
)

// fakePrimary accepts one backup on ln with the certificate of replica id
// and plays the primary's side of the protocol with a real machine's state,
// then hands the connection, with the log writer positioned after the
// header, to stream.
func fakePrimary(t *testing.T, ln net.Listener, tc *tls.Config, kernel, initrd []byte, stream func(out *corrupting, w *eventlog.Writer, m *machine.Machine)) {
	m, err := machine.New(machine.Config{Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0"})
	if err != nil {
		t.Error(err)
		return
	}
	m.Run(20_000_000)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		conn := tls.Server(c, tc)
		defer conn.Close()
		br := bufio.NewReader(conn)
		var h hello
		if err := readJSON(br, msgHello, &h); err != nil {
			t.Errorf("fake primary: %v", err)
			return
		}
		writeJSON(conn, msgWelcome, welcome{Primary: "a"})
		ts, err := migrate.NewSender(connRW{br, conn}, m, nil, migrate.Options{})
		if err != nil {
			t.Errorf("fake primary: %v", err)
			return
		}
		st, err := ts.Finish()
		if err != nil {
			t.Errorf("fake primary: %v", err)
			return
		}
		id := st.Digest
		out := &corrupting{w: conn, at: -1}
		w, err := eventlog.NewWriter(out, eventlog.Header{
			Engine: "ftvm-riscv64", StartInstret: m.Instret(),
			Images: []eventlog.Image{{Role: "state", SHA256: id}},
			Params: []eventlog.Param{{Key: "cluster", Value: "test"}, {Key: "generation", Value: strconv.Itoa(1)},
				{Key: "primary", Value: "a"}, {Key: "backup", Value: "b"}},
		})
		if err != nil {
			t.Errorf("fake primary: %v", err)
			return
		}
		stream(out, w, m)
		time.Sleep(time.Second) // let the backup read it all before the close
	}()
}

// corrupting writes through to w, flipping one bit of the nth byte.
type corrupting struct {
	w   net.Conn
	off int
	at  int
}

func (c *corrupting) Write(p []byte) (int, error) {
	q := append([]byte(nil), p...)
	if i := c.at - c.off; i >= 0 && i < len(q) {
		q[i] ^= 0x10
	}
	c.off += len(p)
	return c.w.Write(q)
}

// runBackupAgainst starts backup b against a fake primary and returns its
// result. The arbiter's view names a as primary and b as backup, so a
// backup that took the stream's end for the primary's death could go live:
// it must not.
func runBackupAgainst(t *testing.T, stream func(out *corrupting, w *eventlog.Writer, m *machine.Machine)) (*testReplica, *arbiter.Memory, error) {
	kernel, initrd := testsupport.DefaultGuest(t)
	dir := keys(t, "a", "b")
	arb := arbiter.NewMemory()
	arb.Swap(context.Background(), View{}, View{Generation: 1, Primary: "a", Backup: "b"})
	b := newTestReplica(t, dir, "b", arb, func(c *Config) { c.Timeout = 500 * time.Millisecond })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tc, err := LoadTLS(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	fakePrimary(t, ln, tc, kernel, initrd, stream)
	b.startBackup(ln.Addr().String())
	select {
	case <-b.done:
	case <-time.After(60 * time.Second):
		t.Fatal("the backup neither refused nor finished")
	}
	return b, arb, b.err
}

// TestCorruptLogRefused flips a bit inside a log frame: the backup must
// refuse the log, naming the damaged frame, and must not go live.
func TestCorruptLogRefused(t *testing.T) {
	b, arb, err := runBackupAgainst(t, func(out *corrupting, w *eventlog.Writer, m *machine.Machine) {
		sync := func(i int) {
			w.Append(eventlog.Record{Instret: m.Instret() + uint64(i)*1000, Kind: kindSync, Data: binary.AppendUvarint(nil, 0)})
		}
		for i := range 20 {
			sync(i)
		}
		w.Flush()
		out.at = out.off + 2 // frame 21's payload length
		sync(21)
		w.Flush()
	})
	if err == nil || !errors.Is(err, eventlog.ErrCorrupt) || !strings.Contains(err.Error(), "frame 21") {
		t.Fatalf("backup ended with %v; want a refusal naming frame 21 as corrupt", err)
	}
	if v := view(t, arb); v.Primary != "a" {
		t.Fatalf("the backup took over on a corrupt log: %v", v)
	}
	if r := b.r.Status().Role; r != "stopped" {
		t.Fatalf("backup role %q", r)
	}
}

// TestDivergentLogRefused sends a digest that does not match the state:
// the backup must stop with a divergence report and not go live.
func TestDivergentLogRefused(t *testing.T) {
	_, arb, err := runBackupAgainst(t, func(out *corrupting, w *eventlog.Writer, m *machine.Machine) {
		w.Append(eventlog.DigestAt(m.Instret()+5000, eventlog.Digest{Sum: [32]byte{1}}))
		w.Flush()
	})
	if err == nil || !strings.Contains(err.Error(), "diverged") {
		t.Fatalf("backup ended with %v; want a divergence", err)
	}
	if v := view(t, arb); v.Primary != "a" {
		t.Fatalf("the backup took over on a divergent log: %v", v)
	}
}

// TestForgedPeers: a replica with a certificate from another cluster's
// authority can neither join a primary nor pose as one.
func TestForgedPeers(t *testing.T) {
	kernel, initrd := testsupport.DefaultGuest(t)
	good, evil := keys(t, "a", "b"), keys(t, "a", "b")
	arb := arbiter.NewMemory()
	a := newTestReplica(t, good, "a", arb, nil)
	a.startPrimary(t, kernel, initrd)
	a.con.waitFor(t, "console ready", 60*time.Second)

	intruder := newTestReplica(t, evil, "b", arb, nil)
	intruder.startBackup(a.ln.Addr().String())
	<-intruder.done
	if intruder.err == nil || intruder.r.Status().Role != "stopped" {
		t.Fatalf("a backup with a foreign certificate joined: %v", intruder.err)
	}
	if v := view(t, arb); v.Backup != "" {
		t.Fatalf("the view took a forged backup: %v", v)
	}

	// A forged primary: b of the good cluster dials a listener that
	// presents the evil cluster's certificate for "a".
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	etc, _ := LoadTLS(evil, "a")
	go func() {
		c, err := ln.Accept()
		if err == nil {
			tls.Server(c, etc).Handshake()
			c.Close()
		}
	}()
	b := newTestReplica(t, good, "b", arb, nil)
	b.startBackup(ln.Addr().String())
	<-b.done
	if b.err == nil || !strings.Contains(b.err.Error(), "certificate") {
		t.Fatalf("backup joined a forged primary, or failed for another reason: %v", b.err)
	}
	a.in <- []byte("echo still-serving\n")
	a.con.waitFor(t, "= still-serving", 30*time.Second)
}

// TestTamperedStream flips bits in the TLS records between a real primary
// and its backup: the backup must not follow a stream that fails its
// integrity check, nor take it for the primary's death and go live.
func TestTamperedStream(t *testing.T) {
	a, b, px, arb, _, _ := startPair(t, 2*time.Second)
	px.Tamper()
	a.in <- []byte("echo tampered\n")
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the backup kept following a tampered stream")
	}
	if b.err == nil || errors.Is(b.err, ErrDeposed) || b.r.Status().Failovers != 0 {
		t.Fatalf("backup ended with %v (failovers %d); want a refusal", b.err, b.r.Status().Failovers)
	}
	// The primary loses its backup and goes on alone.
	a.con.waitFor(t, "= tampered", 30*time.Second)
	if v := view(t, arb); v.Primary != "a" || v.Backup != "" {
		t.Fatalf("view %v", v)
	}
}

// TestOutputMismatchRefused logs output hashes that the backup's own
// outputs cannot match (console bytes the guest never wrote): the backup
// must stop on the mismatch, not go live.
func TestOutputMismatchRefused(t *testing.T) {
	_, arb, err := runBackupAgainst(t, func(out *corrupting, w *eventlog.Writer, m *machine.Machine) {
		w.Append(eventlog.OutputsAt(m.Instret()+5000, []eventlog.OutputSum{{Name: "console", Count: 3, Sum: [32]byte{7}}}))
		w.Flush()
	})
	if err == nil || !strings.Contains(err.Error(), "output mismatch") || !strings.Contains(err.Error(), "console") {
		t.Fatalf("backup ended with %v; want an output mismatch on the console", err)
	}
	if v := view(t, arb); v.Primary != "a" {
		t.Fatalf("the backup took over after an output mismatch: %v", v)
	}
}
