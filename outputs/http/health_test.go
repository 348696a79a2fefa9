package http

import (
	"net/http"
	"testing"

	"github.com/kplagent/agent/internal/testport"
	"github.com/stretchr/testify/require"
)

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	srv := startServerFunc(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			require.Equal(t, http.MethodGet, r.Method)
			require.Equal(t, "Bearer tok", r.Header.Get("Authorization"))
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	closedAddr := testport.Addr(t) // nothing listens there
	tlsEnv := newTLSEnv(t, false)

	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"health url 2xx", config(srv.URL, func(c *Config) { c.HealthcheckURL, c.Auth.Bearer = srv.URL+"/health", "tok" }), ""},
		{"health url 503", config(srv.URL, func(c *Config) { c.HealthcheckURL = srv.URL + "/down" }), "503 Service Unavailable"},
		{"connect only", config(srv.URL + "/ingest"), ""},
		{"connect refused", config("http://" + closedAddr), "connection refused"},
		{"connect with TLS handshake", config(tlsEnv.srv.URL, func(c *Config) { c.TLS = TLSConfig{CAFile: tlsEnv.caFile, ServerName: "server.test"} }), ""},
		{"TLS handshake fails", config(tlsEnv.srv.URL), "certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := newOutput(t, tc.cfg)
			err := o.Healthcheck(t.Context())
			if tc.wantErr == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tc.wantErr)
			}
		})
	}
}
