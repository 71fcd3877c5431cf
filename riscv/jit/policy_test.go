//go:build linux && amd64

package jit

import (
	"encoding/binary"
	"testing"
)

// policyImage is code at RAM offset 0 (the hart starts there in M mode):
// once instructions that run once, then a loop of body additions and a
// jump back.
func policyImage(once, body int) []byte {
	var w []uint32
	for range once {
		w = append(w, encI(0x13, 0, 6, 6, 1)) // addi x6, x6, 1
	}
	for range body {
		w = append(w, encI(0x13, 0, 5, 5, 1)) // addi x5, x5, 1
	}
	w = append(w, encJ(0, int32(-4*body))) // j loop
	img := make([]byte, 4*len(w))
	for i, v := range w {
		binary.LittleEndian.PutUint32(img[4*i:], v)
	}
	return img
}

// TestTranslatePolicy checks what the translator leaves to the
// interpreter: code that runs once is not translated, and a Run that
// stops in the middle of a block does not make a block from where the
// next one resumes (unless it happens often there). Both engines must
// still agree at every step.
func TestTranslatePolicy(t *testing.T) {
	const once, body = 40, 100
	p := newPair(t, policyImage(once, body), 1<<20)
	// Slices of a length prime to the loop's, so that the Runs stop at
	// every instruction of the loop in turn, each fewer than hotResume
	// times.
	const slice = 1009
	for i := 1; i <= 3*(body+1); i++ {
		p.step(uint64(i * slice))
	}
	st := p.jit.j.Stats
	t.Logf("%d instructions: %d blocks translated (%d instructions), %d in generated code", p.jit.h.Instret, st.Blocks, st.GuestInsns, st.Native)
	if st.GuestInsns >= uint64(once) && st.Blocks > 1 {
		// Only the loop (from its head) is worth translating.
		t.Errorf("translated %d blocks of %d instructions: want the loop's alone", st.Blocks, st.GuestInsns)
	}
	if st.Blocks == 0 || st.Native < p.jit.h.Instret/2 {
		t.Errorf("the loop ran mostly interpreted: %d of %d instructions in generated code", st.Native, p.jit.h.Instret)
	}

	// Resuming at the same place again and again makes a block there.
	q := newPair(t, policyImage(0, body), 1<<20)
	q.step(5000) // the loop's block exists
	if b := q.jit.j.Stats.Blocks; b != 1 {
		t.Fatalf("%d blocks for the loop, want 1", b)
	}
	for i := 1; i <= 4*hotResume; i++ {
		// Three iterations: the same instruction each time. Run i+1
		// resumes there the i-th time.
		q.step(uint64(5000 + i*(body+1)*3))
		if b := q.jit.j.Stats.Blocks; i <= hotResume && b != 1 || i > hotResume+1 && b != 2 {
			t.Fatalf("after %d Runs stopping at the same instruction inside the loop's block, %d blocks: want a second block from there only after %d", i, b, hotResume)
		}
	}
}
