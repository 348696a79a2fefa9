package agent

import (
	"bufio"
	"bytes"
	"errors"
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

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source/file"
	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
	httpout "github.com/kplagent/agent/outputs/http"
)

// lineServer receives ndjson and counts each line; reject, when set,
// answers 400 to requests containing it.
type lineServer struct {
	mu     sync.Mutex
	got    map[string]int
	reject string
}

func (s *lineServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if s.reject != "" && bytes.Contains(body, []byte(s.reject)) {
		http.Error(w, "still bad", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		s.got[sc.Text()]++
	}
}

func replayConfig(t *testing.T, dir, url string) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.StateDir = dir
	cfg.Admin.Listen = "off"
	fc := file.DefaultConfig()
	fc.Include = []string{filepath.Join(dir, "*.log")}
	cfg.Sources = []SourceConfig{{Name: "app", Type: "file", Config: &fc}}
	hc := httpout.DefaultConfig()
	hc.URL, hc.Compression = url, httpout.CompressionNone
	hc.Encoding = "text" // the lines are read back as they are
	cfg.Outputs = []OutputConfig{{Name: "sink", Type: "http", Config: &hc}}
	fl := DefaultFlowConfig()
	fl.Name, fl.Sources, fl.Output = "main", []string{"app"}, "sink"
	cfg.Flows = []FlowConfig{fl}
	require.NoError(t, cfg.Validate())
	return cfg
}

// deadLetterSome writes n records of flow to the state dir's dead-letter file.
func deadLetterSome(t *testing.T, dir, flow, prefix string, n int) {
	t.Helper()
	d := openDeadLetter(dir)
	defer d.close()
	for i := range n {
		require.NoError(t, d.writeRecord(flow, "sink", "rejected: 400 schema mismatch", "pk", "", fmt.Appendf(nil, "%s%d", prefix, i)))
	}
}

func TestReplay_DeliversEverythingAndEmptiesTheFiles(t *testing.T) {
	dir := t.TempDir()
	srv := &lineServer{got: map[string]int{}}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	cfg := replayConfig(t, dir, hs.URL)
	// A rotated file and the active one.
	d := openDeadLetter(dir)
	d.configure(DeadLetterConfig{MaxBytes: 4 << 10, MaxFiles: 10}, nil, nil)
	for i := range 120 {
		require.NoError(t, d.writeRecord("main", "sink", "rejected", "pk", "", fmt.Appendf(nil, "r%d", i)))
	}
	require.NoError(t, d.close())
	rotated, err := rotatedFiles(dir)
	require.NoError(t, err)
	require.NotEmpty(t, rotated)

	res, err := ReplayDeadLetters(t.Context(), cfg, Settings{Components: testComponents}, ReplayOptions{BatchRecords: 7})
	require.NoError(t, err)
	require.Equal(t, ReplayResult{Delivered: 120}, res)
	for i := range 120 {
		require.Equal(t, 1, srv.got[fmt.Sprintf("r%d", i)], i)
	}
	parts, err := DeadLetterFiles(dir)
	require.NoError(t, err)
	require.Empty(t, parts)
}

func TestReplay_RejectedAgainAndOtherFlowsStay(t *testing.T) {
	dir := t.TempDir()
	srv := &lineServer{got: map[string]int{}, reject: "bad"}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	cfg := replayConfig(t, dir, hs.URL)
	deadLetterSome(t, dir, "main", "ok", 5)
	deadLetterSome(t, dir, "main", "bad", 2)
	deadLetterSome(t, dir, "gone", "other", 3) // a flow the config no longer has

	res, err := ReplayDeadLetters(t.Context(), cfg, Settings{Components: testComponents}, ReplayOptions{})
	require.NoError(t, err)
	require.Equal(t, ReplayResult{Delivered: 5, Rejected: 2, Kept: 3}, res)
	left := readDeadLetters(t, dir)
	require.Len(t, left, 5)
	for _, r := range left {
		if r.Flow == "main" {
			require.True(t, strings.HasPrefix(*r.Text, "bad"))
			require.Contains(t, r.Reason, "replay: rejected")
			require.Contains(t, r.Reason, "still bad")
		} else {
			require.Equal(t, "rejected: 400 schema mismatch", r.Reason, "kept unchanged")
		}
	}
	require.Len(t, srv.got, 5)
}

func TestReplay_ResumesAnInterruptedSnapshotFromItsOffset(t *testing.T) {
	dir := t.TempDir()
	srv := &lineServer{got: map[string]int{}}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	cfg := replayConfig(t, dir, hs.URL)
	deadLetterSome(t, dir, "main", "r", 10)
	// An earlier replay renamed the file aside and delivered 4 records.
	require.NoError(t, os.Rename(filepath.Join(dir, DeadLetterFile), filepath.Join(dir, deadLetterReplay)))
	b, err := os.ReadFile(filepath.Join(dir, deadLetterReplay))
	require.NoError(t, err)
	off := 0
	for range 4 {
		off += bytes.IndexByte(b[off:], '\n') + 1
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, deadLetterOffset), fmt.Appendf(nil, "%d\n", off), 0o600))
	require.Len(t, readDeadLetters(t, dir), 6, "readers skip what was delivered")
	// Meanwhile the agent dead-lettered more.
	deadLetterSome(t, dir, "main", "new", 2)

	res, err := ReplayDeadLetters(t.Context(), cfg, Settings{Components: testComponents}, ReplayOptions{})
	require.NoError(t, err)
	require.Equal(t, ReplayResult{Delivered: 8}, res)
	for i := range 10 {
		want := 1
		if i < 4 {
			want = 0
		}
		require.Equal(t, want, srv.got[fmt.Sprintf("r%d", i)], i)
	}
	require.Equal(t, 1, srv.got["new0"])
	require.Empty(t, readDeadLetters(t, dir))
}

func TestReplay_DestinationDownStopsAndKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	hs := httptest.NewServer(http.NotFoundHandler())
	hs.Close() // down
	cfg := replayConfig(t, dir, hs.URL)
	deadLetterSome(t, dir, "main", "r", 3)
	_, err := ReplayDeadLetters(t.Context(), cfg, Settings{Components: testComponents}, ReplayOptions{RetryFor: 1})
	require.ErrorContains(t, err, "still failing")
	require.Len(t, readDeadLetters(t, dir), 3)
}

func TestReplay_NoStateIsAnError(t *testing.T) {
	cfg := replayConfig(t, t.TempDir(), "http://127.0.0.1:1/")
	_, err := ReplayDeadLetters(t.Context(), cfg, Settings{Components: testComponents}, ReplayOptions{})
	require.ErrorContains(t, err, "holds no agent state")
}

// A partial failure that names no record of the batch, or one outside it,
// cannot say what was delivered: replay keeps every record (as the sender
// does) instead of counting them delivered and removing them.
func TestReplay_InvalidPartialFailureDeliversNothing(t *testing.T) {
	for name, pe := range map[string]*outputs.PartialError{
		"no index":         {Err: errors.New("503 from a proxy")},
		"index outside it": {Failed: []int{7}, Err: errors.New("503 from a proxy")},
	} {
		t.Run(name, func(t *testing.T) {
			out := newScripted("o", func(outputs.Batch) error { return pe })
			r := &replayer{opt: ReplayOptions{RetryFor: 1}, set: Settings{Logger: slog.New(slog.DiscardHandler)}}
			items := []*replayItem{
				{agg: aggregate.Aggregate{PartitionKey: "pk", Body: []byte("a"), Count: 1}},
				{agg: aggregate.Aggregate{PartitionKey: "pk", Body: []byte("b"), Count: 1}},
			}
			err := r.send(t.Context(), out, items)
			require.ErrorContains(t, err, "still failing", "the records stay in the dead-letter files")
		})
	}
}
