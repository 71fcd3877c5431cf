package main

import (
	"crypto/tls"
	"strings"

	"ftvm/arbiter"
)

// dialArbiter connects to the arbiter's etcd endpoints (comma-separated).
// Endpoints written https://host:port are reached with the replica's own
// TLS keys, so a witness given a certificate of the cluster ('ftvm keys
// -dir DIR witness', then 'ftvm-witness -cert DIR/witness.pem -key
// DIR/witness-key.pem -ca DIR/ca.pem') serves the cluster's replicas only.
func dialArbiter(endpoints, cluster string, tc *tls.Config) (arbiter.Arbiter, error) {
	eps := strings.Split(endpoints, ",")
	var opts []arbiter.Option
	for _, ep := range eps {
		if strings.HasPrefix(ep, "https://") {
			opts = append(opts, arbiter.WithTLS(tc))
			break
		}
	}
	return arbiter.DialEtcd(eps, cluster, opts...)
}
