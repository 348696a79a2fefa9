package http

import (
	"crypto/tls"

	"github.com/kplagent/agent/outputs/internal/tlsconf"
)

// loadTLS builds the client TLS configuration, reading the files it names.
func loadTLS(c TLSConfig) (*tls.Config, error) {
	return tlsconf.Load(tlsconf.Files{CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile,
		ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify})
}
