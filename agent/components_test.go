package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/agent/source/file"
	"github.com/kplagent/agent/agent/source/journald"
	"github.com/kplagent/agent/agent/source/socket"
	"github.com/kplagent/agent/agent/source/stdin"
	"github.com/kplagent/agent/internal/units"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/blackhole"
	fileout "github.com/kplagent/agent/outputs/file"
	"github.com/kplagent/agent/outputs/firehose"
	httpout "github.com/kplagent/agent/outputs/http"
	kafkaout "github.com/kplagent/agent/outputs/kafka"
	"github.com/kplagent/agent/outputs/kinesis"
	"github.com/kplagent/agent/outputs/stdout"
)

// testComponents are the types the tests' configs name (cmd/agent lists the
// program's own).
var testComponents = Components{
	Sources: []source.Type{file.Type(), stdin.Type(), journald.Type(), socket.Type()},
	Outputs: []outputs.Type{httpout.Type(), stdout.Type(), fileout.Type(), kinesis.Type(), firehose.Type(), kafkaout.Type(), blackhole.Type()},
}

// memConfig is the config of memOutput, a type only the tests know: the
// agent builds it from the Components like any other.
type memConfig struct {
	Topic       string         `yaml:"topic"`
	RecordLimit units.ByteSize `yaml:"record_limit"`
	Dir         string         `yaml:"dir"`
}

func (c *memConfig) Validate() error {
	if c.Topic == "" {
		return errors.New("topic: required")
	}
	return nil
}
func (c *memConfig) MaxRecordBytes() int { return int(c.RecordLimit) }
func (c *memConfig) ResolvePaths(base string) {
	if c.Dir != "" && !filepath.IsAbs(c.Dir) {
		c.Dir = filepath.Join(base, c.Dir)
	}
}

type memOutput struct {
	name    string
	set     outputs.Settings
	records atomic.Int64
	sends   prometheus.Counter
}

func (m *memOutput) Name() string                { return m.name }
func (m *memOutput) Close(context.Context) error { return nil }
func (m *memOutput) Send(_ context.Context, b outputs.Batch) error {
	m.records.Add(int64(b.UserRecords()))
	m.sends.Inc()
	return nil
}

func memType(built *[]*memOutput) outputs.Type {
	return outputs.Type{
		Name:          "mem",
		DefaultConfig: func() any { return &memConfig{RecordLimit: 1 << 20} },
		New: func(name string, cfg any, set outputs.Settings) (outputs.Output, error) {
			m := &memOutput{name: name, set: set, sends: prometheus.NewCounter(prometheus.CounterOpts{Name: "mem_sends_total"})}
			if err := set.Registerer.Register(m.sends); err != nil {
				return nil, err
			}
			*built = append(*built, m)
			return m, nil
		},
	}
}

// A new output type is one Type in the Components: its block is decoded
// strictly over its defaults, validated, resolved, checked against the
// flows by its capabilities, and built with the agent's Settings.
func TestComponents_ANewOutputTypeIsOneRegistration(t *testing.T) {
	var built []*memOutput
	comps := testComponents
	comps.Outputs = append(append([]outputs.Type(nil), comps.Outputs...), memType(&built))
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	require.NoError(t, os.WriteFile(log, []byte("a\nb\nc\n"), 0o600))
	yml := fmt.Sprintf(`
state_dir: state
admin: {listen: "off"}
sources:
  - name: app
    type: file
    file: {include: [app.log], start_at: beginning}
outputs:
  - name: q
    type: mem
    mem:
      topic: logs
      dir: rel
flows:
  - name: main
    sources: [app]
    output: q
`)
	cfg, err := ParseConfig(filepath.Join(dir, "a.yaml"), []byte(yml), noEnv, comps)
	require.NoError(t, err)
	mc := cfg.Outputs[0].Config.(*memConfig)
	require.Equal(t, &memConfig{Topic: "logs", RecordLimit: 1 << 20, Dir: filepath.Join(dir, "rel")}, mc, "defaults kept, user's values over them, paths resolved")
	require.Equal(t, []string{log}, cfg.Sources[0].Config.(*file.Config).Include)

	a, err := New(cfg, Settings{Components: comps, Version: "1.2.3", Once: true})
	require.NoError(t, err)
	require.NoError(t, a.Run(t.Context()))
	require.Len(t, built, 1)
	require.Equal(t, int64(3), built[0].records.Load())
	require.Equal(t, "agent/1.2.3", built[0].set.UserAgent)
	require.NotNil(t, built[0].set.Logger)
	require.NotNil(t, built[0].set.Stdout)
	mfs, err := a.m.reg.Gather()
	require.NoError(t, err)
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "mem_sends_total" {
			found = true
			require.Equal(t, "output", mf.Metric[0].Label[0].GetName())
			require.Equal(t, "q", mf.Metric[0].Label[0].GetValue())
		}
	}
	require.True(t, found, "the output's own metric is served, labelled with its name")

	// The same config with problems in the new type's block.
	bad := strings.Replace(strings.Replace(yml, "topic: logs", "topic: \"\"\n      record_limit: 512KiB\n      colour: red", 1),
		"output: q", "output: q\n    aggregation: {max_bytes: 600KiB}", 1)
	_, err = ParseConfig("a.yaml", []byte(bad), noEnv, comps)
	require.Error(t, err)
	require.Equal(t, `a.yaml:7: sources[0].file.max_record_bytes: 1020KiB is more than the largest record output "q" takes (512KiB) less 4KiB for the partition key and KPL framing: longer records would be dead-lettered; at most 508KiB
a.yaml:12: outputs[0].mem.topic: required
a.yaml:14: outputs[0].mem.colour: unknown field "colour" (known: dir, record_limit, topic)
a.yaml:20: flows[0].aggregation.max_bytes: must be between 1KiB and 512KiB (the largest record output "q" takes), got 600KiB`, err.Error())

	// Without the type in the Components, the config names an unknown type.
	_, err = ParseConfig("a.yaml", []byte(yml), noEnv, testComponents)
	require.EqualError(t, err, `a.yaml:10: outputs[0].type: unknown "mem" (want http, stdout, file, kinesis, firehose, kafka or blackhole)`)
	cfg.StateDir = t.TempDir()
	_, err = New(cfg, Settings{Components: testComponents})
	require.ErrorContains(t, err, `outputs[0].type: "mem" is not compiled in (want http, stdout, file, kinesis, firehose, kafka or blackhole)`)
}

func TestComponents_CheckRefusesAListThatCannotWork(t *testing.T) {
	require.NoError(t, testComponents.Check())
	bad := Components{Outputs: []outputs.Type{httpout.Type(), httpout.Type(), {Name: "type"}}}
	err := bad.Check()
	require.ErrorContains(t, err, `output type "http" listed twice`)
	require.ErrorContains(t, err, `output types "http" and "http" both take scheme "http"`)
	require.ErrorContains(t, err, `output type "type": the name is a reserved key`)
	require.ErrorContains(t, err, `output type "type" needs DefaultConfig and New`)
}

// An output whose records may be larger than 1 MiB (Kinesis large records)
// raises the flow's aggregator limit: a config validate accepts also runs,
// and a record of 1.5 MiB is delivered, not dead-lettered.
func TestComponents_OutputRecordLimitRaisesTheAggregatorLimit(t *testing.T) {
	var built []*memOutput
	comps := testComponents
	comps.Outputs = append(append([]outputs.Type(nil), comps.Outputs...), memType(&built))
	dir := t.TempDir()
	big := strings.Repeat("x", 1536<<10)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "app.log"), []byte("a\n"+big+"\nb\n"), 0o600))
	cfg, err := ParseConfig(filepath.Join(dir, "a.yaml"), []byte(`
state_dir: state
admin: {listen: "off"}
sources:
  - name: app
    type: file
    file: {include: [app.log], start_at: beginning, max_record_bytes: 3MiB}
outputs:
  - name: q
    type: mem
    mem: {topic: logs, record_limit: 4MiB}
flows:
  - name: main
    sources: [app]
    output: q
    aggregation: {max_bytes: 2MiB}
`), noEnv, comps)
	require.NoError(t, err)
	a, err := New(cfg, Settings{Components: comps, Once: true})
	require.NoError(t, err)
	require.NoError(t, a.Run(t.Context()), "nothing dead-lettered")
	require.Equal(t, int64(3), built[0].records.Load())
}

// The Kinesis and Firehose blocks are decoded over their defaults, and a
// flow's aggregates and its file source's records are checked against the
// stream's record limit (the outputs' RecordLimiter).
func TestComponents_KinesisAndFirehoseRecordLimitsAreValidated(t *testing.T) {
	cfgYAML := func(out, source, agg string) string {
		return fmt.Sprintf(`
state_dir: /tmp/x
sources:
  - name: app
    type: file
    file: {include: [/var/log/app.log]%s}
outputs:
  - name: out
%s
flows:
  - name: main
    sources: [app]
    output: out%s
`, source, out, agg)
	}
	const kin = `    type: kinesis
    kinesis: {stream: logs, region: eu-west-1, max_record_bytes: 512KiB, rate_limit: "off"}`
	const fh = `    type: firehose
    firehose: {stream: to-s3, max_record_bytes: 100KiB}`
	for _, c := range []struct {
		name, yaml, want string
	}{
		{"kinesis defaults", cfgYAML("    type: kinesis\n    kinesis: {stream: logs}", "", ""), ""},
		{"kinesis 10MiB records take larger aggregates", cfgYAML("    type: kinesis\n    kinesis: {stream: logs, max_record_bytes: 10MiB}", ", max_record_bytes: 8MiB",
			"\n    aggregation: {max_bytes: 4MiB}"), ""},
		{"kinesis aggregates larger than the stream's records", cfgYAML(kin, ", max_record_bytes: 100KiB", "\n    aggregation: {max_bytes: 600KiB}"),
			`a.yaml:15: flows[0].aggregation.max_bytes: must be between 1KiB and 512KiB (the largest record output "out" takes), got 600KiB`},
		{"file records larger than the stream's records", cfgYAML(kin, "", ""),
			`a.yaml:6: sources[0].file.max_record_bytes: 1020KiB is more than the largest record output "out" takes (512KiB) less 4KiB for the partition key and KPL framing: longer records would be dead-lettered; at most 508KiB`},
		{"kinesis block errors", cfgYAML("    type: kinesis\n    kinesis: {stream: \"a b\", max_request_records: 501, colour: red}", "", ""),
			`a.yaml:10: outputs[0].kinesis.colour: unknown field "colour" (known: aggregation, endpoint, external_id, max_record_bytes, max_request_bytes, max_request_records, profile, protocol, rate_limit, region, role_arn, role_session_name, shard_map_refresh, stream, sts_endpoint, timeout)
a.yaml:10: outputs[0].kinesis.stream: "a b" is not a stream name (1 to 128 of a-z, A-Z, 0-9, _ . -)
a.yaml:10: outputs[0].kinesis.max_request_records: 501, want up to 500 (the PutRecords limit)`},
		{"firehose records", cfgYAML(fh, ", max_record_bytes: 64KiB", "\n    aggregation: {max_bytes: 200KiB}"),
			`a.yaml:15: flows[0].aggregation.max_bytes: must be between 1KiB and 102399 (the largest record output "out" takes), got 200KiB`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig("a.yaml", []byte(c.yaml), noEnv, testComponents)
			if c.want == "" {
				require.NoError(t, err)
				require.Equal(t, "out", cfg.Outputs[0].Name)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), c.want)
		})
	}
}
