// Command ftvm-witness is the third party of a replicated pair: a small
// process running an embedded etcd server, on which the primary and the
// backup race for a compare-and-swap (package arbiter) when they lose contact
// with each other, as VMware FT's replicas race for a test-and-set on shared
// storage. The server is kept out of the ftvm binary because it adds about
// 30 MB; ftvm itself links only etcd's client.
//
// One witness is a cluster of one. Three witnesses started with the same
// -initial-cluster form a cluster that survives the loss of any one of them
// (PLOVER's three-node setup).
//
// With -cert, -key and -ca it serves https, to clients and to the other
// members, and accepts only those presenting a certificate signed by the
// CA: whoever can write the view decides which replica may be live.
//
// Once it serves, the witness prints one line on stdout:
//
//	ftvm-witness: ready name=NAME client=URL peer=URL
//
// (package arbiter/witness parses it), then runs until SIGTERM or SIGINT.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"ftvm/arbiter/witness"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "ftvm-witness: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("ftvm-witness", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: ftvm-witness -data DIR [flags]\n\n"+
			"Runs an embedded etcd server for the replicas' arbitration (package arbiter).\n\n")
		fs.PrintDefaults()
	}
	data := fs.String("data", "", "data directory (created if missing; must be empty or hold this witness's earlier data)")
	name := fs.String("name", "witness", "member name, unique within the cluster")
	listen := fs.String("listen", "127.0.0.1:2379", "client address (host:port or http://host:port); port 0 picks a free one (single member only)")
	peer := fs.String("peer", "127.0.0.1:2380", "peer address for the other members (host:port or http://host:port); port 0 picks a free one (single member only)")
	initialCluster := fs.String("initial-cluster", "", "every member as name=peer-url,... (default: this member alone); ignored once the data directory is initialised")
	logFile := fs.String("log", "", "file for etcd's own log, or \"stderr\" (default: DIR/witness.log)")
	logLevel := fs.String("log-level", "warn", "etcd log level: debug, info, warn, error")
	certFile := fs.String("cert", "", "TLS certificate (PEM) for clients and peers; with -key and -ca, the witness serves https and accepts only clients and members with a certificate signed by -ca")
	keyFile := fs.String("key", "", "private key (PEM) of -cert")
	caFile := fs.String("ca", "", "CA certificate (PEM) that client and peer certificates must be signed by")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *data == "" {
		return errors.New("-data DIR is required")
	}
	switch *logLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("-log-level %q: want debug, info, warn or error", *logLevel)
	}

	secure := *certFile != "" || *keyFile != "" || *caFile != ""
	if secure && (*certFile == "" || *keyFile == "" || *caFile == "") {
		return errors.New("TLS needs all of -cert, -key and -ca")
	}
	for _, f := range []string{*certFile, *keyFile, *caFile} {
		if f == "" {
			continue
		}
		if _, err := os.ReadFile(f); err != nil {
			return fmt.Errorf("TLS: %v", err)
		}
	}
	clientURL, err := parseAddr("-listen", *listen, secure)
	if err != nil {
		return err
	}
	peerURL, err := parseAddr("-peer", *peer, secure)
	if err != nil {
		return err
	}
	if *initialCluster != "" && (clientURL.Port() == "0" || peerURL.Port() == "0") {
		return errors.New("port 0 is only for a single member: the members of -initial-cluster must know each other's addresses in advance")
	}
	if err := checkDataDir(*data); err != nil {
		return err
	}
	// Finding out here which address is busy gives a clearer error than
	// etcd's, and picks the free port that port 0 asks for.
	if err := claim("-listen", clientURL); err != nil {
		return err
	}
	if err := claim("-peer", peerURL); err != nil {
		return err
	}
	cluster := *initialCluster
	if cluster == "" {
		cluster = *name + "=" + peerURL.String()
	}

	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *data
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = cluster
	// A token of our own keeps a witness from joining an unrelated etcd
	// cluster whose members happen to be reachable at the same addresses.
	cfg.InitialClusterToken = "ftvm-witness"
	if secure {
		// Mutual TLS both ways: a replica that can write the view decides
		// which replica may be live, so only holders of a certificate from
		// the pair's CA may talk to the witness, and only such members may
		// join its cluster.
		info := transport.TLSInfo{CertFile: *certFile, KeyFile: *keyFile, TrustedCAFile: *caFile, ClientCertAuth: true}
		cfg.ClientTLSInfo = info
		cfg.PeerTLSInfo = info
	}
	if *logFile == "" {
		*logFile = filepath.Join(*data, logName)
	}
	lg, err := newLogger(*logFile, *logLevel)
	if err != nil {
		return err
	}
	defer lg.Sync()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	// Every swap is a new revision; the arbiter never reads old ones, so
	// keeping a bounded history is enough.
	cfg.AutoCompactionMode = "revision"
	cfg.AutoCompactionRetention = "1000"

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)

	e, err := startEtcd(cfg)
	if err != nil {
		return explainStart(err, *data)
	}
	stop := func() {
		e.Close()
		fmt.Println("ftvm-witness: stopped")
	}

	// A member of a cluster serves only once a quorum of its cluster is up;
	// say so rather than look hung.
	slow := time.NewTimer(5 * time.Second)
	defer slow.Stop()
wait:
	for {
		select {
		case <-e.Server.ReadyNotify():
			break wait
		case <-slow.C:
			fmt.Fprintf(os.Stderr, "ftvm-witness: waiting for a quorum of %s\n", cluster)
		case err := <-e.Err():
			e.Close()
			return fmt.Errorf("etcd server failed: %w", err)
		case s := <-sig:
			fmt.Fprintf(os.Stderr, "ftvm-witness: %v before ready, stopping\n", s)
			stop()
			return nil
		}
	}
	fmt.Printf("%s name=%s client=%s peer=%s\n", witness.ReadyPrefix, *name, clientURL, peerURL)

	select {
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("etcd server failed: %w", err)
	case <-sig:
		stop()
		return nil
	}
}

// logName is etcd's log in the data directory, by default.
const logName = "witness.log"

// newLogger builds etcd's logger: JSON lines at the given level to path (or
// to stderr), and, when they go to a file, the messages etcd dies with
// (panic and fatal) on stderr too, so that a witness never exits without
// saying why where its operator looks.
func newLogger(path, level string) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: %v", level, err)
	}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	stderr := zapcore.Lock(os.Stderr)
	if path == "stderr" {
		return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), stderr, lvl), zap.WithPanicHook(exitHook{}), zap.WithFatalHook(exitHook{})), nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("-log: %v", err)
	}
	return zap.New(zapcore.NewTee(
		zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(f), lvl),
		zapcore.NewCore(zapcore.NewConsoleEncoder(enc), stderr, zapcore.DPanicLevel),
	), zap.WithPanicHook(exitHook{}), zap.WithFatalHook(exitHook{})), nil
}

// exitHook ends the process after etcd logs a panic or a fatal error (a
// damaged database, an unreadable WAL): the message has been written by
// then, and a goroutine trace would only bury it.
type exitHook struct{}

func (exitHook) OnWrite(*zapcore.CheckedEntry, []zapcore.Field) { os.Exit(1) }

// parseAddr accepts host:port or http(s)://host:port, the scheme being
// https exactly when secure. The host must be an IP address the replicas
// can reach, since it is also what the witness advertises to them and to
// the other members.
func parseAddr(flagName, s string, secure bool) (*url.URL, error) {
	scheme := "http"
	if secure {
		scheme = "https"
	}
	if !strings.Contains(s, "://") {
		s = scheme + "://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", flagName, err)
	}
	if u.Scheme != scheme {
		if secure {
			return nil, fmt.Errorf("%s %s: with -cert the witness serves https only", flagName, s)
		}
		return nil, fmt.Errorf("%s %s: https needs -cert, -key and -ca", flagName, s)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return nil, fmt.Errorf("%s %s: want host:port, without a path", flagName, s)
	}
	u.Path = ""
	host, port := u.Hostname(), u.Port()
	if port == "" {
		return nil, fmt.Errorf("%s %s: missing port", flagName, s)
	}
	ip := net.ParseIP(host)
	if ip == nil && host != "localhost" {
		return nil, fmt.Errorf("%s %s: the host must be an IP address", flagName, s)
	}
	if ip != nil && ip.IsUnspecified() {
		return nil, fmt.Errorf("%s %s: the witness advertises this address, so give one the replicas can reach instead of %s", flagName, s, host)
	}
	return u, nil
}

// claim checks that u's address is free by binding it, and replaces port 0
// by the port the kernel picked. The listener is closed again at once for
// etcd to bind; another process could take the port in between, and then
// etcd's own error reports it.
func claim(flagName string, u *url.URL) error {
	l, err := net.Listen("tcp", u.Host)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%s %s: address already in use (another witness or etcd running there?)", flagName, u.Host)
		}
		return fmt.Errorf("%s %s: %v", flagName, u.Host, err)
	}
	u.Host = l.Addr().String()
	return l.Close()
}

// checkDataDir refuses a path that is not a directory, and a directory that
// holds something other than etcd's data: pointing -data at the wrong place
// must not scatter etcd files into it, nor treat it as an empty witness.
func checkDataDir(dir string) error {
	st, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("-data %s: %v", dir, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("-data %s: %v", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("-data %s: not a directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("-data %s: %v", dir, err)
	}
	for _, ent := range entries {
		if ent.Name() == logName {
			continue
		}
		if ent.Name() != "member" {
			return fmt.Errorf("-data %s: not a witness data directory (it holds %q; a witness keeps only member/ and %s there)", dir, ent.Name(), logName)
		}
		if !ent.IsDir() {
			return fmt.Errorf("-data %s: member is not a directory", dir)
		}
	}
	return nil
}

// startEtcd is embed.StartEtcd, with a panic turned into an error: etcd
// v3.7.3 dereferences nil on some damaged WAL files instead of reporting
// them.
func startEtcd(cfg *embed.Config) (e *embed.Etcd, err error) {
	defer func() {
		if r := recover(); r != nil {
			e, err = nil, fmt.Errorf("etcd crashed reading its data: %v", r)
		}
	}()
	return embed.StartEtcd(cfg)
}

// explainStart names the data directory when etcd fails on it, which its
// own messages do not always do.
func explainStart(err error, dir string) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("starting etcd: address already in use: %v", err)
	}
	if _, serr := os.Stat(filepath.Join(dir, "member")); serr == nil {
		return fmt.Errorf("starting etcd on data directory %s (damaged, or from another cluster?): %w", dir, err)
	}
	return fmt.Errorf("starting etcd: %w", err)
}
