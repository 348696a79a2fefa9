package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/outputs"
)

// Every compiled-in output names its package in an error from New, not the
// output: the agent names the output (agent.OutputError), and both doing
// it said "output destination: kinesis: output destination: ...".
func TestOutputNewErrors_NameThePackageNotTheOutput(t *testing.T) {
	comps := components()
	for _, typ := range comps.OutputNames() {
		t.Run(typ, func(t *testing.T) {
			ot, ok := comps.Output(typ)
			require.True(t, ok)
			set := outputs.Settings{Logger: slog.New(slog.DiscardHandler), Stdout: io.Discard, Registerer: prometheus.NewRegistry(), UserAgent: "agent/test"}
			// The defaults lack what most types require (a URL, a
			// stream, a topic, a path); those complete by default (stdout,
			// blackhole) are given a config of the wrong type.
			o, err := ot.New("myout", ot.DefaultConfig(), set)
			if err == nil {
				require.NoError(t, o.Close(t.Context()))
				_, err = ot.New("myout", struct{}{}, set)
			}
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), typ+": "), err.Error())
			require.NotContains(t, err.Error(), "myout")
		})
	}
}

// noAWS leaves the AWS SDK no region to find: no variable, no shared
// config file, no instance metadata.
func noAWS(t *testing.T) {
	dir := t.TempDir()
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// An output that cannot start is told once, named once: by --to for agent
// tail (the user named no output), by its name for the daemon.
func TestOutputStartErrors_NameTheOutputOnce(t *testing.T) {
	noAWS(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	require.NoError(t, os.WriteFile(log, []byte("a line\n"), 0o600))
	blocker := filepath.Join(dir, "not-a-dir")
	require.NoError(t, os.WriteFile(blocker, nil, 0o600))

	regionNotSet := "region: not set (set region, ?region= in a kinesis:// or firehose:// URL, AWS_REGION, or the profile's region)"
	for _, tc := range []struct{ typ, to, want string }{
		{"kinesis", "kinesis://s?endpoint=http://127.0.0.1:1", `agent tail: --to "kinesis://s?endpoint=http://127.0.0.1:1": kinesis: ` + regionNotSet},
		{"firehose", "firehose://s?endpoint=http://127.0.0.1:1&profile=", `agent tail: --to "firehose://s?endpoint=http://127.0.0.1:1&profile=": firehose: ` + regionNotSet},
		{"file", "file://" + blocker + "/out", `agent tail: --to "file://` + blocker + `/out": file: mkdir ` + blocker},
	} {
		t.Run(tc.to, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run([]string{"tail", "--once", "--quiet", "--state-dir", t.TempDir(), "--to", tc.to, log}, strings.NewReader(""), io.Discard, &stderr)
			require.Equal(t, exitFailed, code, stderr.String())
			msg := stderr.String()
			require.True(t, strings.HasPrefix(msg, tc.want), msg)
			require.Equal(t, 1, strings.Count(msg, "\n"), "one line: %s", msg)
			require.Equal(t, 1, strings.Count(msg, tc.typ+": "), "the type is named once: %s", msg)
			require.NotContains(t, msg, "destination", "tail's output has no name the user gave")
		})
	}

	// The daemon names the output by the name in its config, once. Its
	// configuration check finds no region either (see
	// TestValidate_AWSOutputsWithoutARegionFailAsStartWould) unless the
	// instance metadata may give one at start: here it is asked and fails.
	imds := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(imds.Close)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.URL)
	cfg := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`state_dir: `+filepath.Join(dir, "state")+`
admin: {listen: "off"}
sources:
  - {name: app, type: file, file: {include: [`+log+`]}}
outputs:
  - {name: out, type: kinesis, kinesis: {stream: s, endpoint: "http://127.0.0.1:1"}}
flows:
  - {name: f, sources: [app], output: out}
`), 0o600))
	var stderr bytes.Buffer
	code := run([]string{"run", "-c", cfg, "--log-format", "text"}, strings.NewReader(""), io.Discard, &stderr)
	require.Equal(t, exitFailed, code, stderr.String())
	require.Contains(t, stderr.String(), `error="output \"out\": kinesis: `+strings.ReplaceAll(regionNotSet, `"`, `\"`))
	require.Equal(t, 1, strings.Count(stderr.String(), "kinesis: "), stderr.String())
}
