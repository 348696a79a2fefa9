package agent

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics holds the agent's Prometheus metrics. The registry is the agent's
// own (nothing registers globally), served on the admin endpoint.
type metrics struct {
	reg *prometheus.Registry

	sources *sourceCollector

	dropped           *prometheus.CounterVec
	aggregates        *prometheus.CounterVec
	aggregatedRecords *prometheus.CounterVec
	closedEarly       *prometheus.CounterVec

	sent         *prometheus.CounterVec
	requests     *prometheus.CounterVec
	retries      *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	sendDuration *prometheus.HistogramVec
	failovers    *prometheus.CounterVec
	undecodable  *prometheus.CounterVec
	direct       *prometheus.CounterVec
	directFull   *prometheus.CounterVec
	directWait   *prometheus.CounterVec
	spilled      *prometheus.CounterVec
	held         *prometheus.GaugeVec

	bytesSent   *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
	active      *prometheus.GaugeVec
	failbacks   *prometheus.CounterVec
	build       *prometheus.GaugeVec
	oldest      *oldestCollector
	inflight    *inflightCollector
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.sources = &sourceCollector{
		records: prometheus.NewDesc("agent_records_received_total", "User records read from a source.", []string{"source"}, nil),
		nbytes:  prometheus.NewDesc("agent_bytes_received_total", "Bytes of user records read from a source.", []string{"source"}, nil),
	}
	m.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_records_dropped_total", Help: "User records not delivered, by reason (rejected records are in the dead-letter file)."}, []string{"flow", "reason"})
	m.aggregates = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_aggregates_total", Help: "KPL aggregates written to the spool."}, []string{"flow"})
	m.aggregatedRecords = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_aggregated_records_total", Help: "User records written to the spool inside aggregates."}, []string{"flow"})
	m.closedEarly = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_aggregates_closed_early_total", Help: "Aggregates closed before they were full or old enough, by reason (memory: the flow's aggregation.max_pending_bytes was reached)."}, []string{"flow", "reason"})
	m.sent = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_output_records_sent_total", Help: "User records the destination acknowledged."}, []string{"output"})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_output_sends_total", Help: "Send attempts by result (ok, partial, error, rejected)."}, []string{"output", "result"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_output_retries_total", Help: "Spool entries scheduled for another attempt, by class (error, throttle, partial)."}, []string{"output", "class"})
	m.deadLettered = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_output_dead_lettered_total", Help: "User records written to the dead-letter file."}, []string{"output"})
	m.sendDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "agent_output_send_duration_seconds", Help: "Latency of one Send to the destination.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}, []string{"output"})
	m.failovers = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_output_failovers_total", Help: "Switches from a flow's primary output to its failover."}, []string{"flow"})
	m.undecodable = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_spool_undecodable_entries_total", Help: "Spool entries that passed their checksum but could not be parsed (dead-lettered)."}, []string{"flow"})
	m.direct = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_direct_aggregates_total", Help: "Aggregates handed to the sender in memory, skipping the spool (the destination kept up)."}, []string{"flow"})
	m.spilled = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_direct_spilled_total", Help: "Aggregates sent directly but not delivered at the first attempt, written to the spool."}, []string{"flow"})
	m.held = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "agent_direct_held_aggregates", Help: "Aggregates sent directly, not delivered, that the spool could not take: kept in memory and retried."}, []string{"flow"})
	m.directFull = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_direct_queue_full_spooled_total", Help: "Aggregates of a direct-path flow written to the spool because the direct queue stayed full (the destination failed, was throttled or made no progress)."}, []string{"flow"})
	m.directWait = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_direct_queue_wait_seconds_total", Help: "Time a direct-path flow (and its sources) waited for room in the full direct queue of a healthy but slower destination."}, []string{"flow"})
	m.reg.MustRegister(m.direct, m.spilled, m.held, m.directFull, m.directWait)
	m.bytesSent = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_output_bytes_sent_total", Help: "Bytes of records the destination acknowledged (record bodies, before the output's own framing)."}, []string{"output"})
	m.lastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "agent_output_last_success_timestamp_seconds", Help: "When the output last delivered records (unix time; absent before the first)."}, []string{"output"})
	m.active = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "agent_flow_active_output", Help: "1 for the output a flow sends to now (its primary, or its failover), 0 for the other."}, []string{"flow", "output"})
	m.failbacks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_output_failbacks_total", Help: "Switches from a flow's failover output back to its primary (a probe, every failback_after)."}, []string{"flow"})
	m.build = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "agent_build_info", Help: "Always 1: the running build's version, VCS commit and Go version."}, []string{"version", "commit", "go"})
	m.oldest = &oldestCollector{desc: prometheus.NewDesc("agent_flow_oldest_undelivered_age_seconds", "Age of the oldest entry in a flow's spool, not yet delivered (to about a second).", []string{"flow"}, nil)}
	m.inflight = newInflightCollector()
	m.reg.MustRegister(m.bytesSent, m.lastSuccess, m.active, m.failbacks, m.build, m.oldest, m.inflight)
	m.reg.MustRegister(m.sources, m.dropped, m.aggregates, m.aggregatedRecords, m.closedEarly,
		m.sent, m.requests, m.retries, m.deadLettered, m.sendDuration, m.failovers, m.undecodable,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// sourceMetrics counts a source's records. The counts are plain integers
// updated under the flow's tracker lock, which each record takes anyway:
// two atomic adds per record cost more than the rest of the tracking.
type sourceMetrics struct {
	mu      atomic.Pointer[sync.Mutex] // set once the source is wired to its flow
	records uint64
	bytes   uint64
}

func (s *sourceMetrics) attach(mu *sync.Mutex) { s.mu.Store(mu) }

func (s *sourceMetrics) read() (records, bytes uint64) {
	mu := s.mu.Load()
	if mu == nil {
		return 0, 0
	}
	mu.Lock()
	defer mu.Unlock()
	return s.records, s.bytes
}

// sourceCollector exposes every source's counts.
type sourceCollector struct {
	mu              sync.Mutex
	names           []string
	srcs            []*sourceMetrics
	records, nbytes *prometheus.Desc
}

func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.records; ch <- c.nbytes }

func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.srcs {
		r, b := s.read()
		ch <- prometheus.MustNewConstMetric(c.records, prometheus.CounterValue, float64(r), c.names[i])
		ch <- prometheus.MustNewConstMetric(c.nbytes, prometheus.CounterValue, float64(b), c.names[i])
	}
}

// source returns the named source's counts. A source built again by a
// reload (same name) continues its predecessor's counts.
func (m *metrics) source(name string) *sourceMetrics {
	m.sources.mu.Lock()
	defer m.sources.mu.Unlock()
	if i := slices.Index(m.sources.names, name); i >= 0 {
		return m.sources.srcs[i]
	}
	s := &sourceMetrics{}
	m.sources.names = append(m.sources.names, name)
	m.sources.srcs = append(m.sources.srcs, s)
	return s
}

// keepSources drops the counts of the sources not in running (a reload
// removed them).
func (m *metrics) keepSources(running map[string]bool) {
	m.sources.mu.Lock()
	defer m.sources.mu.Unlock()
	n := 0
	for i, name := range m.sources.names {
		if running[name] {
			m.sources.names[n], m.sources.srcs[n] = name, m.sources.srcs[i]
			n++
		}
	}
	m.sources.names, m.sources.srcs = m.sources.names[:n], m.sources.srcs[:n]
}

// forgetFlow deletes the series of a flow a reload removed.
func (m *metrics) forgetFlow(name string) {
	l := prometheus.Labels{"flow": name}
	for _, v := range []*prometheus.CounterVec{m.dropped, m.aggregates, m.aggregatedRecords, m.closedEarly, m.failovers, m.undecodable, m.direct, m.directFull, m.directWait, m.spilled, m.failbacks} {
		v.DeletePartialMatch(l)
	}
	m.held.DeletePartialMatch(l)
	m.active.DeletePartialMatch(l)
}

// forgetOutput deletes the series of an output a reload removed.
func (m *metrics) forgetOutput(name string) {
	l := prometheus.Labels{"output": name}
	for _, v := range []*prometheus.CounterVec{m.sent, m.requests, m.retries, m.deadLettered, m.bytesSent} {
		v.DeletePartialMatch(l)
	}
	m.sendDuration.DeletePartialMatch(l)
	m.lastSuccess.DeletePartialMatch(l)
	m.active.DeletePartialMatch(l)
}

type flowMetrics struct {
	m                 *metrics
	name              string
	direct            prometheus.Counter
	directFull        prometheus.Counter // spooled because the direct queue stayed full
	directWait        prometheus.Counter // seconds waited for room in the direct queue
	aggregates        prometheus.Counter
	aggregatedRecords prometheus.Counter
	closedForMemory   prometheus.Counter // aggregates closed early to stay within max_pending_bytes
}

func (m *metrics) flow(name string) *flowMetrics {
	return &flowMetrics{m: m, name: name, direct: m.direct.WithLabelValues(name),
		directFull: m.directFull.WithLabelValues(name), directWait: m.directWait.WithLabelValues(name), aggregates: m.aggregates.WithLabelValues(name), aggregatedRecords: m.aggregatedRecords.WithLabelValues(name),
		closedForMemory: m.closedEarly.WithLabelValues(name, "memory")}
}

func (f *flowMetrics) dropped(reason string) prometheus.Counter {
	return f.m.dropped.WithLabelValues(f.name, reason)
}

type outputMetrics struct {
	m            *metrics
	name         string
	sent         prometheus.Counter
	deadLettered prometheus.Counter
	duration     prometheus.Observer
	bytesSent    prometheus.Counter
	lastSuccess  prometheus.Gauge
}

func (m *metrics) output(name string) *outputMetrics {
	o := &outputMetrics{m: m, name: name, sent: m.sent.WithLabelValues(name),
		deadLettered: m.deadLettered.WithLabelValues(name), duration: m.sendDuration.WithLabelValues(name),
		bytesSent: m.bytesSent.WithLabelValues(name), lastSuccess: m.lastSuccess.WithLabelValues(name)}
	// Error and retry series exist at zero from the start: rate() and
	// alerts on them work before the first error.
	for _, r := range []string{"ok", "partial", "error", "rejected"} {
		o.requests(r)
	}
	for _, c := range []string{"error", "throttle", "partial"} {
		o.retries(c)
	}
	return o
}

func (o *outputMetrics) requests(result string) prometheus.Counter {
	return o.m.requests.WithLabelValues(o.name, result)
}

func (o *outputMetrics) retries(class string) prometheus.Counter {
	return o.m.retries.WithLabelValues(o.name, class)
}

type senderMetrics struct {
	failovers       prometheus.Counter
	undecodable     prometheus.Counter
	spilled         prometheus.Counter
	droppedFull     prometheus.Counter
	droppedTooLarge prometheus.Counter
	held            prometheus.Gauge
	failbacks       prometheus.Counter
	activeVec       *prometheus.GaugeVec
	flow            string
}

// active is the agent_flow_active_output series of one of the flow's outputs.
func (s *senderMetrics) active(output string) prometheus.Gauge {
	return s.activeVec.WithLabelValues(s.flow, output)
}

func (m *metrics) sender(flow string) *senderMetrics {
	return &senderMetrics{failovers: m.failovers.WithLabelValues(flow), undecodable: m.undecodable.WithLabelValues(flow),
		spilled:     m.spilled.WithLabelValues(flow),
		droppedFull: m.dropped.WithLabelValues(flow, "spool_full"), droppedTooLarge: m.dropped.WithLabelValues(flow, "rejected"),
		held: m.held.WithLabelValues(flow), failbacks: m.failbacks.WithLabelValues(flow), activeVec: m.active, flow: flow}
}

// buildInfo sets agent_build_info.
func (m *metrics) buildInfo(version, commit string) {
	if commit == "" {
		commit = "unknown"
	}
	m.build.WithLabelValues(version, commit, runtime.Version()).Set(1)
}

// oldestCollector exposes each flow's oldest undelivered entry's age,
// computed at scrape time from the status tracker.
type oldestCollector struct {
	desc *prometheus.Desc
	a    atomic.Pointer[Agent]
}

func (c *oldestCollector) set(a *Agent) { c.a.Store(a) }

func (c *oldestCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *oldestCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a.Load()
	if a == nil {
		return
	}
	now := time.Now()
	for _, fr := range a.runtimeFlows() {
		ss := fr.spool.Stats()
		a.st.mu.Lock()
		age := a.st.oldestAge(fr.cfg.Name, spoolStatsView{Entries: ss.Entries, Appended: ss.Appended}, now)
		a.st.mu.Unlock()
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, age.Seconds(), fr.cfg.Name)
	}
}
