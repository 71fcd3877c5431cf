package riscv

import "testing"

// nopAtomics is an Atomics whose operations are never reached here.
type nopAtomics struct{}

func (nopAtomics) CompareAndSwap(uint64, int, uint64, uint64) bool { return false }
func (nopAtomics) Load(uint64, int) uint64                         { return 0 }
func (nopAtomics) Store(uint64, int, uint64)                       {}
func (nopAtomics) Fence()                                          {}

// TestReservationSurvivesTransfer: a hart paused between an LR and its SC
// is saved, and its state loaded into another hart that then runs in
// parallel mode (a replica's machine after a state transfer or a sync).
// The reservation, with the value the LR read (which the parallel SC
// compares), must arrive whole: the two harts' states are equal, so are
// the replicas' digests.
func TestReservationSurvivesTransfer(t *testing.T) {
	src, _ := newTestHart(nil)
	src.resValid, src.resAddr, src.resVal = true, 0x1238, 0xfeedface
	st := src.State()
	dst, _ := newTestHart(nil)
	if err := dst.SetState(st); err != nil {
		t.Fatal(err)
	}
	dst.SetAtomics(nopAtomics{})
	if got := dst.State(); got != st {
		t.Fatalf("after the transfer the hart's state is\n%+v\nwant\n%+v", got, st)
	}
	if !dst.resValid || dst.resVal != 0xfeedface {
		t.Fatalf("reservation valid %v value %#x, want the LR's", dst.resValid, dst.resVal)
	}
}
