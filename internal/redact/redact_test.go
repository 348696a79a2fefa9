package redact

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"https://h.example/ingest", "https://h.example/ingest"},
		{"https://h.example/ingest?api_key=s3cret", "https://h.example/ingest?api_key=REDACTED"},
		{"https://h.example/i?a=1&token=s3cret&flag", "https://h.example/i?a=REDACTED&token=REDACTED&REDACTED"},
		{"https://bob:s3cret@h.example:8443/i", "https://REDACTED@h.example:8443/i"},
		{"https://s3cret@h.example/i", "https://REDACTED@h.example/i"},
		{"http://h/i?sig=a%2Fb#s3cret", "http://h/i?sig=REDACTED"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			u, err := url.Parse(tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.want, URL(u))
			require.Equal(t, tc.want, RawURL(tc.in))
			require.NotContains(t, URL(u), "s3cret")
		})
	}
	require.Empty(t, URL(nil))
}

func TestString(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"no url here", "no url here"},
		{`Post "https://h/i?api_key=s3cret": dial tcp: refused`, `Post "https://h/i?api_key=REDACTED": dial tcp: refused`},
		{"redirect to https://bob:s3cret@other/x?k=s3cret. not followed", "redirect to https://REDACTED@other/x?k=REDACTED. not followed"},
		{"see //bob:s3cret@host/x", "see //REDACTED@host/x"},
		{"mail me@example.com", "mail me@example.com"},
		{"bad %zz://x?k=s3cret", "bad %zz://x?k=REDACTED"},
		// Unparseable, with nothing that may be secret: kept as written
		// (a usage hint, a mistyped address the user must see to fix).
		{"url has no broker (kafka://HOST:PORT/TOPIC)", "url has no broker (kafka://HOST:PORT/TOPIC)"},
		{`--to "http://[::1": missing ']' in host`, `--to "http://[::1": missing ']' in host`},
		// Unparseable with user information or a query: masked after the scheme.
		{"bad http://bob:s3cret@[::1 host", "bad http://REDACTED host"},
		{"bad http://[::1/x?k=s3cret", "bad http://REDACTED"},
	}
	for _, tc := range tests {
		got := String(tc.in)
		require.Equal(t, tc.want, got, tc.in)
		require.NotContains(t, got, "s3cret")
	}
}

func TestError_ScrubsAndKeepsChain(t *testing.T) {
	t.Parallel()
	inner := &url.Error{Op: "Post", URL: "https://h/i?api_key=s3cret", Err: fs.ErrNotExist}
	err := Error(fmt.Errorf("http: %w", inner))
	require.NotContains(t, err.Error(), "s3cret")
	require.True(t, errors.Is(err, fs.ErrNotExist))
	var ue *url.Error
	require.ErrorAs(t, err, &ue)
	require.Same(t, err, Error(err), "wrapping twice is a no-op")
	require.NoError(t, Error(nil))
	require.True(t, strings.HasPrefix(err.Error(), "http: Post"))
}
