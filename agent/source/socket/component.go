package socket

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/internal/units"
)

// Type is the socket source's component type: `type: socket` with a
// `socket:` block, and the unix://, unixgram://, tcp:// and udp://
// arguments of `agent tail`.
func Type() source.Type {
	return source.Type{
		Name:          "socket",
		DefaultConfig: func() any { c := DefaultConfig(); return &c },
		New: func(cfg any, set source.Settings) (source.Source, error) {
			c, ok := cfg.(*Config)
			if !ok {
				return nil, fmt.Errorf("socket: config is %T, want *socket.Config", cfg)
			}
			s, err := New(*c, Settings{Name: set.Name, Logger: set.Logger})
			if err != nil {
				return nil, err
			}
			if set.Registerer != nil {
				if err := set.Registerer.Register(newMetricsCollector(s)); err != nil {
					return nil, fmt.Errorf("socket: metrics: %w", err)
				}
			}
			return s, nil
		},
		FromArgs: fromArgs,
		Schemes:  []string{netUnix, netUnixgram, netTCP, netUDP},
	}
}

// fromArgs makes the config of `agent tail unix:///run/app.sock` (one
// socket URL per source) with --format and --max-record-bytes.
func fromArgs(args []string, flags source.TailFlags) (any, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("socket: one address per source, got %d", len(args))
	}
	c := DefaultConfig()
	c.Listen = args[0]
	if flags.Format != "" {
		c.Format = flags.Format
	}
	if flags.MaxRecordBytes > 0 {
		c.MaxRecordBytes = units.ByteSize(flags.MaxRecordBytes)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("socket %s: %w", args[0], err)
	}
	return &c, nil
}

// metricsCollector exposes the source's counters; the registerer adds the
// source label.
type metricsCollector struct {
	src                                                                     *Source
	conns, connsTotal, refused, idle, records, bytes, parse, trunc, partial *prometheus.Desc
	dropped                                                                 *prometheus.Desc
}

func newMetricsCollector(src *Source) *metricsCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("agent_socket_"+name, help, labels, nil)
	}
	return &metricsCollector{
		src:        src,
		conns:      d("open_connections", "Stream connections open now."),
		connsTotal: d("connections_total", "Stream connections accepted."),
		refused:    d("refused_connections_total", "Connections closed at once: max_connections reached with on_max_connections: refuse."),
		idle:       d("idle_closed_connections_total", "Connections closed after idle_timeout without data."),
		records:    d("records_total", "Records received and emitted."),
		bytes:      d("bytes_total", "Data bytes of the records emitted (after formatting)."),
		parse:      d("parse_failures_total", "Records that did not parse as the format (syslog, json), passed on raw."),
		trunc:      d("truncated_records_total", "Records longer than max_record_bytes, truncated."),
		partial:    d("partial_records_total", "Records cut by the end of their connection (no newline, short frame), delivered."),
		dropped:    d("dropped_records_total", "Records not delivered, by reason.", "reason"),
	}
}

func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.conns, c.connsTotal, c.refused, c.idle, c.records, c.bytes, c.parse, c.trunc, c.partial, c.dropped} {
		ch <- d
	}
}

func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.Connections))
	counter(c.connsTotal, s.ConnectionsTotal)
	counter(c.refused, s.RefusedConnections)
	counter(c.idle, s.IdleClosed)
	counter(c.records, s.Records)
	counter(c.bytes, s.Bytes)
	counter(c.parse, s.ParseFailures)
	counter(c.trunc, s.TruncatedRecords)
	counter(c.partial, s.PartialRecords)
	for _, r := range dropReasons {
		counter(c.dropped, s.Dropped[r], r)
	}
}
