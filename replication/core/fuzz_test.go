package core

import (
	"errors"
	"testing"

	"ftvm/arbiter/view"
	"ftvm/replay/eventlog"
)

// FuzzPrimary steps a linked primary with events a backup, the network
// and the arbiter control (acknowledgements with any numbers, link
// failures, arbiter answers of any kind, ticks) between epochs with and
// without outputs, and checks the output rule's invariants: nothing is
// released beyond what a valid acknowledgement covers, nothing after
// DropAll, never both ReleaseAll and DropAll, and the guest never runs
// while the core arbitrates or after it stopped.
func FuzzPrimary(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7})
	f.Add([]byte{1, 1, 3, 0x20, 4, 6, 2, 7, 7})
	f.Add([]byte{1, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 6, 0})
	f.Fuzz(func(t *testing.T, prog []byte) {
		v := view.View{Generation: 1, Primary: "a"}
		c, err := NewPrimary(Config{ID: "a", Cluster: "x", Engine: "e", TimeoutTicks: 6, HeartbeatTicks: 2}, v)
		if err != nil {
			t.Fatal(err)
		}
		c.Step(JoinRequest{ID: "b", CertID: "b", Cluster: "x", Version: ProtocolVersion})
		c.Step(Transferred{ID: "b", Instret: 0})
		var pending *Arbitrate
		var maxAcked, released int64
		var dropped, releasedAll, linked bool
		check := func() {
			for _, a := range c.Ready() {
				switch a := a.(type) {
				case Arbitrate:
					pending = &a
				case Link:
					linked, maxAcked = true, 0
				case Unlink:
					linked = false
				case Release:
					if dropped {
						t.Fatalf("release after drop-all")
					}
					if a.Through > maxAcked {
						t.Fatalf("released through frame %d, acknowledged %d", a.Through, maxAcked)
					}
					released = max(released, a.Through)
				case ReleaseAll:
					if dropped {
						t.Fatalf("release-all after drop-all")
					}
					releasedAll = true
				case DropAll:
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
		}
		check()
		instret := uint64(0)
		for i := 0; i < len(prog); i++ {
			op, arg := prog[i]%8, uint64(prog[i]/8)
			switch op {
			case 0:
				c.Step(Tick{})
			case 1:
				instret += 1000 * (arg + 1)
				c.Step(Append{Record: eventlog.ConsoleInputAt(instret, []byte{byte(arg)})})
				c.Step(EpochEnded{Instret: instret, Outputs: arg%2 == 0})
			case 2:
				st := c.Status()
				fr := int64(arg) % (st.Frames + 2)
				ack := Acked{Frames: fr, Bytes: st.Bytes, Replayed: instret}
				if linked && fr <= st.Frames {
					maxAcked = max(maxAcked, fr)
				}
				c.Step(ack)
			case 3:
				c.Step(Acked{Frames: int64(arg) << 20, Bytes: 1, Replayed: 1})
			case 4:
				c.Step(LinkFailed{Err: errors.New("reset")})
			case 5:
				if pending != nil {
					a := *pending
					pending = nil
					switch arg % 3 {
					case 0:
						c.Step(ArbiterAnswer{Old: a.Old, New: a.New, Won: true, Current: a.New})
					case 1:
						c.Step(ArbiterAnswer{Old: a.Old, New: a.New, Current: a.New.Next("z", "")})
					default:
						c.Step(ArbiterAnswer{Old: a.Old, New: a.New, Err: errors.New("unreachable")})
					}
				}
			case 6:
				c.Step(Finish{Reason: "poweroff"})
			case 7:
				c.Step(JoinRequest{ID: "c", CertID: "c", Cluster: "x", Version: ProtocolVersion})
			}
			check()
		}
	})
}
