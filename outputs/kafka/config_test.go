package kafka

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

func TestConfig_Validate(t *testing.T) {
	t.Parallel()
	ok := func(fn func(*Config)) Config {
		c := DefaultConfig()
		c.Brokers, c.Topic = []string{"k1:9092"}, "logs"
		fn(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		errs []string // substrings, each must appear; nil: valid
	}{
		{"defaults with brokers and topic", ok(func(*Config) {}), nil},
		{"zero config", Config{}, []string{"brokers: required", "topic: required"}},
		{"broker without port", ok(func(c *Config) { c.Brokers = []string{"k1", "[::1]:9093"} }), nil},
		{"bad brokers", ok(func(c *Config) { c.Brokers = []string{"", "k1:0", "::1", "a/b:1"} }),
			[]string{"brokers[0]: empty", "brokers[1]", "bad port", "brokers[2]", "IPv6", "brokers[3]"}},
		{"bad topic", ok(func(c *Config) { c.Topic = "a b" }), []string{"topic: \"a b\" is not a valid"}},
		{"long topic", ok(func(c *Config) { c.Topic = strings.Repeat("t", 250) }), []string{"topic:"}},
		{"unknown enums", ok(func(c *Config) { c.Key, c.Format, c.Acks, c.Compression = "k", "f", "two", "brotli" }),
			[]string{"key: unknown", "format: unknown", "acks: unknown", "compression: unknown \"brotli\""}},
		{"acks leader needs idempotence off", ok(func(c *Config) { c.Acks = AcksLeader }), []string{"acks: leader needs idempotent: false"}},
		{"acks leader without idempotence", ok(func(c *Config) { c.Acks, c.Idempotent = AcksLeader, false }), nil},
		{"acks -1 is all", ok(func(c *Config) { c.Acks = "-1" }), nil},
		{"acks 1 is leader", ok(func(c *Config) { c.Acks, c.Idempotent = "1", false }), nil},
		{"acks 0 is none", ok(func(c *Config) { c.Acks, c.Idempotent = "0", false }), nil},
		{"acks 1 needs idempotence off", ok(func(c *Config) { c.Acks = "1" }), []string{"acks: 1 (leader) needs idempotent: false"}},
		{"acks 2", ok(func(c *Config) { c.Acks = "2" }), []string{"acks: unknown \"2\""}},
		{"topic_field with kpl", ok(func(c *Config) { c.Format, c.TopicField = FormatKPL, "t" }), []string{"topic_field: not available"}},
		{"topic_field with an empty segment", ok(func(c *Config) { c.TopicField = "k8s..ns" }), []string{"topic_field: \"k8s..ns\" has an empty path segment"}},
		{"negatives", ok(func(c *Config) {
			c.Linger, c.BatchMaxBytes, c.MaxInFlight, c.MaxBufferedBytes, c.ProduceTimeout, c.SendTimeout = -1, -1, -1, -1, -1, -1
		}), []string{"linger:", "batch_max_bytes:", "max_in_flight:", "max_buffered_bytes:", "produce_timeout:", "send_timeout:"}},
		{"buffer smaller than a batch", ok(func(c *Config) { c.MaxBufferedBytes = 64 << 10 }), []string{"max_buffered_bytes: 64KiB is less than batch_max_bytes"}},
		{"send_timeout too short", ok(func(c *Config) { c.SendTimeout = 500 * time.Millisecond }), []string{"send_timeout: 500ms, want at least 1s"}},
		{"tls half a key pair", ok(func(c *Config) { c.TLS = TLSConfig{Enabled: true, CertFile: "c.pem"} }), []string{"tls: cert_file and key_file"}},
		{"tls settings while disabled", ok(func(c *Config) { c.TLS.CAFile = "ca.pem" }), []string{"tls.enabled is false"}},
		{"sasl scram", ok(func(c *Config) { c.SASL = SASLConfig{Mechanism: "scram-sha-512", Username: "u", Password: "p"} }), nil},
		{"sasl without user", ok(func(c *Config) { c.SASL.Mechanism = "PLAIN" }), []string{"sasl.username: required by PLAIN"}},
		{"sasl credentials without mechanism", ok(func(c *Config) { c.SASL.Password = "p" }), []string{"without a mechanism"}},
		{"sasl unknown", ok(func(c *Config) { c.SASL = SASLConfig{Mechanism: "GSSAPI", Username: "u"} }), []string{"sasl.mechanism: unknown \"GSSAPI\""}},
		{"msk iam needs tls", ok(func(c *Config) { c.SASL.Mechanism = "aws_msk_iam" }), []string{"needs tls.enabled"}},
		{"msk iam", ok(func(c *Config) { c.SASL.Mechanism, c.TLS.Enabled = SASLAWSMSKIAM, true }), nil},
		{"msk iam with password", ok(func(c *Config) { c.SASL, c.TLS.Enabled = SASLConfig{Mechanism: SASLAWSMSKIAM, Password: "p"}, true }),
			[]string{"default chain, not username/password"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if tc.errs == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, e := range tc.errs {
				require.Contains(t, err.Error(), e)
			}
			require.NotContains(t, err.Error(), "s3cret")
		})
	}
}

func TestConfig_YAMLKeysAreStrict(t *testing.T) {
	t.Parallel()
	src := `
brokers: [k1:9092, k2:9092]
topic: logs
topic_field: service
client_id: host-1
key: none
format: records
acks: all
idempotent: true
compression: zstd
linger: 10ms
batch_max_bytes: 512KiB
max_in_flight: 1
max_buffered_bytes: 32MiB
produce_timeout: 5s
send_timeout: 20s
tls: {enabled: true, ca_file: ca.pem, cert_file: c.pem, key_file: k.pem, server_name: kafka, insecure_skip_verify: false}
sasl: {mechanism: SCRAM-SHA-256, username: agent, password: s3cret}
`
	c := DefaultConfig()
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&c))
	require.NoError(t, c.Validate())
	require.Equal(t, 512<<10, int(c.BatchMaxBytes))
	require.Equal(t, 10*time.Millisecond, c.Linger)
	require.Equal(t, "kafka", c.TLS.ServerName)

	bad := DefaultConfig()
	dec = yaml.NewDecoder(strings.NewReader("brokers: [k1]\ntopic: t\nlinger_ms: 5\n"))
	dec.KnownFields(true)
	require.ErrorContains(t, dec.Decode(&bad), "linger_ms")
}

func TestFromURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url  string
		want func(*Config)
		err  string
	}{
		{"kafka://k1:9092/logs", func(c *Config) { c.Brokers, c.Topic = []string{"k1:9092"}, "logs" }, ""},
		{"kafka://k1:9092,k2,k3:9094/app.logs?compression=zstd&key=none&linger=20ms&client_id=me", func(c *Config) {
			c.Brokers, c.Topic = []string{"k1:9092", "k2", "k3:9094"}, "app.logs"
			c.Compression, c.Key, c.Linger, c.ClientID = CompressionZstd, KeyNone, 20*time.Millisecond, "me"
		}, ""},
		{"kafka://k1/logs?format=kpl&acks=leader&idempotent=false&max_in_flight=5&batch_max_bytes=2MiB&send_timeout=1m", func(c *Config) {
			c.Brokers, c.Topic = []string{"k1"}, "logs"
			c.Format, c.Acks, c.Idempotent, c.MaxInFlight, c.BatchMaxBytes, c.SendTimeout = FormatKPL, AcksLeader, false, 5, 2<<20, time.Minute
		}, ""},
		{"kafka://u:s3cret@k1:9093/logs?sasl=scram-sha-512&tls=true&tls_server_name=kafka", func(c *Config) {
			c.Brokers, c.Topic = []string{"k1:9093"}, "logs"
			c.SASL = SASLConfig{Mechanism: "scram-sha-512", Username: "u", Password: "s3cret"}
			c.TLS = TLSConfig{Enabled: true, ServerName: "kafka"}
		}, ""},
		{"kafka://k1/logs?topic_field=svc", func(c *Config) { c.Brokers, c.Topic, c.TopicField = []string{"k1"}, "logs", "svc" }, ""},
		{"kafka://k1/logs?client_metrics=true", func(c *Config) { c.Brokers, c.Topic, c.ClientMetrics = []string{"k1"}, "logs", true }, ""},
		{"kafka://k1:9092", nil, "topic: required"},
		{"kafka:///logs", nil, "no broker"},
		{"http://k1/logs", nil, "scheme"},
		{"kafka://k1/logs?lingr=1s", nil, `"lingr" is not a setting of kafka:// (it takes client_id, key, format, acks, idempotent, client_metrics, compression, topic_field, linger,`},
		{"kafka://k1/logs?linger=soon", nil, "linger:"},
		{"kafka://u:s3cret@k1/logs?compression=brotli", nil, "compression: unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			t.Parallel()
			u, err := url.Parse(tc.url)
			require.NoError(t, err)
			got, err := FromURL(u)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.NotContains(t, err.Error(), "s3cret")
				return
			}
			require.NoError(t, err)
			want := DefaultConfig()
			tc.want(&want)
			require.Equal(t, want, got)
		})
	}
}

func TestJSONStringField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{`{"t":"a"}`, "a", true},
		{` { "x" : 1 , "t" : "b" } `, "b", true},
		{`{"x":{"t":"no"},"y":[1,"t",{"t":"no"}],"t":"c"}`, "c", true},
		{`{"x":"a \"quoted\" }{ string","t":"d"}`, "d", true},
		{`{"\u0074":"e"}`, "e", true},
		{`{"t":"f\u002dg"}`, "f-g", true},
		{`{"t":7}`, "", false},
		{`{"t":null}`, "", false},
		{`{"u":"a"}`, "", false},
		{`{}`, "", false},
		{`["t","a"]`, "", false},
		{`not json`, "", false},
		{`{"t"`, "", false},
		{`{"t":"unterminated`, "", false},
		{`{"x":[1,2}`, "", false},
		{``, "", false},
	}
	for _, tc := range tests {
		got, ok := jsonStringField([]byte(tc.in), "t")
		require.Equal(t, tc.ok, ok, tc.in)
		require.Equal(t, tc.want, string(got), tc.in)
	}
}

func TestJSONStringAt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, path, want string
		ok             bool
	}{
		{`{"k8s":{"ns":"prod"}}`, "k8s.ns", "prod", true},
		{`{"a":1,"k8s":{"pod":{"ns":"x"},"ns":"dev"},"z":[1]}`, "k8s.ns", "dev", true},
		{`{"a":{"b":{"c":"deep"}}}`, "a.b.c", "deep", true},
		{`{"k8s.ns":"flat","k8s":{"ns":"nested"}}`, "k8s.ns", "flat", true}, // the whole key wins
		{`{"k8s":{"ns":"nested"},"k8s.ns":7}`, "k8s.ns", "nested", true},
		{`{"k8s":"prod"}`, "k8s.ns", "", false},
		{`{"k8s":{"ns":3}}`, "k8s.ns", "", false},
		{`{"k8s":{"other":"x"}}`, "k8s.ns", "", false},
		{`{"k8s":[{"ns":"x"}]}`, "k8s.ns", "", false},
		{`{"t":"top"}`, "t", "top", true},
	}
	for _, tc := range tests {
		got, ok := jsonStringAt([]byte(tc.in), tc.path, strings.Split(tc.path, "."))
		require.Equal(t, tc.ok, ok, "%s %s", tc.in, tc.path)
		require.Equal(t, tc.want, string(got), "%s %s", tc.in, tc.path)
	}
}

func FuzzJSONStringField(f *testing.F) {
	f.Add([]byte(`{"t":"a","x":[{"t":1}]}`), "t")
	f.Add([]byte(`{"\u0074":"e\n"}`), "t")
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		got, ok := jsonStringField(data, name)
		if !ok {
			require.Nil(t, got)
		}
		var m map[string]any
		if json.Unmarshal(data, &m) != nil {
			return // not a valid object: any answer without a panic is fine
		}
		if !utf8.Valid(data) || !utf8.ValidString(name) {
			// encoding/json turns invalid UTF-8 in keys and values into
			// U+FFFD; the scanner compares and returns the bytes as they
			// are (no valid topic name has such bytes).
			return
		}
		v, has := m[name]
		if ok {
			require.True(t, has, "found a field encoding/json does not see")
		}
		if s, isString := v.(string); isString && !bytes.Contains(data[1:], []byte(`"`+name+`"`)) == false && strings.Count(string(data), `"`+name+`"`) == 1 {
			require.True(t, ok, "missed the field")
			require.Equal(t, s, string(got))
		}
	})
}

// Every key the kafka:// message lists is one the URL takes.
func TestFromURL_EveryListedParamIsTaken(t *testing.T) {
	for _, k := range strings.Split(urlParams, ", ") {
		u, err := url.Parse("kafka://k1:9092/logs?" + k + "=x")
		require.NoError(t, err)
		if _, err := FromURL(u); err != nil {
			require.NotContains(t, err.Error(), "is not a setting", k)
		}
	}
}
