package socket

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/internal/testport"
)

// util-linux logger(1) is a client nobody here wrote. CI installs it
// (.ci/run: bsdutils).
func loggerPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("logger")
	require.NoError(t, err, "util-linux logger is needed (apt-get install bsdutils)")
	return p
}

func runLogger(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), loggerPath(t), args...).CombinedOutput()
	require.NoError(t, err, "logger %v: %s", args, out)
}

// parsed decodes a syslog record the source made.
func parsed(t *testing.T, rec string) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(rec), &m), "%s", rec)
	return m
}

func TestLogger_UnixSockets(t *testing.T) {
	for _, scheme := range []string{"unix", "unixgram"} {
		for _, proto := range []string{"--rfc5424", "--rfc3164"} {
			t.Run(scheme+proto, func(t *testing.T) {
				path := sockPath(t, "log.sock")
				cfg := testConfig(scheme + "://" + path)
				cfg.Format = FormatSyslog
				r := start(t, cfg)
				runLogger(t, "--socket-errors=on", "-u", path, proto, "-p", "local3.warning", "-t", "myapp", "--id=4242", "hello from logger")
				runLogger(t, "--socket-errors=on", "-u", path, proto, "-p", "user.info", "-t", "other", "second message: with colon")
				recs := r.k.waitFor(t, 2)
				require.Zero(t, r.src.Stats().ParseFailures, "%q", recs)
				m := parsed(t, recs[0])
				require.Equal(t, "local3", m["facility"])
				require.Equal(t, "warning", m["severity"])
				require.Equal(t, "myapp", m["app"])
				require.Equal(t, "4242", m["procid"])
				require.Equal(t, "hello from logger", m["message"])
				require.NotEmpty(t, m["timestamp"])
				m = parsed(t, recs[1])
				require.Equal(t, "user", m["facility"])
				require.Equal(t, "info", m["severity"])
				require.Equal(t, "other", m["app"])
				require.Equal(t, "second message: with colon", m["message"])
				if scheme == "unix" {
					require.EqualValues(t, 2, r.src.Stats().ConnectionsTotal, "logger used the stream socket")
				}
			})
		}
	}
}

func TestLogger_TCPAndUDP(t *testing.T) {
	tests := []struct {
		name, listen, framing string
		args                  []string
	}{
		{"tcp rfc5424", "tcp://127.0.0.1:0", FramingLines, []string{"--tcp", "--rfc5424", "--sd-id", "zoo@123", "--sd-param", `tiger="hungry \"very\""`, "--msgid", "MID"}},
		{"tcp rfc3164", "tcp://127.0.0.1:0", FramingLines, []string{"--tcp", "--rfc3164"}},
		{"tcp octet counting", "tcp://127.0.0.1:0", FramingOctetCounted, []string{"--tcp", "--octet-count", "--rfc5424"}},
		{"udp rfc5424", "udp://127.0.0.1:0", FramingLines, []string{"--udp", "--rfc5424"}},
		{"udp rfc3164", "udp://127.0.0.1:0", FramingLines, []string{"--udp", "--rfc3164"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(tc.listen)
			cfg.Format = FormatSyslog
			cfg.Framing = tc.framing
			r := start(t, cfg)
			_, port, err := net.SplitHostPort(r.src.Addr().String())
			require.NoError(t, err)
			args := append([]string{"-n", "127.0.0.1", "-P", port, "-p", "daemon.err", "-t", "netapp", "--id=77"}, tc.args...)
			runLogger(t, append(args, "over the network")...)
			rec := r.k.waitFor(t, 1)[0]
			require.Zero(t, r.src.Stats().ParseFailures, rec)
			m := parsed(t, rec)
			require.Equal(t, "daemon", m["facility"])
			require.Equal(t, "err", m["severity"])
			require.Equal(t, "netapp", m["app"])
			require.Equal(t, "77", m["procid"])
			require.Equal(t, "over the network", m["message"])
			require.NotEmpty(t, m["host"])
			if strings.Contains(tc.name, "rfc5424") && strings.Contains(tc.name, "tcp") {
				require.Equal(t, "MID", m["msgid"])
				sd := m["structured_data"].(map[string]any)
				require.Equal(t, map[string]any{"tiger": `hungry "very"`}, sd["zoo@123"])
			}
		})
	}
}

// A syslog client that counts octets (RFC 6587, rsyslog's and logger's
// --octet-count) sending to a syslog listener with the default framing
// (lines): each frame is one message, parsed, as the line-framed messages
// of other clients on the same port. They were one raw record, its length
// prefix included, counted as a parse failure.
func TestLogger_OctetCountedToALineFramedSyslogListener(t *testing.T) {
	for _, proto := range []string{"--rfc5424", "--rfc3164"} {
		t.Run(proto, func(t *testing.T) {
			cfg := testConfig("tcp://" + testport.Addr(t))
			cfg.Format = FormatSyslog
			require.Equal(t, FramingLines, cfg.Framing)
			r := start(t, cfg)
			_, port, err := net.SplitHostPort(r.src.Addr().String())
			require.NoError(t, err)
			in := filepath.Join(t.TempDir(), "in")
			require.NoError(t, os.WriteFile(in, []byte("first message\nsecond: 12 words\n3 third\n"), 0o600))
			args := []string{"-n", "127.0.0.1", "-P", port, "-T", "-p", "local0.notice", "-t", "counted", proto}
			// Three messages on one connection, octet-counted, then one
			// line-framed from another client.
			runLogger(t, append(args, "--octet-count", "-f", in)...)
			runLogger(t, append(args, "a line")...)
			recs := r.k.waitFor(t, 4)
			require.Zero(t, r.src.Stats().ParseFailures, "%q", recs)
			var msgs []string
			for _, rec := range recs {
				m := parsed(t, rec)
				require.Equal(t, "counted", m["app"])
				require.Equal(t, "local0", m["facility"])
				msgs = append(msgs, m["message"].(string))
			}
			require.Equal(t, []string{"first message", "second: 12 words", "3 third", "a line"}, msgs)
			require.NoError(t, r.stop())
			require.Len(t, r.k.records(), 4)
			require.EqualValues(t, 2, r.src.Stats().ConnectionsTotal)
		})
	}
}

// Only a syslog listener tells frames from lines: with format lines, a
// line that starts with digits and a space is a line as it came.
func TestSource_LinesFormatKeepsDigitLeadingLines(t *testing.T) {
	r := start(t, testConfig("tcp://"+testport.Addr(t)))
	c := dial(t, "tcp", r.src.Addr().String())
	_, err := c.Write([]byte("3 abc\n12 x\n"))
	require.NoError(t, err)
	require.Equal(t, []string{"3 abc", "12 x"}, r.k.waitFor(t, 2))
}
