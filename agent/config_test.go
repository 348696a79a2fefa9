package agent

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source/file"
	httpout "github.com/kplagent/agent/outputs/http"
	kafkaout "github.com/kplagent/agent/outputs/kafka"
)

func noEnv(string) (string, bool) { return "", false }

func TestConfig_ExampleFileValidates(t *testing.T) {
	data, err := os.ReadFile("../agent.yaml.example")
	require.NoError(t, err)
	cfg, err := ParseConfig("agent.yaml.example", data, func(k string) (string, bool) {
		return map[string]string{"HOSTNAME": "h1"}[k], k == "HOSTNAME"
	}, testComponents)
	require.NoError(t, err)
	require.Len(t, cfg.Flows, 1)
	require.Equal(t, "h1", cfg.Outputs[0].Config.(*httpout.Config).Headers["X-Source"])
	k := cfg.Outputs[1].Config.(*kafkaout.Config)
	require.Equal(t, "kafka", cfg.Outputs[1].Type)
	require.Equal(t, []string{"k1:9092", "k2:9092"}, k.Brokers)
	require.Equal(t, 5*time.Millisecond, k.Linger)
	require.Equal(t, 64<<20, int(k.MaxBufferedBytes))
	require.Equal(t, "/var/lib/agent/spool", cfg.Spool.Dir)
	require.Equal(t, 50*1024, int(cfg.Flows[0].Aggregation.MaxBytes))
}

// TestConfig_ReadmeExamplesValidate checks every yaml block of the README.
func TestConfig_ReadmeExamplesValidate(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(data, -1)
	for i, b := range blocks {
		_, err := ParseConfig("README.md block "+string(rune('1'+i)), b[1], noEnv, testComponents)
		require.NoError(t, err)
	}
}

const minimal = `
state_dir: /tmp/agent-state
sources:
  - name: app
    type: file
    file:
      include: [/var/log/app.log]
outputs:
  - name: out
    type: http
    http:
      url: http://127.0.0.1:9/x
flows:
  - name: main
    sources: [app]
    output: out
`

func TestConfig_MinimalGetsDefaults(t *testing.T) {
	cfg, err := ParseConfig("a.yaml", []byte(minimal), noEnv, testComponents)
	require.NoError(t, err)
	f := cfg.Flows[0]
	require.Equal(t, PartitionKeyRandom, f.PartitionKey.Kind)
	require.Equal(t, 100*time.Millisecond, f.Aggregation.MaxBufferedTime)
	require.Equal(t, 4, f.Sender.Concurrency)
	require.Equal(t, "ndjson", cfg.Outputs[0].Config.(*httpout.Config).Format)
	require.Equal(t, "end", cfg.Sources[0].Config.(*file.Config).StartAt)
	require.Equal(t, "/tmp/agent-state/spool", cfg.Spool.Dir)
}

func TestConfig_ErrorsCarryFileLineAndPath(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string // each a line of the error
	}{
		{"unknown key with suggestion", strings.Replace(minimal, "    output: out", "    output: out\n    partiton_key: random", 1),
			[]string{`a.yaml:17: flows[0].partiton_key: unknown field "partiton_key" (did you mean "partition_key"?)`}},
		{"unknown nested key", strings.Replace(minimal, "      url: http://127.0.0.1:9/x", "      url: http://127.0.0.1:9/x\n      gzip: true", 1),
			[]string{`a.yaml:13: outputs[0].http.gzip: unknown field "gzip"`}},
		{"semantic errors all listed", strings.Replace(strings.Replace(minimal, "output: out", "output: nope", 1), "sources: [app]", "sources: [app, other]", 1),
			[]string{`a.yaml:15: flows[0].sources[1]: no source named "other"`, `a.yaml:16: flows[0].output: no output named "nope"`}},
		{"package validation gets the full path", strings.Replace(minimal, "http://127.0.0.1:9/x", `""`, 1),
			[]string{`a.yaml:12: outputs[0].http.url: `}},
		{"bad type", strings.Replace(minimal, "type: http", "type: carrier-pigeon", 1),
			[]string{`a.yaml:10: outputs[0].type: unknown "carrier-pigeon"`}},
		{"bad duration", strings.Replace(minimal, "state_dir: /tmp/agent-state", "state_dir: /tmp/agent-state\nshutdown_timeout: soon", 1),
			[]string{`a.yaml:3: `}},
		{"syntax error", minimal + "  - : : :\n\t", []string{"a.yaml:"}},
		{"explicit hash key field not a path", strings.Replace(minimal, "    output: out", "    output: out\n    explicit_hash_key: {field: user..id}", 1),
			[]string{`a.yaml:17: flows[0].explicit_hash_key.field: "user..id": want a name or a path of names (a.b.c)`}},
		{"unset env var", strings.Replace(minimal, "/var/log/app.log", "${LOG_PATH}", 1),
			[]string{`a.yaml:7: sources[0].file.include: environment variable LOG_PATH is not set`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("a.yaml", []byte(tc.yaml), noEnv, testComponents)
			require.Error(t, err)
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
			msg := err.Error()
			for _, w := range tc.want {
				require.Contains(t, msg, w)
			}
		})
	}
}

func TestConfig_EnvExpansion(t *testing.T) {
	y := strings.Replace(minimal, "http://127.0.0.1:9/x", "${URL}", 1) +
		"    aggregation: {max_bytes: ${AGG:-64KiB}}\n"
	cfg, err := ParseConfig("a.yaml", []byte(y), func(k string) (string, bool) {
		if k == "URL" {
			return "https://example.com/$$x", true
		}
		return "", false
	}, testComponents)
	require.NoError(t, err)
	require.Equal(t, "https://example.com/$$x", cfg.Outputs[0].Config.(*httpout.Config).URL, "values are not expanded twice")
	require.Equal(t, 64*1024, int(cfg.Flows[0].Aggregation.MaxBytes))
}

func TestConfig_RelativePathsAreRelativeToTheFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(p, []byte(strings.Replace(minimal, "/tmp/agent-state", "state", 1)), 0o600))
	cfg, err := LoadConfig(p, testComponents)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "state"), cfg.StateDir)
	require.Equal(t, filepath.Join(dir, "state", "spool"), cfg.Spool.Dir)
}

func TestReadAdminSettings_ShutdownTimeoutAndDefaults(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml string
		want       AdminSettings
	}{
		{"set", "admin: {listen: 127.0.0.1:7}\nshutdown_timeout: 2m\n", AdminSettings{Listen: "127.0.0.1:7", ShutdownTimeout: 2 * time.Minute}},
		{"unset", "state_dir: /tmp/x\n", AdminSettings{Listen: DefaultAdminListen, ShutdownTimeout: DefaultConfig().ShutdownTimeout}},
		{"not a duration", "shutdown_timeout: {a: 1}\n", AdminSettings{Listen: DefaultAdminListen, ShutdownTimeout: DefaultConfig().ShutdownTimeout}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".yaml")
			require.NoError(t, os.WriteFile(p, []byte(tc.yaml), 0o600))
			got, err := ReadAdminSettings(p)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}
