package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kplagent/agent/agent/source/stdin"
)

// stdinSourceCollector exposes a stdin source's counters.
type stdinSourceCollector struct {
	src              *stdin.Source
	truncated, lasts *prometheus.Desc
}

func newStdinSourceCollector(src *stdin.Source) *stdinSourceCollector {
	l := prometheus.Labels{"source": src.Name()}
	return &stdinSourceCollector{
		src:       src,
		truncated: prometheus.NewDesc("agent_stdin_truncated_records_total", "Lines longer than max_record_bytes, truncated.", nil, l),
		lasts:     prometheus.NewDesc("agent_stdin_partial_lines_total", "Last lines of a stream delivered without their newline.", nil, l),
	}
}

func (c *stdinSourceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.truncated
	ch <- c.lasts
}

func (c *stdinSourceCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	ch <- prometheus.MustNewConstMetric(c.truncated, prometheus.CounterValue, float64(s.TruncatedRecords))
	ch <- prometheus.MustNewConstMetric(c.lasts, prometheus.CounterValue, float64(s.PartialLines))
}
