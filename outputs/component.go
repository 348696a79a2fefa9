package outputs

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kplagent/agent/aggregate"
)

// Type describes one output type: everything the agent and the command line
// need to configure and build it. An output package exports one (a func
// Type() outputs.Type); cmd/agent lists the compiled-in types once and hands
// the list to the agent. Nothing registers itself.
type Type struct {
	// Name is the `type:` value in the configuration, and the key of the
	// output's own block: `type: http` takes its options from `http:`.
	Name string
	// DefaultConfig returns a pointer to a new config struct holding the
	// type's defaults. The user's block is decoded over it strictly (unknown
	// keys are errors, reported with file:line and path). The config
	// should implement ConfigValidator and may implement PathResolver,
	// FileChecker and RecordLimiter.
	DefaultConfig func() any
	// New builds the output from a config made by DefaultConfig (and
	// validated). It may read files the config names; it opens no
	// connection.
	New func(name string, cfg any, set Settings) (Output, error)
	// FromURL, optional, turns `agent tail --to URL` into a config (made by
	// DefaultConfig) for a URL whose scheme is one of Schemes. flags carries
	// the options a URL cannot; a type uses those that apply to it. u is nil
	// for "-" (the default destination, stdout).
	FromURL func(u *url.URL, flags TailFlags) (any, error)
	// Schemes are the --to URL schemes FromURL takes ("-" is stdout).
	Schemes []string
	// TailFlagNames are the flags of TailFlags that FromURL uses, by their
	// `agent tail` names without dashes ("header", "timeout"; see
	// TailFlags). agent tail refuses the others with this type's URLs, as a
	// usage error: a flag silently ignored is a surprise.
	TailFlagNames []string
}

// Settings are what the agent passes to every output it builds (set in
// code, not in the config file).
type Settings struct {
	// Logger is scoped to the output (component=output, output=name).
	Logger *slog.Logger
	// Version is the agent's version; UserAgent is "agent/<version>", for
	// outputs that identify themselves to their destination.
	Version   string
	UserAgent string
	// Stdout is the process's standard output (replaced in tests).
	Stdout io.Writer
	// Registerer takes the output's own metrics. Its metrics carry the
	// label output=<name> already. Never nil.
	Registerer prometheus.Registerer
	// MaxConns is the most Sends in flight to the output at once (the sum
	// of sender.concurrency over the flows that use it): outputs size their
	// connection pools by it. 0: the output's default.
	MaxConns int
}

// TailFlags are the `agent tail` options a --to URL cannot carry. Each type
// maps those that make sense for it and lists them in Type.TailFlagNames
// (agent tail refuses the others).
type TailFlags struct {
	Format             string            // --http-format
	Encoding           string            // --encoding json|text ("": the type's tail default)
	Headers            map[string]string // --header 'Name: value' (repeatable)
	Gzip               bool              // --gzip (default true); --gzip=false is --compression none
	Compression        string            // --compression gzip|zstd|none; overrides Gzip when set
	BearerToken        string            // --bearer-token
	BasicAuth          string            // --basic-auth USER:PASSWORD
	CAFile             string            // --ca-file
	CertFile           string            // --cert-file
	KeyFile            string            // --key-file
	InsecureSkipVerify bool              // --insecure-skip-verify
	Timeout            time.Duration     // --timeout (0: the type's default)
}

// Optional capabilities of an output's config, found by type assertion.

// ConfigValidator checks a config without I/O. Each problem is an error whose
// message starts with its key relative to the type's block ("url: required",
// "tls.ca_file: ..."); join several with errors.Join.
type ConfigValidator interface {
	Validate() error
}

// PathResolver makes the relative file paths of a config relative to base,
// the directory of the config file.
type PathResolver interface {
	ResolvePaths(base string)
}

// FileChecker checks the files a config names (that they exist and parse),
// the I/O part of what New would reject, and what else New would read from
// the host (Kinesis and Firehose: a region from the environment or the
// shared AWS config files), never over the network. `agent validate` and
// `agent run` both call it after Validate and ResolvePaths. Problems are
// reported as by ConfigValidator.
type FileChecker interface {
	CheckFiles() error
}

// FileWarner, next to FileChecker, reports what on the host is worth a
// warning but does not stop a start (a directory that may be made later).
// Each error is prefixed with its key relative to the component's block,
// as by ConfigValidator; `agent validate` prints them after the file's
// name, `agent run` and reloads log them.
type FileWarner interface {
	WarnFiles() []error
}

// RecordLimiter is implemented by configs of destinations that bound the
// size of one record (a Kinesis record is at most 1 MiB by default, 10 MiB
// at most): MaxRecordBytes is the largest record, partition key included,
// the destination takes. The agent checks flows[].aggregation.max_bytes and
// the sources' largest records against it. Outputs without it are taken to
// accept aggregate.MaxRecordSize.
type RecordLimiter interface {
	MaxRecordBytes() int
}

// KeyUser is implemented by configs of outputs that can send the records'
// partition key (flows[].partition_key) to the destination: Kinesis (the
// record's key), Kafka (the message key), HTTP in the raw, raw-packed and
// kafka-rest formats, stdout and file in format kpl-json ("pk").
// UsesPartitionKey reports whether this config does; when it does not, why
// names the setting that leaves the key out ("format ndjson", "key none").
// Outputs without it never send the key (Firehose, blackhole): agent tail
// refuses --partition-key with them.
type KeyUser interface {
	UsesPartitionKey() (used bool, why string)
}

// HashKeyUser is implemented by configs of outputs that can send the
// records' explicit hash key (flows[].explicit_hash_key) on: Kinesis (the
// record's ExplicitHashKey, and each user record's inside a KPL
// aggregate), HTTP in the raw (X-Explicit-Hash-Key) and raw-packed (each
// frame) formats, Kafka in format kpl (inside the KPL aggregates), stdout
// and file in format kpl-json ("ehk"). UsesExplicitHashKey reports whether
// this config does; when it does not, why names the setting that leaves
// the key out ("format ndjson"). Outputs without it never send it
// (Firehose, blackhole): the agent warns about a flow that sets
// explicit_hash_key for them.
type HashKeyUser interface {
	UsesExplicitHashKey() (used bool, why string)
}

// ConcurrencyAdvisor is implemented by configs of outputs whose client
// pipelines requests on its own (a Kafka producer keeps up to 5 requests in
// flight per broker), where fewer Sends in flight than the agent's default
// of 4 deliver as fast with less memory: DefaultConcurrency is the
// sender concurrency `agent tail --to` uses when --concurrency is not given.
// (A flow in the configuration file keeps its sender.concurrency, 4 unless
// set.)
type ConcurrencyAdvisor interface {
	DefaultConcurrency() int
}

// RecordWriter is implemented by outputs that write the user records of
// every aggregate one by one (through aggregate.ForEach) rather than send KPL
// records: WritesRecords reports whether the configured format does. A flow
// whose outputs (primary and failover) all do builds its aggregates in
// aggregate.FramingLines, which costs less to build and to read. The agent
// hands an output that does not only KPL-framed aggregates (it converts
// aggregates of the newline framing, e.g. spooled under an earlier
// configuration, with Aggregate.KPL).
type RecordWriter interface {
	WritesRecords() bool
}

// ShardMapper is implemented by outputs whose destination partitions
// records by hash key (Kinesis shards): the agent aggregates per shard
// using the map, refreshed when ShardMap's result changes.
type ShardMapper interface {
	ShardMap(ctx context.Context) (*aggregate.ShardMap, error)
}

// ShardMapWatcher is implemented by ShardMappers whose map changes (a
// Kinesis reshard): ShardMapVersion numbers the current map (0 before the
// first, +1 per change) and ShardMapChanged returns a channel closed at the
// next change. A flow rebuilds its aggregator when the version differs from
// the one it was built against. A ShardMapper without it is asked once.
type ShardMapWatcher interface {
	ShardMapVersion() uint64
	ShardMapChanged() <-chan struct{}
}
