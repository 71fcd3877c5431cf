package kv

import (
	"fmt"
	"testing"
)

// memDev is an in-memory block device that counts syncs.
type memDev struct {
	buf   []byte
	syncs int
}

func (d *memDev) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(d.buf)) {
		return 0, fmt.Errorf("read past end")
	}
	return copy(p, d.buf[off:]), nil
}

func (d *memDev) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > int64(len(d.buf)) {
		return 0, fmt.Errorf("write past end")
	}
	return copy(d.buf[off:], p), nil
}

func (d *memDev) Sync() error { d.syncs++; return nil }

func argsOf(s ...string) [][]byte {
	a := make([][]byte, len(s))
	for i := range s {
		a[i] = []byte(s[i])
	}
	return a
}

func replay(t *testing.T, d *memDev) (*Log, []string) {
	t.Helper()
	var got []string
	l, err := OpenLog(d, int64(len(d.buf)), func(args [][]byte) { got = append(got, fmt.Sprintf("%q", args)) })
	if err != nil {
		t.Fatal(err)
	}
	return l, got
}

func TestLogRoundTrip(t *testing.T) {
	d := &memDev{buf: make([]byte, 4096)}
	l, got := replay(t, d)
	if len(got) != 0 || l.Used() != 0 {
		t.Fatalf("zeroed device replayed %d records, used %d", len(got), l.Used())
	}
	cmds := [][][]byte{argsOf("SET", "a", "1"), argsOf("SET", "b", ""), argsOf("DEL", "a")}
	for _, c := range cmds[:2] {
		if err := l.Append(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(cmds[2]); err != nil {
		t.Fatal(err)
	}
	if err := l.Commit(); err != nil {
		t.Fatal(err)
	}
	if d.syncs != 2 {
		t.Errorf("syncs = %d, want 2 (one per commit)", d.syncs)
	}
	if err := l.Commit(); err != nil || d.syncs != 2 {
		t.Errorf("empty commit synced (syncs %d, err %v)", d.syncs, err)
	}
	used := l.Used()

	l2, got := replay(t, d)
	if len(got) != 3 || got[2] != fmt.Sprintf("%q", cmds[2]) || l2.Used() != used {
		t.Fatalf("replayed %v (used %d), want 3 records (used %d)", got, l2.Used(), used)
	}
	// Appending after replay continues where the log ended.
	if err := l2.Append(argsOf("SET", "c", "3")); err != nil {
		t.Fatal(err)
	}
	if err := l2.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, got := replay(t, d); len(got) != 4 {
		t.Fatalf("after append: replayed %d records, want 4", len(got))
	}
}

// TestLogTornRecord flips each byte of the last record in turn: replay must
// always keep the first records and drop the damaged one.
func TestLogTornRecord(t *testing.T) {
	d := &memDev{buf: make([]byte, 1024)}
	l, _ := replay(t, d)
	l.Append(argsOf("SET", "a", "1"))
	l.Commit()
	first := l.Used()
	l.Append(argsOf("SET", "b", "2"))
	l.Commit()
	for i := first; i < l.Used(); i++ {
		d.buf[i] ^= 0x40
		l2, got := replay(t, d)
		if len(got) != 1 || l2.Used() != first {
			t.Errorf("byte %d corrupted: replayed %d records (used %d), want 1 (used %d)", i, len(got), l2.Used(), first)
		}
		d.buf[i] ^= 0x40
	}
}

func TestLogFull(t *testing.T) {
	d := &memDev{buf: make([]byte, 64)}
	l, _ := replay(t, d)
	if err := l.Append(argsOf("SET", "k", "v")); err != nil { // 12 + 4 + 7 + 5 + 5 = 33 bytes
		t.Fatal(err)
	}
	if err := l.Append(argsOf("SET", "k", "v")); err != ErrLogFull {
		t.Fatalf("second append: got %v, want ErrLogFull", err)
	}
	l.Commit()
	if _, got := replay(t, d); len(got) != 1 {
		t.Fatalf("replayed %d records, want 1", len(got))
	}
}
