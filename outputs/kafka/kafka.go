package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
	// outcomeWaitLog is how long Send waits after its deadline before it
	// logs that it waits for requests the broker has not answered.
	outcomeWaitLog = time.Second
	// outcomeWaitMax bounds that wait: then the producer is replaced (the
	// old one closed, which fails its records), so that no Send outlasts
	// the agent's watchdog (sender.backoff_max + max_throttle_delay + 2m
	// without progress). Records the broker had written before it stopped
	// answering may then be written twice.
	outcomeWaitMax   = 2 * time.Minute
	defaultUserAgent = "kplagent"
)

// Output is the Kafka output. Send is safe for concurrent use.
type Output struct {
	name string
	cfg  Config // with defaults
	// topicPath is cfg.TopicField split at its dots (a nested field).
	topicPath []string
	log       *slog.Logger
	rl        *rateLog
	m         *metrics
	reg       prometheus.Registerer
	sends     sync.Pool // *send
	closed    atomic.Bool
	once      sync.Once

	// clMu guards cl, replaced by resetClient; cl is never nil.
	clMu         sync.Mutex
	cl           *kgo.Client
	waitMax      time.Duration // outcomeWaitMax (tests shorten it)
	clientResets atomic.Int64
	conns        connWatch // the last failed broker connection (all clients)
	recreated    recreated // purges of topics deleted and created again

	opts   []kgo.Opt // the client's, for the solo client and resets
	soloMu sync.Mutex
	solo   *kgo.Client // nil until a record is refused as too large (or after a reset)
}

// soloClient returns the producer that buffers a single record, so each of
// its batches holds one record (see send.checkAlone). It is made on first
// use.
func (o *Output) soloClient() (*kgo.Client, error) {
	o.soloMu.Lock()
	defer o.soloMu.Unlock()
	if o.closed.Load() {
		return nil, errClosed
	}
	if o.solo == nil {
		opts := append(o.opts[:len(o.opts):len(o.opts)], kgo.MaxBufferedRecords(1), kgo.ProducerLinger(0))
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			return nil, err
		}
		o.solo = cl
	}
	return o.solo, nil
}

// resetSolo closes old, the solo client, when it is still the current one:
// the next soloClient makes a new one.
func (o *Output) resetSolo(old *kgo.Client) {
	o.soloMu.Lock()
	if o.solo != old {
		o.soloMu.Unlock()
		return
	}
	o.solo = nil
	o.soloMu.Unlock()
	o.clientResets.Add(1)
	old.Close()
}

var (
	_ outputs.Output        = (*Output)(nil)
	_ outputs.Healthchecker = (*Output)(nil)
	_ outputs.WaitCauser    = (*Output)(nil)
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
		return nil, fmt.Errorf("kafka: %w", err)
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
		return nil, fmt.Errorf("kafka: %w", err)
	}
	sec, err := securityOpts(context.Background(), cfg, ua)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	if cfg.TLS.InsecureSkipVerify {
		log.Warn("tls.insecure_skip_verify is set: the brokers' certificates are not verified")
	}
	if cfg.acks() == AcksNone {
		log.Warn("acks: none: records are reported delivered without any acknowledgement and may be lost")
	}
	m, err := newMetrics(set.Registerer)
	if err != nil {
		return nil, fmt.Errorf("kafka: metrics: %w", err)
	}
	o := &Output{
		name:      name,
		cfg:       cfg,
		topicPath: strings.Split(cfg.TopicField, "."),
		log:       log,
		rl:        &rateLog{log: log, now: time.Now, seen: make(map[string]*rateEntry)},
		m:         m,
		reg:       set.Registerer,

		waitMax: outcomeWaitMax,
	}
	opts = append(opts, sec...)
	opts = append(opts, extra...)
	if cfg.SASL.Mechanism != "" {
		o.conns.sasl = strings.ToUpper(cfg.SASL.Mechanism)
		if cfg.SASL.Username != "" {
			o.conns.sasl += " as user " + cfg.SASL.Username
		}
	}
	opts = append(opts, kgo.WithHooks(&o.conns))
	opts = append(opts, kgo.ProducerOnDataLossDetected(func(topic string, partition int32) {
		o.rl.logf(slog.LevelError, "data_loss:"+topic, "the broker reports data loss (its log was truncated or the producer's state expired)",
			"topic", topic, "partition", partition)
	}))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		m.unregister(set.Registerer)
		return nil, fmt.Errorf("kafka: %w", err)
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
	switch c.acks() {
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
	if !c.ClientMetrics {
		opts = append(opts, kgo.DisableClientMetrics())
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

// client returns the current producer.
func (o *Output) client() *kgo.Client {
	o.clMu.Lock()
	defer o.clMu.Unlock()
	return o.cl
}

// resetClient replaces old, when it is still the current producer, by a new
// one, and closes old: its records (those of Sends waiting for answers that
// do not come) are failed. After Close it only closes nothing new. waited is
// how long the Send that gives up has waited; stopping says the agent is
// stopping (the Send's caller gave up), not that the broker was silent for
// outcomeWaitMax.
func (o *Output) resetClient(old *kgo.Client, waited time.Duration, stopping bool) {
	o.clMu.Lock()
	if o.cl != old || o.closed.Load() {
		o.clMu.Unlock()
		return
	}
	cl, err := kgo.NewClient(o.opts...)
	if err != nil { // the options were taken once already: not expected
		o.clMu.Unlock()
		o.rl.logf(slog.LevelError, "reset", "cannot make a new producer; still waiting for the broker", "error", err)
		return
	}
	o.cl = cl
	o.clMu.Unlock()
	o.clientResets.Add(1)
	waited = waited.Round(time.Millisecond)
	if stopping {
		o.rl.logf(slog.LevelWarn, "reset_stopping", "stopping with requests the broker has not answered: the producer is closed and their records stay in the spool (sent again after the next start; those the broker had written may be written twice)",
			"waited", waited)
	} else {
		o.rl.logf(slog.LevelWarn, "reset", "the broker has not answered requests for a long time: the producer is replaced and their records retried (those it had written may be written twice)",
			"waited", waited)
	}
	old.Close()
}

// Name returns the output's name.
func (o *Output) Name() string { return o.name }

// SendTimeout is send_timeout: see outputs.SendTimeouter.
func (o *Output) SendTimeout() time.Duration { return o.cfg.SendTimeout }

// WritesRecords reports whether the format produces user records one by one
// (records; kpl sends KPL records): see outputs.RecordWriter.
func (o *Output) WritesRecords() bool { return o.cfg.Format == FormatRecords }

// Healthcheck asks a broker for the cluster's metadata: it fails when no
// broker is reachable or authentication fails.
func (o *Output) Healthcheck(ctx context.Context) error {
	if o.closed.Load() {
		return errClosed
	}
	if err := o.client().Ping(ctx); err != nil {
		return fmt.Errorf("kafka: no broker reachable: %w", err)
	}
	return nil
}

// Close closes the client: records a Send still waits for (in requests the
// broker has not answered) are failed, and that Send returns them as
// retryable. It is idempotent; Send must not be called after it.
func (o *Output) Close(context.Context) error {
	o.once.Do(func() {
		o.closed.Store(true)
		o.soloMu.Lock() // closed is set: no solo client after this
		solo := o.solo
		o.soloMu.Unlock()
		if solo != nil {
			solo.Close()
		}
		o.clMu.Lock()
		cl := o.cl
		o.clMu.Unlock()
		cl.Close()
		o.recreated.running.Wait() // closed clients end their purges
		o.m.unregister(o.reg)
	})
	return nil
}
