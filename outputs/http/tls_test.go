package http

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue signs a leaf certificate for dnsNames (server) or a client.
func (ca *testCA) issue(t *testing.T, cn string, client bool, dnsNames ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dnsNames,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}

// tlsEnv is an https server whose certificate is valid for "server.test"
// only, optionally requiring client certificates from clientCA.
type tlsEnv struct {
	srv                   *httptest.Server
	caFile                string
	clientCert, clientKey string
	rogueCert, rogueKey   string
	clientCN              chan string
}

func newTLSEnv(t *testing.T, requireClientCert bool) *tlsEnv {
	t.Helper()
	dir := t.TempDir()
	serverCA, clientCA, rogueCA := newTestCA(t, "server-ca"), newTestCA(t, "client-ca"), newTestCA(t, "rogue-ca")
	sCert, sKey := serverCA.issue(t, "server", false, "server.test")
	pair, err := tls.X509KeyPair(sCert, sKey)
	require.NoError(t, err)

	env := &tlsEnv{caFile: writeFile(t, dir, "ca.pem", serverCA.pem), clientCN: make(chan string, 16)}
	cCert, cKey := clientCA.issue(t, "agent-7", true)
	env.clientCert, env.clientKey = writeFile(t, dir, "client.pem", cCert), writeFile(t, dir, "client-key.pem", cKey)
	rCert, rKey := rogueCA.issue(t, "rogue", true)
	env.rogueCert, env.rogueKey = writeFile(t, dir, "rogue.pem", rCert), writeFile(t, dir, "rogue-key.pem", rKey)

	env.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 {
			env.clientCN <- r.TLS.PeerCertificates[0].Subject.CommonName
		}
	}))
	env.srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	if requireClientCert {
		pool := x509.NewCertPool()
		pool.AddCert(clientCA.cert)
		env.srv.TLS.ClientCAs = pool
		env.srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	}
	env.srv.Config.ErrorLog = discardLogger()
	env.srv.StartTLS()
	t.Cleanup(env.srv.Close)
	return env
}

// tls13ClientCertRejected matches a server's refusal of the client
// certificate. In TLS 1.3 the client's handshake is complete before the
// server checks its certificate, so the refusal reaches the client as the
// server's alert ("certificate required") when it reads, or as a broken
// connection when its request write loses the race with the server's close.
const tls13ClientCertRejected = `tls: certificate required|broken pipe|connection reset by peer|use of closed network connection`

func TestSend_TLS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		mtls     bool
		tls      func(e *tlsEnv) TLSConfig
		wantErr  string // "" = delivered
		clientCN string
	}{
		{"trusted via ca_file and server_name", false, func(e *tlsEnv) TLSConfig {
			return TLSConfig{CAFile: e.caFile, ServerName: "server.test"}
		}, "", ""},
		{"system roots do not trust the server", false, func(e *tlsEnv) TLSConfig {
			return TLSConfig{ServerName: "server.test"}
		}, `certificate signed by unknown authority \(the server's certificate is not signed by a CA this host trusts: give the CA's PEM file with tls.ca_file, agent tail --ca-file`, ""},
		{"name mismatch without server_name", false, func(e *tlsEnv) TLSConfig {
			return TLSConfig{CAFile: e.caFile}
		}, `failed to verify certificate: x509: cannot validate certificate for 127.0.0.1.*\(the server's certificate is not for this host name: .*tls.server_name`, ""},
		{"insecure_skip_verify", false, func(e *tlsEnv) TLSConfig {
			return TLSConfig{InsecureSkipVerify: true}
		}, "", ""},
		{"mTLS with a client certificate", true, func(e *tlsEnv) TLSConfig {
			return TLSConfig{CAFile: e.caFile, ServerName: "server.test", CertFile: e.clientCert, KeyFile: e.clientKey}
		}, "", "agent-7"},
		{"mTLS without a client certificate", true, func(e *tlsEnv) TLSConfig {
			return TLSConfig{CAFile: e.caFile, ServerName: "server.test"}
		}, tls13ClientCertRejected, ""},
		// Go sends no certificate the server's CA list does not accept.
		{"mTLS with an untrusted client certificate", true, func(e *tlsEnv) TLSConfig {
			return TLSConfig{CAFile: e.caFile, ServerName: "server.test", CertFile: e.rogueCert, KeyFile: e.rogueKey}
		}, tls13ClientCertRejected, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newTLSEnv(t, tc.mtls)
			o := newOutput(t, config(env.srv.URL, func(c *Config) { c.TLS = tc.tls(env) }))

			err := o.Send(t.Context(), plainBatch("secret"))

			if tc.wantErr != "" {
				requireRetryable(t, err)
				require.Regexp(t, tc.wantErr, err.Error())
				return
			}
			require.NoError(t, err)
			if tc.clientCN != "" {
				require.Equal(t, tc.clientCN, <-env.clientCN)
			}
		})
	}
}

func TestNew_TLSFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newTestCA(t, "ca")
	cert, key := ca.issue(t, "c", true)
	_, otherKey := ca.issue(t, "other", true)
	certFile, otherKeyFile := writeFile(t, dir, "c.pem", cert), writeFile(t, dir, "other-key.pem", otherKey)
	_ = key
	notPEM := writeFile(t, dir, "not.pem", []byte("hello"))
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name string
		tls  TLSConfig
		want []string
	}{
		{"missing ca_file", TLSConfig{CAFile: missing}, []string{"tls.ca_file", missing, "no such file"}},
		{"ca_file without PEM", TLSConfig{CAFile: notPEM}, []string{"tls.ca_file: no PEM certificate found in " + notPEM}},
		{"key does not match cert", TLSConfig{CertFile: certFile, KeyFile: otherKeyFile}, []string{"tls.cert_file " + certFile, "tls.key_file " + otherKeyFile, "private key does not match"}},
		{"missing key", TLSConfig{CertFile: certFile, KeyFile: missing}, []string{missing, "no such file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New("x", config("https://example.test", func(c *Config) { c.TLS = tc.tls }), Settings{})
			require.Error(t, err)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}
