package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestHint_SelfSignedServerNamesTheOption connects to a server whose
// certificate no trusted CA signed, as net/http reports it.
func TestHint_SelfSignedServerNamesTheOption(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}}
	_, err := cl.Get(srv.URL) //nolint:noctx // a test
	require.Error(t, err)
	require.Contains(t, Hint(err), "tls.ca_file, agent tail --ca-file")
	cl.CloseIdleConnections()
}

func TestHint(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"unknown authority, wrapped", fmt.Errorf("http: %w", x509.UnknownAuthorityError{}), "tls.ca_file"},
		{"host name", fmt.Errorf("dial: %w", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "h"}), "tls.server_name"},
		{"expired", x509.CertificateInvalidError{Reason: x509.Expired}, "expired"},
		{"other", fmt.Errorf("connection refused"), ""},
		{"nil", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Hint(tc.err)
			if tc.want == "" {
				require.Empty(t, got)
				return
			}
			require.Contains(t, got, tc.want)
		})
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
