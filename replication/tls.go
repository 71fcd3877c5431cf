package replication

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// Replicas authenticate each other with mutual TLS 1.3: a cluster has its
// own certificate authority, and every replica a certificate signed by it
// whose common name is the replica's id. A host without a certificate of
// the cluster can neither send a backup a log nor pose as a backup to a
// primary; TLS's record MACs make a log altered in transit a connection
// error rather than a silent divergence.

// serverName is the DNS name every replica certificate carries, so that a
// replica can be reached at any address (namespaces, loopback) and still
// be verified against the cluster's authority.
const serverName = "ftvm-replica"

// GenerateKeys makes sure dir holds a certificate authority for cluster
// (ca.pem, ca-key.pem; created if missing) and issues a certificate for each
// replica id (ID.pem, ID-key.pem). Nothing is overwritten: an id that
// already has a certificate is an error, so running it again adds replicas
// to the same cluster (a new backup) without invalidating the others.
func GenerateKeys(dir, cluster string, ids ...string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caCert, caKey, err := loadOrCreateCA(dir, cluster)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, id := range ids {
		if err := validID(id); err != nil {
			return err
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: id, Organization: caCert.Subject.Organization},
			DNSNames:     []string{serverName},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.AddDate(10, 0, 0),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, id+".pem"), "CERTIFICATE", der); err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, id+"-key.pem"), "EC PRIVATE KEY", kb); err != nil {
			return err
		}
	}
	return nil
}

func loadOrCreateCA(dir, cluster string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if cb, err := os.ReadFile(certPath); err == nil {
		kb, err := os.ReadFile(keyPath)
		if err != nil {
			return nil, nil, fmt.Errorf("%s exists but its key cannot be read: %w", certPath, err)
		}
		cblk, _ := pem.Decode(cb)
		kblk, _ := pem.Decode(kb)
		if cblk == nil || kblk == nil {
			return nil, nil, fmt.Errorf("%s or %s is not PEM", certPath, keyPath)
		}
		cert, err := x509.ParseCertificate(cblk.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", certPath, err)
		}
		key, err := x509.ParseECPrivateKey(kblk.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", keyPath, err)
		}
		if want := "ftvm " + cluster; len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != want {
			return nil, nil, fmt.Errorf("%s is the authority of %v, not of cluster %q", certPath, cert.Subject.Organization, cluster)
		}
		return cert, key, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "ftvm cluster " + cluster + " CA", Organization: []string{"ftvm " + cluster}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePEM(keyPath, "EC PRIVATE KEY", kb); err != nil {
		return nil, nil, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func writePEM(path, typ string, der []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// validID accepts replica ids that are safe as file names and log fields.
func validID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("replica id %q: must be 1 to 64 characters", id)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') || id[0] == '.' {
			return fmt.Errorf("replica id %q: use letters, digits, '-', '_' and '.'", id)
		}
	}
	return nil
}

// LoadTLS returns the mutual-TLS configuration of replica id from the keys
// in dir. The same configuration serves as server (a primary accepting a
// backup) and client (a backup joining a primary).
func LoadTLS(dir, id string) (*tls.Config, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, fmt.Errorf("replica keys: %w (create them with 'ftvm keys')", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("replica keys: %s holds no certificate", filepath.Join(dir, "ca.pem"))
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, id+".pem"), filepath.Join(dir, id+"-key.pem"))
	if err != nil {
		return nil, fmt.Errorf("replica keys for %q: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, err
	}
	if leaf.Subject.CommonName != id {
		return nil, fmt.Errorf("replica keys: %s.pem is the certificate of %q", id, leaf.Subject.CommonName)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ServerName:   serverName,
	}, nil
}

// peerID is the replica id a verified TLS peer certificate names.
func peerID(c *tls.Conn) (string, error) {
	st := c.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return "", errors.New("peer presented no certificate")
	}
	return st.PeerCertificates[0].Subject.CommonName, nil
}
