package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"ftvm/guest/workload"
)

// consoleLoop reads one command per line from the console. Each reply line
// starts with "= " so a test driving the UART can tell replies apart from
// the terminal's echo of what it typed and from kernel messages.
func consoleLoop(sup *supervisor) {
	logf("console ready: type help")
	sc := bufio.NewScanner(os.Stdin)
	for {
		fmt.Print("ftvm> ")
		if !sc.Scan() {
			logf("console input closed: %v", sc.Err())
			return
		}
		cmd, arg, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		switch cmd {
		case "":
		case "help":
			reply("commands: help, echo TEXT, uptime, mem, cpus, net, kv-stats, cpubench [ROUNDS], smpbench [CHAINS [ROUNDS]], poweroff, reboot")
		case "echo":
			reply(arg)
		case "uptime":
			reply("up " + uptime())
		case "mem":
			var si unix.Sysinfo_t
			if err := unix.Sysinfo(&si); err != nil {
				reply("error: " + err.Error())
				break
			}
			unit := uint64(si.Unit)
			reply(fmt.Sprintf("total %d KiB, free %d KiB, procs %d",
				uint64(si.Totalram)*unit>>10, uint64(si.Freeram)*unit>>10, si.Procs))
		case "cpus":
			reply(fmt.Sprintf("%d online", runtime.NumCPU()))
		case "smpbench":
			chains, rounds := 8, 2
			if f := strings.Fields(arg); len(f) > 0 {
				if v, err := strconv.Atoi(f[0]); err == nil && v > 0 {
					chains = v
				}
				if len(f) > 1 {
					if v, err := strconv.Atoi(f[1]); err == nil && v > 0 {
						rounds = v
					}
				}
			}
			reply(workload.Parallel(0, chains, rounds).String())
		case "kv-stats":
			kvStats()
		case "net":
			netStats()
		case "cpubench":
			n, err := strconv.Atoi(arg)
			if err != nil || n <= 0 {
				n = defaultBenchRounds
			}
			reply(workload.CPU(n).String())
		case "poweroff", "reboot":
			sup.stop()
			reply(cmd)
			how := unix.LINUX_REBOOT_CMD_POWER_OFF
			if cmd == "reboot" {
				how = unix.LINUX_REBOOT_CMD_RESTART
			}
			shutdown(how)
		default:
			reply("unknown command " + strconv.Quote(cmd) + " (try help)")
		}
	}
}

func reply(s string) { fmt.Printf("= %s\n", s) }

// kvStats asks the local kvserver for INFO and prints it.
func kvStats() {
	c, err := net.DialTimeout("tcp", "127.0.0.1:6379", 2*time.Second)
	if err != nil {
		reply("error: " + err.Error())
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprint(c, "*1\r\n$4\r\nINFO\r\n")
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(head, "$") {
		reply(fmt.Sprintf("error: bad reply %q %v", head, err))
		return
	}
	n, _ := strconv.Atoi(strings.TrimSpace(head[1:]))
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		reply("error: " + err.Error())
		return
	}
	for _, line := range strings.Split(strings.TrimSpace(string(body)), "\r\n") {
		if !strings.HasPrefix(line, "#") {
			reply(line)
		}
	}
}

// netStats prints the interface counters and the kernel's TCP counters,
// which show drops and retransmissions when networking misbehaves.
func netStats() {
	if b, err := os.ReadFile("/proc/net/dev"); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			reply(line)
		}
	}
	if b, err := os.ReadFile("/proc/net/snmp"); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if strings.HasPrefix(line, "Tcp:") {
				reply(line)
			}
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
