package cwmetrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kplagent/agent/internal/awsconf"
)

// logEvery bounds the failure log: one line at the first failure, then at
// most one per logEvery with the number of failures in between.
const logEvery = 5 * time.Minute

// Settings are set in code.
type Settings struct {
	// Gatherer is the registry whose metrics are published (the agent's).
	Gatherer prometheus.Gatherer
	// Registerer takes the publisher's own metrics; nil drops them.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// UserAgent is added to the requests' User-Agent.
	UserAgent string
}

// putMetricDataAPI is the one call the publisher makes (tests fake it).
type putMetricDataAPI interface {
	PutMetricData(ctx context.Context, in *cloudwatch.PutMetricDataInput, optFns ...func(*cloudwatch.Options)) (*cloudwatch.PutMetricDataOutput, error)
}

// Publisher publishes a Prometheus registry's metrics (those of catalog) to
// CloudWatch every interval, from its own goroutine: a slow or failing
// CloudWatch delays only the next publish, never the pipeline. What a
// failed request carried is sent with the next one (counters as their
// increase since the last publish that succeeded).
//
// Start starts it; Stop stops it and publishes a last time. Both are called
// once, from one goroutine.
type Publisher struct {
	cfg    Config
	client putMetricDataAPI
	tr     *http.Transport // nil in tests with a fake client
	gather prometheus.Gatherer
	log    *slog.Logger
	now    func() time.Time

	requests   *prometheus.CounterVec
	dataPoints *prometheus.CounterVec
	lastOK     prometheus.Gauge

	// sem is held by the one publish running (the loop's or Stop's).
	sem chan struct{}
	// Under sem: the counters' values at the last successful publish, and
	// the failure log's state.
	last     map[string]float64
	failures int
	lastLog  time.Time
	failing  bool

	cancel context.CancelFunc
	done   chan struct{}
}

// New validates cfg and resolves the AWS configuration (region,
// credentials chain, role). It makes no call to CloudWatch.
func New(cfg Config, set Settings) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cloudwatch: %w", err)
	}
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	awsCfg, tr, err := awsconf.Load(cfg.Config, awsconf.Settings{UserAgent: set.UserAgent, Logger: log}, 1)
	if err != nil {
		return nil, fmt.Errorf("cloudwatch: %w", err)
	}
	client := cloudwatch.NewFromConfig(awsCfg, func(o *cloudwatch.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.Retryer = aws.NopRetryer{} // what fails goes with the next interval
	})
	p := newPublisher(cfg, client, set)
	p.tr = tr
	p.log.Info("publishing metrics to CloudWatch", "namespace", cfg.Namespace, "interval", cfg.Interval.String(),
		"region", awsCfg.Region, "assume_role", cfg.RoleARN != "")
	return p, nil
}

func newPublisher(cfg Config, client putMetricDataAPI, set Settings) *Publisher {
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Publisher{cfg: cfg, client: client, gather: set.Gatherer, log: log, now: time.Now,
		sem: make(chan struct{}, 1), last: map[string]float64{}}
	p.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_cloudwatch_requests_total",
		Help: "PutMetricData calls publishing the agent's metrics, by result (ok, error)."}, []string{"result"})
	p.dataPoints = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_cloudwatch_data_points_total",
		Help: "Metric data points published to CloudWatch, by result (sent; failed: sent again with the next interval)."}, []string{"result"})
	p.lastOK = prometheus.NewGauge(prometheus.GaugeOpts{Name: "agent_cloudwatch_last_success_timestamp_seconds",
		Help: "When metrics were last published to CloudWatch (unix time; 0 before the first)."})
	for _, r := range []string{"ok", "error"} {
		p.requests.WithLabelValues(r)
	}
	for _, r := range []string{"sent", "failed"} {
		p.dataPoints.WithLabelValues(r)
	}
	if set.Registerer != nil {
		set.Registerer.MustRegister(p.requests, p.dataPoints, p.lastOK)
	}
	return p
}

// Start publishes every interval until Stop.
func (p *Publisher) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		t := time.NewTicker(p.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				p.Publish(ctx)
			}
		}
	}()
}

// Stop ends the interval loop (a publish in flight is cancelled: its data
// go with the last one) and publishes a last time, within ctx: metrics of
// the pipeline's final moments are not lost with the process. Safe without
// Start.
func (p *Publisher) Stop(ctx context.Context) {
	if p.cancel != nil {
		p.cancel()
		select {
		case <-p.done:
		case <-ctx.Done():
		}
	}
	p.Publish(ctx)
	if p.tr != nil {
		p.tr.CloseIdleConnections()
	}
}

// point is one CloudWatch metric at one moment.
type point struct {
	key     string
	name    string
	unit    types.StandardUnit
	dims    []types.Dimension
	value   float64 // a counter's total, a gauge's value
	counter bool
}

// collect reads the catalog's metrics from the registry, summed by the
// dimensions they are published with.
func (p *Publisher) collect() []*point {
	mfs, err := p.gather.Gather()
	if err != nil {
		// What was gathered is still published; the registry's problem
		// is /metrics' to report.
		p.log.Debug("gathering metrics", "err", err)
	}
	fams := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		fams[mf.GetName()] = mf
	}
	user := make([]types.Dimension, 0, len(p.cfg.Dimensions))
	for _, k := range slices.Sorted(maps.Keys(p.cfg.Dimensions)) {
		user = append(user, types.Dimension{Name: aws.String(k), Value: aws.String(p.cfg.Dimensions[k])})
	}
	var out []*point
	byKey := map[string]*point{}
	for _, s := range catalog {
		mf := fams[s.prom]
		if mf == nil {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := make(map[string]string, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if !s.only.keeps(labels) {
				continue
			}
			v, ok := value(m)
			if !ok {
				continue
			}
			var key strings.Builder
			key.WriteString(s.name)
			dims := make([]types.Dimension, 0, len(s.dims)+len(user))
			for _, d := range s.dims {
				lv := labels[d.label]
				if lv == "" {
					lv = "none" // CloudWatch refuses empty values
				}
				key.WriteByte(0)
				key.WriteString(lv)
				dims = append(dims, types.Dimension{Name: aws.String(d.name), Value: aws.String(lv)})
			}
			if pt := byKey[key.String()]; pt != nil {
				pt.value += v
				continue
			}
			pt := &point{key: key.String(), name: s.name, unit: s.unit, dims: append(dims, user...), value: v, counter: s.counter}
			byKey[pt.key] = pt
			out = append(out, pt)
		}
	}
	return out
}

func value(m *dto.Metric) (float64, bool) {
	var v float64
	switch {
	case m.Counter != nil:
		v = m.Counter.GetValue()
	case m.Gauge != nil:
		v = m.Gauge.GetValue()
	case m.Untyped != nil:
		v = m.Untyped.GetValue()
	default:
		return 0, false
	}
	return v, !math.IsNaN(v) && !math.IsInf(v, 0)
}

// datum is a point as sent, with the counter total to remember once sent.
type datum struct {
	d     types.MetricDatum
	key   string
	total float64
	size  int
}

// Publish collects the metrics and sends them, in as many requests as
// PutMetricData's limits need. It returns when done or when ctx ends; a
// failure is counted and logged (rate-limited), never returned.
func (p *Publisher) Publish(ctx context.Context) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-p.sem }()
	now := p.now()
	points := p.collect()
	data := make([]datum, 0, len(points))
	for _, pt := range points {
		v := pt.value
		if pt.counter {
			if last := p.last[pt.key]; v >= last {
				v -= last
			} // else the counter restarted: all of it is new
		}
		d := datum{total: pt.value, size: datumSize(pt)}
		if pt.counter {
			d.key = pt.key // remembered once sent
		}
		d.d = types.MetricDatum{MetricName: aws.String(pt.name), Dimensions: pt.dims, Unit: pt.unit,
			Timestamp: aws.Time(now), Value: aws.Float64(v)}
		data = append(data, d)
	}
	for len(data) > 0 && ctx.Err() == nil {
		n, size := 0, requestOverhead+len(p.cfg.Namespace)
		for n < len(data) && n < maxRequestData && (n == 0 || size+data[n].size <= maxRequestBytes) {
			size += data[n].size
			n++
		}
		p.send(ctx, data[:n], now)
		data = data[n:]
	}
}

// Size estimates: generous upper bounds of a datum's and a request's
// encoding (CBOR or JSON), for cutting requests under maxRequestBytes.
const (
	requestOverhead = 256
	datumOverhead   = 96
	dimOverhead     = 24
)

func datumSize(pt *point) int {
	n := datumOverhead + len(pt.name) + len(pt.unit)
	for _, d := range pt.dims {
		n += dimOverhead + len(aws.ToString(d.Name)) + len(aws.ToString(d.Value))
	}
	return n
}

func (p *Publisher) send(ctx context.Context, data []datum, now time.Time) {
	in := &cloudwatch.PutMetricDataInput{Namespace: aws.String(p.cfg.Namespace), MetricData: make([]types.MetricDatum, len(data))}
	for i := range data {
		in.MetricData[i] = data[i].d
	}
	cctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	_, err := p.client.PutMetricData(cctx, in)
	cancel()
	if err != nil {
		p.requests.WithLabelValues("error").Inc()
		p.dataPoints.WithLabelValues("failed").Add(float64(len(data)))
		p.failed(ctx, err, now)
		return
	}
	p.requests.WithLabelValues("ok").Inc()
	p.dataPoints.WithLabelValues("sent").Add(float64(len(data)))
	p.lastOK.Set(float64(now.UnixNano()) / 1e9)
	for _, d := range data {
		if d.key != "" {
			p.last[d.key] = d.total
		}
	}
	if p.failing {
		p.failing = false
		p.log.Info("publishing metrics to CloudWatch works again", "failures", p.failures)
		p.failures, p.lastLog = 0, time.Time{}
	}
}

// failed logs the first failure, then one line per logEvery at most.
func (p *Publisher) failed(ctx context.Context, err error, now time.Time) {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return // stopping: the last publish sends it
	}
	p.failing = true
	p.failures++
	if !p.lastLog.IsZero() && now.Sub(p.lastLog) < logEvery {
		return
	}
	p.log.Warn("publishing metrics to CloudWatch failed; they go with the next interval's (the pipeline is not affected)",
		"namespace", p.cfg.Namespace, "failures", p.failures, "err", err)
	p.lastLog = now
	p.failures = 0
}
