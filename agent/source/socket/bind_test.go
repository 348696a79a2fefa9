package socket

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
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
