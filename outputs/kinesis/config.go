package kinesis

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/awsconf"
	"github.com/kplagent/agent/internal/units"
)

// Limits of Kinesis Data Streams' PutRecords.
const (
	// MaxRequestRecords is the most records PutRecords takes.
	MaxRequestRecords = 500
	// MaxRequestBytes is the most bytes (data plus partition keys) PutRecords
	// takes.
	MaxRequestBytes = 5 << 20
	// shardBytesPerSecond and shardRecordsPerSecond are a shard's write
	// limits.
	shardBytesPerSecond   = 1 << 20
	shardRecordsPerSecond = 1000
)

// Config is the user configuration of a Kinesis Data Streams output
// (outputs[].kinesis). Secrets are never part of it: credentials come from the
// SDK's default chain (environment, shared config and profiles, SSO, web
// identity, ECS, IMDSv2), optionally through an assumed role.
type Config struct {
	// Stream is the stream's name. Required.
	Stream string `yaml:"stream"`
	// The AWS settings (region, endpoint, profile, role_arn, external_id,
	// role_session_name, sts_endpoint), written in the block itself;
	// endpoint overrides the Kinesis endpoint.
	awsconf.Config `yaml:",inline"`
	// Protocol is the encoding of PutRecords: "cbor" (default; the binary
	// form the Java SDK and the KPL use, data sent as bytes rather than
	// base64: less to encode, hash and send) or "json" (for proxies and
	// emulators that speak only JSON). The other calls are always JSON.
	Protocol string `yaml:"protocol"`

	// Aggregation sends the KPL aggregates as they are (default true).
	// false sends one Kinesis record per user record, with its own partition
	// key and explicit hash key, for consumers that do not deaggregate.
	Aggregation bool `yaml:"aggregation"`
	// MaxRecordSize (max_record_bytes) is the stream's record limit (data plus partition
	// key): default 1MiB, up to 10MiB for streams configured for large
	// records. The flow's aggregates are built within it.
	MaxRecordSize units.ByteSize `yaml:"max_record_bytes"`
	// MaxRequestBytes and MaxRequestRecords bound one PutRecords request:
	// default and at most 5MiB and 500.
	MaxRequestBytes   units.ByteSize `yaml:"max_request_bytes"`
	MaxRequestRecords int            `yaml:"max_request_records"`
	// RateLimit paces the records put to each shard to this percentage of
	// the shard's write limits (1 MiB/s, 1000 records/s), as the KPL's
	// RateLimit does: default 150 (the KPL's), so a backlog drains at the
	// stream's capacity without a storm of throttling errors. "off" turns
	// pacing off (RateLimitOff in code; 0 stands for the default).
	RateLimit RateLimit `yaml:"rate_limit"`
	// ShardMapRefresh is how often the shard map (ListShards) is refreshed
	// even when no record says it changed. Default 1m.
	ShardMapRefresh time.Duration `yaml:"shard_map_refresh"`
	// Timeout bounds each API call. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
}

// RateLimit is a percentage of a shard's write limits, or RateLimitOff. Its
// YAML and URL forms are an integer from 1 to 1000 or "off".
type RateLimit int

// RateLimitOff turns the per-shard pacing off.
const RateLimitOff RateLimit = -1

// DefaultRateLimit is the KPL's default RateLimit: 150% lets a shard's
// limiter absorb the bursts Kinesis itself tolerates while staying close
// enough to the limit that throttling stays rare.
const DefaultRateLimit RateLimit = 150

const maxRateLimit = 1000

// ParseRateLimit parses "off" or a percentage from 1 to 1000.
func ParseRateLimit(s string) (RateLimit, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "off", "false", "none":
		return RateLimitOff, nil
	}
	n, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
	if err != nil || n < 1 || n > maxRateLimit {
		return 0, fmt.Errorf("%q: want a percentage from 1 to %d, or off", s, maxRateLimit)
	}
	return RateLimit(n), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (r *RateLimit) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("rate_limit must be a percentage or off")
	}
	v, err := ParseRateLimit(n.Value)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (r RateLimit) MarshalYAML() (any, error) {
	if r == RateLimitOff {
		return "off", nil
	}
	return int(r), nil
}

func (r RateLimit) String() string {
	if r == RateLimitOff {
		return "off"
	}
	return strconv.Itoa(int(r)) + "%"
}

// Defaults, each justified.
const (
	defaultShardMapRefresh = time.Minute      // reshards are rare, and mismatches trigger a refresh anyway
	defaultTimeout         = 30 * time.Second // a 5 MiB request over a slow uplink still fits
)

// DefaultConfig returns the defaults; Stream must still be set.
func DefaultConfig() Config {
	return Config{
		Config:            awsconf.DefaultConfig(),
		Aggregation:       true,
		MaxRecordSize:     aggregate.MaxRecordSize,
		MaxRequestBytes:   MaxRequestBytes,
		MaxRequestRecords: MaxRequestRecords,
		RateLimit:         DefaultRateLimit,
		ShardMapRefresh:   defaultShardMapRefresh,
		Timeout:           defaultTimeout,
		Protocol:          ProtocolCBOR,
	}
}

// The values of Config.Protocol.
const (
	ProtocolCBOR = "cbor"
	ProtocolJSON = "json"
)

// withDefaults fills zero values (a Config not built from DefaultConfig;
// Aggregation, a bool, is taken as it is).
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.Config = c.Config.WithDefaults()
	if c.MaxRecordSize == 0 {
		c.MaxRecordSize = d.MaxRecordSize
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = d.MaxRequestBytes
	}
	if c.MaxRequestRecords == 0 {
		c.MaxRequestRecords = d.MaxRequestRecords
	}
	if c.RateLimit == 0 {
		c.RateLimit = d.RateLimit
	}
	if c.ShardMapRefresh == 0 {
		c.ShardMapRefresh = d.ShardMapRefresh
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.Protocol == "" {
		c.Protocol = d.Protocol
	}
	return c
}

// MaxRecordBytes returns the stream's record limit (data plus partition key)
// the flow must build its aggregates within.
func (c Config) MaxRecordBytes() int {
	return int(c.withDefaults().MaxRecordSize)
}

// Validate checks c without I/O. Zero values stand for the defaults. Each
// problem is prefixed by its key relative to the block; values of secrets
// (external_id) are never quoted.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch {
	case c.Stream == "":
		add("stream: required")
	case len(c.Stream) > 128 || !validStreamName(c.Stream):
		add("stream: %q is not a stream name (1 to 128 of a-z, A-Z, 0-9, _ . -)", c.Stream)
	}
	errs = append(errs, c.Config.Validate())
	if c.Protocol != "" && c.Protocol != ProtocolCBOR && c.Protocol != ProtocolJSON {
		add("protocol: %q, want cbor or json", c.Protocol)
	}
	if c.MaxRecordSize < 0 || c.MaxRecordSize > aggregate.MaxLargeRecordSize {
		add("max_record_bytes: %d, want up to %d (10MiB, for streams configured for large records)", int64(c.MaxRecordSize), aggregate.MaxLargeRecordSize)
	}
	if c.MaxRequestBytes < 0 || c.MaxRequestBytes > MaxRequestBytes {
		add("max_request_bytes: %d, want up to %d (5MiB, the PutRecords limit)", int64(c.MaxRequestBytes), MaxRequestBytes)
	}
	if c.MaxRequestRecords < 0 || c.MaxRequestRecords > MaxRequestRecords {
		add("max_request_records: %d, want up to %d (the PutRecords limit)", c.MaxRequestRecords, MaxRequestRecords)
	}
	if c.RateLimit != RateLimitOff && (c.RateLimit < 0 || c.RateLimit > maxRateLimit) {
		add("rate_limit: %d, want a percentage from 1 to %d, or off", int(c.RateLimit), maxRateLimit)
	}
	if c.ShardMapRefresh < 0 || (c.ShardMapRefresh > 0 && c.ShardMapRefresh < time.Second) {
		add("shard_map_refresh: %s, want at least 1s", c.ShardMapRefresh)
	}
	if c.Timeout < 0 {
		add("timeout: negative (%s)", c.Timeout)
	}
	return errors.Join(errs...)
}

func validStreamName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// FromURL returns the configuration of an `agent tail --to` URL:
//
//	kinesis://STREAM?region=R[&endpoint=URL][&protocol=cbor|json][&profile=P][&role_arn=ARN]
//	  [&external_id=ID][&role_session_name=N][&sts_endpoint=URL]
//	  [&rate_limit=150|off][&aggregation=false][&max_record_bytes=10MiB]
//	  [&shard_map_refresh=1m]
//
// Unknown parameters are errors. The result is validated.
func FromURL(u *url.URL) (Config, error) {
	c := DefaultConfig()
	if u.Scheme != "kinesis" {
		return c, fmt.Errorf("kinesis: url scheme %q, want kinesis://STREAM", u.Scheme)
	}
	c.Stream = u.Host
	if c.Stream == "" {
		c.Stream = u.Opaque
	}
	if u.Path != "" && u.Path != "/" {
		return c, fmt.Errorf("kinesis: url: unexpected path %q (want kinesis://STREAM?region=R)", u.Path)
	}
	var errs []error
	for k, vs := range u.Query() {
		if len(vs) != 1 {
			errs = append(errs, fmt.Errorf("%s: given %d times", k, len(vs)))
			continue
		}
		v := vs[0]
		if c.SetParam(k, v) { // region, endpoint, role_arn and the other AWS settings
			continue
		}
		switch k {
		case "protocol":
			c.Protocol = v
		case "rate_limit":
			r, err := ParseRateLimit(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("rate_limit: %w", err))
			}
			c.RateLimit = r
		case "aggregation":
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("aggregation: %q, want true or false", v))
			}
			c.Aggregation = b
		case "shard_map_refresh":
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("shard_map_refresh: %q, want a duration such as 30s", v))
			}
			c.ShardMapRefresh = d
		case "max_record_bytes":
			n, err := units.ParseByteSize(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("max_record_bytes: %w", err))
			}
			c.MaxRecordSize = n
		default:
			errs = append(errs, fmt.Errorf("%s: not a setting of kinesis:// (it takes %s)", k,
				strings.Join(append(awsconf.ParamNames(), "protocol", "rate_limit", "aggregation", "shard_map_refresh", "max_record_bytes"), ", ")))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("kinesis: url: %w", err)
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("kinesis: url: %w", err)
	}
	return c, nil
}

// UsesPartitionKey: every Kinesis record carries its partition key, which
// picks its shard (outputs.KeyUser).
func (c *Config) UsesPartitionKey() (bool, string) { return true, "" }

// UsesExplicitHashKey: a Kinesis record's explicit hash key picks its
// shard over its partition key's hash (outputs.HashKeyUser).
func (c *Config) UsesExplicitHashKey() (bool, string) { return true, "" }

// CheckFiles is the I/O part of what New would reject
// (outputs.FileChecker): a region, found as New finds it (the region key,
// AWS_REGION or AWS_DEFAULT_REGION, the profile's region, the EC2 instance
// metadata) but without network calls (awsconf.Config.CheckRegion), so
// that `agent validate` fails where start would.
func (c *Config) CheckFiles() error { return c.Config.CheckRegion() }
