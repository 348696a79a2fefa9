package agent

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/internal/testport"
)

// A reload compares socket addresses as they bind, not as written:
// tcp://127.0.0.1:PORT and tcp://localhost:PORT are one socket. Only the
// spelling changed: the running source is kept, its listener and its
// connection too. The spelling and the format changed: the source is built
// again and takes the same port once the old one stopped (it was refused
// with "address already in use"). A really different address held by
// another program is still bound first, and refuses the reload.
func TestReload_SocketAddressesAreComparedResolved(t *testing.T) {
	s := newReloadSink(t)
	port := testport.Port(t)
	config := func(listen, format string) string {
		return fmt.Sprintf(`
sources:
  - name: sock
    type: socket
    socket: {listen: %q, format: %s}
outputs:
  - name: web
    type: http
    http: {url: %q, encoding: text, compression: none}
flows:
  - name: main
    sources: [sock]
    output: web
    aggregation: {max_buffered_time: 10ms}
`, listen, format, s.URL)
	}
	numeric := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	named := fmt.Sprintf("tcp://localhost:%d", port)
	h := startReloadHarness(t, config(numeric, "lines"), nil)
	fr := h.flow("main")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var conn net.Conn
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		conn = c
		return err == nil
	}, 20*time.Second, 10*time.Millisecond)
	defer func() { conn.Close() }()
	_, err := io.WriteString(conn, numbered(0, 100))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.has(0, 100) }, 20*time.Second, 10*time.Millisecond)

	// The spelling: kept, running.
	_, err = h.reload(config(named, "lines"))
	require.NoError(t, err)
	require.Same(t, fr.sources[0], h.flow("main").sources[0], "the socket source was kept")
	_, err = io.WriteString(conn, numbered(100, 200))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.has(0, 200) }, 20*time.Second, 10*time.Millisecond)

	// The spelling and the format: rebuilt on the same port.
	rep, err := h.reload(config(numeric, "json"))
	require.NoError(t, err)
	require.Equal(t, []string{"main"}, rep.Rebuilt)
	require.NotSame(t, fr.sources[0], h.flow("main").sources[0], "the changed socket source was built again")
	conn.Close()
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		conn = c
		return true
	}, 20*time.Second, 10*time.Millisecond)
	_, err = io.WriteString(conn, numbered(200, 300))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.has(0, 300) }, 20*time.Second, 10*time.Millisecond)

	// Another address, in use by another program: refused, nothing changed.
	other := testport.Listen(t)
	defer other.Close()
	before := h.flow("main").sources[0]
	_, err = h.reload(config("tcp://"+other.Addr().String(), "json"))
	require.ErrorContains(t, err, "address already in use")
	require.Same(t, before, h.flow("main").sources[0], "a refused reload changed the source")
}

// Two sources on one address spelled two ways are refused as two sources
// on one address (the second failed to start, and the agent with it).
func TestConfig_TwoSocketSourcesOnOneResolvedAddressAreRefused(t *testing.T) {
	_, err := ParseConfig("t.yaml", []byte(`
state_dir: /tmp/x
sources:
  - name: a
    type: socket
    socket: {listen: "udp://127.0.0.1:5140"}
  - name: b
    type: socket
    socket: {listen: "udp://localhost:5140"}
  - name: c
    type: socket
    socket: {listen: "tcp://localhost:5140"}
outputs:
  - name: out
    type: stdout
flows:
  - name: main
    sources: [a, b, c]
    output: out
`), noEnv, testComponents)
	require.ErrorContains(t, err, `sources[1].socket.listen: source "a" listens on this address already`)
	require.NotContains(t, err.Error(), "sources[2]", "tcp and udp are two sockets")
}
