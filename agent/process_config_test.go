package agent

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/process"
)

const withProcessing = minimal + `    partition_key: {field: user_id, fallback: deterministic}
    explicit_hash_key: {field: ehk}
    envelope: {timestamp: "@timestamp", host: host, file: log.file}
    processors:
      - single_line:
      - log_to_json: {format: apache_combined}
      - add_fields: {fields: {env: prod}, hostname: hostname}
      - drop: {field: response, regex: '^2'}
      - redact: {patterns: [email]}
      - rename: {agent: user_agent}
      - remove: [ident]
`

func TestConfig_ProcessingStage(t *testing.T) {
	cfg, err := ParseConfig("a.yaml", []byte(withProcessing), noEnv, testComponents)
	require.NoError(t, err)
	f := cfg.Flows[0]
	require.Equal(t, process.KeyConfig{Kind: process.KeyField, Field: "user_id", Fallback: process.KeyDeterministic, Group: 1}, f.PartitionKey)
	require.Equal(t, "ehk", f.ExplicitHashKey.Field)
	require.Equal(t, process.Envelope{Timestamp: "@timestamp", Host: "host", File: "log.file"}, f.Envelope)
	require.Len(t, f.Processors, 7)
	require.NotNil(t, f.Processors[0].SingleLine, "a processor without options gets its defaults")
	require.Equal(t, "apache_combined", f.Processors[1].LogToJSON.Format)
	require.Equal(t, "^2", f.Processors[3].Drop.Regex)
	require.Equal(t, []string{"ident"}, f.Processors[6].Remove)
}

func TestConfig_ProcessingStageErrors(t *testing.T) {
	cases := []struct {
		name, from, to, want string
	}{
		{"unknown processor", "- single_line:", "- single_lines:", `flows[0].processors[0].single_lines: unknown`},
		{"two in one item", "- single_line:", "- {single_line: {}, json: {}}", `flows[0].processors[0]: one processor per list item, got single_line and json`},
		{"unknown log format", "apache_combined", "iis", `flows[0].processors[1].log_to_json.format: unknown "iis"`},
		{"bad regex", "regex: '^2'", "regex: '(('", `flows[0].processors[3].drop.regex: error parsing regexp`},
		{"unknown option", "{format: apache_combined}", "{format: apache_combined, strict: true}", `flows[0].processors[1].log_to_json.strict: unknown`},
		{"bad key policy", "{field: user_id, fallback: deterministic}", "sticky", `flows[0].partition_key: unknown "sticky"`},
		{"bad key mapping", "{field: user_id, fallback: deterministic}", "{field: a, fixed: b}", `partition_key: want exactly one of field, regex or fixed`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			y := strings.Replace(withProcessing, tc.from, tc.to, 1)
			require.NotEqual(t, withProcessing, y)
			_, err := ParseConfig("a.yaml", []byte(y), noEnv, testComponents)
			require.ErrorContains(t, err, tc.want)
		})
	}
}
