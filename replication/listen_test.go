package replication

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"ftvm/arbiter"
)

// TestRejectedConnectionsRateLimited: anyone can connect to a replica's
// port; fifty connections that fail the TLS handshake give one warning
// line, not fifty.
func TestRejectedConnectionsRateLimited(t *testing.T) {
	dir := keys(t, "a")
	var logs console
	a := newTestReplica(t, dir, "a", arbiter.NewMemory(), func(c *Config) {
		withFakeEngine(c)
		c.Log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	a.startFakePrimary()
	a.waitRole(t, "primary", 10*time.Second)
	const n = 50
	for range n {
		c, err := net.Dial("tcp", a.ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		// The replica answers with a TLS alert and closes.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("the replica did not close a rejected connection: %v", err)
		}
		c.Close()
	}
	if got := strings.Count(logs.String(), "rejected a connection"); got != 1 {
		t.Fatalf("%d warning lines for %d rejected connections, want 1:\n%s", got, n, logs.String())
	}
}

// TestBackupPortRefuses: a replica that dials a backup's port (thinking it
// a primary) is refused at once with a message naming the primary, rather
// than left waiting on a port that never speaks.
func TestBackupPortRefuses(t *testing.T) {
	dir := keys(t, "a", "b", "c")
	arb := arbiter.NewMemory()
	a := newTestReplica(t, dir, "a", arb, withFakeEngine)
	b := newTestReplica(t, dir, "b", arb, withFakeEngine)
	c := newTestReplica(t, dir, "c", arb, withFakeEngine)
	a.startFakePrimary()
	b.startBackup(a.ln.Addr().String())
	b.waitRole(t, "backup", 30*time.Second)
	start := time.Now()
	c.startBackup(b.ln.Addr().String())
	c.wait(t, 30*time.Second)
	var refused *RefusedError
	if !errors.As(c.err, &refused) || !strings.Contains(refused.Reason, "backup of a") {
		t.Fatalf("joining a backup ended with %v; want a refusal naming the primary", c.err)
	}
	if d := time.Since(start); d >= handshakeTimeout {
		t.Fatalf("the refusal took %v", d)
	}
	t.Logf("refused in %v: %v", time.Since(start), c.err)
	if st := b.r.Status(); st.Role != "backup" {
		t.Fatalf("the backup's role after refusing: %+v", st)
	}
}
