package replication

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"ftvm/arbiter"
	"ftvm/internal/fakevm"
	"ftvm/migrate"
	"ftvm/replication/ckpt"
	"ftvm/statesync"
	"ftvm/vm"
)

// fakeRemus plays a checkpointing primary "a" on ln with a fakevm guest:
// the state transfer, the link's header, then send, given the link and a
// function that takes the next checkpoint (encoded with the link's key).
// The fake guest is idle but for the inputs next gives it, and writes no
// disk.
type fakeRemus struct {
	e    *fakevm.Engine
	seq  uint64
	conn *tls.Conn
	key  []byte
	// ram holds the guest's RAM at each checkpoint, by sequence number.
	ram map[uint64][32]byte
}

// next has the guest answer an input (an idle fake guest writes its RAM
// only then) and takes the next checkpoint, encoded with key.
func (f *fakeRemus) next(t *testing.T, dirty vm.DirtyLog, key []byte) []byte {
	f.e.Deliver(vm.ConsoleInput{Data: []byte("x")})
	f.e.Run(f.e.Instret() + 50_000)
	f.seq++
	var c statesync.Capture
	if err := c.Take(f.e, f.seq, statesync.Bitmap(dirty.Collect(nil)), nil, true); err != nil {
		t.Error(err)
	}
	f.ram[f.seq] = sha256.Sum256(f.e.RAM())
	var b bytes.Buffer
	if _, err := c.Encode(&b, key); err != nil {
		t.Error(err)
	}
	return b.Bytes()
}

// send writes checkpoint bytes in data messages.
func (f *fakeRemus) send(b []byte) error {
	_, err := (&chunkWriter{w: f.conn, t: msgCkptData}).Write(b)
	return err
}

func startFakeRemus(t *testing.T, ln net.Listener, tc *tls.Config, play func(f *fakeRemus, dirty vm.DirtyLog)) *fakeRemus {
	f := &fakeRemus{e: fakevm.New(32, nil, vm.Outputs{}), ram: map[uint64][32]byte{}}
	f.e.WritesPer = 20
	f.e.Run(100_000)
	f.e.Idle = true
	go func() {
		conn, br, st, ok := acceptBackup(t, ln, tc, f.e)
		if !ok {
			return
		}
		defer conn.Close()
		f.conn = conn
		dirty := f.e.TrackDirty()
		f.ram[0] = sha256.Sum256(f.e.RAM())
		f.key = checkpointKey(conn)
		hb, _ := json.Marshal(encodeHeader(ckpt.Header{Mode: ckpt.Remus, Cluster: "test",
			View: View{Generation: 1, Primary: "a", Backup: "b"}, State: st.Digest, Instret: f.e.Instret()}))
		writeMessage(conn, msgCkptHeader, hb)
		// Acknowledgements are read and dropped.
		go func() {
			for {
				if _, _, err := readMessage(br); err != nil {
					return
				}
			}
		}()
		play(f, dirty)
		time.Sleep(time.Second) // let the backup read it all before the close
	}()
	return f
}

// backupAgainstFakeRemus runs a checkpointing backup b against the fake
// primary; eng is the backup's engine once built. The
// arbiter's view names a as primary and b as backup, so a backup that
// took the stream's end for the primary's death could go live.
func backupAgainstFakeRemus(t *testing.T, play func(f *fakeRemus, dirty vm.DirtyLog)) (b *testReplica, arb *arbiter.Memory, f *fakeRemus, eng *atomic.Pointer[fakevm.Engine]) {
	dir := keys(t, "a", "b")
	arb = arbiter.NewMemory()
	arb.Swap(context.Background(), View{}, View{Generation: 1, Primary: "a", Backup: "b"})
	eng = &atomic.Pointer[fakevm.Engine]{}
	b = newTestReplica(t, dir, "b", arb, func(c *Config) {
		c.Mode, c.Engine, c.Timeout = Checkpoint, "fakevm", 500*time.Millisecond
		c.Factory = func(out vm.Outputs) migrate.Factory {
			build := fakevm.Factory(nil, out)
			return func(st io.Reader, ram []byte) (vm.Migratable, error) {
				e, err := build(st, ram)
				if err == nil {
					eng.Store(e.(*fakevm.Engine))
				}
				return e, err
			}
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tc, err := LoadTLS(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	f = startFakeRemus(t, ln, tc, play)
	b.startBackup(ln.Addr().String())
	return b, arb, f, eng
}

// refused checks that b stopped refusing the checkpoints for why, and
// never went live.
func refused(t *testing.T, b *testReplica, arb *arbiter.Memory, why string) {
	t.Helper()
	b.wait(t, 60*time.Second)
	if b.err == nil || !errors.Is(b.err, statesync.ErrBadCheckpoint) || !strings.Contains(b.err.Error(), why) {
		t.Fatalf("backup ended with %v; want a refused checkpoint (%s)", b.err, why)
	}
	if v := view(t, arb); v.Primary != "a" || b.r.Status().Failovers != 0 {
		t.Fatalf("the backup took over on a refused checkpoint: %v", v)
	}
	if r := b.r.Status().Role; r != "stopped" {
		t.Fatalf("backup role %q", r)
	}
}

// TestForgedCheckpointRefused: a checkpoint made without the link's key
// (its MAC does not check) is refused, after good ones were applied.
func TestForgedCheckpointRefused(t *testing.T) {
	b, arb, _, _ := backupAgainstFakeRemus(t, func(f *fakeRemus, dirty vm.DirtyLog) {
		for range 3 {
			f.send(f.next(t, dirty, f.key))
		}
		f.send(f.next(t, dirty, []byte("not the link's key")))
	})
	refused(t, b, arb, "MAC mismatch")
	if n := b.r.Status().Checkpoints; n != 3 {
		t.Fatalf("the backup applied %d checkpoints before the forged one, want 3", n)
	}
}

// TestCorruptCheckpointRefused: a byte of a page changed in transit
// (inside the link's framing, which the TLS records protect anyway).
func TestCorruptCheckpointRefused(t *testing.T) {
	b, arb, _, _ := backupAgainstFakeRemus(t, func(f *fakeRemus, dirty vm.DirtyLog) {
		f.send(f.next(t, dirty, f.key))
		c := f.next(t, dirty, f.key)
		c[len(c)/2] ^= 4
		f.send(c)
	})
	refused(t, b, arb, "MAC mismatch")
}

// TestReplayedCheckpointRefused: a checkpoint sent again (out of
// sequence) is refused.
func TestReplayedCheckpointRefused(t *testing.T) {
	b, arb, _, _ := backupAgainstFakeRemus(t, func(f *fakeRemus, dirty vm.DirtyLog) {
		c := f.next(t, dirty, f.key)
		f.send(c)
		f.send(c)
	})
	refused(t, b, arb, "sequence")
}

// TestTornCheckpoint: the primary dies in the middle of sending a
// checkpoint. The backup discards the part it has and goes live in the
// state of the last checkpoint it applied whole.
func TestTornCheckpoint(t *testing.T) {
	b, arb, fr, eng := backupAgainstFakeRemus(t, func(f *fakeRemus, dirty vm.DirtyLog) {
		for range 4 {
			f.send(f.next(t, dirty, f.key))
		}
		c := f.next(t, dirty, f.key)
		f.send(c[:len(c)*2/3])
		// The stream ends there. (A Close now would reset the TCP
		// connection, the backup's acknowledgements being unread, and a
		// reset can discard checkpoints the backup has not read yet: a
		// real primary's death can do that too, but then the state to
		// expect is not known.)
		f.conn.CloseWrite()
	})
	b.waitRole(t, "primary", 30*time.Second)
	if v := view(t, arb); v.Primary != "b" {
		t.Fatalf("view %v", v)
	}
	// The status follows within a tick.
	deadline := time.Now().Add(5 * time.Second)
	for st := b.r.Status(); st.Checkpoints != 4 || st.Failovers != 1; st = b.r.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("the backup applied %d checkpoints and failed over %d times; want 4 and 1", st.Checkpoints, st.Failovers)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The fake guest is idle: it does not write its RAM once live.
	b.stop()
	if got := sha256.Sum256(eng.Load().RAM()); got != fr.ram[4] || fr.ram[4] == fr.ram[5] {
		t.Fatal("the backup did not go live in the state of checkpoint 4")
	}
}
