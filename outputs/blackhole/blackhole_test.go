package blackhole

import (
	"bytes"
	"log/slog"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSend_CountsWhatItDiscards(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	o, err := New("bh", Config{PrintInterval: time.Nanosecond}, Settings{Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))})
	require.NoError(t, err)
	b := outputs.Batch{Records: []aggregate.Aggregate{{Body: make([]byte, 100), Count: 3}, {Body: make([]byte, 50), Count: 1}}}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { require.NoError(t, o.Send(t.Context(), b)) })
	}
	wg.Wait()
	records, n := o.Discarded()
	require.Equal(t, int64(32), records)
	require.Equal(t, int64(1200), n)
	mu.Lock()
	require.Contains(t, logs.String(), "discarded")
	mu.Unlock()
	require.NoError(t, o.Close(t.Context()))
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestType_FromURLAndValidate(t *testing.T) {
	typ := Type()
	for _, tc := range []struct {
		url  string
		want time.Duration
		err  string
	}{
		{"blackhole:", 0, ""},
		{"blackhole://", 0, ""},
		{"blackhole://?print_interval=10s", 10 * time.Second, ""},
		{"blackhole://?print_interval=-1s", 0, "print_interval: must not be negative"},
		{"blackhole://?rate=5", 0, `unknown parameter "rate"`},
	} {
		u, err := url.Parse(tc.url)
		require.NoError(t, err)
		cfg, err := typ.FromURL(u, outputs.TailFlags{})
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.url)
			continue
		}
		require.NoError(t, err, tc.url)
		require.Equal(t, tc.want, cfg.(*Config).PrintInterval, tc.url)
	}
	_, err := New("x", Config{PrintInterval: -time.Second}, Settings{})
	require.ErrorContains(t, err, "blackhole: print_interval: must not be negative")
}
