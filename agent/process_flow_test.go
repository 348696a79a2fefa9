package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// A flow with processors, an envelope and a field partition key, end to end
// in once mode: parsed records arrive as objects with the envelope, dropped
// ones are counted (not lost: their offsets pass), lines that do not parse
// arrive unchanged, and the partition key is the field.
func TestAgent_ProcessingStage(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "access.log")
	var lines []string
	for i := range 300 {
		status := 200
		if i%3 == 0 {
			status = 500
		}
		lines = append(lines, fmt.Sprintf(`10.0.0.%d - - [06/Dec/2026:07:05:44 +0000] "GET /item/%d HTTP/1.1" %d 12 "-" "curl/8"`, i%7, i, status))
	}
	lines = append(lines, "not an access line")
	require.NoError(t, os.WriteFile(log, []byte(strings.Join(lines, "\n")+"\n"), 0o600))

	var mu sync.Mutex
	var body bytes.Buffer
	// kafka-rest-v2 carries each record's key: the partition key is visible.
	srv := httptest.NewServer(kafkaSink(t, &mu, &body))
	defer srv.Close()

	cfg, err := ParseConfig("t.yaml", []byte(fmt.Sprintf(`
state_dir: %s
admin: {listen: off}
sources:
  - name: app
    type: file
    file: {include: [%q], start_at: beginning}
outputs:
  - name: sink
    type: http
    http: {url: %q, compression: none, format: kafka-rest-v2}
flows:
  - name: main
    sources: [app]
    output: sink
    partition_key: {field: host, fallback: deterministic}
    envelope: {file: path, offset: pos, source: src}
    processors:
      - log_to_json: {format: apache_combined}
      - drop: {field: response, regex: '^5'}
      - remove: [ident, authuser]
`, filepath.Join(dir, "state"), log, srv.URL)), noEnv, testComponents)
	require.NoError(t, err)
	a, err := New(cfg, Settings{Components: testComponents, Logger: slog.New(slog.DiscardHandler), Once: true})
	require.NoError(t, err)
	require.NoError(t, a.Run(t.Context()))

	mu.Lock()
	defer mu.Unlock()
	var got []struct{ key, value string }
	for _, l := range strings.Split(strings.TrimSpace(body.String()), "\n") {
		var kv struct{ Key, Value string }
		require.NoError(t, json.Unmarshal([]byte(l), &kv))
		got = append(got, struct{ key, value string }{kv.Key, kv.Value})
	}
	require.Len(t, got, 201, "200 records of status 200 and the line that does not parse")
	offset := 0
	for i, l := range lines {
		if i%3 == 0 && i < 300 {
			offset += len(l) + 1
			continue
		}
		var rec map[string]any
		r := got[0]
		got = got[1:]
		require.NoError(t, json.Unmarshal([]byte(r.value), &rec), r.value)
		require.Equal(t, log, rec["path"])
		require.InDelta(t, offset, rec["pos"], 0)
		require.Equal(t, "app", rec["src"])
		if i == 300 {
			require.Equal(t, "not an access line", rec["message"])
			require.Len(t, r.key, 16, "no host field: the deterministic fallback")
		} else {
			require.Equal(t, fmt.Sprintf("10.0.0.%d", i%7), rec["host"])
			require.Equal(t, rec["host"], r.key)
			require.NotContains(t, rec, "ident")
		}
		offset += len(l) + 1
	}
	require.InDelta(t, 100, testutil.ToFloat64(a.m.dropped.WithLabelValues("main", "filtered")), 0)
}

// kafkaSink is a Kafka REST proxy's produce endpoint that writes each
// record as {"key":...,"value":...} (decoded) and a line to body.
func kafkaSink(t *testing.T, mu *sync.Mutex, body *bytes.Buffer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Records []struct{ Key, Value []byte } `json:"records"` // base64 in JSON
		}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &req); err != nil {
			t.Errorf("kafka sink: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var offsets []string
		mu.Lock()
		for i, rec := range req.Records {
			line, _ := json.Marshal(map[string]string{"key": string(rec.Key), "value": string(rec.Value)})
			body.Write(append(line, '\n'))
			offsets = append(offsets, fmt.Sprintf(`{"partition":0,"offset":%d}`, i))
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/vnd.kafka.v2+json")
		_, _ = fmt.Fprintf(w, `{"offsets":[%s]}`, strings.Join(offsets, ","))
	})
}
