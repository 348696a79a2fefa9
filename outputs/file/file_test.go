package file

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/units"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/internal/batchtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func plainBatch(data ...string) outputs.Batch {
	b := outputs.Batch{Records: make([]aggregate.Aggregate, len(data))}
	for i, d := range data {
		b.Records[i] = aggregate.Aggregate{PartitionKey: fmt.Sprintf("pk%d", i), Body: []byte(d), Count: 1}
	}
	return b
}

func newOutput(t *testing.T, cfg Config) *Output {
	t.Helper()
	if cfg.Encoding == "" {
		cfg.Encoding = "text" // these tests read the records' bytes back
	}
	o, err := New("logs", cfg, Settings{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, o.Close(t.Context())) })
	return o
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

func TestSend_AppendsToDirNameNDJSON(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "new", "sub")
	o := newOutput(t, Config{Dir: dir})
	path := filepath.Join(dir, "logs.ndjson")
	require.Equal(t, path, o.Path())

	require.NoError(t, o.Send(t.Context(), plainBatch("a", "b")))
	require.NoError(t, o.Send(t.Context(), plainBatch("c")))

	require.Equal(t, "a\nb\nc\n", read(t, path))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
}

func TestSend_ExplicitPathKPLJSONAndReopen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "out.jsonl")
	o, err := New("x", Config{Path: path, Format: FormatKPLJSON}, Settings{})
	require.NoError(t, err)
	b := plainBatch("a")
	b.Records[0].ExplicitHashKey = "7"
	require.NoError(t, o.Send(t.Context(), b))
	require.NoError(t, o.Close(t.Context()))
	require.NoError(t, o.Close(t.Context()), "idempotent")
	require.Error(t, o.Send(t.Context(), b))

	o2 := newOutput(t, Config{Path: path, Format: FormatKPLJSON})
	require.NoError(t, o2.Send(t.Context(), plainBatch("b")))
	require.Equal(t, `{"pk":"pk0","ehk":"7","data":"YQ=="}`+"\n"+`{"pk":"pk0","data":"Yg=="}`+"\n", read(t, path))
}

func TestSend_PartialLineFromACrashIsNotJoined(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "out.ndjson")
	require.NoError(t, os.WriteFile(path, []byte("whole\ntorn"), 0o640))
	o := newOutput(t, Config{Path: path})
	require.NoError(t, o.Send(t.Context(), plainBatch("next")))
	require.Equal(t, "whole\ntorn\nnext\n", read(t, path))
}

func TestSend_Rotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := newOutput(t, Config{Dir: dir, MaxFileBytes: units.ByteSize(10), MaxBackups: 2})
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	o.now = func() time.Time { now = now.Add(time.Second); return now }

	for _, batch := range [][]string{{"1234"}, {"5678"}, {"abcd"}, {"0123456789abcdef"}, {"x"}, {"y"}} {
		require.NoError(t, o.Send(t.Context(), plainBatch(batch...)))
	}

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	// files: [1234 5678] [abcd] [0123456789abcdef] [x y]; the oldest is pruned.
	require.Equal(t, []string{
		"logs-20260301T120002.000000000Z.ndjson",
		"logs-20260301T120003.000000000Z.ndjson",
		"logs.ndjson",
	}, names)
	require.Equal(t, "abcd\n", read(t, filepath.Join(dir, names[0])))
	require.Equal(t, "0123456789abcdef\n", read(t, filepath.Join(dir, names[1])), "an oversized batch fills a file alone")
	require.Equal(t, "x\ny\n", read(t, filepath.Join(dir, "logs.ndjson")))
}

func TestSend_WriteErrorIsRetryableAndCutBack(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "out.ndjson")
	o := newOutput(t, Config{Path: path})
	require.NoError(t, o.Send(t.Context(), plainBatch("ok")))
	// Make the descriptor fail: replace it with a read-only one.
	o.mu.Lock()
	ro, err := os.Open(path)
	require.NoError(t, err)
	o.f.Close()
	o.f = ro
	o.mu.Unlock()

	err = o.Send(t.Context(), plainBatch("lost"))
	require.Error(t, err)
	require.False(t, outputs.IsPermanent(err))
	require.Contains(t, err.Error(), "file: write "+path)
	require.Equal(t, "ok\n", read(t, path))
}

func TestSend_UndecodableRecordIsPermanentPartial(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "out.ndjson")
	o := newOutput(t, Config{Path: path})
	b := plainBatch("a", "", "c")
	b.Records[1] = aggregate.Aggregate{PartitionKey: "a", Aggregated: true, Body: []byte{0xff, 0xff, 0xff}, Count: 2}

	err := o.Send(t.Context(), b)

	var pe *outputs.PartialError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, []int{1}, pe.Failed)
	require.True(t, outputs.IsPermanent(pe.Err))
	require.Equal(t, "a\nc\n", read(t, path))
}

func TestSend_Concurrent(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "out.ndjson")
	o := newOutput(t, Config{Path: path})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 10 {
				require.NoError(t, o.Send(t.Context(), plainBatch(fmt.Sprintf("g%d-%d-a", g, i), fmt.Sprintf("g%d-%d-b", g, i))))
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(read(t, path), "\n"), "\n")
	require.Len(t, lines, 80)
	for k := 0; k < 80; k += 2 {
		require.Equal(t, strings.TrimSuffix(lines[k], "-a")+"-b", lines[k+1], "batches are not interleaved")
	}
}

func TestConfig_Validate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Dir: "/d"}, ""},
		{Config{Path: "/d/x.log", Format: FormatKPLJSON, MaxFileBytes: 1 << 20, MaxBackups: 3}, ""},
		{Config{}, "dir: required (or path)"},
		{Config{Dir: "/d", Path: "/p"}, "path: set together with dir (choose one)"},
		{Config{Dir: "/d", Format: "csv"}, `format: unknown "csv" (want ndjson or kpl-json)`},
		{Config{Dir: "/d", MaxFileBytes: -1, MaxBackups: -2}, "max_file_bytes: negative (-1)\nmax_backups: negative (-2)"},
	}
	for _, tc := range tests {
		err := tc.cfg.Validate()
		if tc.want == "" {
			require.NoError(t, err)
			continue
		}
		require.EqualError(t, err, tc.want)
		_, err = New("x", tc.cfg, Settings{})
		require.ErrorContains(t, err, "file: "+tc.want)
	}
	require.Equal(t, FormatNDJSON, DefaultConfig().Format)
}

func TestNew_UnwritableDir(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		t.Skip("root ignores permissions")
	}
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o500))
	_, err := New("x", Config{Dir: filepath.Join(dir, "sub")}, Settings{})
	require.ErrorContains(t, err, "permission denied")
}

func TestSend_Aggregates(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "out.ndjson")
	o := newOutput(t, Config{Path: path, Format: FormatKPLJSON})
	b := batchtest.Build(t, 2, 0, batchtest.Records("a", "b", "c")...)
	require.Len(t, b.Records, 2)
	require.NoError(t, o.Send(t.Context(), b))
	require.Equal(t, `{"pk":"pk0","data":"YQ=="}
{"pk":"pk1","data":"Yg=="}
{"pk":"pk2","data":"Yw=="}
`, read(t, path))
}
