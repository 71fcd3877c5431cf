package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"ftvm/cluster"
	"ftvm/host/guests"
	"ftvm/replication"
)

// Services (ftvm bench -services): the Debian guests driven by their real clients
// (redis-benchmark, pgbench, wrk) on three setups booting the same kernel,
// initramfs and root filesystem, each with a fresh data disk: ftvm alone,
// ftvm replicated (a primary and a backup), and QEMU TCG. Each run boots
// every setup in turn (interleaved), so a change of load on the machine
// hits all of them alike; the table gives the median and the range.

// svcSetup boots a guest and returns the host address of its server and a
// function that stops everything it started.
type svcSetup struct {
	name  string
	start func(g guests.Guest, dir string) (addr string, stop func(), err error)
}

// svcMetric is one measured figure.
type svcMetric struct {
	name  string
	value float64
}

// ServicesOptions configure the services benchmark.
type ServicesOptions struct {
	Ftvm     string        // the ftvm binary (with ftvm-witness next to it)
	Qemu     string        // the QEMU binary of the baseline ("" for none)
	Runs     int           // runs of every setup, interleaved
	Duration time.Duration // length of each pgbench and wrk run
	Only     string        // the guests to measure, comma-separated
	Requests int           // redis-benchmark requests per test
}

// Services measures the Debian guests' services with their real clients
// on ftvm, ftvm replicated and QEMU TCG, and prints a table per guest:
// median and range of the runs.
func Services(o ServicesOptions, out Output) error {
	runs, dur, requests := o.Runs, o.Duration, o.Requests
	qemu := o.Qemu
	var list []guests.Guest
	for _, n := range strings.Split(o.Only, ",") {
		g, err := guests.Lookup(strings.TrimSpace(n))
		if err != nil {
			return err
		}
		if !g.Debian() {
			return fmt.Errorf("-services-only: %s is not a Debian guest", g.Name)
		}
		if err := g.Check(); err != nil {
			return err
		}
		list = append(list, g)
	}
	tools := map[string]string{"redis": "redis-benchmark", "postgres": "pgbench", "nginx": "wrk"}
	for _, g := range list {
		if _, err := exec.LookPath(tools[g.Name]); err != nil {
			return fmt.Errorf("%s not found (scripts/setup.sh installs it)", tools[g.Name])
		}
	}
	setups := []svcSetup{{"ftvm", ftvmService(o.Ftvm, false)}, {"ftvm replicated", ftvmService(o.Ftvm, true)}}
	if qemu != "" {
		if _, err := exec.LookPath(qemu); err != nil {
			fmt.Fprintf(out.Progress, "bench: %s not found, skipping the QEMU baseline\n", qemu)
		} else {
			setups = append(setups, svcSetup{"qemu-tcg", qemuService(qemu)})
		}
	}
	for _, g := range list {
		// results[metric][setup] = one value per run
		results := map[string]map[string][]float64{}
		var order []string
		for run := 0; run < runs; run++ {
			for _, s := range setups {
				fmt.Fprintf(out.Progress, "bench: %s on %s, run %d/%d\n", g.Name, s.name, run+1, runs)
				ms, err := measureService(s, g, dur, requests)
				if err != nil {
					return fmt.Errorf("%s on %s: %w", g.Name, s.name, err)
				}
				for _, m := range ms {
					if results[m.name] == nil {
						results[m.name] = map[string][]float64{}
						order = append(order, m.name)
					}
					results[m.name][s.name] = append(results[m.name][s.name], m.value)
				}
			}
		}
		fmt.Fprintf(out.Table, "\n%s (median [min-max] of %d runs, interleaved)\n", g.Name, runs)
		fmt.Fprintf(out.Table, "| %-34s |", "metric")
		for _, s := range setups {
			fmt.Fprintf(out.Table, " %-22s |", s.name)
		}
		fmt.Fprintln(out.Table)
		fmt.Fprintf(out.Table, "|%s|", strings.Repeat("-", 36))
		for range setups {
			fmt.Fprintf(out.Table, "%s|", strings.Repeat("-", 24))
		}
		fmt.Fprintln(out.Table)
		for _, m := range order {
			fmt.Fprintf(out.Table, "| %-34s |", m)
			for _, s := range setups {
				var v []float64
				stalled := 0
				for _, x := range results[m][s.name] {
					if math.IsNaN(x) {
						stalled++
					} else {
						v = append(v, x)
					}
				}
				cell := "-"
				if len(v) > 0 {
					lo, hi := minMax(v)
					cell = fmt.Sprintf("%.0f [%.0f-%.0f]", median(v), lo, hi)
				}
				if stalled > 0 {
					cell = fmt.Sprintf("%s, %d stalled", cell, stalled)
				}
				fmt.Fprintf(out.Table, " %-22s |", cell)
			}
			fmt.Fprintln(out.Table)
		}
	}
	return nil
}

func minMax(v []float64) (lo, hi float64) { return slices.Min(v), slices.Max(v) }

// measureService boots g on s and runs its client load.
func measureService(s svcSetup, g guests.Guest, dur time.Duration, requests int) ([]svcMetric, error) {
	dir, err := os.MkdirTemp("", "ftvm-bench-services-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	addr, stop, err := s.start(g, dir)
	if err != nil {
		return nil, err
	}
	defer stop()
	if err := serviceReady(g, addr, 4*time.Minute); err != nil {
		return nil, err
	}
	host, port, _ := strings.Cut(addr, ":")
	switch g.Name {
	case "redis":
		var out []svcMetric
		for _, c := range []int{8, 32} {
			// SET then GET, equal numbers of each (PLOVER's 50/50 mix).
			res, err := runClient(90*time.Second, "redis-benchmark", "-h", host, "-p", port, "-q",
				"-t", "set,get", "-n", strconv.Itoa(requests), "-c", strconv.Itoa(c))
			if errors.Is(err, errStalled) {
				// QEMU's user networking is known to lose connections
				// with many clients: a result of its own, not the end
				// of the benchmark.
				for _, t := range []string{"SET", "GET"} {
					out = append(out, svcMetric{fmt.Sprintf("redis-benchmark %s -c %d (req/s)", t, c), math.NaN()})
				}
				continue
			}
			if err != nil {
				return nil, err
			}
			for _, t := range []string{"SET", "GET"} {
				v, err := afterLabel(FinalLines(res), t+": ")
				if err != nil {
					return nil, fmt.Errorf("redis-benchmark -c %d: %w\n%s", c, err, res)
				}
				out = append(out, svcMetric{fmt.Sprintf("redis-benchmark %s -c %d (req/s)", t, c), v})
			}
		}
		return out, nil
	case "postgres":
		r, err := pgbench(addr, dur, 4)
		if err != nil {
			return nil, err
		}
		return []svcMetric{{"pgbench TPC-B -c 4, scale 1 (tps)", r.tps}}, nil
	case "nginx":
		res, err := runClient(dur+2*time.Minute, "wrk", "-t", "2", "-c", "8", "-d", fmt.Sprintf("%ds", int(dur.Seconds())), "http://"+addr+"/")
		if err != nil {
			return nil, err
		}
		v, err := afterLabel(res, "Requests/sec:")
		if err != nil {
			return nil, fmt.Errorf("wrk: %w\n%s", err, res)
		}
		return []svcMetric{{"wrk GET / -c 8 (req/s)", v}}, nil
	}
	return nil, fmt.Errorf("no load for %s", g.Name)
}

// pgResult is what pgbench reports of a run.
type pgResult struct {
	tps     float64
	latency time.Duration // average per transaction
}

// pgbench runs pgbench's TPC-B load with clients connections for dur
// against the PostgreSQL guest's server at addr (the data disk's template
// holds a database "pgbench" at scale 1).
func pgbench(addr string, dur time.Duration, clients int) (pgResult, error) {
	host, port, _ := strings.Cut(addr, ":")
	env := []string{"PGHOST=" + host, "PGPORT=" + port, "PGUSER=postgres", "PGDATABASE=pgbench"}
	res, err := runClientEnv(env, dur+3*time.Minute, "pgbench", "-n", "-c", strconv.Itoa(clients), "-T", strconv.Itoa(max(1, int(dur.Seconds()))))
	if err != nil {
		return pgResult{}, err
	}
	tps, err := afterLabel(res, "tps = ")
	if err == nil {
		var lat float64
		if lat, err = afterLabel(res, "latency average = "); err == nil {
			return pgResult{tps, time.Duration(lat * float64(time.Millisecond))}, nil
		}
	}
	return pgResult{}, fmt.Errorf("pgbench: %w\n%s", err, res)
}

// afterLabel parses the number that follows label in s.
func afterLabel(s, label string) (float64, error) {
	i := strings.Index(s, label)
	if i < 0 {
		return 0, fmt.Errorf("no %q in the output", label)
	}
	f := strings.Fields(s[i+len(label):])
	if len(f) == 0 {
		return 0, fmt.Errorf("nothing after %q", label)
	}
	return strconv.ParseFloat(f[0], 64)
}

// errStalled is a client that did not finish in time.
var errStalled = errors.New("stalled")

func runClient(limit time.Duration, argv ...string) (string, error) {
	return runClientEnv(nil, limit, argv...)
}

func runClientEnv(env []string, limit time.Duration, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("%s did not finish within %v: %w", argv[0], limit, errStalled)
	}
	if err != nil {
		return string(out), fmt.Errorf("%v: %w\n%s", argv, err, out)
	}
	return string(out), nil
}

// serviceReady waits until the guest's server answers its own protocol.
func serviceReady(g guests.Guest, addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	host, port, _ := strings.Cut(addr, ":")
	for {
		var err error
		switch g.Name {
		case "redis":
			var c interface{ Close() error }
			if c, err = cluster.DialRetry(addr, time.Second); err == nil {
				c.Close()
			}
		case "postgres":
			_, err = runClientEnv([]string{"PGHOST=" + host, "PGPORT=" + port, "PGUSER=postgres", "PGDATABASE=postgres", "PGCONNECT_TIMEOUT=5"},
				30*time.Second, "psql", "-X", "-c", "select 1")
		case "nginx":
			var resp *http.Response
			cl := http.Client{Timeout: 5 * time.Second}
			if resp, err = cl.Get("http://" + addr + "/"); err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the guest's %s does not answer after %v: %w", g.Name, limit, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ftvmService boots g under ftvm on a switch, alone or as a replicated
// pair (the backup joins once the primary's service answers).
func ftvmService(ftvm string, replicated bool) func(g guests.Guest, dir string) (string, func(), error) {
	return func(g guests.Guest, dir string) (string, func(), error) {
		c, err := cluster.StartGuest(dir, ftvm, 300*time.Millisecond, g, "p", "b")
		if err != nil {
			return "", nil, err
		}
		role, extra := "run", []string(nil)
		if replicated {
			role, extra = "primary", []string{"-cluster", "bench"}
		}
		p, err := c.Replica(role, "p", extra...)
		if err != nil {
			c.Stop()
			return "", nil, err
		}
		if replicated {
			if err := serviceReady(g, c.Forward, 4*time.Minute); err != nil {
				c.Stop()
				return "", nil, fmt.Errorf("%w\n%s", err, p.LogTail(20))
			}
			b, err := c.Replica("backup", "b", "-join", p.Listen, "-cluster", "bench")
			if err == nil {
				_, err = b.WaitStatus("following the primary", 3*time.Minute, func(s replication.Status) bool { return s.Role == "backup" })
			}
			if err != nil {
				c.Stop()
				return "", nil, err
			}
		}
		return c.Forward, c.Stop, nil
	}
}

// qemuService boots g on QEMU's virt board (TCG, one hart, OpenSBI) with
// the same kernel, initramfs, root and a fresh data disk, its server
// reached through user networking's host forward.
func qemuService(qemu string) func(g guests.Guest, dir string) (string, func(), error) {
	return func(g guests.Guest, dir string) (string, func(), error) {
		addr, err := freeTCP()
		if err != nil {
			return "", nil, err
		}
		_, port, _ := strings.Cut(addr, ":")
		data := filepath.Join(dir, "data.img")
		if err := guests.NewDataDisk(data); err != nil {
			return "", nil, err
		}
		log, err := os.Create(filepath.Join(dir, "qemu.log"))
		if err != nil {
			return "", nil, err
		}
		cmd := exec.Command(qemu, "-M", "virt", "-smp", "1", "-m", strconv.Itoa(g.MemoryMiB), "-nographic", "-bios", "default",
			"-kernel", guests.Kernel(), "-initrd", guests.Initrd(), "-append", g.Cmdline("console=ttyS0 earlycon=sbi"),
			"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%s-:%d", port, g.Port), "-device", "virtio-net-device,netdev=n0",
			"-drive", "file="+data+",format=raw,if=none,id=d0", "-device", "virtio-blk-device,drive=d0",
			"-drive", "file="+guests.RootImage()+",format=raw,if=none,id=d1,readonly=on", "-device", "virtio-blk-device,drive=d1")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			log.Close()
			return "", nil, err
		}
		stop := func() {
			cmd.Process.Kill()
			cmd.Wait()
			log.Close()
		}
		return addr, stop, nil
	}
}

// FinalLines keeps the final state of redis-benchmark's lines (it redraws
// its progress with carriage returns).
func FinalLines(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if i := strings.LastIndex(l, "\r"); i >= 0 {
			l = l[i+1:]
		}
		if strings.TrimSpace(l) != "" {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	return strings.Join(keep, "\n")
}

// freeTCP returns a loopback TCP address nobody listens on now.
func freeTCP() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
