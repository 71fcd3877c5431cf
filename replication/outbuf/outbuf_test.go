package outbuf

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestOrderUnderConcurrency: outputs added and held on one goroutine,
// released and flushed on another (as the engine and the acknowledgement
// reader do), leave in the order they were made, none twice, none lost;
// the switch to Solo keeps that order too.
func TestOrderUnderConcurrency(t *testing.T) {
	var got []uint64
	b := New(Held, func(o Output) { got = append(got, o.Instret) }) // emit is serialised
	const epochs, per = 2000, 3
	var frame atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for f := int64(0); f < epochs; {
			if n := frame.Load(); n > f {
				f = n
				b.Release(f)
				b.Flush()
			}
		}
	}()
	n := uint64(0)
	for e := int64(1); e <= epochs; e++ {
		for range per {
			n++
			b.Add(true, n, []byte{byte(n)})
		}
		b.Hold(e)
		frame.Store(e)
	}
	<-done
	// Then the backup is lost and the primary continues alone.
	for range 5 {
		n++
		b.Add(true, n, []byte{byte(n)})
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b.ReleaseAll(); b.Flush() }()
	for range 5 {
		n++
		b.Add(true, n, []byte{byte(n)}) // Solo once ReleaseAll is done
	}
	wg.Wait()
	b.Flush()
	if uint64(len(got)) != n {
		t.Fatalf("%d outputs emitted, want %d", len(got), n)
	}
	for i, v := range got {
		if v != uint64(i+1) {
			t.Fatalf("output %d is the %dth made", i+1, v)
		}
	}
}

// TestModes: what each mode does with an output, and DropAll.
func TestModes(t *testing.T) {
	var got []string
	b := New(Uncertain, func(o Output) { got = append(got, string(o.Data)) })
	b.Add(false, 10, []byte("a"))
	b.Add(false, 20, []byte("b"))
	b.Add(false, 30, []byte("c"))
	b.Settle(20)
	if b.Uncertain() != 1 || len(got) != 0 {
		t.Fatalf("after settling: %d uncertain, emitted %q", b.Uncertain(), got)
	}
	if n := b.Reissue(); n != 1 {
		t.Fatalf("reissued %d", n)
	}
	b.Flush()
	b.Add(false, 40, []byte("d")) // Solo: at once
	b.SetMode(Held)
	b.Add(false, 50, []byte("e"))
	b.Hold(7)
	b.Add(false, 60, []byte("f"))
	b.DropAll()
	b.Add(false, 70, []byte("g"))
	b.Release(100)
	b.ReleaseAll() // after DropAll nothing is left to release
	b.Flush()
	if want := "[c d]"; fmtList(got) != want {
		t.Fatalf("emitted %v, want %s", got, want)
	}
}

func fmtList(l []string) string {
	s := "["
	for i, x := range l {
		if i > 0 {
			s += " "
		}
		s += x
	}
	return s + "]"
}
