package journald

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStderrLog_RateLimitedAndKeepsTheLastLines(t *testing.T) {
	var logs bytes.Buffer
	l := newStderrLog(slog.New(slog.NewTextHandler(&logs, nil)))
	for i := range 20 {
		_, err := fmt.Fprintf(l, "line %d\n", i)
		require.NoError(t, err)
	}
	_, err := l.Write([]byte("partial " + strings.Repeat("x", 5000)))
	require.NoError(t, err)
	require.Equal(t, stderrBurst, strings.Count(logs.String(), "stderr="), "at most a burst per window:\n%s", logs.String())
	tail := l.tail()
	require.True(t, strings.HasPrefix(tail, "line 12 | line 13"), tail)
	require.Contains(t, tail, "line 19 | partial xxx")
	require.Less(t, len(tail), 8*1100+stderrLineMax, "lines are bounded")
	require.Equal(t, "(nothing on stderr)", newStderrLog(slog.New(slog.DiscardHandler)).tail())
}
