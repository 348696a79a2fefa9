package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSend_WritesTheStateToNotifySocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	require.NoError(t, Ready())
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "READY=1", string(buf[:n]))
}

func TestSend_WithoutSystemdIsANoOp(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	require.NoError(t, Stopping())
}

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		name, usec, pid string
		want            time.Duration
		ok              bool
	}{
		{"off", "", "", 0, false},
		{"set", "3000000", "", 3 * time.Second, true},
		{"for this process", "500000", strconv.Itoa(os.Getpid()), 500 * time.Millisecond, true},
		{"for another process", "500000", "1", 0, false},
		{"garbage", "x", "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.pid)
			d, ok := WatchdogInterval()
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.want, d)
		})
	}
}

func TestReloading_CarriesTheMonotonicClock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	require.NoError(t, Reloading())
	buf := make([]byte, 128)
	n, err := conn.Read(buf)
	require.NoError(t, err)
	require.Regexp(t, `^RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*$`, string(buf[:n]))
}
