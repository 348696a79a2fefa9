package socket

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source"
)

// collector is an emit that keeps what it is given. While hold is set,
// emit waits for it to be released (a flow blocked on a full spool).
type collector struct {
	mu   sync.Mutex
	recs []string
	hold chan struct{}
	// batches counts batch calls; failAt (batch) fails at that record.
	batches int
	failAt  int
}

func (k *collector) emit(ctx context.Context, r source.Record) error {
	k.mu.Lock()
	hold := k.hold
	k.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.recs = append(k.recs, string(r.Data))
	return nil
}

// batch is the collector's EmitBatch: failAt >= 0 fails the batch that
// holds the record of that index (counting from the first record), taking
// the records before it.
func (k *collector) batch(ctx context.Context, rs []source.Record) (int, error) {
	k.mu.Lock()
	hold := k.hold
	k.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.batches++
	for i, r := range rs {
		if k.failAt >= 0 && len(k.recs) == k.failAt {
			return i, errors.New("flow failed")
		}
		k.recs = append(k.recs, string(r.Data))
	}
	return len(rs), nil
}

func (k *collector) records() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.recs)
}

func (k *collector) waitFor(t *testing.T, n int) []string {
	t.Helper()
	require.Eventually(t, func() bool { return len(k.records()) >= n }, 20*time.Second, 5*time.Millisecond,
		"want %d records, have %d", n, len(k.records()))
	return k.records()
}

// running is a source started by start.
type running struct {
	src  *Source
	k    *collector
	stop func() error // cancels Run and returns its error
}

func testConfig(listen string) Config {
	c := DefaultConfig()
	c.Listen = listen
	return c
}

// start runs a source with cfg and waits until it listens.
func start(t *testing.T, cfg Config) *running {
	return startWith(t, cfg, false, -1)
}

// startWith is start, with RunBatch when batch is set (the collector's
// batch failing at failAt when it is not negative).
func startWith(t *testing.T, cfg Config, batch bool, failAt int) *running {
	t.Helper()
	src, err := New(cfg, Settings{Name: "sock", Now: func() time.Time { return clock3164 }})
	require.NoError(t, err)
	k := &collector{failAt: failAt}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	if batch {
		go func() { done <- src.RunBatch(ctx, k.emit, k.batch) }()
	} else {
		go func() { done <- src.Run(ctx, k.emit) }()
	}
	select {
	case <-src.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run returned before listening: %v", err)
	}
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return &running{src: src, k: k, stop: stop}
}

// sockPath is a Unix socket path short enough for sun_path.
func sockPath(t *testing.T, name string) string {
	t.Helper()
	dir, err := filepathShortTemp(t)
	require.NoError(t, err)
	return filepath.Join(dir, name)
}

func filepathShortTemp(t *testing.T) (string, error) {
	d := t.TempDir()
	if len(d) < 80 {
		return d, nil
	}
	return "/tmp", nil
}

func dial(t *testing.T, network, address string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, address, 10*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}
