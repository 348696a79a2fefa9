package journald

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kplagent/agent/agent/source"
)

// Type is the journald source's component type: `type: journald` with a
// `journald:` block.
func Type() source.Type {
	return source.Type{
		Name:          "journald",
		DefaultConfig: func() any { c := DefaultConfig(); return &c },
		New: func(cfg any, set source.Settings) (source.Source, error) {
			c, ok := cfg.(*Config)
			if !ok {
				return nil, fmt.Errorf("journald source %q: config is %T, want *journald.Config", set.Name, cfg)
			}
			s, err := New(*c, Settings{Name: set.Name, Logger: set.Logger, Checkpoints: set.Checkpoints,
				CheckpointInterval: set.CheckpointInterval})
			if err != nil {
				return nil, err
			}
			if set.Registerer != nil {
				if err := set.Registerer.Register(newMetricsCollector(s)); err != nil {
					return nil, fmt.Errorf("journald source %q: metrics: %w", set.Name, err)
				}
			}
			return s, nil
		},
	}
}

// ResolvePaths makes a relative directory, and a relative journalctl_path
// with a "/", relative to base (the config file's directory); a bare
// journalctl_path is looked up in PATH.
func (c *Config) ResolvePaths(base string) {
	if strings.Contains(c.JournalctlPath, "/") && !filepath.IsAbs(c.JournalctlPath) {
		c.JournalctlPath = filepath.Join(base, c.JournalctlPath)
	}
	if c.Directory != "" && !filepath.IsAbs(c.Directory) {
		c.Directory = filepath.Join(base, c.Directory)
	}
}

// metricsCollector exposes the source's counters; the registerer adds the
// source label.
type metricsCollector struct {
	src                                                  *Source
	records, bytes, restarts, parseErrors, truncated, cp *prometheus.Desc
}

func newMetricsCollector(src *Source) *metricsCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &metricsCollector{
		src:         src,
		records:     d("agent_journald_records_total", "Journal entries emitted as records."),
		bytes:       d("agent_journald_bytes_total", "Bytes of the records emitted (JSON)."),
		restarts:    d("agent_journald_child_restarts_total", "Times journalctl was started again after it ended or failed."),
		parseErrors: d("agent_journald_parse_errors_total", "journalctl outputs that were not in the export format (journalctl started again after the last record)."),
		truncated:   d("agent_journald_truncated_records_total", "Entries longer than max_record_bytes, their longest values cut."),
		cp:          d("agent_journald_checkpoint_write_errors_total", "Failed writes of the journal cursor."),
	}
}

func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.records, c.bytes, c.restarts, c.parseErrors, c.truncated, c.cp} {
		ch <- d
	}
}

func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	ch <- prometheus.MustNewConstMetric(c.records, prometheus.CounterValue, float64(s.Records))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(s.Bytes))
	ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(s.Restarts))
	ch <- prometheus.MustNewConstMetric(c.parseErrors, prometheus.CounterValue, float64(s.ParseErrors))
	ch <- prometheus.MustNewConstMetric(c.truncated, prometheus.CounterValue, float64(s.Truncated))
	ch <- prometheus.MustNewConstMetric(c.cp, prometheus.CounterValue, float64(s.CkptErrors))
}

var (
	_ source.Source    = (*Source)(nil)
	_ source.Committer = (*Source)(nil)
)
