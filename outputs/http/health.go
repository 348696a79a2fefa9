package http

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"

	"github.com/kplagent/agent/internal/redact"
)

// Healthcheck reports whether the destination is reachable without sending
// data: a GET of Config.HealthcheckURL answered with 2xx, or, without one, a
// TCP connection (and TLS handshake for https) to the URL's host.
func (o *Output) Healthcheck(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	if o.health != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.health, nil)
		if err != nil {
			return redact.Error(fmt.Errorf("http: healthcheck: %w", err))
		}
		req.Header = o.header.Clone()
		req.Header.Del("Content-Type")
		resp, err := o.client.Do(req)
		if err != nil {
			return redact.Error(fmt.Errorf("http: healthcheck: %w", err))
		}
		defer drainClose(resp.Body)
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("http: healthcheck: GET %s: %s", redact.URL(req.URL), resp.Status)
		}
		return nil
	}
	addr := o.url.Host
	if o.url.Port() == "" {
		addr = net.JoinHostPort(o.url.Hostname(), map[bool]string{true: "443", false: "80"}[o.url.Scheme == "https"])
	}
	d := &net.Dialer{Timeout: dialTimeout}
	var conn net.Conn
	var err error
	if o.url.Scheme == "https" {
		conf := o.tlsConf.Clone()
		if conf.ServerName == "" {
			conf.ServerName = o.url.Hostname()
		}
		conn, err = (&tls.Dialer{NetDialer: d, Config: conf}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("http: healthcheck: connect %s: %w", addr, err)
	}
	return conn.Close()
}
