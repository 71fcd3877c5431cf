package machine

import (
	"syscall"
	"testing"
	"time"

	"ftvm/internal/testsupport"
)

// BenchmarkGuestCPU measures interpreter speed on the default guest's
// CPU-bound workload (SHA-256 and sorting in a Go program under Linux),
// after booting past init. Reports guest instructions per second.
//
//	go test -run '^$' -bench GuestCPU -cpuprofile cpu.prof ./machine
func BenchmarkGuestCPU(b *testing.B) {
	for _, exec := range []string{ExecInterp, ExecJIT} {
		b.Run(exec, func(b *testing.B) { benchGuestCPU(b, exec) })
	}
}

func benchGuestCPU(b *testing.B, exec string) {
	k, i := testsupport.DefaultGuest(b)
	m, err := New(Config{Kernel: k, Initrd: i, Cmdline: "console=ttyS0 ftvm.mode=cpubench ftvm.n=1000", Exec: exec})
	if err != nil {
		b.Skip(err)
	}
	m.Run(150e6) // boot, start the workload
	// Runs as long as the run loop's (runloop.DefaultSlice): where one
	// ends and the next resumes is part of the cost.
	const chunk = 100_000
	cpu0 := cpuTime()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		if r := m.Run(m.Instret() + chunk); r != StopLimit {
			b.Fatalf("guest stopped: %v", r)
		}
	}
	b.ReportMetric(float64(b.N)*chunk/b.Elapsed().Seconds()/1e6, "Minsn/s")
	// On a loaded host the wall-clock rate says little; instructions per
	// second of this process's CPU time say more.
	b.ReportMetric(float64(b.N)*chunk/(cpuTime()-cpu0).Seconds()/1e6, "Minsn/cpu-s")
	if st := m.TranslatorStats(); st.Blocks > 0 {
		b.ReportMetric(float64(st.Blocks), "blocks")
	}
}

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBoot measures a boot of the default guest to power-off (the
// init banner comes just before), with idle time skipped.
func BenchmarkBoot(b *testing.B) {
	k, i := testsupport.DefaultGuest(b)
	var insns uint64
	for n := 0; n < b.N; n++ {
		m, err := New(Config{Kernel: k, Initrd: i, Cmdline: poweroffCmdline})
		if err != nil {
			b.Fatal(err)
		}
		if r := m.Run(2e9); r != StopPowerOff {
			b.Fatalf("stopped with %v", r)
		}
		insns += m.Instret()
	}
	b.ReportMetric(float64(insns)/float64(b.N), "insn/boot")
	b.ReportMetric(float64(insns)/b.Elapsed().Seconds()/1e6, "Minsn/s")
}

// BenchmarkRestartDigest16GiB: a 16 GiB machine booted (in the memory of
// the previous one, as after a guest reboot) and digested, as at the end of
// a short run: the cost follows the pages written, not the memory size.
func BenchmarkRestartDigest16GiB(b *testing.B) {
	cfg := Config{MemoryMiB: 16384, Kernel: fakeKernel()}
	m, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if m, err = m.Restart(cfg); err != nil {
			b.Fatal(err)
		}
		m.Digest()
	}
}
