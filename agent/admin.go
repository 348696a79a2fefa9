package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Admin serves the operator's endpoints for the pipeline attached to it:
//
//	GET  /metrics  Prometheus metrics
//	GET  /healthz  200 while the process serves requests (liveness: restart
//	               the agent when this fails)
//	GET  /readyz   200 while the pipeline runs and delivers (a reload keeps
//	               it ready); 503 while it starts or stops, or when for longer than
//	               admin.not_ready_after a flow's outputs have all been
//	               failing or its full spool blocks its sources (readiness:
//	               alert or route around it; restarting does not help, the
//	               agent is waiting correctly and keeps what it read). A
//	               stalled output (a send waiting long for its answer) is
//	               named in the body of the 200, one line each; with
//	               ?fail_stalled=D it is a 503 once the destination has
//	               not answered for longer than D (StalledOutput.Waiting)
//	GET  /status   the pipeline's state as JSON (agent status, agent top)
//	GET  /tap?flow=NAME&rate=N  a sample of the records entering the flow,
//	               at most N a second (default 10), as NDJSON (agent tap)
//	POST /reload   re-read the configuration (agent reload), when the
//	               owner set a reload function
//
// `agent run` starts one and keeps it across configuration reloads
// (Settings.Admin); an agent without one starts its own for its lifetime.
type Admin struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
	quit chan struct{} // closed when the endpoint closes: streams end
	log  *slog.Logger

	cur     atomic.Pointer[Agent]
	reload  atomic.Pointer[func() (string, error)]
	reg     *prometheus.Registry // the admin's own metrics: they outlive pipelines
	reloads *prometheus.CounterVec

	closeOnce sync.Once
}

// AdminHeader is set on every answer of the admin endpoint: the commands
// that ask it (agent status, top, tap, reload) tell an agent from another
// program listening at the address by it.
const AdminHeader = "Agent-Admin"

// StartAdmin listens on listen (HOST:PORT) and serves the endpoints.
func StartAdmin(listen string, log *slog.Logger) (*Admin, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", listen)
	if errors.Is(err, syscall.EADDRINUSE) {
		// Most often the same configuration run twice: say how to ask
		// the one that runs.
		return nil, fmt.Errorf("admin: listen on %s: %w (is an agent running with this configuration already? agent status --admin %s asks whatever listens there; admin.listen chooses another address)", listen, err, listen)
	}
	if err != nil {
		return nil, fmt.Errorf("admin: listen on %s: %w", listen, err)
	}
	ad := &Admin{ln: ln, done: make(chan struct{}), quit: make(chan struct{}), log: log, reg: prometheus.NewRegistry()}
	ad.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_config_reloads_total",
		Help: "Configuration reloads (SIGHUP, agent reload) by result: ok, or failed (the running configuration stays)."}, []string{"result"})
	ad.reloads.WithLabelValues("ok")
	ad.reloads.WithLabelValues("failed")
	ad.reg.MustRegister(ad.reloads)

	pipeline := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		if a := ad.cur.Load(); a != nil {
			return a.m.reg.Gather()
		}
		return nil, nil
	})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(prometheus.Gatherers{ad.reg, pipeline},
		promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		// fail_stalled=D (opt-in) fails readiness when a stalled output's
		// destination has not answered for longer than D; by default a stalled output is named
		// in the body of a 200: a slow destination is no reason to
		// restart or route around a healthy agent.
		var failStalled time.Duration = -1
		if v := r.URL.Query().Get("fail_stalled"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				http.Error(w, fmt.Sprintf("fail_stalled: want a duration such as 0s or 1m, got %q", v), http.StatusBadRequest)
				return
			}
			failStalled = d
		}
		a := ad.cur.Load()
		if a == nil {
			http.Error(w, "not ready: no pipeline (starting or reloading)", http.StatusServiceUnavailable)
			return
		}
		now := time.Now()
		if why := a.notReady(now); why != "" {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		stalled := a.stalled(now)
		for _, s := range stalled {
			if failStalled >= 0 && s.Waiting > failStalled {
				http.Error(w, "not ready: "+s.String(), http.StatusServiceUnavailable)
				return
			}
		}
		var b strings.Builder
		b.WriteString("ready\n")
		for _, s := range stalled {
			b.WriteString(s.String())
			b.WriteString("\n")
		}
		_, _ = w.Write([]byte(b.String()))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		a := ad.cur.Load()
		if a == nil {
			http.Error(w, "no pipeline (starting or reloading)", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.Status())
	})
	mux.HandleFunc("GET /tap", func(w http.ResponseWriter, r *http.Request) {
		a := ad.cur.Load()
		if a == nil {
			http.Error(w, "no pipeline (starting or reloading)", http.StatusServiceUnavailable)
			return
		}
		a.serveTap(w, r, ad.quit)
	})
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, _ *http.Request) {
		f := ad.reload.Load()
		if f == nil {
			http.Error(w, "this agent cannot reload its configuration", http.StatusNotImplemented)
			return
		}
		note, err := (*f)()
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		if note != "" {
			note += "\n"
		}
		_, _ = w.Write([]byte("reloaded\n" + note))
	})
	// Every answer says it comes from an agent, so that agent status,
	// top, tap and reload pointed at another program's port say so
	// instead of printing its "404 File not found".
	marked := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(AdminHeader, "1")
		mux.ServeHTTP(w, r)
	})
	ad.srv = &http.Server{Handler: marked, ReadHeaderTimeout: 10 * time.Second}
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
func (ad *Admin) Addr() string { return ad.ln.Addr().String() }

// SetReload makes POST /reload call f, which returns once the reload is
// done (with a note for the operator, or "") or refused (the error says
// why; the running pipeline stays).
func (ad *Admin) SetReload(f func() (string, error)) { ad.reload.Store(&f) }

// CountReload counts a reload by result: "ok" or "failed".
func (ad *Admin) CountReload(result string) { ad.reloads.WithLabelValues(result).Inc() }

// attach makes a the pipeline the endpoints describe; detach undoes it.
func (ad *Admin) attach(a *Agent) { ad.cur.Store(a) }
func (ad *Admin) detach(a *Agent) { ad.cur.CompareAndSwap(a, nil) }

// Close stops the endpoint (requests in progress get up to 2 s).
func (ad *Admin) Close() { ad.close(time.Time{}) }

// close stops the endpoint, letting requests in progress finish for up to
// 2 s, and no later than by when that is set (shutdown's deadline).
func (ad *Admin) close(by time.Time) {
	ad.closeOnce.Do(func() {
		deadline := time.Now().Add(2 * time.Second)
		if !by.IsZero() && by.Before(deadline) {
			deadline = by
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		close(ad.quit)
		if err := ad.srv.Shutdown(ctx); err != nil {
			_ = ad.srv.Close() // cut what did not finish
		}
		<-ad.done
	})
}
