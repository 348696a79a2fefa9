package http

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/kplagent/agent/outputs"
)

// Type is the HTTP output's component type: `type: http` with an `http:`
// block, and `agent tail --to http(s)://...`.
func Type() outputs.Type {
	return outputs.Type{
		Name:          "http",
		DefaultConfig: func() any { c := DefaultConfig(); return &c },
		New: func(name string, cfg any, set outputs.Settings) (outputs.Output, error) {
			c, ok := cfg.(*Config)
			if !ok {
				return nil, fmt.Errorf("http: config is %T, want *http.Config", cfg)
			}
			return New(name, *c, Settings{Logger: set.Logger, UserAgent: set.UserAgent, Metrics: set.Registerer})
		},
		FromURL: fromURL,
		Schemes: []string{"http", "https"},
		TailFlagNames: []string{"http-format", "encoding", "header", "gzip", "compression", "bearer-token", "basic-auth",
			"ca-file", "cert-file", "key-file", "insecure-skip-verify", "timeout"},
	}
}

// fromURL makes the config of `agent tail --to http(s)://...` and the flags
// a URL cannot carry.
func fromURL(u *url.URL, f outputs.TailFlags) (any, error) {
	c := DefaultConfig()
	c.URL = u.String()
	if f.Format != "" {
		c.Format = f.Format
	}
	if f.Encoding != "" {
		c.Encoding = f.Encoding
	}
	switch { // --compression, when given, overrides the older --gzip
	case f.Compression != "":
		c.Compression = f.Compression
	case !f.Gzip:
		c.Compression = CompressionNone
	}
	if len(f.Headers) > 0 {
		c.Headers = f.Headers
	}
	c.Auth.Bearer = f.BearerToken
	if f.BasicAuth != "" {
		user, pass, ok := strings.Cut(f.BasicAuth, ":")
		if !ok {
			return nil, errors.New("--basic-auth: want USER:PASSWORD")
		}
		c.Auth.Basic = &BasicAuth{Username: user, Password: pass}
	}
	c.TLS.CAFile, c.TLS.CertFile, c.TLS.KeyFile = f.CAFile, f.CertFile, f.KeyFile
	c.TLS.InsecureSkipVerify = f.InsecureSkipVerify
	if f.Timeout > 0 {
		c.Timeout = f.Timeout
	}
	return &c, nil
}

// ResolvePaths makes the TLS files relative to base.
func (c *Config) ResolvePaths(base string) {
	for _, p := range []*string{&c.TLS.CAFile, &c.TLS.CertFile, &c.TLS.KeyFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
}

// CheckFiles loads the TLS files as New does: they exist, hold PEM, and the
// key matches the certificate.
func (c *Config) CheckFiles() error {
	if !c.TLS.isSet() && !strings.HasPrefix(strings.ToLower(c.URL), "https://") {
		return nil
	}
	var errs []error
	if c.TLS.CAFile != "" {
		if _, err := loadTLS(TLSConfig{CAFile: c.TLS.CAFile}); err != nil {
			errs = append(errs, err) // "tls.ca_file: ..."
		}
	}
	if c.TLS.CertFile != "" && c.TLS.KeyFile != "" {
		if _, err := loadTLS(TLSConfig{CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile}); err != nil {
			if inner := errors.Unwrap(err); inner != nil {
				err = inner
			}
			errs = append(errs, fmt.Errorf("tls.cert_file: with tls.key_file: %w", err))
		}
	}
	return errors.Join(errs...)
}
