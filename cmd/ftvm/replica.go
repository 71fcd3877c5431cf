package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"ftvm/host"
	"ftvm/host/guests"
	"ftvm/machine"
	"ftvm/machinelog"
	"ftvm/migrate"
	"ftvm/monitor"
	"ftvm/replication"
	"ftvm/vm"
)

// The replica commands: 'ftvm primary' boots a guest and protects it with
// whatever backup joins; 'ftvm backup' joins a primary, follows its log, and
// takes over if it dies. Both are wiring: the protocol is package
// replication's.

type replicaFlags struct {
	id, cluster, keys, listen, arbiter, httpAddr, logFormat string
	epoch, maxLag, digestEvery                              uint64
	heartbeat, timeout                                      time.Duration
	lockstep                                                bool
	plover                                                  ploverFlags
	flips                                                   flipFlags
}

func (f *replicaFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.id, "id", "", "this replica's `id` (its certificate's name in -keys); required")
	fs.StringVar(&f.cluster, "cluster", "ftvm", "the pair's `name` at the arbiter")
	fs.StringVar(&f.keys, "keys", "", "`dir`ectory of the cluster's TLS keys (made by 'ftvm keys'); required")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:7400", "`addr`ess where backups join this replica (when it is, or becomes, the primary)")
	fs.StringVar(&f.arbiter, "arbiter", "127.0.0.1:2379", "the arbiter: comma-separated etcd client `endpoints` (an ftvm-witness, or an external etcd cluster)")
	fs.StringVar(&f.httpAddr, "http", "", "serve /status (JSON) and /metrics (Prometheus) on `addr`")
	fs.StringVar(&f.logFormat, "log", "text", "log `format` on stderr: text or json")
	fs.Uint64Var(&f.epoch, "epoch", 0, "instructions per epoch: how often host inputs enter and the log is flushed (default 100000)")
	fs.DurationVar(&f.heartbeat, "heartbeat", 0, "heartbeat interval (default 20ms)")
	fs.DurationVar(&f.timeout, "timeout", 0, "silence after which the peer is declared dead (default 500ms)")
	fs.Uint64Var(&f.maxLag, "max-lag", 0, "instructions the backup may trail before the primary waits (default 200M)")
	fs.Uint64Var(&f.digestEvery, "digest-every", 0, "instructions between state digests the backup checks (default 100M)")
	fs.BoolVar(&f.lockstep, "lockstep", false, "end every epoch with a wait for the backup's acknowledgement, as Bressoud & Schneider's protocol does (for measurements)")
	f.plover.register(fs)
	f.flips.register(fs)
}

// replicaConfig builds everything but the host I/O and the engine.
func (f *replicaFlags) replicaConfig() (replication.Config, error) {
	if err := f.plover.check(); err != nil {
		return replication.Config{}, err
	}
	if f.id == "" || f.keys == "" {
		return replication.Config{}, errors.New("-id and -keys are required (make keys with 'ftvm keys -dir DIR ID...')")
	}
	tc, err := replication.LoadTLS(f.keys, f.id)
	if err != nil {
		return replication.Config{}, err
	}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, nil)
	switch f.logFormat {
	case "text":
	case "json":
		h = slog.NewJSONHandler(os.Stderr, nil)
	default:
		return replication.Config{}, fmt.Errorf("-log %q: want text or json", f.logFormat)
	}
	var arb replication.Arbiter
	if f.plover.mode != "plover" { // the group agrees by itself
		if arb, err = dialArbiter(f.arbiter, f.cluster, tc); err != nil {
			return replication.Config{}, err
		}
	}
	return replication.Config{
		ID: f.id, Cluster: f.cluster, TLS: tc, Arbiter: arb, Engine: machinelog.Engine,
		Epoch: f.epoch, Heartbeat: f.heartbeat, Timeout: f.timeout, MaxLag: f.maxLag, DigestEvery: f.digestEvery, Lockstep: f.lockstep,
		Log: slog.New(h),
	}, nil
}

// syncWriter serialises console writes: released outputs come from the
// goroutine that reads the backup's acknowledgements.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// replicaHost opens the replica's console and network on this host.
func (vf *vmFlags) replicaHost(cfg *machine.Config) (replication.Host, func(), error) {
	nb, err := vf.openNet(cfg)
	if err != nil {
		return replication.Host{}, nil, err
	}
	h := replication.Host{Console: &syncWriter{w: os.Stdout}, Net: nb}
	restore := func() {}
	if host.IsTerminal(os.Stdin) {
		restore = host.RawTerminal(int(os.Stdin.Fd()))
	}
	h.ConsoleIn = host.ReadInput(os.Stdin)
	if nb != nil {
		h.Announce = func() { announce(nb, cfg.MAC) }
	}
	return h, func() {
		restore()
		if nb != nil {
			nb.Close()
		}
	}, nil
}

// serveReplica runs the HTTP status endpoint and handles signals; run gets
// a context that ends on SIGINT or SIGTERM.
func serveReplica(rf *replicaFlags, rep *replication.Replica, run func(ctx context.Context, ln net.Listener) (vm.StopReason, error)) error {
	ln, err := net.Listen("tcp", rf.listen)
	if err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	defer ln.Close()
	if rf.httpAddr != "" {
		hl, err := net.Listen("tcp", rf.httpAddr)
		if err != nil {
			return fmt.Errorf("-http: %w", err)
		}
		srv := &http.Server{Handler: rf.flips.handler(monitor.Replica(rep)), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(hl)
		defer srv.Close()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := rf.flips.schedule(ctx); err != nil {
		return err
	}
	start := time.Now()
	reason, err := run(ctx, ln)
	st := rep.Status()
	if st.Instret > 0 || reason != vm.StopLimit {
		fmt.Fprintf(os.Stderr, "\r\nftvm: %s %s: %v after %d instructions in %.2fs\r\n", st.Role, st.ID, reason, st.Instret, time.Since(start).Seconds())
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func cmdPrimary(args []string) error {
	fs := flag.NewFlagSet("primary", flag.ContinueOnError)
	var vf vmFlags
	var rf replicaFlags
	vf.register(fs)
	rf.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ftvm primary -id ID -keys DIR [flags]\n\nBoots a guest (as 'ftvm run' does) and runs it as the primary of a replicated\npair: backups join at -listen; the arbiter must name no other primary.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("primary takes no arguments")
	}
	if err := vf.deterministic("primary"); err != nil {
		return err
	}
	if err := vf.check(given(fs), "", ""); err != nil {
		return err
	}
	vf.replica = rf.id
	cfg, err := vf.config("")
	if err != nil {
		return err
	}
	rc, err := rf.replicaConfig()
	if err != nil {
		return err
	}
	h, release, err := vf.replicaHost(&cfg)
	if err != nil {
		return err
	}
	defer release()
	rc.Host = h
	if cfg.Disk != nil {
		// The disk's writes are tracked for the state transfer to a
		// joining backup.
		rc.Disk = migrate.TrackWrites(cfg.Disk)
		cfg.Disk = rc.Disk
	}
	if rf.plover.on() {
		return ploverPrimary(&rf, rc, cfg)
	}
	rep, err := replication.New(rc)
	if err != nil {
		return err
	}
	cfg.Outputs = rep.Outputs()
	m, err := machine.New(cfg)
	if err != nil {
		return err
	}
	return serveReplica(&rf, rep, func(ctx context.Context, ln net.Listener) (vm.StopReason, error) {
		return rep.RunPrimary(ctx, m, ln)
	})
}

func cmdBackup(args []string) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	var vf vmFlags
	var rf replicaFlags
	fs.StringVar(&vf.disk, "disk", "", "this replica's own copy of the disk image `file` (same size as the primary's; its contents are brought up to date)")
	fs.StringVar(&vf.net, "net", "", "network backend for when this replica goes live: tap:NAME or switch:HOST:PORT")
	fs.StringVar(&vf.mac, "mac", "52:54:00:12:34:56", "the guest's MAC address (must match the primary's)")
	fs.StringVar(&vf.guest, "guest", guests.Default, "the primary's guest ("+strings.Join(guests.Names(), ", ")+"): a Debian guest's shared root disk, and this replica's data disk in the cache unless -disk names one")
	join := fs.String("join", "", "`addr`ess of the primary to protect (its -listen); required")
	execFlag(fs, &vf.exec)
	rf.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ftvm backup -id ID -keys DIR -join ADDR [flags]\n\nJoins a primary, receives its state and follows its log; if the primary dies\nand the arbiter agrees, goes live and continues as the primary.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *join == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("backup needs -join and takes no arguments")
	}
	if vf.net == "" {
		if err := notWith(given(fs), "it must match the primary's guest NIC, and this backup has none without -net", "mac"); err != nil {
			return err
		}
	}
	rc, err := rf.replicaConfig()
	if err != nil {
		return err
	}
	var cfg machine.Config
	h, release, err := vf.replicaHost(&cfg)
	if err != nil {
		return err
	}
	defer release()
	vf.replica = rf.id
	g, err := vf.lookup()
	if err != nil {
		return err
	}
	if g.Debian() {
		if vf.disk, err = vf.dataDisk(g, vf.disk); err != nil {
			return err
		}
	}
	var shared machine.RestoreOptions
	if err := vf.restoreShared(&shared); err != nil {
		return err
	}
	if vf.disk != "" {
		disk, err := host.OpenDisk(vf.disk, false)
		if err != nil {
			return err
		}
		defer disk.Close()
		rc.Disk = migrate.TrackWrites(disk)
	}
	rc.Host = h
	rc.Factory = func(out vm.Outputs) migrate.Factory {
		opts := machine.RestoreOptions{Outputs: out, Exec: vf.exec, SharedDisk: shared.SharedDisk, SharedDiskID: shared.SharedDiskID}
		if rc.Disk != nil {
			opts.Disk = rc.Disk
		}
		build := machine.MigrationFactory(opts)
		return func(state io.Reader, ram []byte) (vm.Migratable, error) {
			e, err := build(state, ram)
			if err != nil {
				return nil, err
			}
			m := e.(*machine.Machine)
			if m.HasNet() != cfg.Net || (cfg.Net && m.MAC() != cfg.MAC) {
				return nil, fmt.Errorf("the primary's guest NIC (%v, %x) does not match this backup's -net/-mac (%v, %x)", m.HasNet(), m.MAC(), cfg.Net, cfg.MAC)
			}
			return m, nil
		}
	}
	if rf.plover.on() {
		return ploverBackup(&rf, rc, *join)
	}
	rep, err := replication.New(rc)
	if err != nil {
		return err
	}
	return serveReplica(&rf, rep, func(ctx context.Context, ln net.Listener) (vm.StopReason, error) {
		return rep.RunBackup(ctx, *join, ln)
	})
}

func cmdKeys(args []string) error {
	fs := flag.NewFlagSet("keys", flag.ContinueOnError)
	dir := fs.String("dir", "", "`dir`ectory for the keys (created; existing certificates are kept)")
	cluster := fs.String("cluster", "ftvm", "cluster `name`")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ftvm keys -dir DIR [-cluster NAME] ID...\n\nCreates the cluster's certificate authority (if missing) and a certificate for\neach replica ID. Copy the directory to every replica host.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() == 0 {
		fs.Usage()
		return errors.New("keys needs -dir and at least one replica id")
	}
	return replication.GenerateKeys(*dir, *cluster, fs.Args()...)
}
