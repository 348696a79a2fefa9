package agent

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/internal/fakeaws"
)

// cloudWatchEnv gives the AWS SDK a known credential chain: environment
// credentials, no shared files, no IMDS.
func cloudWatchEnv(t *testing.T) {
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CLOUDWATCH"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	none := filepath.Join(t.TempDir(), "none")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDAGENTCWTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "agent-cw-test-secret")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(none, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(none, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// runWithCloudWatch ships n lines from stdin to a stdout output in once
// mode, publishing to fake, and returns what the output wrote, Run's error
// and the agent.
func runWithCloudWatch(t *testing.T, fake *fakeaws.CloudWatch, n int) (string, error, *Agent) {
	t.Helper()
	return runWithCloudWatchRegion(t, fake, n, "us-east-1")
}

// runWithCloudWatchRegion is runWithCloudWatch with metrics.cloudwatch's
// region ("": none, nor in the environment).
func runWithCloudWatchRegion(t *testing.T, fake *fakeaws.CloudWatch, n int, region string) (string, error, *Agent) {
	t.Helper()
	cloudWatchEnv(t)
	if region != "" {
		region = "region: " + region
	}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	cfg, err := ParseConfig("t.yaml", []byte(fmt.Sprintf(`
state_dir: %s
admin: {listen: off}
metrics:
  cloudwatch:
    namespace: Test/Agent
    interval: 1h
    %s
    endpoint: %s
    dimensions: {Host: test-host}
sources:
  - name: in
    type: stdin
outputs:
  - name: out
    type: stdout
    stdout: {encoding: text}
flows:
  - name: main
    sources: [in]
    output: out
`, filepath.Join(dir, "state"), region, srv.URL)), noEnv, testComponents)
	require.NoError(t, err)
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "line %d\n", i)
	}
	var out bytes.Buffer
	a, err := New(cfg, Settings{Components: testComponents, Logger: slog.New(slog.DiscardHandler), Once: true,
		Stdin: strings.NewReader(in.String()), Stdout: &out})
	require.NoError(t, err)
	err = a.Run(t.Context())
	return out.String(), err, a
}

// counterValue reads a counter of the agent's registry by name and labels.
func counterValue(t *testing.T, a *Agent, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := a.m.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

func TestAgent_CloudWatchGetsTheLastIncreaseAtShutdown(t *testing.T) {
	fake := &fakeaws.CloudWatch{}
	out, err, a := runWithCloudWatch(t, fake, 3000)
	require.NoError(t, err)
	require.Equal(t, 3000, strings.Count(out, "\n"))
	// The interval is an hour: what arrived is the shutdown's publish.
	require.Equal(t, 3000.0, fake.Sum("RecordsReceived", map[string]string{"Source": "in", "Host": "test-host"}))
	require.Equal(t, 3000.0, fake.Sum("RecordsSent", map[string]string{"Output": "out", "Host": "test-host"}))
	d, ok := fake.Latest("SpoolEntries", map[string]string{"Flow": "main"})
	require.True(t, ok)
	require.Zero(t, d.Value)
	require.Equal(t, 1.0, counterValue(t, a, "agent_cloudwatch_requests_total", map[string]string{"result": "ok"}))
}

func TestAgent_FailingCloudWatchDoesNotTouchThePipeline(t *testing.T) {
	fake := &fakeaws.CloudWatch{}
	fake.Fail(true)
	out, err, a := runWithCloudWatch(t, fake, 3000)
	require.NoError(t, err)
	require.Equal(t, 3000, strings.Count(out, "\n"), "every record delivered")
	require.Positive(t, fake.Calls())
	require.Empty(t, fake.Requests())
	require.Equal(t, 1.0, counterValue(t, a, "agent_cloudwatch_requests_total", map[string]string{"result": "error"}))
}

// CloudWatch metrics that cannot start (no region anywhere) are logged and
// off: the pipeline runs and delivers, as it does when publishing fails.
func TestAgent_CloudWatchThatCannotStartDoesNotStopThePipeline(t *testing.T) {
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	fake := &fakeaws.CloudWatch{}
	out, err, _ := runWithCloudWatchRegion(t, fake, 3000, "")
	require.NoError(t, err)
	require.Equal(t, 3000, strings.Count(out, "\n"), "every record delivered")
	require.Zero(t, fake.Calls())
}

func TestConfig_CloudWatchMetricsProblemsHaveFileAndLine(t *testing.T) {
	_, err := ParseConfig("t.yaml", []byte(`
state_dir: /tmp/x
metrics:
  cloudwatch:
    namespace: AWS/Mine
    intervall: 1m
    dimensions: {Flow: x}
sources:
  - name: in
    type: stdin
outputs:
  - name: out
    type: stdout
flows:
  - name: main
    sources: [in]
    output: out
`), noEnv, testComponents)
	require.Error(t, err)
	require.Contains(t, err.Error(), `t.yaml:5: metrics.cloudwatch.namespace: "AWS/Mine": names starting with AWS/ are reserved`)
	require.Contains(t, err.Error(), `t.yaml:6: metrics.cloudwatch.intervall: unknown field "intervall" (did you mean "interval"?)`)
	require.Contains(t, err.Error(), `t.yaml:7: metrics.cloudwatch.dimensions: "Flow": the agent sets this dimension itself`)

	// Off unless written; enabled: false keeps the block and turns it off.
	for _, tc := range []struct {
		yml  string
		want bool
	}{{"", false}, {"metrics: {cloudwatch: {namespace: X}}", true}, {"metrics: {cloudwatch: {enabled: false, namespace: ''}}", false}} {
		cfg, err := ParseConfig("t.yaml", []byte(tc.yml+`
state_dir: /tmp/x
sources: [{name: in, type: stdin}]
outputs: [{name: out, type: stdout}]
flows: [{name: main, sources: [in], output: out}]
`), noEnv, testComponents)
		require.NoError(t, err, tc.yml)
		cw := cfg.Metrics.CloudWatch
		require.Equal(t, tc.want, cw != nil && cw.Enabled, tc.yml)
		if tc.want {
			require.Equal(t, "X", cw.Namespace)
			require.Equal(t, "1m0s", cw.Interval.String(), "defaults under the user's values")
		}
	}
}

// The commented metrics example of agent.yaml.example, uncommented, is
// valid and what it says.
func TestConfig_ExampleCloudWatchMetricsValidate(t *testing.T) {
	data, err := os.ReadFile("../agent.yaml.example")
	require.NoError(t, err)
	var block []string
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		if line == "# metrics:" {
			in = true
		}
		if !in {
			continue
		}
		if !strings.HasPrefix(line, "# ") {
			break
		}
		block = append(block, strings.TrimPrefix(line, "# "))
	}
	require.NotEmpty(t, block, "the metrics example is in agent.yaml.example")
	cfg, err := ParseConfig("example.yaml", []byte(strings.Join(block, "\n")+`
state_dir: /tmp/x
sources: [{name: in, type: stdin}]
outputs: [{name: out, type: stdout}]
flows: [{name: main, sources: [in], output: out}]
`), noEnv, testComponents)
	require.NoError(t, err)
	cw := cfg.Metrics.CloudWatch
	require.NotNil(t, cw)
	require.True(t, cw.Enabled)
	require.Equal(t, "KPLAgent", cw.Namespace)
	require.Equal(t, map[string]string{"Host": "unknown"}, cw.Dimensions)
	require.Equal(t, "eu-west-1", cw.Region)
}

// A CloudWatch that never answers holds neither the pipeline nor its
// shutdown: the last publish gives up at the shutdown's deadline.
func TestAgent_HangingCloudWatchDoesNotHoldTheShutdown(t *testing.T) {
	fake := &fakeaws.CloudWatch{}
	fake.Block()
	defer fake.Unblock()
	start := time.Now()
	out, err, a := runWithCloudWatch(t, fake, 3000)
	require.NoError(t, err)
	require.Less(t, time.Since(start), 15*time.Second, "shutdown_timeout is 10s, the last publish at most its margin")
	require.Equal(t, 3000, strings.Count(out, "\n"), "every record delivered")
	require.Equal(t, 1, fake.Calls())
	require.Equal(t, 1.0, counterValue(t, a, "agent_cloudwatch_requests_total", map[string]string{"result": "error"}))
}
