package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent"
	"github.com/kplagent/agent/aggregate"
)

// rawLimitSink takes format raw bodies (one Kinesis record each) of at most
// limit bytes, answering 413 to larger ones, and counts the numbered lines
// of the user records it decodes from them.
type rawLimitSink struct {
	limit int
	mu    sync.Mutex
	lines map[int]int
	other []string
	too   int
	aggs  int // accepted bodies that were KPL aggregates
}

func (s *rawLimitSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(body) > s.limit {
		s.too++
		http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
		return
	}
	recs, err := aggregate.DecodeKinesisRecord(r.Header.Get("X-Partition-Key"), r.Header.Get("X-Explicit-Hash-Key"), body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if aggregate.IsAggregated(body) {
		s.aggs++
	}
	for _, u := range recs {
		if n, ok := lineNumber(u.Data); ok {
			s.lines[n]++
		} else {
			s.other = append(s.other, string(u.Data))
		}
	}
}

func TestTailOnce_Raw413SplitsAggregates_OnlyTheRecordTooLargeAloneIsDeadLettered(t *testing.T) {
	t.Parallel()
	const n = 2000
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, n/2, 60)
	big := "BIG " + strings.Repeat("z", 3000) + "\n"
	f, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(big)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	writeLog(t, log, n/2, n, 60)
	s := &rawLimitSink{limit: 2000, lines: map[int]int{}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	state := filepath.Join(dir, "state")

	_, errOut, code := runBin(t, "tail", "--once", log, "--to", srv.URL+"/ingest", "--http-format", "raw",
		"--state-dir", state, "--gzip=false")

	require.Equal(t, 1, code, "a record was dead-lettered: %s", errOut)
	s.mu.Lock()
	require.Positive(t, s.too, "the server refused the aggregates")
	require.Positive(t, s.aggs, "the parts are KPL aggregates")
	require.Empty(t, s.other)
	require.Len(t, s.lines, n)
	for i := range n {
		require.Equal(t, 1, s.lines[i], "line %d", i)
	}
	s.mu.Unlock()
	out, errOut, code := runBin(t, "dead-letter", "--state-dir", state, "--json")
	require.Equal(t, 0, code, errOut)
	recs := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, recs, 1, "only the oversized record")
	var r agent.DeadLetterRecord
	require.NoError(t, json.Unmarshal([]byte(recs[0]), &r))
	require.Equal(t, strings.TrimSuffix(big, "\n"), string(r.Data))
	require.Contains(t, r.Reason, "413")
}
