package arbiter

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultCallTimeout bounds a call whose context has no earlier deadline.
const DefaultCallTimeout = 5 * time.Second

// DefaultKeyPrefix is where the views live: cluster c's view is the key
// DefaultKeyPrefix + c.
const DefaultKeyPrefix = "/ftvm/arbiter/"

type options struct {
	tls         *tls.Config
	callTimeout time.Duration
	prefix      string
}

// An Option changes how DialEtcd connects.
type Option func(*options)

// WithTLS connects with TLS, as a witness started with -cert requires
// (see LoadTLS); endpoints may then be given as https://host:port. If c
// sets ServerName, the witness's certificate must carry that name wherever
// the witness is reached (gRPC would otherwise check the endpoint's
// address against it); else it must carry the endpoint's address.
func WithTLS(c *tls.Config) Option { return func(o *options) { o.tls = c } }

// pinServerName returns c made to verify the server's certificate against
// c.ServerName rather than the name gRPC puts there, the dialed address:
// the standard verification, done by VerifyConnection (crypto/tls's own
// recipe for it) with the name fixed.
func pinServerName(c *tls.Config) *tls.Config {
	if c == nil || c.ServerName == "" || c.InsecureSkipVerify {
		return c
	}
	c = c.Clone()
	name, roots := c.ServerName, c.RootCAs
	c.InsecureSkipVerify = true
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("arbiter: the witness presented no certificate")
		}
		inter := x509.NewCertPool()
		for _, ic := range cs.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter})
		return err
	}
	return c
}

// LoadTLS builds the configuration for WithTLS from PEM files: this
// replica's certificate and key, and the CA that signed the witness's
// certificate (ftvm-witness -cert, -key, -ca).
func LoadTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("arbiter: TLS key pair: %w", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("arbiter: TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("arbiter: TLS CA %s holds no PEM certificate", caFile)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// WithCallTimeout sets the bound of a call whose context has no deadline
// (default DefaultCallTimeout); a context's own deadline, earlier or later,
// is kept.
func WithCallTimeout(d time.Duration) Option { return func(o *options) { o.callTimeout = d } }

// WithKeyPrefix stores the views under another prefix (default
// DefaultKeyPrefix), for an external cluster shared with other users.
func WithKeyPrefix(p string) Option { return func(o *options) { o.prefix = p } }

var clusterName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// DialEtcd returns an Arbiter for the replica pair named cluster, kept in
// the etcd cluster at endpoints (host:port or http(s)://host:port; a
// witness's client URL, or the members of an external cluster). It does
// not wait for a connection: an unreachable cluster shows in the errors of
// the calls, and the client keeps reconnecting (at least once a second)
// until Close.
func DialEtcd(endpoints []string, cluster string, opts ...Option) (Arbiter, error) {
	o := options{callTimeout: DefaultCallTimeout, prefix: DefaultKeyPrefix}
	for _, opt := range opts {
		opt(&o)
	}
	if len(endpoints) == 0 {
		return nil, errors.New("arbiter: no etcd endpoints")
	}
	for _, ep := range endpoints {
		if err := checkEndpoint(ep); err != nil {
			return nil, err
		}
	}
	if !clusterName.MatchString(cluster) {
		return nil, fmt.Errorf("arbiter: cluster name %q: want 1 to 128 of A-Z a-z 0-9 . _ - (not starting with . _ -)", cluster)
	}
	if o.callTimeout <= 0 {
		return nil, fmt.Errorf("arbiter: call timeout %v is not positive", o.callTimeout)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: endpoints,
		TLS:       pinServerName(o.tls),
		// Keepalives find a connection whose peer vanished without a
		// reset (a partition, a powered-off host), so that the client
		// moves to another endpoint. etcd refuses pings more often than
		// every 5 s.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		// etcd's client logs every retry at warn level; the errors reach
		// the caller anyway.
		Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{
			// gRPC's default reconnect backoff grows to two minutes, which
			// would keep a replica from a witness that came back long
			// after it did.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: 2 * time.Second,
			}),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("arbiter: etcd client for %s: %w", strings.Join(endpoints, ","), err)
	}
	// etcd's client makes every call wait for a connection (gRPC's
	// WaitForReady), so a call to an unreachable or refusing witness only
	// ever ends with "deadline exceeded". Without it a call fails at once
	// with the reason (connection refused, TLS handshake failed), and
	// retry below does the waiting, so the reason reaches the caller.
	kv := clientv3.NewKVFromKVClient(pb.NewKVClient(cli.ActiveConnection()), nil)
	return &etcdArbiter{cli: cli, kv: kv, key: o.prefix + cluster, timeout: o.callTimeout, endpoints: strings.Join(endpoints, ",")}, nil
}

func checkEndpoint(ep string) error {
	s := ep
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Port() == "" || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("arbiter: endpoint %q: want host:port or http(s)://host:port", ep)
	}
	return nil
}

type etcdArbiter struct {
	cli       *clientv3.Client
	kv        clientv3.KV
	key       string
	timeout   time.Duration
	endpoints string // for errors
}

var _ Arbiter = (*etcdArbiter)(nil)

// bound applies the call timeout and asks etcd to refuse at once, rather
// than queue, a request reaching a member that has no leader: such a
// member cannot answer until quorum returns.
func (a *etcdArbiter) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	cancel := context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		// The call timeout is for callers that gave no deadline; one
		// that did (a test waiting out an election, say) keeps its own.
		ctx, cancel = context.WithTimeout(ctx, a.timeout)
	}
	return clientv3.WithRequireLeader(ctx), cancel
}

// retry runs op until it succeeds, fails for good, or ctx ends. Only
// "unavailable" errors are retried (no connection, no leader, leader
// changed, server-side timeout): etcd did not answer, and every op here is
// safe to repeat. Between attempts it waits 20 ms, doubling to 500 ms.
//
// Each attempt has a deadline of its own, 500 ms doubling with every
// attempt: a request that reached a member whose leader just died waits
// there for etcd's request timeout (7 s with the default election
// timeout), while a retry reaches the new leader as soon as one is
// elected, a second or two later. The doubling keeps a slow but working
// cluster from failing every attempt.
func retry(ctx context.Context, op func(ctx context.Context) error) error {
	wait, limit := 20*time.Millisecond, 500*time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, limit)
		err := op(actx)
		expired := actx.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil || !(expired || unavailable(err)) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, 500*time.Millisecond)
		limit *= 2
	}
}

// unavailable reports an error etcd's client gives when no member
// answered: gRPC's own, or one of etcd's server errors of that class,
// which the client turns into rpctypes.EtcdError values.
func unavailable(err error) bool {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable
	}
	return status.Code(err) == codes.Unavailable
}

func (a *etcdArbiter) Current(ctx context.Context) (View, bool, error) {
	ctx, cancel := a.bound(ctx)
	defer cancel()
	var resp *clientv3.GetResponse
	err := retry(ctx, func(ctx context.Context) (err error) {
		resp, err = a.kv.Get(ctx, a.key) // linearizable: never a stale view
		return err
	})
	if err != nil {
		return View{}, false, fmt.Errorf("arbiter: reading %s from etcd at %s: %w", a.key, a.endpoints, err)
	}
	if len(resp.Kvs) == 0 {
		return View{}, false, nil
	}
	v, err := decode(resp.Kvs[0].Value)
	if err != nil {
		return View{}, false, fmt.Errorf("arbiter: %s: %w", a.key, err)
	}
	return v, true, nil
}

// Swap is one etcd transaction: if the key holds old's exact bytes (or, for
// the zero View, does not exist), put new, else read the key. When the
// read shows new itself, an earlier attempt whose answer was lost stored
// it, and the swap is won. Generations only grow, so a stored view equal to
// new cannot be a later view that happens to look the same.
func (a *etcdArbiter) Swap(ctx context.Context, old, new View) (bool, View, error) {
	if err := checkSwap(old, new); err != nil {
		return false, View{}, fmt.Errorf("arbiter: swap: %w", err)
	}
	ctx, cancel := a.bound(ctx)
	defer cancel()
	cmp := clientv3.Compare(clientv3.CreateRevision(a.key), "=", 0)
	if !old.IsZero() {
		cmp = clientv3.Compare(clientv3.Value(a.key), "=", string(encode(old)))
	}
	put := clientv3.OpPut(a.key, string(encode(new)))
	for {
		var resp *clientv3.TxnResponse
		err := retry(ctx, func(ctx context.Context) (err error) {
			resp, err = a.kv.Txn(ctx).If(cmp).Then(put).Else(clientv3.OpGet(a.key)).Commit()
			return err
		})
		if err != nil {
			return false, View{}, fmt.Errorf("arbiter: swap of %s to %v not confirmed by etcd at %s (it may or may not have been stored): %w", a.key, new, a.endpoints, err)
		}
		if resp.Succeeded {
			return true, new, nil
		}
		kvs := resp.Responses[0].GetResponseRange().GetKvs()
		if len(kvs) == 0 {
			return false, View{}, nil
		}
		cur, err := decode(kvs[0].Value)
		if err != nil {
			return false, View{}, fmt.Errorf("arbiter: %s: %w", a.key, err)
		}
		switch cur {
		case new:
			return true, new, nil
		case old:
			// The stored view is old, in bytes that are not this
			// version's encoding of it (written by another version):
			// compare on the revision just read instead.
			cmp = clientv3.Compare(clientv3.ModRevision(a.key), "=", kvs[0].ModRevision)
			continue
		}
		return false, cur, nil
	}
}

func (a *etcdArbiter) Close() error { return a.cli.Close() }
