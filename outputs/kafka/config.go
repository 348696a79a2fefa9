package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kplagent/agent/internal/units"
)

// Format names (Config.Format).
const (
	// FormatRecords sends one Kafka record per user record: each KPL
	// aggregate is deaggregated.
	FormatRecords = "records"
	// FormatKPL sends each Kinesis record (a KPL aggregate with magic and
	// MD5, or a plain record's data) as one Kafka record, for consumers that
	// deaggregate.
	FormatKPL = "kpl"
)

// Key names (Config.Key).
const (
	KeyPartitionKey = "partition_key" // the user record's partition key
	KeyNone         = "none"          // no key: the sticky partitioner spreads records
)

// Acks names (Config.Acks).
const (
	AcksAll    = "all"    // every in-sync replica has the record (required by idempotence)
	AcksLeader = "leader" // the partition leader has it
	AcksNone   = "none"   // no acknowledgement: records may be lost silently
)

// acksAliases are Kafka's own spellings of acks (the Java client's acks=-1,
// 1, 0), accepted for the names.
var acksAliases = map[string]string{"-1": AcksAll, "1": AcksLeader, "0": AcksNone}

// acks is c.Acks by its name: Kafka's spellings -1, 1 and 0 read as all,
// leader and none.
func (c Config) acks() string {
	if a, ok := acksAliases[strings.TrimSpace(c.Acks)]; ok {
		return a
	}
	return c.Acks
}

// Compression names (Config.Compression).
const (
	CompressionNone   = "none"
	CompressionGzip   = "gzip"
	CompressionSnappy = "snappy"
	CompressionLZ4    = "lz4"
	CompressionZstd   = "zstd"
)

// SASL mechanism names (SASLConfig.Mechanism), as Kafka spells them.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
	SASLAWSMSKIAM   = "AWS_MSK_IAM"
)

// Config is the user configuration of a Kafka output (outputs[].kafka).
type Config struct {
	// Brokers are the seed brokers, host:port (port 9092 when omitted).
	Brokers []string `yaml:"brokers"`
	// Topic receives every record, or the records whose TopicField is
	// missing or not a valid topic name when TopicField is set.
	Topic string `yaml:"topic"`
	// TopicField, when set, names a string field of JSON user records
	// (a path such as kubernetes.namespace) whose value is the record's
	// topic (format records only).
	TopicField string `yaml:"topic_field"`
	// ClientID is sent to the brokers (quotas, logs). Default "kplagent".
	ClientID string `yaml:"client_id"`
	// Key is partition_key (default: the record's partition key is the
	// Kafka key) or none.
	Key string `yaml:"key"`
	// Format is records (default) or kpl.
	Format string `yaml:"format"`
	// Acks is all (default), leader or none; Kafka's spellings -1, 1
	// and 0 mean the same.
	Acks string `yaml:"acks"`
	// Idempotent enables the idempotent producer (default true): the
	// broker drops duplicates of the producer's own retries. Needs acks all.
	Idempotent bool `yaml:"idempotent"`
	// Compression is none, gzip, snappy, lz4 (default) or zstd.
	Compression string `yaml:"compression"`
	// Linger is how long a partition's batch waits for more records before
	// it is sent (default 5ms, as the Java client since Kafka 4.0).
	Linger time.Duration `yaml:"linger"`
	// BatchMaxBytes bounds a record batch before compression (Kafka's
	// max.message.bytes; default 1000012, the topic default). A single
	// record larger than this is rejected for good.
	BatchMaxBytes units.ByteSize `yaml:"batch_max_bytes"`
	// MaxInFlight is the number of produce requests in flight per broker
	// when Idempotent is false (default 1: more may reorder records); the
	// idempotent producer always allows 5 and keeps order.
	MaxInFlight int `yaml:"max_in_flight"`
	// MaxBufferedBytes bounds the record bytes the producer holds
	// (default 64MiB); Send waits for room.
	MaxBufferedBytes units.ByteSize `yaml:"max_buffered_bytes"`
	// ProduceTimeout is the broker's time limit for one produce request
	// (default 10s); a broker that exceeds it answers REQUEST_TIMED_OUT.
	ProduceTimeout time.Duration `yaml:"produce_timeout"`
	// SendTimeout bounds one Send (default 30s): records not sent by then
	// are reported for the agent's sender to retry. Records in a request
	// the broker has not answered are waited for until it answers, 2
	// minutes more at most (see the package documentation).
	SendTimeout time.Duration `yaml:"send_timeout"`
	// ClientMetrics lets the producer push its client metrics to brokers
	// that ask for them (KIP-714, a broker-side telemetry plugin). Off by
	// default: the agent's own metrics are on its /metrics endpoint, and
	// franz-go compresses each push with a 4 MiB lz4 block (8 MiB of a
	// 26 MiB peak heap in `make bench-kafka`).
	ClientMetrics bool       `yaml:"client_metrics"`
	TLS           TLSConfig  `yaml:"tls"`
	SASL          SASLConfig `yaml:"sasl"`
}

// TLSConfig configures TLS to the brokers.
type TLSConfig struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`   // PEM roots to trust instead of the system's
	CertFile           string `yaml:"cert_file"` // PEM client certificate (mTLS), with KeyFile
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`          // overrides the name verified and sent in SNI
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"` // do not verify the brokers: tests only
}

// SASLConfig selects SASL authentication.
type SASLConfig struct {
	// Mechanism is PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or AWS_MSK_IAM (case
	// insensitive); empty means none. AWS_MSK_IAM takes its credentials
	// from the AWS SDK's default chain (environment, shared files, web
	// identity, ECS, EC2 instance role) and needs TLS.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

// String hides the password: a configuration printed or logged by mistake
// does not leak it.
func (s SASLConfig) String() string {
	pw := ""
	if s.Password != "" {
		pw = "<redacted>"
	}
	return fmt.Sprintf("{mechanism:%s username:%s password:%s}", s.Mechanism, s.Username, pw)
}

// LogValue is String for log/slog.
func (s SASLConfig) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Defaults, each with its reason.
const (
	defaultClientID = "kplagent"
	// defaultCompression: lz4 compressed log lines about as well as snappy
	// and faster than gzip and zstd in BenchmarkCompression, and every Kafka
	// client decodes it without optional libraries.
	defaultCompression = CompressionLZ4
	defaultLinger      = 5 * time.Millisecond // Java's linger.ms default since Kafka 4.0
	// defaultBatchMaxBytes is Kafka's max.message.bytes topic default.
	defaultBatchMaxBytes = 1000012
	defaultMaxInFlight   = 1
	// defaultMaxBufferedBytes holds several batches of the sender's
	// in-flight Sends (5 MiB each by default) while bounding memory.
	defaultMaxBufferedBytes = 64 << 20
	defaultProduceTimeout   = 10 * time.Second // franz-go's and roughly Java's request timeout
	defaultSendTimeout      = 30 * time.Second // three produce timeouts: a leader move and a retry fit
	defaultPort             = "9092"
	// minSendTimeout is franz-go's least record delivery timeout.
	minSendTimeout = time.Second
)

// DefaultConfig returns the defaults; Brokers and Topic must still be set.
func DefaultConfig() Config {
	return Config{
		ClientID:         defaultClientID,
		Key:              KeyPartitionKey,
		Format:           FormatRecords,
		Acks:             AcksAll,
		Idempotent:       true,
		Compression:      defaultCompression,
		Linger:           defaultLinger,
		BatchMaxBytes:    defaultBatchMaxBytes,
		MaxInFlight:      defaultMaxInFlight,
		MaxBufferedBytes: defaultMaxBufferedBytes,
		ProduceTimeout:   defaultProduceTimeout,
		SendTimeout:      defaultSendTimeout,
	}
}

// withDefaults fills zero values (a Config not built from DefaultConfig;
// Idempotent cannot be told from false and is left as it is).
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.ClientID == "" {
		c.ClientID = d.ClientID
	}
	if c.Key == "" {
		c.Key = d.Key
	}
	if c.Format == "" {
		c.Format = d.Format
	}
	if c.Acks == "" {
		c.Acks = d.Acks
	}
	if c.Compression == "" {
		c.Compression = d.Compression
	}
	if c.BatchMaxBytes == 0 {
		c.BatchMaxBytes = d.BatchMaxBytes
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = d.MaxInFlight
	}
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = d.MaxBufferedBytes
	}
	if c.ProduceTimeout == 0 {
		c.ProduceTimeout = d.ProduceTimeout
	}
	if c.SendTimeout == 0 {
		c.SendTimeout = d.SendTimeout
	}
	c.SASL.Mechanism = strings.ToUpper(c.SASL.Mechanism)
	return c
}

// maxTopicLen is Kafka's limit on topic names.
const maxTopicLen = 249

// validTopic reports whether s is a legal Kafka topic name.
func validTopic(s string) bool {
	if s == "" || len(s) > maxTopicLen || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Validate checks c without I/O (the TLS files are read by New). Zero values
// stand for the defaults. Each problem is prefixed by its YAML key.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if len(c.Brokers) == 0 {
		add("brokers: required")
	}
	for i, b := range c.Brokers {
		if _, err := brokerAddr(b); err != nil {
			add("brokers[%d]: %v", i, err)
		}
	}
	switch {
	case c.Topic == "":
		add("topic: required (with topic_field, the topic of records without one)")
	case !validTopic(c.Topic):
		add("topic: %q is not a valid Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)", c.Topic)
	}
	switch c.Key {
	case "", KeyPartitionKey, KeyNone:
	default:
		add("key: unknown %q (want %s or %s)", c.Key, KeyPartitionKey, KeyNone)
	}
	if c.TopicField != "" && slices.Contains(strings.Split(c.TopicField, "."), "") {
		add("topic_field: %q has an empty path segment (want a field name, or a path such as kubernetes.namespace)", c.TopicField)
	}
	switch c.Format {
	case "", FormatRecords:
	case FormatKPL:
		if c.TopicField != "" {
			add("topic_field: not available with format %s (aggregates are sent whole)", FormatKPL)
		}
	default:
		add("format: unknown %q (want %s or %s)", c.Format, FormatRecords, FormatKPL)
	}
	switch a := c.acks(); a {
	case "", AcksAll:
	case AcksLeader, AcksNone:
		if c.Idempotent {
			named := a
			if a != c.Acks {
				named = fmt.Sprintf("%s (%s)", c.Acks, a)
			}
			add("acks: %s needs idempotent: false (the idempotent producer needs acks: all)", named)
		}
	default:
		add("acks: unknown %q (want %s, %s or %s; or Kafka's -1, 1 or 0)", c.Acks, AcksAll, AcksLeader, AcksNone)
	}
	if _, err := codec(c.Compression); err != nil {
		add("compression: %v", err)
	}
	if c.Linger < 0 {
		add("linger: negative (%s)", c.Linger)
	}
	if c.BatchMaxBytes < 0 || c.BatchMaxBytes > 1<<30 {
		add("batch_max_bytes: %d out of range (0 to 1GiB)", int64(c.BatchMaxBytes))
	}
	if c.MaxInFlight < 0 {
		add("max_in_flight: negative (%d)", c.MaxInFlight)
	}
	if c.MaxBufferedBytes < 0 {
		add("max_buffered_bytes: negative (%d)", int64(c.MaxBufferedBytes))
	}
	if eff := c.withDefaults(); c.MaxBufferedBytes >= 0 && c.BatchMaxBytes >= 0 && eff.MaxBufferedBytes < eff.BatchMaxBytes {
		add("max_buffered_bytes: %s is less than batch_max_bytes %s (a record larger than the buffer is refused)", eff.MaxBufferedBytes, eff.BatchMaxBytes)
	}
	if c.ProduceTimeout < 0 {
		add("produce_timeout: negative (%s)", c.ProduceTimeout)
	}
	if c.SendTimeout < 0 || (c.SendTimeout > 0 && c.SendTimeout < minSendTimeout) {
		add("send_timeout: %s, want at least %s", c.SendTimeout, minSendTimeout)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		add("tls: cert_file and key_file go together")
	}
	if !c.TLS.Enabled && (c.TLS.CAFile != "" || c.TLS.CertFile != "" || c.TLS.ServerName != "" || c.TLS.InsecureSkipVerify) {
		add("tls: settings given but tls.enabled is false")
	}
	switch strings.ToUpper(c.SASL.Mechanism) {
	case "":
		if c.SASL.Username != "" || c.SASL.Password != "" {
			add("sasl: username or password given without a mechanism")
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if c.SASL.Username == "" {
			add("sasl.username: required by %s", strings.ToUpper(c.SASL.Mechanism))
		}
	case SASLAWSMSKIAM:
		if c.SASL.Username != "" || c.SASL.Password != "" {
			add("sasl: %s takes its credentials from the AWS default chain, not username/password", SASLAWSMSKIAM)
		}
		if !c.TLS.Enabled {
			add("sasl: %s needs tls.enabled: true (MSK serves IAM auth on TLS listeners only)", SASLAWSMSKIAM)
		}
	default:
		add("sasl.mechanism: unknown %q (want %s, %s, %s or %s)", c.SASL.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512, SASLAWSMSKIAM)
	}
	return errors.Join(errs...)
}

// brokerAddr checks a broker address and adds the default port.
func brokerAddr(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty address")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") { // bare IPv6
			return "", fmt.Errorf("%q: write IPv6 addresses as [ADDR]:PORT", s)
		}
		host, port = strings.Trim(s, "[]"), defaultPort
	}
	if host == "" {
		return "", fmt.Errorf("%q: no host", s)
	}
	if strings.ContainsAny(host, "/?#@ ") {
		return "", fmt.Errorf("%q: not a host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%q: bad port %q", s, port)
	}
	return net.JoinHostPort(host, port), nil
}

// FromURL builds a configuration from an `agent tail --to` URL:
//
//	kafka://HOST[:PORT][,HOST[:PORT]...]/TOPIC[?PARAMS]
//
// PARAMS are the YAML keys of Config that take a scalar: client_id, key,
// format, acks, idempotent, compression, linger, batch_max_bytes,
// max_in_flight, max_buffered_bytes, produce_timeout, send_timeout,
// topic_field, tls (true: tls.enabled), tls_ca_file, tls_server_name,
// tls_insecure_skip_verify, sasl (the mechanism). user:password@ sets the
// SASL username and password (PLAIN unless sasl= says otherwise); prefer a
// config file, a URL shows in process listings. The result is validated.
func FromURL(u *url.URL) (Config, error) {
	c := DefaultConfig()
	if u.Scheme != "kafka" {
		return c, fmt.Errorf("kafka: url scheme %q, want kafka", u.Scheme)
	}
	if u.Host == "" {
		return c, errors.New("kafka: url has no broker (kafka://HOST:PORT/TOPIC)")
	}
	c.Brokers = strings.Split(u.Host, ",")
	c.Topic = strings.TrimPrefix(u.Path, "/")
	if u.User != nil {
		c.SASL.Mechanism = SASLPlain
		c.SASL.Username = u.User.Username()
		c.SASL.Password, _ = u.User.Password()
	}
	var errs []error
	dur := func(k, v string, dst *time.Duration) {
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
		*dst = d
	}
	size := func(k, v string, dst *units.ByteSize) {
		n, err := units.ParseByteSize(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
		*dst = n
	}
	boolean := func(k, v string, dst *bool) {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
		*dst = b
	}
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "client_id":
			c.ClientID = v
		case "key":
			c.Key = v
		case "format":
			c.Format = v
		case "acks":
			c.Acks = v
		case "idempotent":
			boolean(k, v, &c.Idempotent)
		case "client_metrics":
			boolean(k, v, &c.ClientMetrics)
		case "compression":
			c.Compression = v
		case "topic_field":
			c.TopicField = v
		case "linger":
			dur(k, v, &c.Linger)
		case "produce_timeout":
			dur(k, v, &c.ProduceTimeout)
		case "send_timeout":
			dur(k, v, &c.SendTimeout)
		case "batch_max_bytes":
			size(k, v, &c.BatchMaxBytes)
		case "max_buffered_bytes":
			size(k, v, &c.MaxBufferedBytes)
		case "max_in_flight":
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", k, err))
			}
			c.MaxInFlight = n
		case "tls":
			boolean(k, v, &c.TLS.Enabled)
		case "tls_ca_file":
			c.TLS.CAFile = v
		case "tls_server_name":
			c.TLS.ServerName = v
		case "tls_insecure_skip_verify":
			boolean(k, v, &c.TLS.InsecureSkipVerify)
		case "sasl":
			c.SASL.Mechanism = v
		default:
			errs = append(errs, fmt.Errorf("%q is not a setting of kafka:// (it takes %s)", k, urlParams))
		}
	}
	if len(errs) == 0 {
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("kafka: url: %w", errors.Join(errs...))
	}
	return c, nil
}

// UsesExplicitHashKey: format kpl sends the user records' explicit hash
// keys inside its KPL aggregates; format records sends the record's bytes
// alone, and Kafka picks the partition by the message key
// (outputs.HashKeyUser).
func (c *Config) UsesExplicitHashKey() (bool, string) {
	if c.Format == FormatKPL {
		return true, ""
	}
	f := c.Format
	if f == "" {
		f = FormatRecords
	}
	return false, "format " + f
}

// UsesPartitionKey: the partition key is each message's key unless key is
// none (outputs.KeyUser).
func (c *Config) UsesPartitionKey() (bool, string) {
	if c.Key == KeyNone {
		return false, "key " + KeyNone
	}
	return true, ""
}

// urlParams are the query keys of a kafka:// URL, for the message that
// refuses another.
const urlParams = "client_id, key, format, acks, idempotent, client_metrics, compression, topic_field, linger, produce_timeout, send_timeout, batch_max_bytes, max_buffered_bytes, max_in_flight, tls, tls_ca_file, tls_server_name, tls_insecure_skip_verify, sasl"
