package migrate

import (
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"ftvm/machine"
	"ftvm/vm"
)

// BenchmarkStateTransfer migrates the default guest (256 MiB of RAM, a
// 64 MiB disk) to a receiver with a blank disk over loopback TCP while the
// guest keeps running, 1 M instructions between Steps, with default
// Options. Workloads: "kv" is the key-value server taking 8 KiB writes
// from a client (disk and memory writes), "cpu" the guest's CPU workload
// (hashing and sorting, memory writes only) started from the console.
// Each iteration moves the running guest to a new receiver.
//
//	go test -run '^$' -bench StateTransfer -benchtime 3x ./migrate
func BenchmarkStateTransfer(b *testing.B) {
	for _, w := range []string{"kv", "cpu"} {
		b.Run(w, func(b *testing.B) {
			const diskSize = 64 << 20
			srcDisk := TrackWrites(vm.NewMemDisk(make([]byte, diskSize)))
			src := bootServing(b, srcDisk, 8<<10)
			if w == "cpu" {
				src.c.limit = src.c.sets // no more writes
				mark := src.console.Len()
				for in := []byte("cpubench 100000\n"); len(in) > 0; {
					n, err := src.m.Deliver(machine.ConsoleInput{Data: in})
					if err != nil {
						b.Fatal(err)
					}
					in = in[n:]
					src.step(1e5)
				}
				for range 50 {
					src.step(1e6)
				}
				if !strings.Contains(src.console.String()[mark:], "cpubench 100000") {
					b.Fatalf("the console did not take the command: %q", src.console.String()[mark:])
				}
			}
			var sum Stats
			var insns, pauseMax float64
			var startMax, stepMax time.Duration
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				// Each receiver starts as a fresh backup process would, with
				// its RAM straight from the OS rather than recycled (and
				// cleared) from the previous iteration's.
				b.StopTimer()
				debug.FreeOSMemory()
				b.StartTimer()
				a, c := tcpPair(b)
				dstDisk := vm.NewMemDisk(make([]byte, diskSize))
				res := receiveAsync(c, dstDisk, machine.MigrationFactory(machine.RestoreOptions{Disk: dstDisk}), ReceiveOptions{})
				start := src.m.Instret()
				t0 := time.Now()
				s, err := NewSender(a, src.m, srcDisk, Options{})
				if err != nil {
					b.Fatal(err)
				}
				startMax = max(startMax, time.Since(t0))
				for done := false; !done; {
					if r := src.step(1e6); r != machine.StopLimit {
						b.Fatalf("the guest stopped: %v", r)
					}
					t := time.Now()
					if done, err = s.Step(); err != nil {
						b.Fatal(err)
					}
					stepMax = max(stepMax, time.Since(t))
				}
				st, err := s.Finish()
				if err != nil {
					b.Fatal(err)
				}
				if r := <-res; r.err != nil {
					b.Fatal(r.err)
				}
				a.Close()
				c.Close()
				insns += float64(src.m.Instret() - start)
				sum.Rounds += st.Rounds
				sum.BytesSent += st.BytesSent
				sum.PausePages += st.PausePages
				sum.PauseChunks += st.PauseChunks
				sum.ChunksSent += st.ChunksSent
				sum.PreCopy += st.PreCopy
				sum.Pause += st.Pause
				sum.Confirm += st.Confirm
				pauseMax = max(pauseMax, float64(st.Pause.Microseconds())/1e3)
			}
			nf := float64(b.N)
			b.ReportMetric(float64(sum.BytesSent)/nf/1e6, "MB-sent")
			b.ReportMetric(float64(sum.Rounds)/nf, "rounds")
			b.ReportMetric(float64(sum.ChunksSent)/nf, "chunks")
			b.ReportMetric(float64(sum.PreCopy.Microseconds())/nf/1e3, "precopy-ms")
			b.ReportMetric(insns/nf/1e6, "guest-Minsn")
			b.ReportMetric(float64(sum.Pause.Microseconds())/nf/1e3, "pause-ms")
			b.ReportMetric(pauseMax, "pause-max-ms")
			b.ReportMetric(float64(sum.Confirm.Microseconds())/nf/1e3, "confirm-ms")
			b.ReportMetric(float64(sum.PausePages)/nf, "pause-pages")
			b.ReportMetric(float64(startMax.Microseconds())/1e3, "start-max-ms")
			b.ReportMetric(float64(stepMax.Microseconds())/1e3, "step-max-ms")
			b.ReportMetric(float64(sum.PauseChunks)/nf, "pause-chunks")
		})
	}
}
