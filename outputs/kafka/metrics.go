package kafka

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the output's Prometheus metrics, labelled by topic. The
// registerer the agent passes labels them output=<name> (so several Kafka
// outputs share one registry); the package adds no output label itself.
type metrics struct {
	records  *prometheus.CounterVec   // topic
	bytes    *prometheus.CounterVec   // topic
	errors   *prometheus.CounterVec   // topic, code
	latency  *prometheus.HistogramVec // topic
	fallback *prometheus.CounterVec   // reason

	topics sync.Map // topic -> *topicMetrics
}

// topicMetrics caches one topic's children: a record's ack costs no label
// lookup.
type topicMetrics struct {
	records prometheus.Counter
	bytes   prometheus.Counter
	latency prometheus.Observer
}

// Reasons of agent_kafka_topic_fallback_total.
const (
	fallbackMissing = "missing" // not JSON, or no such string field
	fallbackInvalid = "invalid" // the field is not a legal topic name
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_kafka_records_produced_total",
			Help: "Kafka records acknowledged by the brokers.",
		}, []string{"topic"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_kafka_bytes_produced_total",
			Help: "Key and value bytes of the Kafka records acknowledged by the brokers (before compression).",
		}, []string{"topic"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_kafka_produce_errors_total",
			Help: "Kafka records that failed, by topic and Kafka error code name (or client, timeout, canceled).",
		}, []string{"topic", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "agent_kafka_produce_latency_seconds",
			Help:    "Time from a Send handing a record to the producer to the broker's acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12), // 1ms .. ~60s
		}, []string{"topic"}),
		fallback: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_kafka_topic_fallback_total",
			Help: "User records sent to the fallback topic because their topic_field was missing or invalid.",
		}, []string{"reason"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.records, m.bytes, m.errors, m.latency, m.fallback} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// unregister removes the collectors (Close), so a rebuilt output of the same
// name can register again (reload).
func (m *metrics) unregister(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	for _, c := range []prometheus.Collector{m.records, m.bytes, m.errors, m.latency, m.fallback} {
		reg.Unregister(c)
	}
}

func (m *metrics) topic(t string) *topicMetrics {
	if v, ok := m.topics.Load(t); ok {
		return v.(*topicMetrics) //nolint:forcetypeassert // only *topicMetrics are stored
	}
	tm := &topicMetrics{
		records: m.records.WithLabelValues(t),
		bytes:   m.bytes.WithLabelValues(t),
		latency: m.latency.WithLabelValues(t),
	}
	v, _ := m.topics.LoadOrStore(t, tm)
	return v.(*topicMetrics) //nolint:forcetypeassert // only *topicMetrics are stored
}

// logInterval is how often one kind of failure is logged at most.
const logInterval = 30 * time.Second

// rateLog logs each key at most once per logInterval, with the number of
// occurrences since the last line.
type rateLog struct {
	log *slog.Logger
	now func() time.Time

	mu   sync.Mutex
	seen map[string]*rateEntry
}

type rateEntry struct {
	last       time.Time
	suppressed int
}

// maxRateKeys bounds the keys remembered (topics come from record data).
const maxRateKeys = 1024

func (r *rateLog) logf(level slog.Level, key, msg string, args ...any) {
	now := r.now()
	r.mu.Lock()
	e := r.seen[key]
	if e == nil {
		if len(r.seen) >= maxRateKeys {
			clear(r.seen)
		}
		e = &rateEntry{}
		r.seen[key] = e
	} else if now.Sub(e.last) < logInterval {
		e.suppressed++
		r.mu.Unlock()
		return
	}
	n := e.suppressed
	e.last, e.suppressed = now, 0
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	r.log.Log(context.Background(), level, msg, args...)
}
