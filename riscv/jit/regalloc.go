//go:build linux && amd64

package jit

import (
	"math/bits"

	"ftvm/riscv"
)

// Guest registers live in the Hart; within a block, those it uses are kept
// in host registers, loaded on first use and written back before the block
// leaves (at its end and on every exit, each of which knows which cached
// registers are newer than the Hart's copy at that point). When the host
// registers run out, the least recently used one is written back (if
// needed) and reused.

// cacheRegs are the host registers that hold guest registers. None is used
// for anything else by generated code. R14 (Go's g) and RBP are free while
// it runs: the trampoline saves RBP in its frame, the ABI wrapper around it
// restores R14 on return, and signal handlers find g through thread-local
// storage.
var cacheRegs = [...]reg{r8, r9, r10, r11, rSI, rDI, r14, rBP}

const nCache = len(cacheRegs)

type regAlloc struct {
	of     [32]int8     // guest register -> cache slot, or -1
	holds  [nCache]int8 // cache slot -> guest register, or -1
	dirty  uint32       // guest registers whose cached value is newer than the Hart's
	pinned uint32       // slots in use by the instruction being emitted
}

// spill is a cached register to write back on an exit.
type spill struct{ slot, guest int8 }

func (r *regAlloc) reset() {
	for i := range r.of {
		r.of[i] = -1
	}
	for i := range r.holds {
		r.holds[i] = -1
	}
	r.dirty, r.pinned = 0, 0
}

// slot returns a cache slot for guest register x, evicting an unpinned
// one if none is free: the one whose value is read again furthest ahead in
// the block (or never), which is the best choice when the future is known
// (Belady).
func (t *tr) slot(x uint8) int8 {
	r := &t.ra
	if s := r.of[x]; s >= 0 {
		return s
	}
	best, bestUse := int8(-1), -1
	for i := range nCache {
		if r.pinned&(1<<i) != 0 {
			continue
		}
		if r.holds[i] < 0 {
			best = int8(i)
			break
		}
		if u := t.nextRead(uint8(r.holds[i])); u > bestUse {
			best, bestUse = int8(i), u
		}
	}
	if best < 0 {
		panic("jit: out of cache registers")
	}
	if g := r.holds[best]; g >= 0 {
		if r.dirty&(1<<g) != 0 {
			if !t.dead(uint8(g)) {
				t.a.store(8, t.xr(uint8(g)), cacheRegs[best])
			}
			r.dirty &^= 1 << g
		}
		r.of[g] = -1
	}
	r.holds[best] = int8(x)
	r.of[x] = best
	return best
}

// liveness fills, for the block's instructions, what the allocator needs
// to know of the future: next[k][g], the first instruction at or after k
// that reads guest register g before writing it (n when none does), and
// dead[k], the registers that an instruction at or after k overwrites
// before anything reads them and before anything that may leave the block
// (a load or store, which exits on a TLB miss).
func (t *tr) liveness() {
	n := t.n
	var next [32]uint8
	for g := range next {
		next[g] = uint8(n)
	}
	t.next[n] = next
	t.deadAt[n] = 0
	for k := n - 1; k >= 0; k-- {
		reads, writes := regUse(t.insns[k])
		for m := writes &^ reads; m != 0; m &= m - 1 {
			next[bits.TrailingZeros32(m)] = uint8(n)
		}
		for m := reads; m != 0; m &= m - 1 {
			next[bits.TrailingZeros32(m)] = uint8(k)
		}
		t.next[k] = next
		if mayExit(t.insns[k]) || k == t.cross {
			t.deadAt[k] = 0
		} else {
			t.deadAt[k] = (t.deadAt[k+1] | writes) &^ reads
		}
	}
}

// nextRead returns the index of the next instruction after the current
// one that reads guest register g before writing it, or the block's
// length when none does.
func (t *tr) nextRead(g uint8) int { return int(t.next[t.k+1][g]) }

// dead reports whether the value of guest register g can be dropped
// without writing it back: a later instruction of the block overwrites it
// before anything reads it, and nothing that may leave the block comes
// first (this instruction included).
func (t *tr) dead(g uint8) bool {
	return !mayExit(t.insns[t.k]) && t.k != t.cross && t.deadAt[t.k+1]&(1<<g) != 0
}

func (t *tr) touch(s int8) { t.ra.pinned |= 1 << s }

// src returns a host register holding guest register x (x != 0), loading
// it on first use. It stays valid until the instruction ends (unpin).
func (t *tr) src(x uint8) reg {
	r := &t.ra
	cached := r.of[x] >= 0
	s := t.slot(x)
	if !cached {
		t.a.load(true, cacheRegs[s], t.xr(x))
	}
	t.touch(s)
	return cacheRegs[s]
}

// srcOr returns src(x), or tmp set to zero for x0.
func (t *tr) srcOr(x uint8, tmp reg) reg {
	if x == 0 {
		t.a.movImm(tmp, 0)
		return tmp
	}
	return t.src(x)
}

// dst returns the host register to write guest register x (x != 0) into;
// x counts as written from now on, so nothing that may exit can come
// between dst and the write.
func (t *tr) dst(x uint8) reg {
	s := t.slot(x)
	t.touch(s)
	t.ra.dirty |= 1 << x
	return cacheRegs[s]
}

// setX writes host register v to guest register x (none for x0).
func (t *tr) setX(x uint8, v reg) {
	if x == 0 {
		return
	}
	if d := t.dst(x); d != v {
		t.a.movRR(true, d, v)
	}
}

// setXImm sets guest register x to the constant v.
func (t *tr) setXImm(x uint8, v uint64) {
	if x != 0 {
		t.a.movImm(t.dst(x), v)
	}
}

func (t *tr) unpin() { t.ra.pinned = 0 }

// pinReads keeps the registers an instruction reads in their host
// registers while it is emitted: loading one of its operands must not
// evict another (whose value might not even have been written back, if
// the next access after this instruction overwrites it).
func (t *tr) pinReads(in riscv.Inst) {
	reads, _ := regUse(in)
	for s, g := range t.ra.holds {
		if g >= 0 && reads&(1<<g) != 0 {
			t.ra.pinned |= 1 << s
		}
	}
}

// spills lists the dirty cached registers: what an exit taken now must
// write back. The list lives in t.spillBuf.
func (t *tr) spills() []spill {
	start := len(t.spillBuf)
	r := &t.ra
	for s, g := range r.holds {
		if g >= 0 && r.dirty&(1<<g) != 0 {
			t.spillBuf = append(t.spillBuf, spill{int8(s), g})
		}
	}
	return t.spillBuf[start:len(t.spillBuf):len(t.spillBuf)]
}

// writeBack stores every dirty cached register into the Hart. Moves leave
// the flags alone, so it may come between a compare and its jump.
func (t *tr) writeBack() {
	r := &t.ra
	for s, g := range r.holds {
		if g >= 0 && r.dirty&(1<<g) != 0 {
			t.a.store(8, t.xr(uint8(g)), cacheRegs[s])
		}
	}
	r.dirty = 0
}
