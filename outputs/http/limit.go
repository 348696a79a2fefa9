package http

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// outputMetrics are the HTTP output's own metrics, registered on
// Settings.Metrics (nil: not exported).
type outputMetrics struct {
	limit       prometheus.Gauge
	splits      *prometheus.CounterVec
	unconfirmed prometheus.Counter
}

func newOutputMetrics(reg prometheus.Registerer) (*outputMetrics, error) {
	m := &outputMetrics{
		limit: prometheus.NewGauge(prometheus.GaugeOpts{Name: "agent_output_http_request_bytes_limit",
			Help: "Uncompressed request body size the HTTP output packs up to: max_request_bytes, or less once the server answered 413."}),
		splits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_output_http_split_requests_total",
			Help: "Requests split in halves and sent again because the server answered 413 or 400, by status."}, []string{"status"}),
		unconfirmed: prometheus.NewCounter(prometheus.CounterOpts{Name: "agent_output_http_unconfirmed_records_total",
			Help: "kafka-rest-v2 records whose 2xx response carried no offsets, taken as delivered."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.limit, m.splits, m.unconfirmed} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// requestLimit is the uncompressed body size requests are packed up to.
func (o *Output) requestLimit() int { return int(o.limit.Load()) }

// minLearnedLimit keeps a misbehaving server from driving requests down to
// nothing: below it, records go one or a few per request anyway.
const minLearnedLimit = 1 << 10

// split counts a request split after a 413 or 400. A 413 for a body of size
// bytes (uncompressed) teaches that the server takes less: later requests
// are packed up to half of it (halving again on the next 413), so the split
// costs once, not on every request. The limit lasts as long as the output.
func (o *Output) split(status, size int) {
	o.metrics.splits.WithLabelValues(statusLabel(status)).Inc()
	if status != 413 {
		return
	}
	want := int64(max(size/2, minLearnedLimit))
	for {
		cur := o.limit.Load()
		if want >= cur {
			return
		}
		if o.limit.CompareAndSwap(cur, want) {
			o.metrics.limit.Set(float64(want))
			o.log.Info("the server refused a request as too large (413): smaller requests from now on",
				"request_bytes", size, "max_request_bytes", want)
			return
		}
	}
}

func statusLabel(status int) string {
	if status == 413 {
		return "413"
	}
	return "400"
}

// unconfirmedWarnEvery rate-limits the warning about unconfirmed records.
const unconfirmedWarnEvery = int64(time.Minute)

// unconfirmed counts n records of a 2xx response without per-record
// results, taken as delivered (kafka-rest-v2, see readKafkaResponse).
func (o *Output) unconfirmed(n int, status, why string) {
	o.metrics.unconfirmed.Add(float64(n))
	now := o.now().UnixNano()
	last := o.lastUnconfirmedWarn.Load()
	if now-last < unconfirmedWarnEvery && last != 0 || !o.lastUnconfirmedWarn.CompareAndSwap(last, now) {
		return
	}
	o.log.Warn("kafka-rest-v2: a 2xx response without offsets; the records are taken as delivered (is something other than the REST Proxy answering?)",
		"url", o.redactedURL, "status", status, "records", n, "reason", why)
}
