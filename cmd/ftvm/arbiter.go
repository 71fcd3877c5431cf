package main

import (
	"context"
	"crypto/tls"
	"strings"

	"ftvm/arbiter"
	"ftvm/replication"
)

// dialArbiter connects to the arbiter's etcd endpoints (comma-separated).
// Endpoints written https://host:port are reached with the replica's own
// TLS keys, so a witness given a certificate of the cluster ('ftvm keys
// -dir DIR witness', then 'ftvm-witness -cert DIR/witness.pem -key
// DIR/witness-key.pem -ca DIR/ca.pem') serves the cluster's replicas only.
func dialArbiter(endpoints, cluster string, tc *tls.Config) (replication.Arbiter, error) {
	eps := strings.Split(endpoints, ",")
	var opts []arbiter.Option
	for _, ep := range eps {
		if strings.HasPrefix(ep, "https://") {
			opts = append(opts, arbiter.WithTLS(tc))
			break
		}
	}
	a, err := arbiter.DialEtcd(eps, cluster, opts...)
	if err != nil {
		return nil, err
	}
	return etcdArbiter{a}, nil
}

// etcdArbiter adapts package arbiter's Arbiter to package replication's
// interface; the two View types have the same fields.
type etcdArbiter struct{ a arbiter.Arbiter }

func (e etcdArbiter) Current(ctx context.Context) (replication.View, bool, error) {
	v, ok, err := e.a.Current(ctx)
	return replication.View(v), ok, err
}

func (e etcdArbiter) Swap(ctx context.Context, old, new replication.View) (bool, replication.View, error) {
	won, cur, err := e.a.Swap(ctx, arbiter.View(old), arbiter.View(new))
	return won, replication.View(cur), err
}
