package main

import (
	"bytes"
	"net/url"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source/file"
	fileout "github.com/kplagent/agent/outputs/file"
	"github.com/kplagent/agent/outputs/firehose"
	httpout "github.com/kplagent/agent/outputs/http"
	"github.com/kplagent/agent/outputs/kinesis"
	"github.com/kplagent/agent/outputs/stdout"
)

func TestComponents_ListIsConsistent(t *testing.T) {
	require.NoError(t, components().Check())
}

func TestVersion_PrintsTheCompiledInTypes(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Equal(t, exitOK, run([]string{"version"}, strings.NewReader(""), &out, &errOut))
	c := components()
	require.Equal(t, "agent "+version+"\ncommit: unknown\nbuilt: unknown\ngo: "+runtime.Version()+
		"\nsources: "+strings.Join(c.SourceNames(), ", ")+"\noutputs: "+strings.Join(c.OutputNames(), ", ")+"\n", out.String())
	require.Contains(t, out.String(), "sources: file, stdin")
	require.Contains(t, out.String(), "outputs: http, ")

	commit, date = "0123abc", "2026-12-06T07:00:00Z" // what the Makefile stamps
	defer func() { commit, date = "", "" }()
	out.Reset()
	require.Equal(t, exitOK, run([]string{"version"}, strings.NewReader(""), &out, &errOut))
	require.Contains(t, out.String(), "\ncommit: 0123abc\nbuilt: 2026-12-06T07:00:00Z\n")
}

// --to picks the output type by its scheme, and the type maps the flags a
// URL cannot carry.
func TestTail_DestinationIsMadeByTheSchemesType(t *testing.T) {
	_, o := tailFlags(&bytes.Buffer{})

	o.to = "-"
	out, err := destination(o)
	require.NoError(t, err)
	require.Equal(t, "stdout", out.Type)
	require.IsType(t, &stdout.Config{}, out.Config)

	o.to = "file:///var/tmp/shipped"
	out, err = destination(o)
	require.NoError(t, err)
	require.Equal(t, "file", out.Type)
	require.Equal(t, "/var/tmp/shipped", out.Config.(*fileout.Config).Dir)

	o.to = "https://collector.example.com/ingest"
	o.httpFormat, o.gzip, o.bearer, o.caFile, o.httpTimeout = "json", false, "tok", "ca.pem", 3*time.Second
	require.NoError(t, o.headers.Set("X-Team: web"))
	out, err = destination(o)
	require.NoError(t, err)
	require.Equal(t, "http", out.Type)
	h := out.Config.(*httpout.Config)
	require.Equal(t, "https://collector.example.com/ingest", h.URL)
	require.Equal(t, httpout.FormatJSON, h.Format)
	require.Equal(t, httpout.CompressionNone, h.Compression)
	require.Equal(t, map[string]string{"X-Team": "web"}, h.Headers)
	require.Equal(t, "tok", h.Auth.Bearer)
	require.Equal(t, "ca.pem", h.TLS.CAFile)
	require.Equal(t, 3*time.Second, h.Timeout)

	o.to = "kinesis://logs?region=eu-west-1&endpoint=http://127.0.0.1:4567&rate_limit=off&max_record_bytes=2MiB"
	out, err = destination(o)
	require.NoError(t, err)
	require.Equal(t, "kinesis", out.Type)
	k := out.Config.(*kinesis.Config)
	require.Equal(t, "logs", k.Stream)
	require.Equal(t, "eu-west-1", k.Region)
	require.Equal(t, "http://127.0.0.1:4567", k.Endpoint)
	require.Equal(t, kinesis.RateLimitOff, k.RateLimit)
	require.Equal(t, 2<<20, k.MaxRecordBytes())
	require.Equal(t, 3*time.Second, k.Timeout, "--timeout applies to every destination")
	require.True(t, k.Aggregation)

	o.to = "firehose://to-s3?region=us-east-1&aggregate_lines=false"
	out, err = destination(o)
	require.NoError(t, err)
	require.Equal(t, "firehose", out.Type)
	fh := out.Config.(*firehose.Config)
	require.Equal(t, "to-s3", fh.Stream)
	require.False(t, fh.AggregateLines)
	require.True(t, fh.AppendNewline)

	o.to, o.basic = "https://collector.example.com/ingest", "nocolon"
	_, err = destination(o)
	require.EqualError(t, err, `--to "https://collector.example.com/ingest": --basic-auth: want USER:PASSWORD`)

	for to, want := range map[string]string{
		"mqtt://broker/logs":     `--to "mqtt://broker/logs": unknown scheme "mqtt" (this build takes http, https, -, file, kinesis, firehose, kafka, blackhole)`,
		"file://host/dir":        `--to "file://host/dir": file URLs name a local directory: file:///path/to/dir`,
		"collector.example":      `--to "collector.example": want - or a URL (schemes: http, https, -, file, kinesis, firehose, kafka, blackhole)`,
		"kinesis://s?colour=red": `--to "kinesis://s?colour=REDACTED": kinesis: url: colour: not a setting of kinesis:// (it takes region, endpoint, profile, role_arn, external_id, role_session_name, sts_endpoint, protocol, rate_limit, aggregation, shard_map_refresh, max_record_bytes)`,
		"kinesis:///path":        `--to "kinesis:///path": kinesis: url: unexpected path "/path"`,
		"firehose://s?gzip=true": `--to "firehose://s?gzip=REDACTED": firehose: url: gzip: not a setting of firehose:// (it takes region, endpoint, profile, role_arn, external_id, role_session_name, sts_endpoint, aggregate_lines, append_newline)`,
		// Settings that hold no secret stay readable; an unknown name may be one.
		"kinesis://s?region=us-east-1&endpoint=http://127.0.0.1:1&bogus=1": `--to "kinesis://s?region=us-east-1&endpoint=http://127.0.0.1:1&bogus=REDACTED": kinesis: url: bogus: not a setting of kinesis:// (it takes region, endpoint, profile, role_arn, external_id, role_session_name, sts_endpoint, protocol, rate_limit, aggregation, shard_map_refresh, max_record_bytes)`,
		"firehose://s?region=eu-west-1&role_arn=x&aggregate_lines=no":      `--to "firehose://s?region=eu-west-1&role_arn=REDACTED&aggregate_lines=no": firehose: url: `,
		"kafka://k1:9092/t?compression=zstd&password=p&bogus=1":            `--to "kafka://k1:9092/t?compression=zstd&password=REDACTED&bogus=REDACTED": kafka: url: `,
		"file:///":         "",
		"blackhole:":       "",
		"blackhole://?x=1": `--to "blackhole:?x=REDACTED": unknown parameter "x"`,
		"kafka://k1:9092,k2:9092/logs?compression=zstd": "",
		"kafka://k1:9092/":       `--to "kafka://k1:9092/": kafka: url: topic: required`,
		"http://[::1]:namedport": `--to "http://[::1]:namedport": parse "http://[::1]:namedport": invalid port`, // nothing secret: shown as written
	} {
		o := &tailOptions{to: to, gzip: true}
		_, err := destination(o)
		if want == "" {
			require.NoError(t, err, to)
			continue
		}
		require.ErrorContains(t, err, want, to)
	}
}

// A --to URL refused shows no secret: not its password, not a query value
// (an API key, a Kafka URL's parameters), however the output reports it.
func TestTail_DestinationErrorsDoNotShowTheURLsSecrets(t *testing.T) {
	for _, to := range []string{
		"kafka://k1:9092/t?sasl=PLAIN&client_id=S3CRET&bogus=1",
		"kafka://u:S3CRET@k1:9092/",
		"http://u:S3CRET@collector.example/x?api_key=S3CRET&colour=red",
		"https://collector.example/x?api_key=S3CRET%zz",
		"kinesis://s?role_arn=S3CRET&colour=red",
		"mqtt://u:S3CRET@broker/logs",
	} {
		o := &tailOptions{to: to, gzip: true, basic: "nocolon"}
		_, err := destination(o)
		require.Error(t, err, to)
		require.NotContains(t, err.Error(), "S3CRET", to)
		require.Contains(t, err.Error(), "REDACTED", to)
	}
}

func TestTail_SourceIsMadeByTheFileType(t *testing.T) {
	_, o := tailFlags(&bytes.Buffer{})
	o.fromEnd, o.multiline = true, `^\d`
	src, err := tailSource("tail", "file", []string{"/var/log/a.log", "/var/log/b/*.log"}, o, 64<<10, components())
	require.NoError(t, err)
	require.Equal(t, "tail", src.Name)
	require.Equal(t, "file", src.Type)
	c := src.Config.(*file.Config)
	require.Equal(t, []string{"/var/log/a.log", "/var/log/b/*.log"}, c.Include)
	require.Equal(t, file.StartAtEnd, c.StartAt)
	require.Equal(t, 64<<10, int(c.MaxRecordBytes))
	require.Equal(t, `^\d`, c.Multiline.Start)
	require.NoError(t, c.Validate())

	_, err = tailSource("tail", "nope", []string{"/x"}, o, 0, components())
	require.ErrorContains(t, err, `no source type for "nope"`)
}

// Each output type lists the tail flags its FromURL uses (TailFlagNames),
// and agent tail refuses the others: the list must be what FromURL does.
// A flag is used when setting it alone changes the config FromURL makes
// (or makes it fail).
func TestTail_OutputTypesListExactlyTheTailFlagsTheyUse(t *testing.T) {
	samples := map[string]string{"http": "http://collector.example/ingest", "-": "", "file": "file:///var/tmp/out",
		"kinesis": "kinesis://logs?region=us-east-1", "firehose": "firehose://logs?region=us-east-1",
		"kafka": "kafka://127.0.0.1:9092/logs", "blackhole": "blackhole:"}
	values := map[string][]string{"http-format": {"json", "raw"}, "encoding": {"json", "text"}, "header": {"X-Team: web"},
		"gzip": {"false"}, "compression": {"zstd"}, "bearer-token": {"tok"}, "basic-auth": {"user:pass"},
		"ca-file": {"/etc/ca.pem"}, "cert-file": {"/etc/c.pem"}, "key-file": {"/etc/k.pem"}, "insecure-skip-verify": {"true"},
		"timeout": {"7s"}}
	require.Len(t, values, len(outputFlagNames))
	for _, typ := range components().Outputs {
		if typ.FromURL == nil {
			continue
		}
		raw, ok := samples[typ.Schemes[0]]
		require.True(t, ok, "no sample --to URL for %s: add one", typ.Name)
		var u *url.URL
		if raw != "" {
			var err error
			u, err = url.Parse(raw)
			require.NoError(t, err)
		}
		make := func(name, value string) (any, error) {
			t.Setenv("AGENT_BEARER_TOKEN", "")
			t.Setenv("AGENT_BASIC_AUTH", "")
			fs, o := tailFlags(&bytes.Buffer{})
			if name != "" {
				require.NoError(t, fs.Set(name, value))
			}
			return typ.FromURL(u, outputFlags(o))
		}
		base, err := make("", "")
		require.NoError(t, err, typ.Name)
		var used []string
		for _, name := range outputFlagNames {
			vs, ok := values[name]
			require.True(t, ok, "no sample value for --%s", name)
			for _, v := range vs {
				cfg, err := make(name, v)
				if err != nil || !reflect.DeepEqual(base, cfg) {
					used = append(used, name)
					break
				}
			}
		}
		require.ElementsMatch(t, used, typ.TailFlagNames, "%s: the flags FromURL uses vs its TailFlagNames", typ.Name)
	}
}
