package journald

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source/journald/journaldtest"
)

// An entry cut to max_record_bytes was only counted (and marked in the
// record): the source now logs it at WARN, with the unit, the limit and the
// entry's size, once a minute at most (not once per entry).
func TestRun_CutEntryIsLoggedOnceAMinute(t *testing.T) {
	f := newFixture(t)
	big := strings.Repeat("x", 3000)
	var b strings.Builder
	for i := range 3 {
		fmt.Fprintf(&b, "__CURSOR=%s\n__REALTIME_TIMESTAMP=1700000000000000\nSYSLOG_IDENTIFIER=app\n_SYSTEMD_UNIT=app.service\nMESSAGE=%s\n\n",
			journaldtest.Cursor(i), big)
	}
	require.NoError(t, os.WriteFile(f.j.Path, []byte(b.String()), 0o644))
	var logs lockedBuilder
	s, err := New(f.config(func(c *Config) { c.MaxRecordBytes = 1024 }), Settings{Name: "j", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	c := &collector{}
	run(t, s, c)
	waitFor(t, "3 records", func() bool { return len(c.messages()) == 3 })
	require.Equal(t, uint64(3), s.Stats().Truncated)

	out := logs.String()
	require.Equal(t, 1, strings.Count(out, "longer than max_record_bytes had its longest values cut"), out)
	require.Contains(t, out, "level=WARN")
	require.Contains(t, out, "unit=app.service")
	require.Contains(t, out, "max_record_bytes=1024")
	require.Contains(t, out, `cursor="`+journaldtest.Cursor(0)+`"`)
	require.Contains(t, out, "entry_bytes=")
}

type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
