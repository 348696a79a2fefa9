package http

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kplagent/agent/internal/redact"
	"github.com/kplagent/agent/internal/units"
	"github.com/kplagent/agent/outputs/internal/encode"
)

// Format names (Config.Format).
const (
	// FormatNDJSON posts the user records' bytes, each followed by "\n".
	FormatNDJSON = "ndjson"
	// FormatJSON posts a JSON array with one string per user record (see
	// Config.Format for bytes that are not UTF-8).
	FormatJSON = "json"
	// FormatRaw posts each Kinesis record (a KPL aggregate with magic and
	// MD5, or a plain record's data) alone, as application/octet-stream.
	FormatRaw = "raw"
	// FormatRawPacked posts many Kinesis records per request, each framed
	// with its length and keys (see the package documentation).
	FormatRawPacked = "raw-packed"
	// FormatKafkaRESTv2 posts to a Confluent REST Proxy's v2 produce API.
	FormatKafkaRESTv2 = "kafka-rest-v2"
	// FormatKafkaRESTv3 posts to a Confluent REST Proxy's v3 produce API.
	FormatKafkaRESTv3 = "kafka-rest-v3"
)

// Compression names (Config.Compression).
const (
	CompressionGzip = "gzip"
	CompressionZstd = "zstd"
	CompressionNone = "none"
)

// Config is the user configuration of an HTTP output (outputs[].http).
type Config struct {
	// URL receives a POST per request. http or https; user:password@ in the
	// URL is sent as basic auth by net/http, prefer Auth.
	URL string `yaml:"url"`
	// Format is ndjson (default), json, raw, raw-packed, kafka-rest-v2 or
	// kafka-rest-v3.
	//   - ndjson: Content-Type application/x-ndjson; each user record in its
	//     Encoding (a JSON object by default) and "\n".
	//   - json: Content-Type application/json; [rec1,rec2,...], each record
	//     in its Encoding (an object, or a string with encoding text). Record
	//     bytes are read as UTF-8 and every byte that is not valid UTF-8 is
	//     sent as \ufffd (as encoding/json does): lossy for binary records,
	//     which should use raw or kafka-rest-v2.
	//   - raw: Content-Type application/octet-stream; one request per Kinesis
	//     record, its body what Kinesis would store (KPL magic + protobuf +
	//     MD5 for an aggregate), with headers X-Partition-Key and, when set,
	//     X-Explicit-Hash-Key. For API Gateway proxies to PutRecord (which
	//     usually want compression: none). The request limits do not apply
	//     (an aggregate is at most 1 MiB).
	//   - raw-packed: Content-Type application/vnd.kplagent.raw-packed.v1;
	//     the Kinesis records of raw, many per request, up to
	//     MaxRequestBytes and MaxRequestRecords (which counts Kinesis
	//     records here), each framed with its length, partition key and
	//     explicit hash key (layout in the package documentation). A
	//     refused request (413, 400) splits between Kinesis records.
	//   - kafka-rest-v2: Content-Type application/vnd.kafka.binary.v2+json;
	//     {"records":[{"key":b64(partition key),"value":b64(data)}]}. URL is
	//     the proxy's /topics/NAME. Per-record errors in the response's
	//     offsets are retried (error_code 2) or dead-lettered (error_code 1).
	//   - kafka-rest-v3: Content-Type application/json; concatenated
	//     {"key":{"type":"BINARY","data":b64},"value":{...}} records. URL is
	//     the proxy's /v3/clusters/CLUSTER/topics/TOPIC/records. Each record's
	//     delivery report is checked: error_code 200 is delivered; 400, 413,
	//     415 and 422 are dead-lettered; any other code is retried.
	Format string `yaml:"format"`
	// Encoding is how ndjson and json write a user record: json (default)
	// or text.
	//   - json: one JSON object per record: the record itself when it is a
	//     JSON object (records made objects by the flow's processing stage,
	//     with their envelope fields), else {"message":"<the record>"}. An
	//     ndjson body is then always valid NDJSON, and a multi-line record
	//     (multiline) is one object, its line breaks escaped.
	//   - text: ndjson sends the bytes as they are, one record per line
	//     (a line break inside a record is sent as the two characters \n),
	//     as Content-Type text/plain; charset=utf-8; json sends an array of
	//     JSON strings.
	Encoding string `yaml:"encoding"`
	// Compression is gzip (default), zstd or none: the whole body is
	// compressed and Content-Encoding set. gzip at speed level 1; zstd at
	// its fastest level (about zstd -1) with a 64 KiB window, which costs about
	// 40% less CPU than gzip -1 for 10-15% fewer bytes on log lines (see
	// BENCHMARKS.md): prefer it when the receiver decodes zstd.
	Compression string `yaml:"compression"`
	// Headers are added to every request; they may override Content-Type and
	// User-Agent, and "Host" sets the virtual host. Content-Length,
	// Content-Encoding and Transfer-Encoding are set by the output.
	Headers map[string]string `yaml:"headers"`
	Auth    AuthConfig        `yaml:"auth"`
	TLS     TLSConfig         `yaml:"tls"`
	// Timeout bounds each HTTP request (connect, send, response); a Send
	// split in several requests may take longer. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxRequestBytes bounds the uncompressed body of a request; a larger
	// batch is split at user-record boundaries. A single user record larger
	// than this is sent alone (the server is the judge: a 413 for it alone
	// dead-letters it). A server that answers 413 to a larger request gets
	// the request split in halves, and smaller requests from then on.
	// Formats raw and raw-packed split a KPL aggregate larger than this
	// into smaller aggregates (see the package documentation).
	// Default 5MiB, the PutRecords request limit.
	MaxRequestBytes units.ByteSize `yaml:"max_request_bytes"`
	// MaxRequestRecords bounds the user records in a request. Default 10000:
	// small requests cost throughput; lower it for servers that want fewer.
	MaxRequestRecords int `yaml:"max_request_records"`
	// HealthcheckURL, when set, is fetched with GET by Healthcheck and any
	// 2xx means healthy. When empty Healthcheck only opens a connection (and
	// a TLS session) to URL's host.
	HealthcheckURL string `yaml:"healthcheck_url"`
}

// AuthConfig selects at most one authentication scheme.
type AuthConfig struct {
	Basic  *BasicAuth `yaml:"basic"`
	Bearer string     `yaml:"bearer"` // sent as "Authorization: Bearer <token>"
}

// BasicAuth is HTTP basic authentication.
type BasicAuth struct {
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// TLSConfig configures https connections.
type TLSConfig struct {
	CAFile             string `yaml:"ca_file"`   // PEM roots to trust instead of the system's
	CertFile           string `yaml:"cert_file"` // PEM client certificate (mTLS), with KeyFile
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"` // do not verify the server: tests only
	ServerName         string `yaml:"server_name"`          // overrides the name verified and sent in SNI
}

func (t TLSConfig) isSet() bool { return t != TLSConfig{} }

// Defaults, each a conservative match for the Kinesis limits the batches are
// built for.
const (
	defaultTimeout           = 30 * time.Second // a 5 MiB body over a slow uplink still fits
	defaultMaxRequestBytes   = 5 << 20          // PutRecords' request limit; most servers accept it
	defaultMaxRequestRecords = 10000            // ~1.6 MB of typical log lines: the byte limit usually binds first
)

// DefaultConfig returns the defaults; URL must still be set.
func DefaultConfig() Config {
	return Config{
		Format:            FormatNDJSON,
		Compression:       CompressionGzip,
		Timeout:           defaultTimeout,
		MaxRequestBytes:   defaultMaxRequestBytes,
		MaxRequestRecords: defaultMaxRequestRecords,
	}
}

// withDefaults fills zero values (a Config not built from DefaultConfig).
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Format == "" {
		c.Format = d.Format
	}
	if c.Compression == "" {
		c.Compression = d.Compression
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = d.MaxRequestBytes
	}
	if c.MaxRequestRecords == 0 {
		c.MaxRequestRecords = d.MaxRequestRecords
	}
	return c
}

// reservedHeaders are set by the output itself.
var reservedHeaders = []string{"Content-Length", "Content-Encoding", "Transfer-Encoding"}

// Validate checks c without I/O (the TLS files are read by New). Zero values
// stand for the defaults. Each problem is prefixed by its YAML key.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	checkURL := func(key, raw string) {
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // the rest quotes the URL, secrets and all
			}
			add("%s: not a valid URL (%s): %v", key, redact.RawURL(raw), err)
		case u.Scheme != "http" && u.Scheme != "https":
			add("%s: scheme %q not supported (want http or https)", key, u.Scheme)
		case u.Hostname() == "":
			add("%s: no host in %q", key, redact.RawURL(raw))
		case !validPort(u.Port()):
			add("%s: bad port %q in %q (1 to 65535)", key, u.Port(), redact.RawURL(raw))
		}
	}
	if c.URL == "" {
		add("url: required")
	} else {
		checkURL("url", c.URL)
	}
	if c.HealthcheckURL != "" {
		checkURL("healthcheck_url", c.HealthcheckURL)
	}
	switch c.Format {
	case "", FormatNDJSON, FormatJSON, FormatRaw, FormatRawPacked, FormatKafkaRESTv2, FormatKafkaRESTv3:
	default:
		add("format: unknown %q (want %s, %s, %s, %s, %s or %s)", c.Format, FormatNDJSON, FormatJSON, FormatRaw, FormatRawPacked, FormatKafkaRESTv2, FormatKafkaRESTv3)
	}
	if _, err := encode.ParseEncoding(c.Encoding, encode.EncodingJSON); err != nil {
		add("encoding: %v", err)
	}
	switch c.Compression {
	case "", CompressionGzip, CompressionZstd, CompressionNone:
	default:
		add("compression: unknown %q (want %s, %s or %s)", c.Compression, CompressionGzip, CompressionZstd, CompressionNone)
	}
	for k, v := range c.Headers {
		switch {
		case !validHeaderName(k):
			add("headers: invalid name %q", k)
		case strings.ContainsAny(v, "\r\n\x00"):
			add("headers.%s: value contains a line break or NUL", k)
		}
		for _, r := range reservedHeaders {
			if strings.EqualFold(k, r) {
				add("headers.%s: set by the output, cannot be configured", k)
			}
		}
		if strings.EqualFold(k, "Authorization") && (c.Auth.Basic != nil || c.Auth.Bearer != "") {
			add("headers.%s: conflicts with auth", k)
		}
	}
	if c.Auth.Basic != nil && c.Auth.Bearer != "" {
		add("auth: basic and bearer are exclusive")
	}
	if c.Auth.Basic != nil && c.Auth.Basic.Username == "" {
		add("auth.basic.username: required")
	}
	if strings.ContainsAny(c.Auth.Bearer, "\r\n\x00") {
		add("auth.bearer: contains a line break or NUL")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		add("tls: cert_file and key_file go together")
	}
	if c.TLS.isSet() && strings.HasPrefix(strings.ToLower(c.URL), "http://") {
		add("tls: set but url is http://")
	}
	if c.Timeout < 0 {
		add("timeout: negative (%s)", c.Timeout)
	}
	if c.MaxRequestBytes < 0 {
		add("max_request_bytes: negative (%d)", int64(c.MaxRequestBytes))
	}
	if c.MaxRequestRecords < 0 {
		add("max_request_records: negative (%d)", c.MaxRequestRecords)
	}
	return errors.Join(errs...)
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// UsesPartitionKey: raw (the X-Partition-Key header), raw-packed (each
// frame) and the Kafka REST formats (the record's key) send the partition
// key; ndjson and json send the records alone (outputs.KeyUser).
func (c *Config) UsesPartitionKey() (bool, string) {
	switch c.Format {
	case FormatRaw, FormatRawPacked, FormatKafkaRESTv2, FormatKafkaRESTv3:
		return true, ""
	}
	f := c.Format
	if f == "" {
		f = FormatNDJSON
	}
	return false, "format " + f
}

// UsesExplicitHashKey: raw (the X-Explicit-Hash-Key header) and raw-packed
// (each frame) send the explicit hash key; ndjson, json and the Kafka REST
// formats do not (outputs.HashKeyUser).
func (c *Config) UsesExplicitHashKey() (bool, string) {
	switch c.Format {
	case FormatRaw, FormatRawPacked:
		return true, ""
	}
	f := c.Format
	if f == "" {
		f = FormatNDJSON
	}
	return false, "format " + f
}

// validPort says whether port, from url.URL.Port, is empty (the scheme's) or
// a TCP port number: url.Parse takes any digits, and a URL with port 457401
// was retried forever.
func validPort(port string) bool {
	if port == "" {
		return true
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}
