package stdout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/kplagent/agent/aggregate"
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

// textConfig writes the records' bytes (these tests read them back).
func textConfig() Config {
	c := DefaultConfig()
	c.Encoding = "text"
	return c
}

func TestSend_Formats(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, format, encoding string
		want                   string
	}{
		{"default", "", "", `{"message":"a"}` + "\n" + `{"message":"b \ufffd\nc"}` + "\n" + `{"k":1}` + "\n"},
		{"ndjson json", FormatNDJSON, "json", `{"message":"a"}` + "\n" + `{"message":"b \ufffd\nc"}` + "\n" + `{"k":1}` + "\n"},
		{"ndjson text", FormatNDJSON, "text", "a\nb \xff\\nc\n {\"k\":1}\n"},
		{"kpl-json", FormatKPLJSON, "", `{"pk":"pk0","data":"YQ=="}` + "\n" + `{"pk":"pk1","ehk":"42","data":"YiD/CmM="}` + "\n" + `{"pk":"pk2","data":"IHsiayI6MX0="}` + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			o, err := New("out", Config{Format: tc.format, Encoding: tc.encoding}, Settings{Writer: &out})
			require.NoError(t, err)
			b := plainBatch("a", "b \xff\nc", ` {"k":1}`)
			b.Records[1].ExplicitHashKey = "42"
			require.NoError(t, o.Send(t.Context(), b))
			require.Equal(t, tc.want, out.String())
			require.NoError(t, o.Close(t.Context()))
		})
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	require.NoError(t, DefaultConfig().Validate())
	require.EqualError(t, Config{Format: "xml"}.Validate(), `format: unknown "xml" (want ndjson or kpl-json)`)
	_, err := New("out", Config{Format: "xml"}, Settings{})
	require.ErrorContains(t, err, "stdout: format: unknown")
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

func TestSend_WriteErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		err       error
		permanent bool
	}{
		{"EPIPE is permanent", &os.PathError{Op: "write", Path: "/dev/stdout", Err: syscall.EPIPE}, true},
		{"closed is permanent", os.ErrClosed, true},
		{"other errors are retryable", syscall.EIO, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, err := New("out", textConfig(), Settings{Writer: failWriter{tc.err}})
			require.NoError(t, err)
			err = o.Send(t.Context(), plainBatch("a"))
			require.ErrorIs(t, err, tc.err)
			require.Equal(t, tc.permanent, outputs.IsPermanent(err))
		})
	}
}

func TestSend_RealPipeClosed(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	require.NoError(t, r.Close())
	defer w.Close()
	o, err := New("out", textConfig(), Settings{Writer: w})
	require.NoError(t, err)
	// Go turns SIGPIPE into EPIPE for descriptors other than 1 and 2.
	err = o.Send(t.Context(), plainBatch("a"))
	require.ErrorIs(t, err, syscall.EPIPE)
	require.True(t, outputs.IsPermanent(err))
}

func TestSend_LargeBatchChunkedAndNotInterleaved(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	o, err := New("out", textConfig(), Settings{Writer: &out})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			data := make([]string, 2000)
			for i := range data {
				data[i] = fmt.Sprintf("g%d-%04d-%s", g, i, strings.Repeat("x", 60))
			}
			require.NoError(t, o.Send(t.Context(), plainBatch(data...)))
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 8000)
	for k := 0; k < len(lines); k += 2000 { // each batch is contiguous and in order
		g := lines[k][:2]
		for i := range 2000 {
			require.True(t, strings.HasPrefix(lines[k+i], fmt.Sprintf("%s-%04d-", g, i)), lines[k+i])
		}
	}
	require.Greater(t, out.writes, 4, "a large batch is written in chunks")
}

type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestSend_CanceledContext(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	o, err := New("out", textConfig(), Settings{Writer: &out})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.True(t, errors.Is(o.Send(ctx, plainBatch("a")), context.Canceled))
	require.Empty(t, out.String())
}

func TestSend_UndecodableRecordIsPermanentPartial(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	o, err := New("out", textConfig(), Settings{Writer: &out})
	require.NoError(t, err)
	b := plainBatch("a", "", "c")
	b.Records[1] = aggregate.Aggregate{PartitionKey: "a", Aggregated: true, Body: []byte{0xff, 0xff, 0xff}, Count: 2}

	err = o.Send(t.Context(), b)

	var pe *outputs.PartialError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, []int{1}, pe.Failed)
	require.True(t, outputs.IsPermanent(pe.Err))
	require.Equal(t, "a\nc\n", out.String())

	err = o.Send(t.Context(), outputs.Batch{Records: b.Records[1:2]})
	require.True(t, outputs.IsPermanent(err))
	require.NotErrorAs(t, err, &pe, "every record failed: a plain permanent error")
}

func TestSend_Aggregates(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	o, err := New("out", textConfig(), Settings{Writer: &out})
	require.NoError(t, err)
	b := batchtest.Build(t, 3, 0, batchtest.Records("a", "b", "c", "d", "e")...)
	require.Len(t, b.Records, 2)
	require.NoError(t, o.Send(t.Context(), b))
	require.Equal(t, "a\nb\nc\nd\ne\n", out.String())
}
