// Command init is PID 1 of ftvm's default guest.
//
// It prints "ftvm-init: started" first (the boot benchmarks and tests wait
// for that line), mounts the pseudo filesystems, and then does what the
// kernel command line asks with ftvm.mode=:
//
//	serve     (default) configure lo and eth0, run /bin/kvserver, and read
//	          commands from the console (type "help")
//	poweroff  power off at once (boot-time benchmark)
//	cpubench  run the CPU workload (ftvm.n= rounds), print
//	          "cpubench: start" / "cpubench: done ...", power off
//	smpbench  the CPU workload as ftvm.chains= (default 8) independent
//	          chains of ftvm.n= rounds, one worker per CPU, then power off
//	lockbench threads contending for a lock (ftvm.n= increments each),
//	          then a pipe ping-pong between two threads, then power off
//
// Other parameters: ftvm.ip=10.0.2.15/24 (eth0 address), ftvm.gw= (default
// route, none by default), ftvm.n= (cpubench rounds), ftvm.service=NAME
// (serve a Debian service, redis, postgres or nginx, from the Debian root
// and data disks instead of running kvserver; see service.go).
//
// Parameters with a dot look like module parameters to the kernel, so it
// does not pass them to init as arguments or environment; init reads
// /proc/cmdline instead.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"ftvm/guest/workload"
)

const defaultIP = "10.0.2.15/24"

// defaultBenchRounds is about 1.4 G guest instructions (0.9 s on QEMU TCG):
// long enough to measure, short enough to repeat under a slower emulator.
const defaultBenchRounds = 100

func main() {
	// The banner goes out before anything that could fail or take time.
	if _, err := fmt.Printf("ftvm-init: started (pid %d, uptime %s)\n", os.Getpid(), uptime()); err != nil {
		reopenConsole()
		fmt.Printf("ftvm-init: started (pid %d, uptime %s, console reopened)\n", os.Getpid(), uptime())
	}
	mountAll()
	logf("cpus: %d online", runtime.NumCPU())
	params := kernelParams()
	os.Setenv("PATH", "/bin")

	switch mode := params["ftvm.mode"]; mode {
	case "poweroff":
		logf("mode poweroff: powering off")
		shutdown(unix.LINUX_REBOOT_CMD_POWER_OFF)
	case "cpubench":
		n := defaultBenchRounds
		if v, err := strconv.Atoi(params["ftvm.n"]); err == nil && v > 0 {
			n = v
		}
		cpubench(n)
		shutdown(unix.LINUX_REBOOT_CMD_POWER_OFF)
	case "smpbench":
		chains, n := intParam(params, "ftvm.chains", 8), intParam(params, "ftvm.n", 10)
		logf("smpbench: start chains=%d rounds=%d", chains, n)
		logf("smpbench: done %v", workload.Parallel(0, chains, n))
		shutdown(unix.LINUX_REBOOT_CMD_POWER_OFF)
	case "lockbench":
		n := intParam(params, "ftvm.n", 20000)
		logf("lockbench: start n=%d", n)
		logf("lockbench: lock %v", workload.Lock(0, n))
		if res, err := workload.PingPong(n); err != nil {
			logf("lockbench: pingpong: %v", err)
		} else {
			logf("lockbench: pingpong %v", res)
		}
		logf("lockbench: done")
		shutdown(unix.LINUX_REBOOT_CMD_POWER_OFF)
	case "", "serve":
		serve(params)
	default:
		logf("unknown ftvm.mode=%q, using serve", mode)
		serve(params)
	}
}

func serve(params map[string]string) {
	sup := startSupervisor()
	if err := setupNetwork(params); err != nil {
		logf("network: %v", err)
	}
	if name := params["ftvm.service"]; name != "" {
		if err := startService(sup, name); err != nil {
			logf("service %s: %v", name, err)
		}
	} else {
		sup.startKV()
	}
	consoleLoop(sup)
	// Console input ended (no console attached): keep reaping forever. PID 1
	// must never exit, or the kernel panics. Sleeping keeps a timer pending,
	// so the Go runtime never sees a deadlock.
	for {
		time.Sleep(time.Hour)
	}
}

func cpubench(n int) {
	logf("cpubench: start rounds=%d", n)
	res := workload.CPU(n)
	logf("cpubench: done %v", res)
}

// intParam is the positive integer parameter key, or def.
func intParam(params map[string]string, key string, def int) int {
	if v, err := strconv.Atoi(params[key]); err == nil && v > 0 {
		return v
	}
	return def
}

// logf prints one progress line on the console.
func logf(format string, a ...any) {
	fmt.Printf("ftvm-init: "+format+"\n", a...)
}

// uptime is the time since the kernel started, from CLOCK_BOOTTIME.
func uptime() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return "?"
	}
	return fmt.Sprintf("%.3fs", time.Duration(ts.Nano()).Seconds())
}

// reopenConsole is the fallback for an initramfs without /dev/console, when
// the kernel could not give init its standard descriptors.
func reopenConsole() {
	os.Mkdir("/dev", 0o755)
	unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	fd, err := unix.Open("/dev/console", unix.O_RDWR, 0)
	if err != nil {
		return
	}
	for i := 0; i < 3; i++ {
		unix.Dup3(fd, i, 0)
	}
}

func mountAll() {
	for _, m := range []struct{ src, dir, fstype, data string }{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		// Over the initramfs /dev: the kernel's nodes appear there (vda).
		{"devtmpfs", "/dev", "devtmpfs", ""},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777"},
	} {
		os.MkdirAll(m.dir, 0o755)
		err := unix.Mount(m.src, m.dir, m.fstype, unix.MS_NOSUID, m.data)
		if err != nil && err != unix.EBUSY {
			logf("mount %s on %s: %v", m.fstype, m.dir, err)
		}
	}
	logf("mounted /proc /sys /dev /tmp")
}

// kernelParams returns the key=value words of /proc/cmdline.
func kernelParams() map[string]string {
	p := map[string]string{}
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		logf("read /proc/cmdline: %v", err)
		return p
	}
	line := strings.TrimSpace(string(b))
	logf("cmdline: %s", line)
	for _, w := range strings.Fields(line) {
		k, v, _ := strings.Cut(w, "=")
		p[k] = v
	}
	return p
}

// shutdown syncs and asks the kernel to power off or restart, which it does
// through SBI SRST (or the syscon device). It does not return.
func shutdown(cmd int) {
	unix.Sync()
	if err := unix.Reboot(cmd); err != nil {
		logf("reboot(%#x): %v", cmd, err)
	}
	for {
		time.Sleep(time.Hour)
	}
}
