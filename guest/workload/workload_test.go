package workload

import (
	"encoding/hex"
	"net"
	"testing"

	"ftvm/guest/kv"
)

// TestCPUDeterministic pins the checksum so a change to the workload (which
// would invalidate recorded benchmark numbers) is noticed.
func TestCPUDeterministic(t *testing.T) {
	a, b := CPU(3), CPU(3)
	if a.Sum != b.Sum {
		t.Fatal("two runs gave different checksums")
	}
	if got := hex.EncodeToString(a.Sum[:8]); got != wantSum3 {
		t.Errorf("CPU(3) checksum %s, want %s", got, wantSum3)
	}
}

const wantSum3 = "c2a0d6242f633311"

func TestKV(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go kv.NewServer().Serve(l)
	res, err := KV(l.Addr().String(), 200)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 400 {
		t.Errorf("ops = %d", res.Ops)
	}
}

// TestParallel: the checksum does not depend on the number of workers.
func TestParallel(t *testing.T) {
	a, b := Parallel(1, 5, 1), Parallel(3, 5, 1)
	if a.Sum != b.Sum {
		t.Fatalf("1 worker %x, 3 workers %x", a.Sum, b.Sum)
	}
	if c := Parallel(2, 4, 1); c.Sum == a.Sum {
		t.Fatal("4 chains gave the checksum of 5")
	}
}

func TestLockAndPingPong(t *testing.T) {
	if r := Lock(4, 1000); r.Count != 4000 {
		t.Fatalf("count %d, want 4000", r.Count)
	}
	if _, err := PingPong(1000); err != nil {
		t.Fatal(err)
	}
}
