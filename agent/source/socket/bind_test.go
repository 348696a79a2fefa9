package socket

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/internal/testport"
)

// Bind listens before Run (a reload checks the address), Run serves that
// listener, and Release gives back one that Run will not serve.
func TestBind_RunServesTheBoundListenerReleaseGivesItBack(t *testing.T) {
	for _, network := range []string{"unix", "unixgram"} {
		t.Run(network, func(t *testing.T) {
			path := sockPath(t, "b-"+network+".sock")
			src, err := New(testConfig(network+"://"+path), Settings{Name: "sock"})
			require.NoError(t, err)
			require.Equal(t, network+" "+path, src.BindAddress())
			require.NoError(t, src.Bind())
			fi, err := os.Lstat(path)
			require.NoError(t, err, "Bind made no socket file")
			require.Equal(t, os.FileMode(0o660), fi.Mode().Perm())
			src.Release()
			_, err = os.Lstat(path)
			require.ErrorIs(t, err, os.ErrNotExist, "Release left the socket file")
			src.Release() // a no-op now

			require.NoError(t, src.Bind())
			k := &collector{failAt: -1}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- src.Run(ctx, k.emit) }()
			<-src.Ready()
			c, err := net.Dial(network, path)
			require.NoError(t, err)
			_, err = c.Write([]byte("hello\n"))
			require.NoError(t, err)
			require.NoError(t, c.Close())
			require.Equal(t, []string{"hello"}, k.waitFor(t, 1))
			cancel()
			require.NoError(t, <-done)
			_, err = os.Lstat(path)
			require.ErrorIs(t, err, os.ErrNotExist, "Run left the socket file")
		})
	}
}

// Bind fails as Run would on an address another program holds.
func TestBind_AddressInUseFails(t *testing.T) {
	ln := testport.Listen(t) // another program's
	defer ln.Close()
	src, err := New(testConfig("tcp://"+ln.Addr().String()), Settings{Name: "sock"})
	require.NoError(t, err)
	require.ErrorContains(t, src.Bind(), "address already in use")
	src.Release()
}

// Addresses are compared as they bind: a host is resolved from /etc/hosts
// (localhost is 127.0.0.1 for a listen, which takes the first IPv4
// address), never from DNS; a port or another address differs.
func TestBindAddress_ComparesResolvedAddresses(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"tcp://127.0.0.1:5140", "tcp://localhost:5140", true},
		{"udp://localhost:5140", "udp://127.0.0.1:5140", true},
		{"tcp://LOCALHOST.:5140", "tcp://127.0.0.1:5140", true},
		{"tcp://:5140", "tcp://localhost:5140", true},
		{"tcp://[::ffff:127.0.0.1]:5140", "tcp://127.0.0.1:5140", true},
		{"tcp://localhost:5140", "tcp://127.0.0.1:5141", false},
		{"tcp://localhost:5140", "udp://127.0.0.1:5140", false},
		{"tcp://localhost:5140", "tcp://[::1]:5140", false},
		{"tcp://0.0.0.0:5140", "tcp://127.0.0.1:5140", false},
		// Not in /etc/hosts, and no DNS asked: kept as written.
		{"tcp://no-such-host.invalid:5140", "tcp://127.0.0.1:5140", false},
	} {
		t.Run(tc.a+"="+tc.b, func(t *testing.T) {
			ca, cb := testConfig(tc.a), testConfig(tc.b)
			sa, err := New(ca, Settings{Name: "a"})
			require.NoError(t, err)
			sb, err := New(cb, Settings{Name: "b"})
			require.NoError(t, err)
			require.Equal(t, tc.same, sa.BindAddress() == sb.BindAddress(), "%s vs %s", sa.BindAddress(), sb.BindAddress())
			require.Equal(t, tc.same, ca.ListenAddress() == cb.ListenAddress())
			require.Equal(t, tc.same, (&ca).Equivalent(&cb))
			cb.Format = FormatJSON
			require.False(t, (&ca).Equivalent(&cb), "another format is another source")
		})
	}
}

// Where Go listens on a wildcard with one dual-stack socket (the usual
// Linux host), 0.0.0.0, [::] and [::ffff:0.0.0.0] of a port are that one
// socket: they compare equal, and the kernel agrees (one bound, another
// spelling cannot bind). One address of the port stays another address.
func TestBindAddress_WildcardSpellingsAreOneSocket(t *testing.T) {
	probe, err := net.Listen("tcp", "0.0.0.0:0")
	require.NoError(t, err)
	dual := probe.Addr().(*net.TCPAddr).IP.To4() == nil
	probe.Close()
	if !dual {
		t.Skip("this host listens on 0.0.0.0 with IPv4 only: 0.0.0.0 and [::] are two sockets here")
	}
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			port := testport.Port(t)
			spell := func(host string) string { return fmt.Sprintf("%s://%s:%d", network, host, port) }
			held, err := New(testConfig(spell("0.0.0.0")), Settings{Name: "a"})
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("%s [::]:%d", network, port), held.BindAddress())
			require.NoError(t, held.Bind())
			defer held.Release()
			for _, host := range []string{"[::]", "[::ffff:0.0.0.0]"} {
				c := testConfig(spell(host))
				src, err := New(c, Settings{Name: "b"})
				require.NoError(t, err)
				require.Equal(t, held.BindAddress(), src.BindAddress(), host)
				ca := testConfig(spell("0.0.0.0"))
				require.True(t, (&ca).Equivalent(&c), host)
				require.ErrorContains(t, src.Bind(), "address already in use", "the kernel takes %s for the same socket", host)
				src.Release()
			}
			one := testConfig(spell("127.0.0.1"))
			ca := testConfig(spell("0.0.0.0"))
			require.False(t, (&ca).Equivalent(&one))
		})
	}
}

// A listen spelled with localhost binds the address it compares as.
func TestBind_LocalhostBindsTheResolvedAddress(t *testing.T) {
	port := testport.Port(t)
	src, err := New(testConfig("tcp://localhost:"+strconv.Itoa(port)), Settings{Name: "sock"})
	require.NoError(t, err)
	require.NoError(t, src.Bind())
	defer src.Release()
	require.Equal(t, "tcp 127.0.0.1:"+strconv.Itoa(port), src.BindAddress())
	require.Equal(t, "127.0.0.1:"+strconv.Itoa(port), src.held.ln.Addr().String())
}

// PortClash refuses exactly the pairs of addresses the kernel will not
// bind at once, in either order, that are not one address already (those
// compare equal, a duplicate): a wildcard and another address of its port
// and network. 0.0.0.0 covers every IPv4 address; where Go binds the
// wildcard dual-stack (the usual Linux host), 0.0.0.0 and [::] cover IPv6
// addresses too. tcp and udp ports are apart, as are Unix sockets, and
// port 0 takes a port of its own.
func TestPortClash_RefusesWhatTheKernelRefuses(t *testing.T) {
	hosts := []string{"0.0.0.0", "[::]", "[::ffff:0.0.0.0]", "127.0.0.1", "localhost", "127.0.0.2", "[::1]", "[::ffff:127.0.0.1]"}
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			port := testport.Port(t)
			listen := func(host string) string { return fmt.Sprintf("%s://%s:%d", network, host, port) }
			// refused binds a then b, each as the source binds, and
			// reports whether b found its address in use; ok false when
			// the host cannot bind a or b at all (no IPv6 here).
			refused := func(a, b string) (refused, ok bool) {
				sa, err := New(testConfig(a), Settings{Name: "a"})
				require.NoError(t, err)
				sb, err := New(testConfig(b), Settings{Name: "b"})
				require.NoError(t, err)
				if err := sa.Bind(); err != nil {
					return false, false
				}
				defer sa.Release()
				err = sb.Bind()
				sb.Release()
				if err != nil && !errors.Is(err, syscall.EADDRINUSE) {
					return false, false
				}
				return err != nil, true
			}
			clashes := 0
			for i, ha := range hosts {
				for _, hb := range hosts[i+1:] {
					a, b := testConfig(listen(ha)), testConfig(listen(hb))
					ab, ok1 := refused(a.Listen, b.Listen)
					ba, ok2 := refused(b.Listen, a.Listen)
					if !ok1 || !ok2 {
						t.Logf("%s and %s: not both bindable on this host", ha, hb)
						continue
					}
					require.Equal(t, ab, ba, "%s and %s: the kernel refuses one order only", ha, hb)
					same := a.ListenAddress() == b.ListenAddress()
					why := (&a).PortClash(&b)
					require.Equal(t, why != "", (&b).PortClash(a) != "", "%s and %s: not symmetric", ha, hb)
					require.Equal(t, ab, same || why != "", "%s and %s: kernel refuses: %v; one address: %v; PortClash: %q", ha, hb, ab, same, why)
					if why != "" {
						require.False(t, same, "%s and %s: one address is a duplicate, not a clash", ha, hb)
						require.Contains(t, why, a.Listen)
						require.Contains(t, why, b.Listen)
						require.Contains(t, why, "address already in use")
						clashes++
					}
				}
			}
			// 0.0.0.0 with 127.0.0.1, localhost, 127.0.0.2 at least.
			require.GreaterOrEqual(t, clashes, 3)
		})
	}
	port := testport.Port(t)
	for _, tc := range []struct{ a, b string }{
		{fmt.Sprintf("tcp://0.0.0.0:%d", port), fmt.Sprintf("udp://127.0.0.1:%d", port)},
		{fmt.Sprintf("udp://[::]:%d", port), fmt.Sprintf("tcp://[::1]:%d", port)},
		{"tcp://0.0.0.0:0", "tcp://127.0.0.1:0"},
		{fmt.Sprintf("tcp://0.0.0.0:%d", port), fmt.Sprintf("tcp://127.0.0.1:%d", port+1)},
		{fmt.Sprintf("tcp://0.0.0.0:%d", port), "unix:///run/x.sock"},
		{fmt.Sprintf("tcp://0.0.0.0:%d", port), fmt.Sprintf("tcp://no-such-host.invalid:%d", port)},
	} {
		a, b := testConfig(tc.a), testConfig(tc.b)
		require.Empty(t, (&a).PortClash(&b), "%s and %s", tc.a, tc.b)
	}
	a, b := testConfig(fmt.Sprintf("tcp://0.0.0.0:%d", port)), testConfig(fmt.Sprintf("tcp://127.0.0.1:%d", port))
	sa, err := New(a, Settings{Name: "a"})
	require.NoError(t, err)
	require.NoError(t, sa.Bind())
	defer sa.Release()
	sb, err := New(b, Settings{Name: "b"})
	require.NoError(t, err)
	require.ErrorIs(t, sb.Bind(), syscall.EADDRINUSE, "tcp: the kernel binds a wildcard and an address of its port at once here")
	require.NotEmpty(t, (&a).PortClash(&b))
}

// A port spelled with leading zeros is that port: tcp://127.0.0.1:05140 and
// tcp://127.0.0.1:5140 are one socket (the kernel refuses the second bind),
// so they compare as one address (the agent refuses them as a duplicate),
// a reload from one to the other keeps the listener (Equivalent), and a
// wildcard of the port clashes with either. Before, the ports were
// compared as written: the two passed validate and the second failed at
// start with "address already in use".
func TestListenAddress_PortComparedAsNumber(t *testing.T) {
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			port := testport.Port(t)
			plain := testConfig(fmt.Sprintf("%s://127.0.0.1:%d", network, port))
			zeros := testConfig(fmt.Sprintf("%s://127.0.0.1:%06d", network, port))
			require.Equal(t, plain.ListenAddress(), zeros.ListenAddress())
			require.Equal(t, fmt.Sprintf("%s 127.0.0.1:%d", network, port), zeros.ListenAddress())
			require.True(t, (&plain).Equivalent(&zeros))
			wild := testConfig(fmt.Sprintf("%s://0.0.0.0:%04d%d", network, 0, port))
			require.NotEmpty(t, (&wild).PortClash(&plain))
			require.NotEmpty(t, (&zeros).PortClash(&wild))

			sa, err := New(plain, Settings{Name: "a"})
			require.NoError(t, err)
			sb, err := New(zeros, Settings{Name: "b"})
			require.NoError(t, err)
			require.Equal(t, sa.BindAddress(), sb.BindAddress())
			require.NoError(t, sa.Bind())
			defer sa.Release()
			require.ErrorIs(t, sb.Bind(), syscall.EADDRINUSE, "the kernel takes them for one socket")
			sb.Release()
		})
	}
}
