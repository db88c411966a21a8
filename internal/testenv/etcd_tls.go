package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// StartEtcdTLS is StartEtcd serving clients over TLS (https://127.0.0.1:N) with
// client-certificate authentication. A CA, a server certificate for 127.0.0.1 and a
// client certificate (ECDSA P-256, valid for a day) are generated into Dir; CACert, Cert
// and Key name the CA and the client's certificate and key.
func StartEtcdTLS(t testing.TB) *Etcd {
	t.Helper()
	e := &Etcd{Dir: t.TempDir()}
	if err := writeEtcdCerts(e); err != nil {
		t.Fatalf("generate etcd certificates: %v", err)
	}
	return startEmbedded(t, e, "https", nil)
}

// writeEtcdCerts generates ca.pem, server.pem/server-key.pem and client.pem/
// client-key.pem in e.Dir and sets e.CACert, e.Cert and e.Key.
func writeEtcdCerts(e *Etcd) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pushdeploy test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		return err
	}
	e.CACert = filepath.Join(e.Dir, "ca.pem")
	if err := writePEM(e.CACert, "CERTIFICATE", caDER); err != nil {
		return err
	}
	leaves := []struct {
		name   string
		usage  x509.ExtKeyUsage
		serial int64
	}{
		{"server", x509.ExtKeyUsageServerAuth, 2},
		{"client", x509.ExtKeyUsageClientAuth, 3},
	}
	for _, l := range leaves {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(l.serial),
			Subject:      pkix.Name{CommonName: "pushdeploy test " + l.name},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{l.usage},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		cert, keyFile := filepath.Join(e.Dir, l.name+".pem"), filepath.Join(e.Dir, l.name+"-key.pem")
		if err := writePEM(cert, "CERTIFICATE", der); err != nil {
			return err
		}
		if err := writePEM(keyFile, "EC PRIVATE KEY", keyDER); err != nil {
			return err
		}
		if l.name == "client" {
			e.Cert, e.Key = cert, keyFile
		}
	}
	return nil
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
