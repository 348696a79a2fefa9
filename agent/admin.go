package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// admin serves the operator's endpoints:
//
//	GET /metrics  Prometheus metrics
//	GET /healthz  200 while the process serves requests (liveness: restart
//	              the agent when this fails)
//	GET /readyz   200 while the pipeline runs and delivers; 503 while it
//	              starts or stops, or when for longer than
//	              admin.not_ready_after a flow's outputs have all been
//	              failing or its full spool blocks its sources (readiness:
//	              alert or route around it; restarting does not help, the
//	              agent is waiting correctly and keeps what it read)
//	GET /status   the pipeline's state as JSON (agent status, agent top)
//	GET /tap?flow=NAME&rate=N  a sample of the records entering the flow,
//	              at most N a second (default 10), as NDJSON (agent tap)
type admin struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
	quit chan struct{} // closed when the endpoint closes: streams end
}

func startAdmin(listen string, a *Agent, log *slog.Logger) (*admin, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("admin: listen on %s: %w", listen, err)
	}
	ad := &admin{ln: ln, done: make(chan struct{}), quit: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.m.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if why := a.notReady(time.Now()); why != "" {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.Status())
	})
	mux.HandleFunc("GET /tap", func(w http.ResponseWriter, r *http.Request) { a.serveTap(w, r, ad.quit) })
	ad.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(ad.done)
		if err := ad.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin endpoint stopped", "error", err)
		}
	}()
	log.Info("admin endpoint listening", "address", ln.Addr().String())
	return ad, nil
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
	close(a.quit)
	if err := a.srv.Shutdown(ctx); err != nil {
		_ = a.srv.Close() // cut what did not finish
	}
	<-a.done
}
