package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source"
)

// blockOnce is an emit that blocks on the first record until release is
// closed, and commits every record.
type blockOnce struct {
	mu      sync.Mutex
	recs    []rec
	src     *Source
	blocked chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockOnce) emit(ctx context.Context, r source.Record) error {
	first := false
	b.once.Do(func() { first = true })
	if first {
		close(b.blocked)
		select {
		case <-b.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b.mu.Lock()
	b.recs = append(b.recs, rec{data: string(r.Data), cursor: r.Cursor})
	b.mu.Unlock()
	b.src.Commit(r.Cursor.FileID, r.Cursor.Offset)
	return nil
}

func (b *blockOnce) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, r := range b.recs {
		out = append(out, r.data)
	}
	return out
}

// copytruncate + regrowth past the read offset while the loop is busy in
// emit (backpressure), before any poll: the growth the reader finds after
// its end is new content at the old offset. fpBytes sets FingerprintBytes.
func runTruncRegrow(t *testing.T, fpBytes int) []string {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p, "old-line-1\nold-line-2\n") // 22 bytes
	cfg := testConfig(dir, "app.log")
	cfg.PollInterval = 2 * time.Second // longer than the stall
	cfg.FingerprintBytes = fpBytes
	src, err := New(cfg, Settings{Name: "t"})
	require.NoError(t, err)
	b := &blockOnce{src: src, blocked: make(chan struct{}), release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, b.emit) }()
	defer func() { cancel(); <-done }()
	<-b.blocked
	// logrotate copytruncate, then the application writes a burst.
	require.NoError(t, os.WriteFile(p, []byte("NEW first\nNEW second line\nNEW third\nNEW fourth\n"), 0o644))
	time.Sleep(50 * time.Millisecond)
	close(b.release)
	time.Sleep(3 * time.Second) // more than a poll interval
	require.Equal(t, uint64(1), src.Stats().Truncations)
	return b.lines()
}

var truncRegrowWant = []string{"old-line-1", "old-line-2", "NEW first", "NEW second line", "NEW third", "NEW fourth"}

// The fingerprint is shorter than FingerprintBytes (a file under 1 KiB):
// the truncation is seen before the new bytes are used, and the fingerprint
// is never extended over new content (which would hide the truncation for
// good). Nothing lost, no fragment of a line.
func TestCopyTruncate_RegrownPastOffsetBeforePollIsDetected_ShortFingerprint(t *testing.T) {
	got := runTruncRegrow(t, 1024)
	require.Equal(t, truncRegrowWant, got)
}

// The same with a complete fingerprint (FingerprintBytes 8 < file size).
func TestCopyTruncate_RegrownPastOffsetBeforePollIsDetected_FullFingerprint(t *testing.T) {
	got := runTruncRegrow(t, 8)
	require.Equal(t, truncRegrowWant, got)
}

// copytruncate + regrowth while the reader is in the middle of the file
// (emit blocked in its first turn): it reads on from its old offset in the
// new content without reaching an end first, so only the poll's fingerprint
// check can see the truncation. Reading the file to its end must not hide
// the size change from the poll. Lines read at the old offset are emitted
// (they cannot be told from the old content's), but then the file is read
// again from 0 and no new line is lost.
func TestCopyTruncate_RegrownWhileReadingMidFileIsDetectedByPoll(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	pad := strings.Repeat("x", 1000)
	gen := func(prefix string, size int) ([]byte, []string) {
		var b []byte
		var lines []string
		for i := 0; len(b) < size; i++ {
			l := fmt.Sprintf("%s-%06d %s", prefix, i, pad)
			lines = append(lines, l)
			b = append(b, l...)
			b = append(b, '\n')
		}
		return b, lines
	}
	oldData, _ := gen("old", 5<<20)
	newData, newLines := gen("NEW", 6<<20)
	require.NoError(t, os.WriteFile(p, oldData, 0o644))
	cfg := testConfig(dir, "app.log")
	cfg.PollInterval = 300 * time.Millisecond
	src, err := New(cfg, Settings{Name: "t"})
	require.NoError(t, err)
	b := &blockOnce{src: src, blocked: make(chan struct{}), release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, b.emit) }()
	defer func() { cancel(); <-done }()
	<-b.blocked
	require.NoError(t, os.WriteFile(p, newData, 0o644)) // truncate and regrow past the 256 KiB read
	close(b.release)
	require.Eventually(t, func() bool { return src.Stats().Truncations == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		fs := src.Files()
		return len(fs) == 1 && fs[0].Committed == int64(len(newData))
	}, 20*time.Second, 10*time.Millisecond)
	seen := map[string]bool{}
	for _, l := range b.lines() {
		seen[l] = true
	}
	for _, l := range newLines {
		require.True(t, seen[l], "line %.10q lost", l)
	}
}
