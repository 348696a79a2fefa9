package stdin

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/internal/units"
)

// Type is the stdin source's component type: `type: stdin` with a `stdin:`
// block, and `agent tail -` (or a named pipe given on the command line).
func Type() source.Type {
	return source.Type{
		Name:          "stdin",
		DefaultConfig: func() any { c := DefaultConfig(); return &c },
		New: func(cfg any, set source.Settings) (source.Source, error) {
			c, ok := cfg.(*Config)
			if !ok {
				return nil, fmt.Errorf("stdin source %q: config is %T, want *stdin.Config", set.Name, cfg)
			}
			s, err := New(*c, Settings{Name: set.Name, Logger: set.Logger, Reader: set.Stdin})
			if err != nil {
				return nil, err
			}
			if set.Registerer != nil {
				if err := set.Registerer.Register(newMetricsCollector(s)); err != nil {
					return nil, fmt.Errorf("stdin source %q: metrics: %w", set.Name, err)
				}
			}
			return s, nil
		},
		FromArgs: fromArgs,
		Schemes:  []string{"-"},
	}
}

// fromArgs makes the config of `agent tail -` (one argument: "-" or the
// path of a named pipe).
func fromArgs(args []string, flags source.TailFlags) (any, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("stdin: one stream per source, got %d", len(args))
	}
	c := DefaultConfig()
	c.Path = args[0] // "-" is standard input

	if flags.MaxRecordBytes > 0 {
		c.MaxRecordBytes = units.ByteSize(flags.MaxRecordBytes)
	}
	return &c, nil
}

// LargestRecord is the most data one record can have: max_record_bytes.
func (c *Config) LargestRecord() (int64, string) { return int64(c.MaxRecordBytes), "max_record_bytes" }

// metricsCollector exposes the source's counters; the registerer adds the source
// label.
type metricsCollector struct {
	src              *Source
	truncated, lasts *prometheus.Desc
}

func newMetricsCollector(src *Source) *metricsCollector {
	return &metricsCollector{
		src:       src,
		truncated: prometheus.NewDesc("agent_stdin_truncated_records_total", "Lines longer than max_record_bytes, truncated.", nil, nil),
		lasts:     prometheus.NewDesc("agent_stdin_partial_lines_total", "Last lines of a stream delivered without their newline.", nil, nil),
	}
}

func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.truncated
	ch <- c.lasts
}

func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	ch <- prometheus.MustNewConstMetric(c.truncated, prometheus.CounterValue, float64(s.TruncatedRecords))
	ch <- prometheus.MustNewConstMetric(c.lasts, prometheus.CounterValue, float64(s.PartialLines))
}
