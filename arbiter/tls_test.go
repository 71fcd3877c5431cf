package arbiter_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ftvm/arbiter"
	"ftvm/arbiter/witness"
)

// pki is a CA and one certificate it signed, usable as server and client,
// as PEM files.
type pki struct{ ca, cert, key string }

func newPKI(t *testing.T, name string) pki {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := pki{filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")}
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{p.ca, "CERTIFICATE", caDER}, {p.cert, "CERTIFICATE", der}, {p.key, "PRIVATE KEY", keyDER}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// A cluster started with -cert serves only clients with a certificate from
// its CA, over TLS, and its members talk to each other over TLS too (a
// three-member cluster that elects a leader and commits shows it).
func TestTLS(t *testing.T) {
	good, foreign := newPKI(t, "pair"), newPKI(t, "intruder")
	names := []string{"w1", "w2", "w3"}
	var listen, peer, cluster []string
	for _, n := range names {
		listen = append(listen, freePort(t))
		peer = append(peer, freePort(t))
		cluster = append(cluster, n+"=https://"+peer[len(peer)-1])
	}
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := startWitness(t, witness.Config{Name: n, Listen: listen[i], Peer: peer[i], InitialCluster: strings.Join(cluster, ","),
				CertFile: good.cert, KeyFile: good.key, CAFile: good.ca})
			if !strings.HasPrefix(w.ClientURL, "https://") {
				t.Errorf("a TLS witness announces %s", w.ClientURL)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var secure []string
	for _, l := range listen {
		secure = append(secure, "https://"+l)
	}

	cfg, err := arbiter.LoadTLS(good.cert, good.key, good.ca)
	if err != nil {
		t.Fatal(err)
	}
	a := dial(t, secure, arbiter.WithTLS(cfg))
	v1 := arbiter.View{}.Next("a", "b")
	mustSwap(t, a, arbiter.View{}, v1)

	// The intruder's certificate is refused although it trusts the
	// witness's CA; no certificate at all, or no TLS, fails too.
	intruder, err := arbiter.LoadTLS(foreign.cert, foreign.key, good.ca)
	if err != nil {
		t.Fatal(err)
	}
	noCert := &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	wrongName := cfg.Clone()
	wrongName.ServerName = "impostor"
	for _, c := range []struct {
		what string
		eps  []string
		opts []arbiter.Option
	}{
		{"a foreign client certificate", secure, []arbiter.Option{arbiter.WithTLS(intruder)}},
		{"no client certificate", secure, []arbiter.Option{arbiter.WithTLS(noCert)}},
		{"no TLS", listen, nil},
		{"a server name the witness's certificate lacks", secure, []arbiter.Option{arbiter.WithTLS(wrongName)}},
	} {
		b := dial(t, c.eps, c.opts...)
		expectFailure(t, "Swap with "+c.what, time.Second, func(ctx context.Context) (bool, error) {
			won, _, err := b.Swap(ctx, v1, v1.Next("intruder", ""))
			return won, err
		})
	}
	if got := mustCurrent(t, a, 10*time.Second); got != v1 {
		t.Fatalf("the view is %v after the refused swaps, want %v", got, v1)
	}
	// A server name the certificate has is checked instead of the address.
	named := cfg.Clone()
	named.ServerName = "localhost"
	mustSwap(t, dial(t, secure, arbiter.WithTLS(named)), v1, v1.Next("b", ""))

	if _, err := arbiter.LoadTLS(good.cert, good.key, good.key); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("LoadTLS with a key as CA: %v", err)
	}
}
