package main

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"testing"
	"time"

	"ftvm/arbiter/witness"
	"ftvm/internal/testsupport"
	"ftvm/replication"
)

// The replicas' arbiter is a real witness, plain or with a certificate of
// the cluster made by 'ftvm keys'; a replica of another cluster is refused.
func TestDialArbiter(t *testing.T) {
	dir := t.TempDir()
	bin := testsupport.Witness(t)
	keys, other := filepath.Join(dir, "keys"), filepath.Join(dir, "other")
	if err := replication.GenerateKeys(keys, "ftvm", "a", "witness"); err != nil {
		t.Fatal(err)
	}
	if err := replication.GenerateKeys(other, "ftvm", "a"); err != nil {
		t.Fatal(err)
	}
	tcA, err := replication.LoadTLS(keys, "a")
	if err != nil {
		t.Fatal(err)
	}
	tcIntruder, err := replication.LoadTLS(other, "a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plain, err := witness.Start(ctx, witness.Config{Binary: bin, Data: filepath.Join(dir, "w1")})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Kill()
	secure, err := witness.Start(ctx, witness.Config{Binary: bin, Data: filepath.Join(dir, "w2"),
		CertFile: filepath.Join(keys, "witness.pem"), KeyFile: filepath.Join(keys, "witness-key.pem"), CAFile: filepath.Join(keys, "ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	defer secure.Kill()

	v1 := replication.View{Generation: 1, Primary: "a"}
	for _, c := range []struct {
		what, endpoints string
		tc              *tls.Config
		win             bool
	}{
		{"plain", plain.Config().Listen, tcA, true},
		{"TLS with the cluster's keys", secure.ClientURL, tcA, true},
		{"TLS with another cluster's keys", secure.ClientURL, tcIntruder, false},
	} {
		arb, err := dialArbiter(c.endpoints, "pair", c.tc)
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
		won, cur, err := arb.Swap(sctx, replication.View{}, v1)
		scancel()
		if c.win && (err != nil || !won || cur != v1) {
			t.Errorf("%s: Swap = won %v, cur %v, err %v; want a win", c.what, won, cur, err)
		}
		if !c.win && (err == nil || won) {
			t.Errorf("%s: Swap = won %v, err %v; want an error", c.what, won, err)
		}
	}
	if _, err := dialArbiter("127.0.0.1", "pair", nil); err == nil {
		t.Error("dialArbiter accepted an endpoint without a port")
	}
}
