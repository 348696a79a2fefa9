package socket

import (
	"context"
	"errors"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source"
)

func TestType_FromArgs(t *testing.T) {
	typ := Type()
	cfg, err := typ.FromArgs([]string{"udp://127.0.0.1:5140"}, source.TailFlags{Format: FormatSyslog, MaxRecordBytes: 4096})
	require.NoError(t, err)
	c := cfg.(*Config)
	require.Equal(t, "udp://127.0.0.1:5140", c.Listen)
	require.Equal(t, FormatSyslog, c.Format)
	require.EqualValues(t, 4096, c.MaxRecordBytes)

	cfg, err = typ.FromArgs([]string{"unix:///run/a.sock"}, source.TailFlags{})
	require.NoError(t, err)
	require.Equal(t, FormatLines, cfg.(*Config).Format)

	_, err = typ.FromArgs([]string{"unix:///a", "unix:///b"}, source.TailFlags{})
	require.ErrorContains(t, err, "one address per source")
	_, err = typ.FromArgs([]string{"tcp://127.0.0.1:1"}, source.TailFlags{Format: "xml"})
	require.ErrorContains(t, err, "format:")
}

// The source's metrics, registered through the registerer the agent gives
// it (which adds source=<name>).
func TestType_MetricsAreLabelledBySource(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	cfg := DefaultConfig()
	cfg.Listen = "tcp://127.0.0.1:0"
	src, err := Type().New(&cfg, source.Settings{Name: "app", Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"source": "app"}, reg)})
	require.NoError(t, err)
	s := src.(*Source)
	k := &collector{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, k.emit) }()
	<-s.Ready()
	c := dial(t, "tcp", s.Addr().String())
	_, err = io.WriteString(c, "a\nbb\n")
	require.NoError(t, err)
	k.waitFor(t, 2)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP agent_socket_records_total Records received and emitted.
# TYPE agent_socket_records_total counter
agent_socket_records_total{source="app"} 2
# HELP agent_socket_bytes_total Data bytes of the records emitted (after formatting).
# TYPE agent_socket_bytes_total counter
agent_socket_bytes_total{source="app"} 3
# HELP agent_socket_open_connections Stream connections open now.
# TYPE agent_socket_open_connections gauge
agent_socket_open_connections{source="app"} 1
`), "agent_socket_records_total", "agent_socket_bytes_total", "agent_socket_open_connections"))
	n, err := testutil.GatherAndCount(reg, "agent_socket_dropped_records_total")
	require.NoError(t, err)
	require.Equal(t, len(dropReasons), n, "every drop reason is exported, at zero too")
	cancel()
	require.NoError(t, <-done)
}

func TestSource_SocketFileGroup(t *testing.T) {
	gid := os.Getgid()
	g, err := user.LookupGroupId(strconv.Itoa(gid))
	require.NoError(t, err)
	for _, group := range []string{strconv.Itoa(gid), g.Name} {
		path := sockPath(t, "g.sock")
		cfg := testConfig("unix://" + path)
		cfg.Group = group
		r := start(t, cfg)
		fi, err := os.Lstat(path)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o660), fi.Mode().Perm())
		require.NoError(t, r.stop())
	}
	cfg := testConfig("unix://" + sockPath(t, "nogroup.sock"))
	cfg.Group = "no-such-group-h10"
	src, err := New(cfg, Settings{Name: "s"})
	require.NoError(t, err)
	err = src.Run(t.Context(), (&collector{}).emit)
	require.ErrorContains(t, err, `group "no-such-group-h10"`)
	_, err = os.Lstat(cfg.Listen[len("unix://"):])
	require.ErrorIs(t, err, os.ErrNotExist, "the socket made before the error is removed")
}

// A flow that fails for another reason than the stop makes Run return its
// error (the agent then stops).
func TestSource_EmitErrorStopsTheSource(t *testing.T) {
	src, err := New(testConfig("tcp://127.0.0.1:0"), Settings{Name: "s"})
	require.NoError(t, err)
	broken := errors.New("dead-letter file unwritable")
	done := make(chan error, 1)
	go func() {
		done <- src.Run(t.Context(), func(context.Context, source.Record) error { return broken })
	}()
	<-src.Ready()
	c := dial(t, "tcp", src.Addr().String())
	_, err = io.WriteString(c, "x\n")
	require.NoError(t, err)
	select {
	case err := <-done:
		require.ErrorIs(t, err, broken)
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
	require.EqualValues(t, 1, src.Stats().Dropped[DropEmitError])
}
