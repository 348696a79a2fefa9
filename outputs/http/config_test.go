package http

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/kplagent/agent/internal/units"
)

func TestConfig_Validate(t *testing.T) {
	t.Parallel()
	ok := func(c *Config) {}
	tests := []struct {
		name string
		mod  func(*Config)
		want []string // nil: valid
	}{
		{"default with url", ok, nil},
		{"zero values are defaults", func(c *Config) { *c = Config{URL: "http://h"} }, nil},
		{"all formats", func(c *Config) { c.Format = FormatKafkaRESTv2; c.Compression = CompressionNone }, nil},
		{"url required", func(c *Config) { c.URL = "" }, []string{"url: required"}},
		{"url scheme", func(c *Config) { c.URL = "ftp://h/x" }, []string{`url: scheme "ftp" not supported (want http or https)`}},
		{"url host", func(c *Config) { c.URL = "http:///x" }, []string{`url: no host in "http:///x"`}},
		{"url parse", func(c *Config) { c.URL = "http://h/%zz" }, []string{"url: "}},
		{"url port out of range", func(c *Config) { c.URL = "http://127.0.0.1:457401/x?k=secret" }, []string{`url: bad port "457401" in "http://127.0.0.1:457401/x?k=REDACTED" (1 to 65535)`}},
		{"url port zero", func(c *Config) { c.URL = "https://h:0/x" }, []string{`url: bad port "0"`}},
		{"url port only", func(c *Config) { c.URL = "http://:8080/x" }, []string{`url: no host in "http://:8080/x"`}},
		{"url ipv6 with port", func(c *Config) { c.URL = "http://[::1]:8080/x" }, nil},
		{"format", func(c *Config) { c.Format = "xml" }, []string{`format: unknown "xml" (want ndjson, json, raw, raw-packed, kafka-rest-v2 or kafka-rest-v3)`}},
		{"zstd", func(c *Config) { c.Compression = CompressionZstd }, nil},
		{"raw-packed", func(c *Config) { c.Format = FormatRawPacked }, nil},
		{"compression", func(c *Config) { c.Compression = "br" }, []string{`compression: unknown "br" (want gzip, zstd or none)`}},
		{"reserved header", func(c *Config) { c.Headers = map[string]string{"content-encoding": "br"} }, []string{"headers.content-encoding: set by the output, cannot be configured"}},
		{"bad header name", func(c *Config) { c.Headers = map[string]string{"X Bad": "v"} }, []string{`headers: invalid name "X Bad"`}},
		{"header value newline", func(c *Config) { c.Headers = map[string]string{"X-A": "a\r\nX-B: b"} }, []string{"headers.X-A: value contains a line break or NUL"}},
		{"authorization header and auth", func(c *Config) {
			c.Headers = map[string]string{"Authorization": "x"}
			c.Auth.Bearer = "t"
		}, []string{"headers.Authorization: conflicts with auth"}},
		{"auth exclusive", func(c *Config) { c.Auth = AuthConfig{Basic: &BasicAuth{Username: "u"}, Bearer: "t"} }, []string{"auth: basic and bearer are exclusive"}},
		{"basic needs username", func(c *Config) { c.Auth.Basic = &BasicAuth{Password: "p"} }, []string{"auth.basic.username: required"}},
		{"cert without key", func(c *Config) { c.URL = "https://h"; c.TLS.CertFile = "c.pem" }, []string{"tls: cert_file and key_file go together"}},
		{"tls with http url", func(c *Config) { c.TLS.CAFile = "ca.pem" }, []string{"tls: set but url is http://"}},
		{"negatives", func(c *Config) { c.Timeout, c.MaxRequestBytes, c.MaxRequestRecords = -1, -1, -1 }, []string{
			"timeout: negative (-1ns)", "max_request_bytes: negative (-1)", "max_request_records: negative (-1)",
		}},
		{"healthcheck url", func(c *Config) { c.HealthcheckURL = "tcp://h" }, []string{`healthcheck_url: scheme "tcp" not supported`}},
		{"all problems joined", func(c *Config) { c.URL, c.Format, c.Compression = "", "x", "y" }, []string{"url: required\nformat: unknown", "\ncompression: unknown"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig()
			c.URL = "http://collector.example:8080/ingest"
			tc.mod(&c)
			err := c.Validate()
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			_, nerr := New("x", c, Settings{})
			require.Error(t, nerr)
			require.True(t, strings.HasPrefix(nerr.Error(), "http: "), nerr.Error())
			require.NotContains(t, nerr.Error(), "output x", "the agent names the output")
		})
	}
}

func TestConfig_YAML(t *testing.T) {
	t.Parallel()
	in := `
url: https://collector.example/ingest
format: kafka-rest-v2
compression: none
headers: {X-Api-Key: k}
auth:
  basic: {username: u, password: p}
tls:
  ca_file: /etc/ca.pem
  cert_file: /etc/c.pem
  key_file: /etc/k.pem
  insecure_skip_verify: false
  server_name: collector
timeout: 5s
max_request_bytes: 1MiB
max_request_records: 1000
healthcheck_url: https://collector.example/health
`
	c := DefaultConfig()
	dec := yaml.NewDecoder(strings.NewReader(in))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&c))
	require.NoError(t, c.Validate())
	require.Equal(t, Config{
		URL:               "https://collector.example/ingest",
		Format:            FormatKafkaRESTv2,
		Compression:       CompressionNone,
		Headers:           map[string]string{"X-Api-Key": "k"},
		Auth:              AuthConfig{Basic: &BasicAuth{Username: "u", Password: "p"}},
		TLS:               TLSConfig{CAFile: "/etc/ca.pem", CertFile: "/etc/c.pem", KeyFile: "/etc/k.pem", ServerName: "collector"},
		Timeout:           5 * time.Second,
		MaxRequestBytes:   units.ByteSize(1 << 20),
		MaxRequestRecords: 1000,
		HealthcheckURL:    "https://collector.example/health",
	}, c)
}

func TestConfig_Defaults(t *testing.T) {
	t.Parallel()
	d := DefaultConfig()
	require.Equal(t, FormatNDJSON, d.Format)
	require.Equal(t, CompressionGzip, d.Compression)
	require.Equal(t, 30*time.Second, d.Timeout)
	require.Equal(t, units.ByteSize(5<<20), d.MaxRequestBytes)
	require.Equal(t, 10000, d.MaxRequestRecords)
	require.Equal(t, d, Config{}.withDefaults())
}
