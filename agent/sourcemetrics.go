package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kplagent/agent/agent/source/file"
	"github.com/kplagent/agent/agent/source/stdin"
)

// fileSourceCollector exposes a file source's counters and, per file, the
// checkpoint lag: bytes in the file not yet durable downstream.
type fileSourceCollector struct {
	src *file.Source

	truncated, split, truncations, rotations, partial, ckptErrors, open, waiting, lag *prometheus.Desc
}

func newFileSourceCollector(src *file.Source) *fileSourceCollector {
	l := prometheus.Labels{"source": src.Name()}
	d := func(name, help string, vars ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, vars, l)
	}
	return &fileSourceCollector{
		src:         src,
		truncated:   d("agent_file_truncated_records_total", "Lines longer than max_record_bytes, truncated."),
		split:       d("agent_file_split_records_total", "Records that are pieces of a line longer than max_record_bytes (oversize: split)."),
		truncations: d("agent_file_truncations_total", "Files truncated under the reader (copytruncate), read again from the start."),
		rotations:   d("agent_file_rotations_total", "Files renamed away or deleted while followed."),
		partial:     d("agent_file_partial_flushes_total", "Last lines sent without their newline (idle, rotated away, --once)."),
		ckptErrors:  d("agent_checkpoint_write_errors_total", "Failed checkpoint writes."),
		open:        d("agent_file_open", "File descriptors held."),
		waiting:     d("agent_file_waiting", "Files with data waiting for a descriptor (max_open_files)."),
		lag:         d("agent_checkpoint_lag_bytes", "Bytes of a file not yet durable downstream (size minus checkpoint).", "file"),
	}
}

func (c *fileSourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.truncated, c.split, c.truncations, c.rotations, c.partial, c.ckptErrors, c.open, c.waiting, c.lag} {
		ch <- d
	}
}

func (c *fileSourceCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(c.truncated, s.TruncatedRecords)
	counter(c.split, s.SplitRecords)
	counter(c.truncations, s.Truncations)
	counter(c.rotations, s.Rotations)
	counter(c.partial, s.PartialFlushes)
	counter(c.ckptErrors, s.CheckpointWriteErrors)
	ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(s.FilesOpen))
	ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(s.FilesWaiting))
	seen := map[string]bool{}
	for _, f := range c.src.Files() {
		if seen[f.Path] {
			continue // a rotated-away file still draining shares its old path
		}
		seen[f.Path] = true
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(max(f.Size-f.Committed, 0)), f.Path)
	}
}

func (a *Agent) registerSourceMetrics() {
	for _, fr := range a.flows {
		for _, src := range fr.sources {
			if fs, ok := src.(*file.Source); ok {
				a.m.reg.MustRegister(newFileSourceCollector(fs))
			}
			if ss, ok := src.(*stdin.Source); ok {
				a.m.reg.MustRegister(newStdinSourceCollector(ss))
			}
		}
	}
}
