package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// admin serves /metrics (Prometheus), /healthz (the process is up) and
// /readyz (the pipeline is running and not shutting down).
type admin struct {
	ln    net.Listener
	srv   *http.Server
	ready atomic.Bool
	done  chan struct{}
}

func startAdmin(listen string, m *metrics, log *slog.Logger) (*admin, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("admin: listen on %s: %w", listen, err)
	}
	a := &admin{ln: ln, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin endpoint stopped", "error", err)
		}
	}()
	log.Info("admin endpoint listening", "address", ln.Addr().String())
	return a, nil
}

// Addr is the address the admin endpoint listens on.
func (a *admin) Addr() string { return a.ln.Addr().String() }

// close stops the endpoint, letting requests in progress finish for up to
// 2 s, and no later than by when that is set (shutdown's deadline).
func (a *admin) close(by time.Time) {
	deadline := time.Now().Add(2 * time.Second)
	if !by.IsZero() && by.Before(deadline) {
		deadline = by
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		_ = a.srv.Close() // cut what did not finish
	}
	<-a.done
}
