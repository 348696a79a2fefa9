package http

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// request is what the test server saw of one request, body decompressed.
type request struct {
	Header http.Header
	Host   string
	Body   []byte
	Gzip   bool
}

// reply scripts one response of the test server.
type reply struct {
	status int
	header map[string]string
	body   string
}

// recorder is an http.Handler that records requests and answers from a
// script (the last entry repeats; empty means 200).
type recorder struct {
	mu      sync.Mutex
	reqs    []request
	script  []reply
	respond func(r request) reply // when set, overrides script
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req := request{Header: r.Header.Clone(), Host: r.Host, Body: raw}
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			req.Body, err = io.ReadAll(zr)
		}
		if err != nil {
			http.Error(w, "bad gzip: "+err.Error(), http.StatusBadRequest)
			return
		}
		req.Gzip = true
	}
	rc.mu.Lock()
	n := len(rc.reqs)
	rc.reqs = append(rc.reqs, req)
	rep := reply{status: http.StatusOK}
	switch {
	case rc.respond != nil:
		rep = rc.respond(req)
	case len(rc.script) > 0:
		rep = rc.script[min(n, len(rc.script)-1)]
	}
	rc.mu.Unlock()
	for k, v := range rep.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(rep.status)
	_, _ = io.WriteString(w, rep.body)
}

func (rc *recorder) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.reqs...)
}

// startServer starts an httptest server with rc; it is closed at cleanup.
func startServer(t testing.TB, rc *recorder) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return srv
}

// newOutput builds an output closed at cleanup (before the server, which was
// registered earlier).
func newOutput(t testing.TB, cfg Config) *Output {
	t.Helper()
	o, err := New("test", cfg, Settings{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, o.Close(context.Background())) })
	return o
}

func config(url string, mods ...func(*Config)) Config {
	c := DefaultConfig()
	c.URL = url
	c.Encoding = "text" // most tests read the records' bytes back
	for _, m := range mods {
		m(&c)
	}
	return c
}

// plainBatch makes a batch of plain (non-aggregated) Kinesis records, record
// i with partition key "pk<i>".
func plainBatch(data ...string) outputs.Batch {
	b := outputs.Batch{Records: make([]aggregate.Aggregate, len(data))}
	for i, d := range data {
		b.Records[i] = aggregate.Aggregate{PartitionKey: fmt.Sprintf("pk%d", i), Body: []byte(d), Count: 1}
	}
	return b
}

// requireRetryable asserts err is retryable: not permanent, not a throttle,
// not partial.
func requireRetryable(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	require.False(t, outputs.IsPermanent(err), "permanent: %v", err)
	var te *outputs.ThrottleError
	require.False(t, errors.As(err, &te), "throttle: %v", err)
	var pe *outputs.PartialError
	require.False(t, errors.As(err, &pe), "partial: %v", err)
}

func requirePartial(t *testing.T, err error, failed ...int) *outputs.PartialError {
	t.Helper()
	var pe *outputs.PartialError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, failed, pe.Failed)
	require.Len(t, pe.Reasons, len(pe.Failed))
	return pe
}

func lines(s ...string) string { return strings.Join(s, "\n") + "\n" }

var fixedNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// discardLogger silences net/http servers' TLS handshake logs.
func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
