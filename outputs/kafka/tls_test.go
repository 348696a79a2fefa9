package kafka

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kplagent/agent/outputs"
)

// pki is a throwaway CA with a broker certificate for "kafka.test" and a
// client certificate, written as PEM files.
type pki struct {
	caFile, clientCert, clientKey string
	pool                          *x509.CertPool
	server                        tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	issue := func(serial int64, usage x509.ExtKeyUsage, dns ...string) (certPEM, keyPEM []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"}, DNSNames: dns,
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		require.NoError(t, err)
		kder, err := x509.MarshalECPrivateKey(key)
		require.NoError(t, err)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o600))
		return p
	}
	p := &pki{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.caFile = write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	sc, sk := issue(2, x509.ExtKeyUsageServerAuth, "kafka.test")
	p.server, err = tls.X509KeyPair(sc, sk)
	require.NoError(t, err)
	cc, ck := issue(3, x509.ExtKeyUsageClientAuth)
	p.clientCert, p.clientKey = write("client.pem", cc), write("client-key.pem", ck)
	return p
}

func TestSend_TLSWithClientCertificate(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	c := startCluster(t, 1, kfake.TLS(&tls.Config{
		Certificates: []tls.Certificate{p.server},
		ClientCAs:    p.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}))
	good := TLSConfig{Enabled: true, CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey, ServerName: "kafka.test"}
	o := newOutput(t, testConfig(c, func(cfg *Config) { cfg.TLS = good }))
	deliver(t, o, lineBatches(t, 0, 50, 10, 10)[0], time.Now().Add(30*time.Second))

	tests := []struct {
		name string
		tls  TLSConfig
		want string // in the error: what to set
	}{
		{"wrong server name", TLSConfig{Enabled: true, CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey, ServerName: "other.test"},
			"(the server's certificate is not for this host name: connect by a name it holds, or set tls.server_name to one)"},
		{"system roots", TLSConfig{Enabled: true, CertFile: p.clientCert, KeyFile: p.clientKey, ServerName: "kafka.test"},
			"certificate signed by unknown authority (the server's certificate is not signed by a CA this host trusts: give the CA's PEM file with tls.ca_file, agent tail --ca-file"},
		{"no client certificate", TLSConfig{Enabled: true, CAFile: p.caFile, ServerName: "kafka.test"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := newOutput(t, testConfig(c, func(cfg *Config) { cfg.TLS, cfg.SendTimeout = tc.tls, time.Second }))
			err := o.Send(t.Context(), lineBatches(t, 0, 5, 10, 10)[0])
			require.Error(t, err)
			require.False(t, outputs.IsPermanent(err))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestNew_TLSFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "x.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("nope"), 0o600))
	for _, tc := range []struct {
		tls  TLSConfig
		want string
	}{
		{TLSConfig{Enabled: true, CAFile: filepath.Join(dir, "missing.pem")}, "tls.ca_file"},
		{TLSConfig{Enabled: true, CAFile: notPEM}, "no PEM certificate"},
		{TLSConfig{Enabled: true, CertFile: notPEM, KeyFile: notPEM}, "tls.cert_file"},
	} {
		cfg := DefaultConfig()
		cfg.Brokers, cfg.Topic, cfg.TLS = []string{"127.0.0.1:1"}, "t", tc.tls
		_, err := New("k", cfg, Settings{})
		require.ErrorContains(t, err, tc.want)
	}
}
