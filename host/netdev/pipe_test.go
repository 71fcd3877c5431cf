package netdev

import (
	"bytes"
	"testing"
	"time"
)

func TestPipe(t *testing.T) {
	a, b := NewPipe()
	f := []byte{1, 2, 3, 4}
	a.Transmit(f)
	f[0] = 9 // Transmit must not retain the caller's buffer
	select {
	case <-b.Ready():
	default:
		t.Fatalf("Ready not signalled")
	}
	got, ok := b.TryReceive()
	if !ok || !bytes.Equal(got, []byte{1, 2, 3, 4}) {
		t.Fatalf("got %v %v", got, ok)
	}
	if _, ok := b.TryReceive(); ok {
		t.Fatalf("spurious frame")
	}
	if _, ok := a.TryReceive(); ok {
		t.Fatalf("frame looped back to sender")
	}
	// Order and the bound.
	for i := range DefaultQueueFrames + 5 {
		b.Transmit([]byte{byte(i), byte(i >> 8)})
	}
	if a.Pending() != DefaultQueueFrames || a.Dropped() != 5 {
		t.Fatalf("pending %d dropped %d", a.Pending(), a.Dropped())
	}
	for i := range DefaultQueueFrames {
		got, ok := a.TryReceive()
		if !ok || got[0] != byte(i) || got[1] != byte(i>>8) {
			t.Fatalf("frame %d out of order: %v", i, got)
		}
	}
	// Interleaved push/pop exercises compaction.
	for i := range 5000 {
		a.Transmit([]byte{byte(i)})
		if i%3 == 2 {
			for range 3 {
				if _, ok := b.TryReceive(); !ok {
					t.Fatalf("lost frame at %d", i)
				}
			}
		}
	}
	b.Close()
	a.Transmit([]byte{1})
	if b.Pending() > 3 {
		t.Fatalf("frame accepted by closed end")
	}
}

// TestAnnounceSelf: five RARP announcements of the MAC, the first at once
// and the last within a second.
func TestAnnounceSelf(t *testing.T) {
	a, b := NewPipe()
	mac := [6]byte{0x52, 0x54, 0, 1, 2, 3}
	start := time.Now()
	AnnounceSelf(a, mac)
	if f, ok := b.TryReceive(); !ok || !bytes.Equal(f, Announce(mac)) {
		t.Fatalf("first announcement: %x, %v", f, ok)
	}
	for n := 1; n < 5; {
		select {
		case <-b.Ready():
		case <-time.After(5 * time.Second):
			t.Fatalf("%d announcements after %v, want 5", n, time.Since(start))
		}
		for f, ok := b.TryReceive(); ok; f, ok = b.TryReceive() {
			if !bytes.Equal(f, Announce(mac)) {
				t.Fatalf("announcement %d: %x", n, f)
			}
			n++
		}
	}
	if el := time.Since(start); el < 700*time.Millisecond {
		t.Errorf("five announcements within %v: repeats too early", el)
	}
}
