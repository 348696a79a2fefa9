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

// The query of an agent destination URL (agent tail --to) is its settings:
// those that hold no secret stay readable in usage errors and logs; secrets,
// unknown names and every value of an http(s) URL (the receiver's) do not.
func TestURL_AgentSchemesKeepSettingsThatHoldNoSecret(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"kinesis://s?region=us-east-1&endpoint=http://127.0.0.1:4567&bogus=1",
			"kinesis://s?region=us-east-1&endpoint=http://127.0.0.1:4567&bogus=REDACTED"},
		{"firehose://s?region=eu-west-1&endpoint=http%3A%2F%2Fh%3A1&aggregate_lines=false&append_newline=true",
			"firehose://s?region=eu-west-1&endpoint=http%3A%2F%2Fh%3A1&aggregate_lines=false&append_newline=true"},
		{"kinesis://s?region=us-east-1&role_arn=arn:aws:iam::1:role/r&external_id=s3cret&profile=prod",
			"kinesis://s?region=us-east-1&role_arn=REDACTED&external_id=REDACTED&profile=prod"},
		{"kinesis://s?endpoint=http://u:s3cret@h:1", "kinesis://s?endpoint=REDACTED"},
		{"kinesis://s?endpoint=http://h/?X-Amz-Signature=s3cret", "kinesis://s?endpoint=REDACTED"},
		{"kafka://k1:9092/t?key=partition_key&compression=zstd&acks=all&sasl=PLAIN&client_id=s3cret&password=s3cret",
			"kafka://k1:9092/t?key=partition_key&compression=zstd&acks=all&sasl=PLAIN&client_id=REDACTED&password=REDACTED"},
		{"KAFKA://k1/t?sasl_password=s3cret&token=s3cret&aws_secret_access_key=s3cret&access_key=s3cret",
			"kafka://k1/t?sasl_password=REDACTED&token=REDACTED&aws_secret_access_key=REDACTED&access_key=REDACTED"},
		{"kafka://u:s3cret@k1/t?linger=5ms", "kafka://REDACTED@k1/t?linger=5ms"},
		{"blackhole:?print_interval=1s&x=s3cret", "blackhole:?print_interval=1s&x=REDACTED"},
		{"file:///var/out?format=kpl-json&flag", "file:///var/out?format=kpl-json&REDACTED"},
		// The query of an http(s) URL is the receiver's: all masked.
		{"https://h/i?region=us-east-1&format=json&key=s3cret", "https://h/i?region=REDACTED&format=REDACTED&key=REDACTED"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, RawURL(tc.in))
			require.NotContains(t, RawURL(tc.in), "s3cret")
			if strings.Contains(tc.in, "://") { // String finds URLs by their ://
				require.Equal(t, "see "+tc.want+".", String("see "+tc.in+"."))
			}
		})
	}
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
