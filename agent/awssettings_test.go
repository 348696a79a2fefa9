package agent

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/internal/awsconf"
	"github.com/kplagent/agent/outputs/firehose"
	"github.com/kplagent/agent/outputs/kinesis"
)

// The AWS settings (region, endpoint, profile, role_arn, external_id,
// role_session_name, sts_endpoint) are one type shared by the Kinesis and
// Firehose outputs and metrics.cloudwatch, written inline in each block:
// their problems, and unknown keys next to them, are reported at the full
// key path of the block they are written in, with file and line.
func TestValidate_AWSSettingsProblemsNameTheBlocksKeys(t *testing.T) {
	// One bad value a line, so that each problem has its own line.
	const aws = `region: US East
endpoint: ftp://x
role_session_name: x
external_id: very-secret-external-id
sts_endpoint: https://sts.example
role_arm: arn:aws:iam::1:role/r`
	indent := func(s, pad string) string { return pad + strings.ReplaceAll(s, "\n", "\n"+pad) }
	want := func(path string, first int) []string {
		return []string{
			fmt.Sprintf(`t.yaml:%d: %s.region: "US East" is not a region name`, first, path),
			fmt.Sprintf(`t.yaml:%d: %s.endpoint: scheme "ftp" not supported (want http or https)`, first+1, path),
			fmt.Sprintf(`t.yaml:%d: %s.role_session_name: 1 characters, want 2 to 64`, first+2, path),
			fmt.Sprintf(`t.yaml:%d: %s.external_id: set without role_arn`, first+3, path),
			fmt.Sprintf(`t.yaml:%d: %s.sts_endpoint: set without role_arn`, first+4, path),
			fmt.Sprintf(`t.yaml:%d: %s.role_arm: unknown field "role_arm" (did you mean "role_arn"?)`, first+5, path),
		}
	}
	for _, tc := range []struct {
		name, metrics, output string
		want                  []string
	}{
		{"kinesis", "", "    type: kinesis\n    kinesis:\n      stream: logs\n" + indent(aws, "      "), want("outputs[0].kinesis", 10)},
		{"firehose", "", "    type: firehose\n    firehose:\n      stream: logs\n" + indent(aws, "      "), want("outputs[0].firehose", 10)},
		{"metrics.cloudwatch", "metrics:\n  cloudwatch:\n" + indent(aws, "    ") + "\n", "    type: stdout", want("metrics.cloudwatch", 4)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yml := fmt.Sprintf(`state_dir: /tmp/x
%ssources:
  - name: in
    type: stdin
outputs:
  - name: out
%s
flows:
  - name: main
    sources: [in]
    output: out
`, tc.metrics, tc.output)
			_, err := ParseConfig("t.yaml", []byte(yml), noEnv, testComponents)
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			require.NotContains(t, err.Error(), "very-secret-external-id", "external_id is a secret")
		})
	}
}

// Every AWS key written in a kinesis, firehose or metrics.cloudwatch block
// lands in that block's settings, and role_session_name defaults to
// kplagent in each.
func TestConfig_AWSSettingsDecodeInEveryBlock(t *testing.T) {
	const aws = `{region: eu-west-1, endpoint: "http://127.0.0.1:1", profile: p, role_arn: "arn:aws:iam::1:role/r", external_id: e, sts_endpoint: "https://sts.example"}`
	want := awsconf.Config{Region: "eu-west-1", Endpoint: "http://127.0.0.1:1", Profile: "p", RoleARN: "arn:aws:iam::1:role/r",
		ExternalID: "e", RoleSessionName: "kplagent", STSEndpoint: "https://sts.example"}
	parse := func(t *testing.T, metrics, output string) Config {
		t.Helper()
		cfg, err := ParseConfig("t.yaml", []byte(metrics+`
state_dir: /tmp/x
sources: [{name: in, type: stdin, stdin: {max_record_bytes: 512KiB}}]
outputs: [`+output+`]
flows: [{name: main, sources: [in], output: out}]
`), noEnv, testComponents)
		require.NoError(t, err)
		return cfg
	}
	t.Run("kinesis", func(t *testing.T) {
		cfg := parse(t, "", "{name: out, type: kinesis, kinesis: {stream: logs, "+aws[1:]+"}")
		require.Equal(t, want, cfg.Outputs[0].Config.(*kinesis.Config).Config)
	})
	t.Run("firehose", func(t *testing.T) {
		cfg := parse(t, "", "{name: out, type: firehose, firehose: {stream: logs, "+aws[1:]+"}")
		require.Equal(t, want, cfg.Outputs[0].Config.(*firehose.Config).Config)
	})
	t.Run("metrics.cloudwatch", func(t *testing.T) {
		cfg := parse(t, "metrics: {cloudwatch: "+aws+"}", `{name: out, type: stdout}`)
		require.NotNil(t, cfg.Metrics.CloudWatch)
		require.Equal(t, want, cfg.Metrics.CloudWatch.Config)
	})
}
