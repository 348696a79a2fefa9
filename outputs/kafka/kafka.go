package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kplagent/agent/outputs"
)

// Settings are the values set in code (not from YAML).
type Settings struct {
	Logger     *slog.Logger          // already scoped to this output by the caller; nil: discard
	UserAgent  string                // sent as the AWS_MSK_IAM user agent; default "kplagent"
	Registerer prometheus.Registerer // nil: metrics are kept but not exported; the agent's adds output=<name>
}

// Producer limits that are not configuration.
const (
	// recordRetries bounds franz-go's own retries of a record it may
	// safely fail (never sent, or answered by the broker): the agent's
	// sender owns retry. The idempotent producer retries a request whose
	// outcome is unknown until it learns it, so no duplicate is written.
	recordRetries = 10
	// unknownTopicRetries is how many metadata loads may find a topic
	// missing before its records fail (retryable) back to the sender.
	unknownTopicRetries = 4
	// maxBufferedRecords bounds the records buffered (with their
	// per-record overhead) next to Config.MaxBufferedBytes.
	maxBufferedRecords = 1 << 18
	// abandonGrace is how long Send waits after its deadline for the
	// producer to fail the records it had not sent yet.
	abandonGrace     = time.Second
	defaultUserAgent = "kplagent"
)

// Output is the Kafka output. Send is safe for concurrent use.
type Output struct {
	name   string
	cfg    Config // with defaults
	cl     *kgo.Client
	log    *slog.Logger
	rl     *rateLog
	m      *metrics
	reg    prometheus.Registerer
	sends  sync.Pool // *send
	closed atomic.Bool
	once   sync.Once

	opts     []kgo.Opt // the client's, for the solo client
	soloOnce sync.Once
	solo     *kgo.Client // nil until a record is refused as too large
	soloErr  error
}

// soloClient returns the producer that buffers a single record, so each of
// its batches holds one record (see send.checkAlone). It is made on first
// use.
func (o *Output) soloClient() (*kgo.Client, error) {
	o.soloOnce.Do(func() {
		opts := append(o.opts[:len(o.opts):len(o.opts)], kgo.MaxBufferedRecords(1), kgo.ProducerLinger(0))
		o.solo, o.soloErr = kgo.NewClient(opts...)
	})
	return o.solo, o.soloErr
}

var (
	_ outputs.Output        = (*Output)(nil)
	_ outputs.Healthchecker = (*Output)(nil)
)

// errClosed is returned by Send after Close.
var errClosed = errors.New("kafka: output closed")

// New validates cfg, loads the TLS files and AWS configuration it names and
// returns the output. The client connects lazily: New opens no connection.
func New(name string, cfg Config, set Settings) (*Output, error) {
	return newOutputOpts(name, cfg, set)
}

// newOutputOpts is New with extra client options (tests' hooks).
func newOutputOpts(name string, cfg Config, set Settings, extra ...kgo.Opt) (*Output, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka: output %s: %w", name, err)
	}
	cfg = cfg.withDefaults()
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ua := set.UserAgent
	if ua == "" {
		ua = defaultUserAgent
	}
	opts, err := clientOpts(cfg)
	if err != nil {
		return nil, fmt.Errorf("kafka: output %s: %w", name, err)
	}
	sec, err := securityOpts(context.Background(), cfg, ua)
	if err != nil {
		return nil, fmt.Errorf("kafka: output %s: %w", name, err)
	}
	if cfg.TLS.InsecureSkipVerify {
		log.Warn("tls.insecure_skip_verify is set: the brokers' certificates are not verified")
	}
	if cfg.Acks == AcksNone {
		log.Warn("acks: none: records are reported delivered without any acknowledgement and may be lost")
	}
	m, err := newMetrics(set.Registerer)
	if err != nil {
		return nil, fmt.Errorf("kafka: output %s: metrics: %w", name, err)
	}
	o := &Output{
		name: name,
		cfg:  cfg,
		log:  log,
		rl:   &rateLog{log: log, now: time.Now, seen: make(map[string]*rateEntry)},
		m:    m,
		reg:  set.Registerer,
	}
	opts = append(opts, sec...)
	opts = append(opts, extra...)
	opts = append(opts, kgo.ProducerOnDataLossDetected(func(topic string, partition int32) {
		o.rl.logf(slog.LevelError, "data_loss:"+topic, "the broker reports data loss (its log was truncated or the producer's state expired)",
			"topic", topic, "partition", partition)
	}))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		m.unregister(set.Registerer)
		return nil, fmt.Errorf("kafka: output %s: %w", name, err)
	}
	o.cl, o.opts = cl, opts
	return o, nil
}

// clientOpts maps the configuration to franz-go options (security aside).
func clientOpts(c Config) ([]kgo.Opt, error) {
	brokers := make([]string, len(c.Brokers))
	for i, b := range c.Brokers {
		a, err := brokerAddr(b)
		if err != nil { // unreachable after Validate
			return nil, fmt.Errorf("brokers[%d]: %w", i, err)
		}
		brokers[i] = a
	}
	cc, err := codec(c.Compression)
	if err != nil {
		return nil, fmt.Errorf("compression: %w", err)
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ClientID(c.ClientID),
		kgo.DefaultProduceTopic(c.Topic),
		// Java's default partitioner: murmur2 of the key, positive,
		// modulo the partition count; sticky for records without a key.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		compressionOpt(c.Compression, cc),
		kgo.ProducerLinger(c.Linger),
		kgo.ProducerBatchMaxBytes(int32(c.BatchMaxBytes)), //nolint:gosec // Validate bounds it to 1GiB
		kgo.MaxBufferedBytes(int(c.MaxBufferedBytes)),
		kgo.MaxBufferedRecords(maxBufferedRecords),
		kgo.ProduceRequestTimeout(c.ProduceTimeout),
		kgo.RecordRetries(recordRetries),
		kgo.RecordDeliveryTimeout(c.SendTimeout),
		kgo.UnknownTopicRetries(unknownTopicRetries),
	}
	switch c.Acks {
	case AcksLeader:
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()))
	case AcksNone:
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()))
	default:
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	}
	if !c.Idempotent {
		opts = append(opts, kgo.DisableIdempotentWrite(), kgo.MaxProduceRequestsInflightPerBroker(c.MaxInFlight))
	}
	return opts, nil
}

// compressionOpt selects the batch codec: lz4 through lz4Compressor (64 KiB
// blocks, as Java), the others through franz-go's compressor.
func compressionOpt(name string, cc kgo.CompressionCodec) kgo.ProducerOpt {
	if name == CompressionLZ4 || (name == "" && defaultCompression == CompressionLZ4) {
		return kgo.WithCompressor(newLZ4Compressor())
	}
	return kgo.ProducerBatchCompression(cc)
}

// codec maps a compression name ("" is the default) to franz-go's codec.
func codec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "":
		return codec(defaultCompression)
	case CompressionNone:
		return kgo.NoCompression(), nil
	case CompressionGzip:
		return kgo.GzipCompression(), nil
	case CompressionSnappy:
		return kgo.SnappyCompression(), nil
	case CompressionLZ4:
		return kgo.Lz4Compression(), nil
	case CompressionZstd:
		return kgo.ZstdCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("unknown %q (want %s, %s, %s, %s or %s)", name,
		CompressionNone, CompressionGzip, CompressionSnappy, CompressionLZ4, CompressionZstd)
}

// Name returns the output's name.
func (o *Output) Name() string { return o.name }

// WritesRecords reports whether the format produces user records one by one
// (records; kpl sends KPL records): see outputs.RecordWriter.
func (o *Output) WritesRecords() bool { return o.cfg.Format == FormatRecords }

// Healthcheck asks a broker for the cluster's metadata: it fails when no
// broker is reachable or authentication fails.
func (o *Output) Healthcheck(ctx context.Context) error {
	if o.closed.Load() {
		return errClosed
	}
	if err := o.cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: output %s: no broker reachable: %w", o.name, err)
	}
	return nil
}

// Close closes the client: records still buffered (from a Send that
// returned at its deadline) are failed, which the sender already counted as
// not delivered. It is idempotent; Send must not be called after it.
func (o *Output) Close(context.Context) error {
	o.once.Do(func() {
		o.closed.Store(true)
		o.soloOnce.Do(func() {}) // no solo client after this
		if o.solo != nil {
			o.solo.Close()
		}
		o.cl.Close()
		o.m.unregister(o.reg)
	})
	return nil
}
