package statesync

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"ftvm/machine"
)

// benchMachine is a machine of the program with its first n pages (after
// the program's own) filled with random bytes through WritePage, so that
// hashing and checkpoints read real RAM that is not zero.
func benchMachine(b *testing.B, n int) *machine.Machine {
	b.Helper()
	m, err := machine.New(machine.Config{MemoryMiB: 64, ELF: scribbleELF(b)})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	page := make([]byte, m.PageSize())
	for p := 1024; p < 1024+n; p++ {
		for i := 0; i < len(page); i += 8 {
			v := rng.Uint64()
			for k := range 8 {
				page[i+k] = byte(v >> (8 * k))
			}
		}
		if err := m.WritePage(p, page); err != nil {
			b.Fatal(err)
		}
	}
	return m
}

func pageRange(from, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = from + i
	}
	return out
}

// BenchmarkHash hashes N pages of a machine's RAM (random contents) on one
// goroutine and on GOMAXPROCS of them.
func BenchmarkHash(b *testing.B) {
	for _, n := range []int{1024, 8192} {
		m := benchMachine(b, n)
		pages := pageRange(1024, n)
		for _, w := range []int{1, runtime.GOMAXPROCS(0)} {
			b.Run(fmt.Sprintf("pages=%d/workers=%d", n, w), func(b *testing.B) {
				h := NewHasher(w)
				var out []Sum
				b.SetBytes(int64(n * m.PageSize()))
				for b.Loop() {
					var err error
					if out, err = h.Hash(m, pages, out); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkCheckpoint encodes a checkpoint of K pages of a machine's RAM
// and its state, and applies one to a backup (decode, stage, MAC, write
// the pages, load the state).
func BenchmarkCheckpoint(b *testing.B) {
	for _, k := range []int{64, 1024, 8192} {
		m := benchMachine(b, k)
		pages := pageRange(1024, k)
		var st bytes.Buffer
		if err := m.SaveState(&st); err != nil {
			b.Fatal(err)
		}
		encode := func(buf *bytes.Buffer, seq uint64) {
			buf.Reset()
			enc, err := NewEncoder(buf, testKey, seq, m.PageSize())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := enc.Pages(m, pages); err != nil {
				b.Fatal(err)
			}
			enc.State(st.Bytes())
			if _, err := enc.End(m.Instret(), [32]byte{}); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("encode/pages=%d", k), func(b *testing.B) {
			var buf bytes.Buffer
			b.SetBytes(int64(k * m.PageSize()))
			for b.Loop() {
				encode(&buf, 1)
			}
		})
		b.Run(fmt.Sprintf("apply/pages=%d", k), func(b *testing.B) {
			backup, err := machine.New(machine.Config{MemoryMiB: 64, ELF: scribbleELF(b)})
			if err != nil {
				b.Fatal(err)
			}
			a, err := NewApplier(backup, nil, ApplierOptions{Key: testKey})
			if err != nil {
				b.Fatal(err)
			}
			msgs := make([]bytes.Buffer, 8)
			seq := uint64(0)
			b.SetBytes(int64(k * m.PageSize()))
			for b.Loop() {
				b.StopTimer()
				seq++
				msg := &msgs[seq%8]
				encode(msg, seq)
				b.StartTimer()
				if _, err := a.Write(msg.Bytes()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
