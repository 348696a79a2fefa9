package kinesis

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/awsconf"
)

func TestConfig_Validate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want []string // substrings of the error; none: valid
	}{
		{"defaults with a stream", func(c *Config) {}, nil},
		{"no stream", func(c *Config) { c.Stream = "" }, []string{"stream: required"}},
		{"bad stream", func(c *Config) { c.Stream = "a b" }, []string{"stream: \"a b\" is not a stream name"}},
		{"bad region", func(c *Config) { c.Region = "US East" }, []string{"region:"}},
		{"endpoint scheme", func(c *Config) { c.Endpoint = "ftp://x" }, []string{"endpoint: scheme \"ftp\""}},
		{"sts endpoint without role", func(c *Config) { c.STSEndpoint = "https://sts.example" }, []string{"sts_endpoint: set without role_arn"}},
		{"role arn", func(c *Config) { c.RoleARN = "writer" }, []string{"role_arn: not an IAM role ARN"}},
		{"large records", func(c *Config) { c.MaxRecordSize = 10 << 20 }, nil},
		{"records too large", func(c *Config) { c.MaxRecordSize = 11 << 20 }, []string{"max_record_bytes:"}},
		{"request bytes", func(c *Config) { c.MaxRequestBytes = 6 << 20 }, []string{"max_request_bytes:"}},
		{"request records", func(c *Config) { c.MaxRequestRecords = 501 }, []string{"max_request_records:"}},
		{"rate limit off", func(c *Config) { c.RateLimit = RateLimitOff }, nil},
		{"protocol json", func(c *Config) { c.Protocol = ProtocolJSON }, nil},
		{"protocol empty: cbor", func(c *Config) { c.Protocol = "" }, nil},
		{"protocol", func(c *Config) { c.Protocol = "xml" }, []string{`protocol: "xml", want cbor or json`}},
		{"rate limit", func(c *Config) { c.RateLimit = 5000 }, []string{"rate_limit:"}},
		{"refresh", func(c *Config) { c.ShardMapRefresh = time.Millisecond }, []string{"shard_map_refresh:"}},
		{"all joined", func(c *Config) { c.Stream = ""; c.MaxRequestRecords = -1 }, []string{"stream: required", "max_request_records:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Stream = "s"
			tc.mod(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestConfig_YAML(t *testing.T) {
	c := DefaultConfig()
	dec := yaml.NewDecoder(strings.NewReader(`
stream: logs
region: eu-west-1
role_arn: arn:aws:iam::123456789012:role/writer
external_id: x
rate_limit: off
aggregation: false
max_record_bytes: 10MiB
max_request_records: 100
`))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&c))
	require.NoError(t, c.Validate())
	require.Equal(t, RateLimitOff, c.RateLimit)
	require.False(t, c.Aggregation)
	require.Equal(t, 10<<20, c.MaxRecordBytes())
	require.Equal(t, 100, c.MaxRequestRecords)
	require.Equal(t, defaultTimeout, c.Timeout, "defaults stay")

	c = DefaultConfig()
	require.NoError(t, yaml.Unmarshal([]byte("rate_limit: 80\n"), &c))
	require.Equal(t, RateLimit(80), c.RateLimit)
	require.Error(t, yaml.Unmarshal([]byte("rate_limit: fast\n"), &c))
	require.Error(t, yaml.Unmarshal([]byte("rate_limit: 0\n"), &c))
	out, err := yaml.Marshal(struct{ R RateLimit }{RateLimitOff})
	require.NoError(t, err)
	require.Equal(t, "r: \"off\"\n", string(out))
}

func TestConfig_MaxRecordBytes(t *testing.T) {
	require.Equal(t, aggregate.MaxRecordSize, DefaultConfig().MaxRecordBytes())
	require.Equal(t, aggregate.MaxRecordSize, Config{}.MaxRecordBytes(), "zero is the default")
}

func TestFromURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want func(*Config)
		err  string
	}{
		{url: "kinesis://logs?region=eu-west-1", want: func(c *Config) { c.Stream, c.Region = "logs", "eu-west-1" }},
		{url: "kinesis://logs?region=us-east-1&endpoint=http://127.0.0.1:4567&rate_limit=off&aggregation=false",
			want: func(c *Config) {
				c.Stream, c.Region, c.Endpoint, c.RateLimit, c.Aggregation = "logs", "us-east-1", "http://127.0.0.1:4567", RateLimitOff, false
			}},
		{url: "kinesis://logs?region=us-east-1&role_arn=arn:aws:iam::1:role/r&external_id=e&rate_limit=120&max_record_bytes=2MiB",
			want: func(c *Config) {
				c.Stream, c.Region, c.RoleARN, c.ExternalID, c.RateLimit, c.MaxRecordSize = "logs", "us-east-1", "arn:aws:iam::1:role/r", "e", 120, 2<<20
			}},
		{url: "kinesis://logs?region=eu-west-1&endpoint=https://vpce.example&profile=p&role_arn=arn:aws:iam::1:role/r" +
			"&external_id=e&role_session_name=sess&sts_endpoint=https://sts.example",
			want: func(c *Config) {
				c.Stream = "logs"
				c.Config = awsconf.Config{Region: "eu-west-1", Endpoint: "https://vpce.example", Profile: "p", RoleARN: "arn:aws:iam::1:role/r",
					ExternalID: "e", RoleSessionName: "sess", STSEndpoint: "https://sts.example"}
			}},
		{url: "kinesis://logs?external_id=e", err: "external_id: set without role_arn"},
		{url: "kinesis://logs?protocol=json", want: func(c *Config) { c.Stream, c.Protocol = "logs", ProtocolJSON }},
		{url: "kinesis://logs?protocol=grpc", err: "protocol:"},
		{url: "kinesis://?region=us-east-1", err: "stream: required"},
		{url: "kinesis://logs?colour=blue", err: "colour: not a setting of kinesis:// (it takes region, endpoint, profile, role_arn, external_id, role_session_name, sts_endpoint, protocol, rate_limit, aggregation, shard_map_refresh, max_record_bytes)"},
		{url: "kinesis://logs?rate_limit=fast", err: "rate_limit:"},
		{url: "kinesis://logs?shard_map_refresh=5s", want: func(c *Config) { c.Stream, c.ShardMapRefresh = "logs", 5*time.Second }},
		{url: "kinesis://logs?shard_map_refresh=soon", err: "shard_map_refresh:"},
		{url: "kinesis://logs?shard_map_refresh=10ms", err: "want at least 1s"},
		{url: "kinesis://logs/extra", err: "unexpected path"},
		{url: "http://logs", err: "scheme"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			require.NoError(t, err)
			got, err := FromURL(u)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			want := DefaultConfig()
			tc.want(&want)
			require.Equal(t, want, got)
		})
	}
}
