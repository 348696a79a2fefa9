package kinesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kplagent/agent/internal/awsconf"
	"github.com/kplagent/agent/internal/redact"
	"github.com/kplagent/agent/outputs"
)

// Settings are the values set in code (not from YAML).
type Settings struct {
	Logger     *slog.Logger // already scoped to this output by the caller; nil: discard
	UserAgent  string       // added to the SDK's User-Agent, e.g. "kplagent/1.2.3"
	Registerer prometheus.Registerer
	// MaxConns sizes the pool of idle connections: the sender's in-flight
	// Send limit. Default 64.
	MaxConns int
	// OutputLabelled says Registerer adds the label output=<name> itself
	// (the agent's does): the metrics then carry only the stream label, as
	// a second output label would make their registration fail.
	OutputLabelled bool
}

const defaultMaxConns = 64

// warnInterval rate-limits the warnings of conditions that repeat at every
// retry (stream not found, access denied, failed refreshes).
const warnInterval = 30 * time.Second

// api is the part of the Kinesis client the output uses.
type api interface {
	PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, opts ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error)
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, opts ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, opts ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error)
}

// Output is the Kinesis Data Streams output. Send, ShardMap and the other
// methods are safe for concurrent use.
type Output struct {
	name    string
	cfg     Config // defaults filled in
	client  api
	tr      *http.Transport
	log     *slog.Logger
	metrics *metrics
	limiter *limiter // nil: rate_limit off
	now     func() time.Time
	// sleep waits d or until ctx is done (tests replace it).
	sleep func(ctx context.Context, d time.Duration) error

	maps shardMaps

	requests sync.Pool // *request
	// prepared says the client serializes PutRecords with proto, from the
	// request's entries (see request): the SDK's client made by New.
	prepared  bool
	proto     putRecordsProtocol
	splitters splitterPool

	// Background refreshes run under bgCtx; Close cancels it and waits.
	bgCtx    context.Context
	bgCancel context.CancelFunc
	wg       sync.WaitGroup
	closing  atomic.Bool

	lastMissingWarn atomic.Int64 // unix nanos of the last warning of its kind
	lastAuthWarn    atomic.Int64
	lastRefreshWarn atomic.Int64
}

var (
	_ outputs.Output        = (*Output)(nil)
	_ outputs.Healthchecker = (*Output)(nil)
)

// New validates cfg, resolves the AWS configuration (shared config files,
// region) and returns the output. It calls no Kinesis API: the shard map is
// fetched by the first ShardMap or Send.
func New(name string, cfg Config, set Settings) (*Output, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kinesis: %w", err)
	}
	cfg = cfg.withDefaults()
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	maxConns := set.MaxConns
	if maxConns <= 0 {
		maxConns = defaultMaxConns
	}
	awsCfg, tr, err := awsconf.Load(cfg.Config, awsconf.Settings{UserAgent: set.UserAgent, Logger: log}, maxConns)
	if err != nil {
		return nil, fmt.Errorf("kinesis: %w", err)
	}
	proto := putRecordsProtocol{cbor: new(atomic.Bool)}
	proto.cbor.Store(cfg.Protocol == ProtocolCBOR)
	proto.fallback = func(err error) {
		log.Warn("PutRecords in CBOR failed: using JSON from now on (set protocol: json for this endpoint)",
			"stream", cfg.Stream, "endpoint", cfg.Endpoint, "err", err)
	}
	client := kinesis.NewFromConfig(awsCfg, func(o *kinesis.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.Retryer = aws.NopRetryer{} // the agent's sender retries
		proto.ClientProtocol = o.Protocol
		o.Protocol = proto
		o.APIOptions = append(o.APIOptions, addPayloadHash)
	})
	o := newOutput(name, cfg, client, log, set.Registerer, set.OutputLabelled)
	o.tr = tr
	o.proto = proto
	o.prepared = true
	o.log.Info("kinesis output ready", "stream", cfg.Stream, "region", awsCfg.Region,
		"assume_role", cfg.RoleARN != "", "protocol", cfg.Protocol, "rate_limit", cfg.RateLimit.String(), "aggregation", cfg.Aggregation)
	return o, nil
}

// newOutput builds an output around client (tests pass fakes).
func newOutput(name string, cfg Config, client api, log *slog.Logger, reg prometheus.Registerer, outputLabelled bool) *Output {
	o := &Output{
		name:    name,
		cfg:     cfg,
		client:  client,
		log:     log,
		metrics: newMetrics(reg, name, cfg.Stream, outputLabelled),
		now:     time.Now,
		sleep:   sleepCtx,
	}
	if cfg.RateLimit != RateLimitOff {
		o.limiter = newLimiter(cfg.RateLimit)
	}
	o.maps.changed = make(chan struct{})
	o.bgCtx, o.bgCancel = context.WithCancel(context.Background())
	return o
}

// Name returns the output's name.
func (o *Output) Name() string { return o.name }

// SendTimeout is the API call timeout (timeout): see outputs.SendTimeouter.
func (o *Output) SendTimeout() time.Duration { return o.cfg.Timeout }

// Close stops background shard map refreshes and closes idle connections. It
// is idempotent; Send must not be called after it.
func (o *Output) Close(context.Context) error {
	// Under the lock refreshInBackground checks closing with: a refresh
	// either sees it, or has called wg.Add before the Wait below.
	o.maps.mu.Lock()
	was := o.closing.Swap(true)
	o.maps.mu.Unlock()
	if was {
		return nil
	}
	o.bgCancel()
	o.wg.Wait()
	if o.tr != nil {
		o.tr.CloseIdleConnections()
	}
	return nil
}

// Healthcheck asks DescribeStreamSummary whether the stream exists and takes
// writes (ACTIVE or UPDATING).
func (o *Output) Healthcheck(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	out, err := o.client.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(o.cfg.Stream)})
	if err != nil {
		return fmt.Errorf("kinesis: DescribeStreamSummary %s: %w", o.cfg.Stream, o.describeError(err, waitUnknown))
	}
	if d := out.StreamDescriptionSummary; d != nil {
		switch d.StreamStatus {
		case types.StreamStatusActive, types.StreamStatusUpdating:
			return nil
		}
		return fmt.Errorf("kinesis: stream %s is %s", o.cfg.Stream, d.StreamStatus)
	}
	return nil
}

// warnEvery logs msg at most once per warnInterval per kind (last).
func (o *Output) warnEvery(last *atomic.Int64, msg string, args ...any) {
	now := o.now().UnixNano()
	prev := last.Load()
	if prev != 0 && now-prev < int64(warnInterval) {
		return
	}
	if last.CompareAndSwap(prev, now) {
		o.log.Warn(msg, args...)
	}
}

// waiting says where the records wait while a call fails: the warning of a
// missing stream says it.
type waiting uint8

const (
	// waitSpooled: a send, or a refresh of the map in use. The records
	// the sends did not deliver are in the spool (or, while it cannot
	// take them, in memory, which the flow's sender warns about).
	waitSpooled waiting = iota
	// waitUnread: the first shard map, which a flow waits for before it
	// aggregates: its sources are not read meanwhile.
	waitUnread
	// waitUnknown: a health check, which no record waits for.
	waitUnknown
)

// streamMissingMsg is the warning of a stream not found, by where the
// records wait.
var streamMissingMsg = [...]string{
	waitSpooled: "stream not found: records wait in the spool until it exists (create it, or fix stream/region)",
	waitUnread: "stream not found: the flow waits for the stream's shard map before it aggregates, so records wait unread in their sources " +
		"(files at their saved positions, pipes and stream clients not read; datagrams past datagram_queue dropped and counted) until it exists " +
		"(create it, or fix stream/region; sender.max_retry_duration, when set, bounds the wait)",
	waitUnknown: "stream not found: nothing can be sent until it exists (create it, or fix stream/region)",
}

// describeError logs, rate-limited, the errors an operator must act on (a
// missing stream, denied access) and returns err. w says where the records
// wait meanwhile.
func (o *Output) describeError(err error, w waiting) error {
	code := errorCode(err)
	switch {
	case code == "ResourceNotFoundException":
		o.metrics.streamMissing.Inc()
		// One limiter for every variant: one warning per episode, whichever
		// call saw it first (a flow waiting for its first map may also
		// send a spooled backlog).
		o.warnEvery(&o.lastMissingWarn, streamMissingMsg[w], "stream", o.cfg.Stream)
	case authCodes[code]:
		o.warnEvery(&o.lastAuthWarn, "access to the stream refused: check the credentials and the policy (kinesis:PutRecords, kinesis:ListShards, kinesis:DescribeStreamSummary)",
			"stream", o.cfg.Stream, "code", code)
	case code == "":
		// An answer that is no AWS error at all (a 404 page, a proxy's
		// HTML): the SDK says only that it could not decode it. Most
		// often endpoint names another service (a typo'd port, a path).
		var re *smithyhttp.ResponseError
		var de *smithy.DeserializationError
		if errors.As(err, &re) && errors.As(err, &de) && (re.HTTPStatusCode() < 200 || re.HTTPStatusCode() > 299) {
			where := "the region's Kinesis endpoint"
			if o.cfg.Endpoint != "" {
				where = "endpoint " + redact.RawURL(o.cfg.Endpoint)
			}
			return fmt.Errorf("the answer (HTTP %d) is not a Kinesis API answer: is %s a Kinesis endpoint? %w", re.HTTPStatusCode(), where, err)
		}
	}
	return err
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errClosed is returned by Send after Close.
var errClosed = errors.New("kinesis: output closed")
