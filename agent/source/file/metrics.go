package file

import "github.com/prometheus/client_golang/prometheus"

// metricsCollector exposes a file source's counters and, per file, the
// checkpoint lag: bytes in the file not yet durable downstream. The
// registerer it is given adds the label source=<name>.
type metricsCollector struct {
	src *Source

	truncated, split, truncations, rotations, partial, ckptErrors, open, waiting, lag *prometheus.Desc
	openErrors, readErrors, scanErrors, watchErrors, unreadable, openLimit            *prometheus.Desc
	compressedFiles, compressedRecords, compressedErrors                              *prometheus.Desc
}

func newMetricsCollector(src *Source) *metricsCollector {
	d := func(name, help string, vars ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, vars, nil)
	}
	return &metricsCollector{
		src:         src,
		truncated:   d("agent_file_truncated_records_total", "Lines longer than max_record_bytes, truncated."),
		split:       d("agent_file_split_records_total", "Records that are pieces of a line longer than max_record_bytes (oversize: split)."),
		truncations: d("agent_file_truncations_total", "Files truncated under the reader (copytruncate), read again from the start."),
		rotations:   d("agent_file_rotations_total", "Files renamed away or deleted while followed."),
		partial:     d("agent_file_partial_flushes_total", "Last lines sent without their newline (idle, rotated away, --once)."),
		ckptErrors:  d("agent_checkpoint_write_errors_total", "Failed checkpoint writes."),
		open:        d("agent_file_open_descriptors", "File descriptors held."),
		waiting:     d("agent_file_waiting_files", "Files with data waiting for a descriptor (max_open_files)."),
		lag:         d("agent_checkpoint_lag_bytes", "Bytes of a file not yet durable downstream (size minus checkpoint).", "file"),
		openErrors:  d("agent_file_open_errors_total", "Failed opens of matched files: reason descriptors (EMFILE, ENFILE: the file keeps its place) or other (permission, I/O: retried at every scan).", "reason"),
		readErrors:  d("agent_file_read_errors_total", "Failed reads of followed files (retried)."),
		scanErrors:  d("agent_file_scan_errors_total", "Directories that could not be listed, and matched paths that could not be examined, during scans (tried again at the next)."),
		watchErrors: d("agent_file_watch_errors_total", "Directories whose inotify watch could not be added (changes there are found by scans; tried again at every scan)."),
		unreadable:  d("agent_file_unreadable_files", "Files whose last open or read failed, waiting for the next scan to try again."),
		openLimit:   d("agent_file_open_descriptors_limit", "Descriptors the source may hold: max_open_files, lowered to leave a reserve of RLIMIT_NOFILE for outputs and the spool."),
		compressedFiles: d("agent_file_compressed_rotations_read_total",
			"Compressed rotated files (logrotate compress) read: the lines after a checkpoint or read offset (at start, or a compressed copytruncate copy while running), or a version of the file never seen."),
		compressedRecords: d("agent_file_compressed_records_total", "Records recovered from compressed rotated files."),
		compressedErrors: d("agent_file_compressed_errors_total",
			"Compressed rotated files found corrupt or truncated: the lines before the error were sent, the rest is lost."),
	}
}

func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.truncated, c.split, c.truncations, c.rotations, c.partial, c.ckptErrors, c.open, c.waiting, c.lag,
		c.openErrors, c.readErrors, c.scanErrors, c.watchErrors, c.unreadable, c.openLimit,
		c.compressedFiles, c.compressedRecords, c.compressedErrors} {
		ch <- d
	}
}

func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
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
	ch <- prometheus.MustNewConstMetric(c.openErrors, prometheus.CounterValue, float64(s.NoDescriptor), "descriptors")
	ch <- prometheus.MustNewConstMetric(c.openErrors, prometheus.CounterValue, float64(s.OpenErrors), "other")
	counter(c.readErrors, s.ReadErrors)
	counter(c.scanErrors, s.ScanErrors)
	counter(c.watchErrors, s.WatchErrors)
	counter(c.compressedFiles, s.CompressedRotations)
	counter(c.compressedRecords, s.CompressedRecords)
	counter(c.compressedErrors, s.CompressedErrors)
	ch <- prometheus.MustNewConstMetric(c.unreadable, prometheus.GaugeValue, float64(s.FilesUnreadable))
	ch <- prometheus.MustNewConstMetric(c.openLimit, prometheus.GaugeValue, float64(s.MaxOpenFiles))
	seen := map[string]bool{}
	for _, f := range c.src.Files() {
		if seen[f.Path] {
			continue // a rotated-away file still draining shares its old path
		}
		seen[f.Path] = true
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(max(f.Size-f.Committed, 0)), f.Path)
	}
}
