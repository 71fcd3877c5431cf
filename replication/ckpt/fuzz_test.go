package ckpt

import (
	"errors"
	"testing"

	"ftvm/arbiter/view"
	"ftvm/replication/core"
)

// FuzzPrimary steps a linked checkpointing primary with events a backup,
// the network and the arbiter control (acknowledgements of any sequence
// number, ended or not, link failures, arbiter answers of any kind,
// ticks) between checkpoints with and without outputs, and checks the
// output rule's invariants: nothing is released beyond a checkpoint the
// backup acknowledged while linked, nothing after DropAll, never both
// ReleaseAll and DropAll, the guest never runs while the core arbitrates
// or after it stopped, and a checkpoint is asked for only with a backup.
func FuzzPrimary(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7}, false)
	f.Add([]byte{1, 1, 2, 0x22, 4, 5, 1, 7, 7}, true)
	f.Add([]byte{1, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 6, 0}, false)
	f.Fuzz(func(t *testing.T, prog []byte, colo bool) {
		m := Remus
		if colo {
			m = COLO
		}
		v := view.View{Generation: 1, Primary: "a"}
		c, err := NewPrimary(Config{Config: core.Config{ID: "a", Cluster: "x", Engine: "e", TimeoutTicks: 6, HeartbeatTicks: 2}, Mode: m}, v)
		if err != nil {
			t.Fatal(err)
		}
		c.Step(core.JoinRequest{ID: "b", CertID: "b", Cluster: "x", Version: core.ProtocolVersion, Mode: m.String()})
		c.Step(core.Transferred{ID: "b", Instret: 0})
		var pending *core.Arbitrate
		var maxAcked, instret uint64
		var dropped, releasedAll, linked bool
		check := func() {
			for _, a := range c.Ready() {
				switch a := a.(type) {
				case core.Arbitrate:
					pending = &a
				case core.Link:
					linked, maxAcked = true, 0
				case core.Unlink:
					linked = false
				case core.Release:
					if dropped {
						t.Fatalf("release after drop-all")
					}
					if uint64(a.Through) > maxAcked {
						t.Fatalf("released through checkpoint %d, acknowledged %d", a.Through, maxAcked)
					}
				case core.ReleaseAll:
					if dropped {
						t.Fatalf("release-all after drop-all")
					}
					releasedAll = true
				case core.DropAll:
					if releasedAll {
						t.Fatalf("drop-all after release-all")
					}
					dropped = true
				}
			}
			st := c.Status()
			if c.MayRun() && (st.Arbitrating || st.Stopped) {
				t.Fatalf("may run while arbitrating or stopped: %+v", st)
			}
			if _, ok := c.MayCheckpoint(); ok && !linked {
				t.Fatal("may checkpoint without a backup")
			}
		}
		check()
		for i := 0; i < len(prog); i++ {
			op, arg := prog[i]%8, uint64(prog[i]/8)
			switch op {
			case 0:
				c.Step(core.Tick{})
			case 1:
				instret += 1000 * (arg + 1)
				if seq, ok := c.MayCheckpoint(); ok {
					c.Step(Taken{Seq: seq, Instret: instret, Outputs: arg%2 == 0})
				}
			case 2:
				taken, _ := c.Checkpoints()
				s := arg % (taken + 2)
				if linked && s <= taken {
					maxAcked = max(maxAcked, s)
				}
				c.Step(Acked{Seq: s})
			case 3:
				c.Step(Acked{Seq: arg << 20, Ended: arg%2 == 1})
			case 4:
				c.Step(core.LinkFailed{Err: errors.New("reset")})
			case 5:
				if pending != nil {
					a := *pending
					pending = nil
					switch arg % 3 {
					case 0:
						c.Step(core.ArbiterAnswer{Old: a.Old, New: a.New, Won: true, Current: a.New})
					case 1:
						c.Step(core.ArbiterAnswer{Old: a.Old, New: a.New, Current: a.New.Next("z", "")})
					default:
						c.Step(core.ArbiterAnswer{Old: a.Old, New: a.New, Err: errors.New("unreachable")})
					}
				}
			case 6:
				c.Step(core.Finish{Reason: "poweroff"})
			case 7:
				c.Step(core.JoinRequest{ID: "c", CertID: "c", Cluster: "x", Version: core.ProtocolVersion, Mode: m.String()})
			}
			check()
		}
	})
}
