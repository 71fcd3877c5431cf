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
