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

// 0.0.0.0:PORT and [::]:PORT are one socket where Go listens dual-stack (the
// usual Linux host): a reload from one to the other keeps the listener and
// its connection; with the format changed too, the new source takes the
// port once the old one stopped (both were refused with "address already
// in use", the old listener holding the port). A move between the wildcard
// and one address of the same port, which the kernel cannot bind while
// the other listens, is refused with what to do, and the running listener
// keeps receiving.
func TestReload_WildcardSpellingsAreOneListener(t *testing.T) {
	probe, err := net.Listen("tcp", "0.0.0.0:0")
	require.NoError(t, err)
	dual := probe.Addr().(*net.TCPAddr).IP.To4() == nil
	probe.Close()
	if !dual {
		t.Skip("this host listens on 0.0.0.0 with IPv4 only: 0.0.0.0 and [::] are two sockets here")
	}
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
	v4 := fmt.Sprintf("tcp://0.0.0.0:%d", port)
	v6 := fmt.Sprintf("tcp://[::]:%d", port)
	dial := func(addr string) net.Conn {
		var conn net.Conn
		require.Eventually(t, func() bool {
			c, err := net.Dial("tcp", addr)
			conn = c
			return err == nil
		}, 20*time.Second, 10*time.Millisecond)
		return conn
	}
	h := startReloadHarness(t, config(v4, "lines"), nil)
	fr := h.flow("main")
	conn := dial(fmt.Sprintf("127.0.0.1:%d", port))
	defer func() { conn.Close() }()
	_, err = io.WriteString(conn, numbered(0, 100))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.has(0, 100) }, 20*time.Second, 10*time.Millisecond)

	// The spelling: kept, its connection too.
	_, err = h.reload(config(v6, "lines"))
	require.NoError(t, err)
	require.Same(t, fr.sources[0], h.flow("main").sources[0], "the socket source was kept")
	_, err = io.WriteString(conn, numbered(100, 200))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.has(0, 200) }, 20*time.Second, 10*time.Millisecond)

	// The spelling back and the format: rebuilt on the same port, which
	// takes IPv6 clients as well as IPv4 ones.
	rep, err := h.reload(config(v4, "json"))
	require.NoError(t, err)
	require.Equal(t, []string{"main"}, rep.Rebuilt)
	require.NotSame(t, fr.sources[0], h.flow("main").sources[0], "the changed socket source was built again")
	conn.Close()
	conn = dial(fmt.Sprintf("[::1]:%d", port))
	_, err = io.WriteString(conn, numbered(200, 300))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.has(0, 300) }, 20*time.Second, 10*time.Millisecond)

	// From the wildcard to one address of its port: refused, saying why;
	// the listener stays and receives.
	before := h.flow("main").sources[0]
	_, err = h.reload(config(fmt.Sprintf("tcp://127.0.0.1:%d", port), "json"))
	require.ErrorContains(t, err, "address already in use")
	require.ErrorContains(t, err, fmt.Sprintf("the running source sock holds this port on tcp [::]:%d", port))
	require.ErrorContains(t, err, "restart the agent to apply this configuration")
	require.Same(t, before, h.flow("main").sources[0], "a refused reload changed the source")
	_, err = io.WriteString(conn, numbered(300, 400))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.has(0, 400) }, 20*time.Second, 10*time.Millisecond)
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
