package agent

import (
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source/socket"
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

// A port with leading zeros is the same port: two sources on
// tcp://127.0.0.1:5140 and tcp://127.0.0.1:05140 are refused as two
// sources on one address (before, they passed and the second failed at
// start with "address already in use").
func TestConfig_PortWithLeadingZerosIsTheSameAddress(t *testing.T) {
	_, err := ParseConfig("t.yaml", []byte(`
state_dir: /tmp/x
sources:
  - name: a
    type: socket
    socket: {listen: "tcp://127.0.0.1:5140"}
  - name: b
    type: socket
    socket: {listen: "tcp://127.0.0.1:05140"}
outputs:
  - name: out
    type: stdout
flows:
  - name: main
    sources: [a, b]
    output: out
`), noEnv, testComponents)
	require.ErrorContains(t, err, `t.yaml:9: sources[1].socket.listen: source "a" listens on this address already`)
}

// A wildcard and another address of its port and network cannot both
// listen (the kernel refuses the second bind, whichever comes first): two
// sources on them were accepted, then the agent failed at start with
// "address already in use". They are refused, naming both sources, both
// addresses and why. tcp and udp ports are apart, another port is
// another socket, and Unix sockets have no port.
func TestConfig_WildcardAndAnAddressOfItsPortAreRefused(t *testing.T) {
	probe, err := net.Listen("tcp", "0.0.0.0:0")
	require.NoError(t, err)
	dual := probe.Addr().(*net.TCPAddr).IP.To4() == nil
	probe.Close()
	const why = ` are one port, and a wildcard address (0.0.0.0 or [::]) binds its port on every address of the host: ` +
		`the kernel refuses the second bind with "address already in use"; listen on the wildcard alone, or give the two sources different ports`
	for _, tc := range []struct {
		a, b string
		ok   bool
	}{
		{a: "tcp://0.0.0.0:5140", b: "tcp://127.0.0.1:5140"},
		{a: "tcp://127.0.0.1:5140", b: "tcp://0.0.0.0:5140"},
		{a: "udp://0.0.0.0:5140", b: "udp://localhost:5140"},
		{a: "udp://127.0.0.1:5140", b: "udp://0.0.0.0:5140"},
		{a: "tcp://[::]:5140", b: "tcp://[::1]:5140"},
		{a: "udp://[::1]:5140", b: "udp://[::]:5140"},
		{a: "tcp://[::]:5140", b: "tcp://127.0.0.1:5140", ok: !dual},
		{a: "udp://0.0.0.0:5140", b: "udp://[::1]:5140", ok: !dual},
		{a: "tcp://0.0.0.0:5140", b: "udp://127.0.0.1:5140", ok: true},
		{a: "udp://[::]:5140", b: "tcp://127.0.0.1:5140", ok: true},
		{a: "tcp://0.0.0.0:5140", b: "tcp://127.0.0.1:5141", ok: true},
		{a: "tcp://0.0.0.0:5140", b: "unix:///run/x.sock", ok: true},
		{a: "tcp://127.0.0.1:5140", b: "tcp://127.0.0.2:5140", ok: true},
	} {
		t.Run(tc.a+","+tc.b, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", fmt.Appendf(nil, `
state_dir: /tmp/x
sources:
  - {name: a, type: socket, socket: {listen: %q}}
  - {name: b, type: socket, socket: {listen: %q}}
outputs:
  - {name: out, type: stdout}
flows:
  - {name: main, sources: [a, b], output: out}
`, tc.a, tc.b), noEnv, testComponents)
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.EqualError(t, err, fmt.Sprintf(`t.yaml:5: sources[1].socket.listen: source "b" cannot listen beside source "a": %s and %s`, tc.b, tc.a)+why)
		})
	}
}

// A reload to a configuration with a wildcard and another address of its
// port is refused as a config problem before anything stops: the running
// source keeps its listener and goes on receiving. It was refused only
// once the new source failed to bind, told to restart the agent (which
// would have failed at start).
func TestReload_WildcardBesideAnAddressOfItsPortIsRefused(t *testing.T) {
	s := newReloadSink(t)
	port, other := testport.Port(t), testport.Port(t)
	config := func(second string) string {
		return fmt.Sprintf(`
sources:
  - {name: a, type: socket, socket: {listen: "tcp://127.0.0.1:%d"}}
  - {name: b, type: socket, socket: {listen: %q}}
outputs:
  - name: web
    type: http
    http: {url: %q, encoding: text, compression: none}
flows:
  - name: main
    sources: [a, b]
    output: web
    aggregation: {max_buffered_time: 10ms}
`, port, second, s.URL)
	}
	h := startReloadHarness(t, config(fmt.Sprintf("tcp://127.0.0.1:%d", other)), nil)
	before := slices.Clone(h.flow("main").sources)
	var conn net.Conn
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		conn = c
		return err == nil
	}, 20*time.Second, 10*time.Millisecond)
	defer conn.Close()
	_, err := io.WriteString(conn, numbered(0, 100))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.has(0, 100) }, 20*time.Second, 10*time.Millisecond)

	// ParseConfig refuses the pair (as LoadConfig does for agent reload):
	// hand Reload the configuration with the wildcard put in after.
	next := h.parse(config(fmt.Sprintf("tcp://0.0.0.0:%d", other)))
	wildcard := fmt.Sprintf("tcp://0.0.0.0:%d", port)
	next.Sources[1].Config.(*socket.Config).Listen = wildcard
	_, err = h.a.Reload(t.Context(), next)
	require.ErrorContains(t, err, fmt.Sprintf(`sources[1].socket.listen: source "b" cannot listen beside source "a": %s and tcp://127.0.0.1:%d are one port`, wildcard, port))
	require.Equal(t, before, h.flow("main").sources, "a refused reload changed the sources")
	_, err = io.WriteString(conn, numbered(100, 200))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.has(0, 200) }, 20*time.Second, 10*time.Millisecond)
}
