package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain runs the tests, or, when the test binary is re-executed by a test
// as a child process, the child's role (see crash_test.go).
func TestMain(m *testing.M) {
	if role := os.Getenv(childRoleEnv); role != "" {
		os.Exit(runChild(role))
	}
	goleak.VerifyTestMain(m)
}

// testConfig is a config for a fresh directory with small segments, so that
// tests roll and delete segments often, and a long sync interval, so that
// nothing happens in the background unless the test asks for it.
func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.SegmentBytes = 16 << 10
	cfg.MaxBytes = 1 << 30
	cfg.MinFreeBytes = 0
	cfg.SyncInterval = time.Hour
	return cfg
}

// logRecorder is a slog handler that keeps the records, to check what was
// logged, and echoes them to the test's output.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
	out  slog.Handler
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	if h.out != nil {
		return h.out.Handle(ctx, r)
	}
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// count returns how many records at level or above contain msg.
func (h *logRecorder) count(level slog.Level, msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.recs {
		if r.Level >= level && bytes.Contains([]byte(r.Message), []byte(msg)) {
			n++
		}
	}
	return n
}

func newLog(t testing.TB) (*slog.Logger, *logRecorder) {
	h := &logRecorder{out: slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})}
	return slog.New(h), h
}

// open opens a spool that the test's cleanup closes. Append writes its frame
// itself, as with sync: always, whatever cfg.Sync says: most tests look at
// the files, the counters or the reader right after an Append. The
// write-behind that sync: interval and never use is tested by openWB's
// tests (writebehind_test.go), the model test and the crash test.
func open(t testing.TB, cfg Config, set ...Settings) *Spool {
	t.Helper()
	var st Settings
	if len(set) > 0 {
		st = set[0]
	}
	st.syncWrites = true
	return openSet(t, cfg, st)
}

// openWB is open with the write-behind of sync: interval and never.
func openWB(t testing.TB, cfg Config, set ...Settings) *Spool {
	t.Helper()
	var st Settings
	if len(set) > 0 {
		st = set[0]
	}
	return openSet(t, cfg, st)
}

func openSet(t testing.TB, cfg Config, st Settings) *Spool {
	t.Helper()
	if st.Logger == nil {
		st.Logger, _ = newLog(t)
	}
	s, err := Open(cfg, st)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// payload is a deterministic entry for seq: its content says which seq it
// is and carries its own checksum, so a test can tell a real entry from an
// invented or damaged one.
func payload(seq uint64, size int) []byte {
	if size < 12 {
		size = 12
	}
	b := make([]byte, size)
	binary.LittleEndian.PutUint64(b, seq)
	x := seq*0x9E3779B97F4A7C15 + 1
	for i := 12; i < size; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	binary.LittleEndian.PutUint32(b[8:12], crc32.ChecksumIEEE(b[12:]))
	return b
}

// checkPayload returns the seq of a payload made by payload, or an error.
func checkPayload(b []byte) (uint64, error) {
	if len(b) < 12 {
		return 0, fmt.Errorf("payload of %d bytes", len(b))
	}
	seq := binary.LittleEndian.Uint64(b)
	if !bytes.Equal(b, payload(seq, len(b))) {
		return 0, fmt.Errorf("payload for seq %d is not what was appended", seq)
	}
	return seq, nil
}

// crash stops s the way kill -9 would: files closed, nothing sealed, synced
// or flushed, the lock released. What write(2) wrote is in the page cache and
// stays, as it does when a process is killed.
func (s *Spool) crash() {
	s.closeOnce.Do(func() {
		s.wmu.Lock()
		s.closed = true
		s.closedFlag.Store(true)
		s.stage = s.stage[:0] // what the writer has not taken dies with the process
		close(s.closing)
		s.wmu.Unlock()
		s.wg.Wait()
		s.fmu.Lock()
		if s.wf != nil {
			s.wf.Close()
			s.wf = nil
		}
		s.fmu.Unlock()
		s.finished.Store(true)
		s.durableEv.broadcast()
		s.releaseFiles()
		s.closeErr = ErrClosed
	})
}

// drain reads every entry ready now.
func drain(t testing.TB, s *Spool) (ids []ID, data [][]byte) {
	t.Helper()
	for {
		id, b, ok, err := s.TryNext(nil)
		require.NoError(t, err)
		if !ok {
			return ids, data
		}
		ids = append(ids, id)
		data = append(data, b)
	}
}
