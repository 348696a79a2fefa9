package kinesis

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// payloadUnitBytes is the size of a PUT payload unit: Kinesis bills (and
// on-demand streams meter) each record in 25 KB chunks, rounded up.
const payloadUnitBytes = 25 * 1024

// metrics are one output's collectors, labelled output and stream. The
// vectors are shared by every Kinesis output on a registerer.
type metrics struct {
	userRecords   prometheus.Counter
	bytes         prometheus.Counter
	records       prometheus.Counter
	payloadUnits  prometheus.Counter
	throttled     prometheus.Counter
	failed        *prometheus.CounterVec // curried: code
	refreshes     *prometheus.CounterVec // curried: result
	shards        prometheus.Gauge
	mismatches    prometheus.Counter
	split         prometheus.Counter
	limiterWait   prometheus.Counter
	streamMissing prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, output, stream string, outputLabelled bool) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry() // nowhere to publish: count anyway
	}
	labels := []string{"output", "stream"}
	l := prometheus.Labels{"output": output, "stream": stream}
	if outputLabelled { // the registerer adds output=<name> itself
		labels = labels[1:]
		delete(l, "output")
	}
	counter := func(name, help string) prometheus.Counter {
		v := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels))
		return v.With(l)
	}
	m := &metrics{
		userRecords:  counter("agent_kinesis_user_records_put_total", "User records delivered to Kinesis (inside aggregates or alone)."),
		bytes:        counter("agent_kinesis_bytes_put_total", "Bytes of Kinesis records delivered (data plus partition key, what counts against the shard limits)."),
		records:      counter("agent_kinesis_records_put_total", "Kinesis records delivered (aggregates count once)."),
		payloadUnits: counter("agent_kinesis_put_payload_units_total", "PUT payload units of the Kinesis records delivered (25 KB per record, rounded up)."),
		throttled:    counter("agent_kinesis_throttled_records_total", "Kinesis records refused for the shard's throughput (ProvisionedThroughputExceededException, KMS throttling); retried."),
		shards:       register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "agent_kinesis_shards", Help: "Open shards in the current shard map."}, labels)).With(l),
		mismatches:   counter("agent_kinesis_shard_mismatches_total", "Kinesis records that landed on another shard than the shard map predicted (a reshard; triggers a refresh)."),
		split:        counter("agent_kinesis_aggregates_split_total", "Aggregates built against an older shard map that were split and re-aggregated before sending."),
		limiterWait:  counter("agent_kinesis_rate_limit_wait_seconds_total", "Time Send spent pacing records to the shards' rate limits."),
		streamMissing: counter("agent_kinesis_stream_not_found_total",
			"Requests refused because the stream does not exist (ResourceNotFoundException); retried."),
	}
	m.failed = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agent_kinesis_failed_records_total",
		Help: "Kinesis records not delivered, by error code (per-entry codes of PutRecords, or the whole request's); retried unless the code is a validation error.",
	}, append(labels[:len(labels):len(labels)], "code"))).MustCurryWith(l)
	m.refreshes = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agent_kinesis_shard_map_refreshes_total",
		Help: "Shard map refreshes (ListShards), by result: changed, unchanged or error.",
	}, append(labels[:len(labels):len(labels)], "result"))).MustCurryWith(l)
	return m
}

// register registers c, or returns the collector of that name already
// registered (another Kinesis output on the same registerer).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		// A clash with another type of collector of the same name: count
		// in an unregistered collector rather than fail the output.
		return c
	}
	return c
}

// payloadUnits returns the PUT payload units of a record of size bytes.
func payloadUnits(size int) int {
	return max(1, (size+payloadUnitBytes-1)/payloadUnitBytes)
}
