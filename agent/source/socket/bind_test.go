package socket

import (
	"context"
	"net"
	"os"
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
