package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

// Every metric the agent and its compiled-in types register follows the
// Prometheus naming conventions (promlint: counters end in _total, units
// are base units named as suffixes, help is present), and no gauge takes
// the family name of a counter (agent_socket_connections, a gauge, next
// to agent_socket_connections_total was one: under OpenMetrics both are
// the family agent_socket_connections).
func TestMetricNames_FollowPrometheusConventions(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "app.log")
	require.NoError(t, os.WriteFile(logPath, []byte("one\ntwo\n"), 0o600))
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	cfg, err := ParseConfig("t.yaml", fmt.Appendf(nil, `
state_dir: %s
admin: {listen: "off"}
sources:
  - name: app
    type: file
    file: {include: [%q], start_at: beginning}
  - name: sock
    type: socket
    socket: {listen: "tcp://127.0.0.1:0"}
  - name: in
    type: stdin
    stdin: {max_record_bytes: 512KiB}
  - name: other
    type: file
    file: {include: [%q]}
outputs:
  - name: web
    type: http
    http: {url: %q}
  - name: disk
    type: file
    file: {path: %q}
  - name: kin
    type: kinesis
    kinesis: {stream: s, region: us-east-1, endpoint: "http://127.0.0.1:1"}
  - name: fh
    type: firehose
    firehose: {stream: d, region: us-east-1, endpoint: "http://127.0.0.1:1"}
  - name: kf
    type: kafka
    kafka: {brokers: ["127.0.0.1:1"], topic: t}
flows:
  - name: main
    sources: [app]
    output: web
    failover: disk
  - name: sockets
    sources: [sock]
    output: kin
  - name: stream
    sources: [in]
    output: fh
  - name: topic
    sources: [other]
    output: kf
`, filepath.Join(dir, "state"), logPath, filepath.Join(dir, "other.log"), srv.URL, filepath.Join(dir, "out.ndjson")), noEnv, testComponents)
	require.NoError(t, err)
	t.Setenv("AWS_ACCESS_KEY_ID", "x")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "y")
	a, err := New(cfg, Settings{Components: testComponents, Logger: slog.New(slog.DiscardHandler), Stdin: strings.NewReader("")})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	var fams []*dto.MetricFamily
	require.Eventually(t, func() bool {
		fams, err = a.m.reg.Gather()
		require.NoError(t, err)
		seen := map[string]bool{}
		for _, f := range fams {
			seen[f.GetName()] = true
		}
		// One family of each part: the pipeline, a file and a socket
		// source, the outputs (kafka's are per topic, made at the first produce).
		return seen["agent_records_received_total"] && seen["agent_file_open_descriptors"] && seen["agent_socket_open_connections"] &&
			seen["agent_spool_entries"] && seen["agent_kinesis_records_put_total"] && seen["agent_firehose_records_put_total"] &&
			seen["agent_output_http_request_bytes_limit"]
	}, 20*time.Second, 20*time.Millisecond)

	problems, err := promlint.NewWithMetricFamilies(fams).Lint()
	require.NoError(t, err)
	var ours []string
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "agent_") {
			ours = append(ours, p.Metric+": "+p.Text)
		}
	}
	require.Empty(t, ours)

	counters := map[string]bool{}
	for _, f := range fams {
		if f.GetType() == dto.MetricType_COUNTER {
			counters[strings.TrimSuffix(f.GetName(), "_total")] = true
		}
	}
	for _, f := range fams {
		name := f.GetName()
		if !strings.HasPrefix(name, "agent_") || f.GetType() == dto.MetricType_COUNTER {
			continue
		}
		require.False(t, counters[name], "gauge %s has the family name of counter %s_total", name, name)
		require.False(t, strings.HasSuffix(name, "_total"), "%s is not a counter but ends in _total", name)
	}
}
