package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kplagent/agent/spool"
)

// registerSpoolMetrics exposes the flow's spool's own counters, read at
// scrape time (they are atomics inside the spool); fr.spoolMetrics keeps
// them for a reload that removes the flow.
func (a *Agent) registerSpoolMetrics(fr *flowRuntime) {
	{
		sp := fr.spool
		labels := prometheus.Labels{"flow": fr.cfg.Name}
		gauge := func(name, help string, f func(spool.Stats) float64) prometheus.Collector {
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 { return f(sp.Stats()) })
		}
		counter := func(name, help string, f func(spool.Stats) float64) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 { return f(sp.Stats()) })
		}
		fr.spoolMetrics = []prometheus.Collector{
			gauge("agent_spool_bytes", "Bytes on disk in the spool (what spool.max_bytes caps).", func(s spool.Stats) float64 { return float64(s.Bytes) }),
			gauge("agent_spool_entries", "Spool entries (aggregates) not yet acknowledged by the destination.", func(s spool.Stats) float64 { return float64(s.Entries) }),
			gauge("agent_spool_segments", "Spool segment files.", func(s spool.Stats) float64 { return float64(s.Segments) }),
			gauge("agent_spool_staged_entries", "Entries accepted by the spool and not yet written to disk (write-behind, sync: interval|never); they count in agent_spool_entries too.", func(s spool.Stats) float64 { return float64(s.Staged) }),
			counter("agent_spool_unwritten_entries_total", "Entries the spool accepted but could never write (the disk refused them until shutdown, or an fsync failed first); sources that can read again do.", func(s spool.Stats) float64 { return float64(s.Unwritten) }),
			gauge("agent_spool_blocked_appends", "Appends waiting for room in a full spool (when_full: block): sources are paused.", func(s spool.Stats) float64 { return float64(s.BlockedAppends) }),
			gauge("agent_spool_full", "1 from the spool's 'disk full' or 'full, appends wait for room' log line to its 'room again' line (checked every second, with or without appends), else 0.", func(s spool.Stats) float64 {
				if s.Full {
					return 1
				}
				return 0
			}),
			counter("agent_spool_appended_total", "Entries appended to the spool.", func(s spool.Stats) float64 { return float64(s.Appended) }),
			counter("agent_spool_acked_total", "Entries acknowledged and released.", func(s spool.Stats) float64 { return float64(s.Acked) }),
			counter("agent_spool_dropped_oldest_total", "Unacknowledged entries deleted to make room (when_full: drop_oldest).", func(s spool.Stats) float64 { return float64(s.DroppedOldest) }),
			counter("agent_spool_dropped_newest_total", "Entries refused because the spool was full (when_full: drop_newest).", func(s spool.Stats) float64 { return float64(s.DroppedNewest) }),
			counter("agent_spool_corrupt_entries_total", "Entries lost to corrupt frames.", func(s spool.Stats) float64 { return float64(s.CorruptEntries) }),
			counter("agent_spool_corrupt_segments_total", "Segment files moved aside as *.corrupt.", func(s spool.Stats) float64 { return float64(s.CorruptSegments) }),
			counter("agent_spool_torn_tails_total", "Incomplete writes cut off a segment's end at recovery.", func(s spool.Stats) float64 { return float64(s.TornTails) }),
			counter("agent_spool_bytes_lost_total", "Bytes cut, skipped or moved aside by recovery.", func(s spool.Stats) float64 { return float64(s.BytesLost) }),
			counter("agent_spool_fsyncs_total", "fsync calls on spool files.", func(s spool.Stats) float64 { return float64(s.Fsyncs) }),
			counter("agent_spool_write_errors_total", "Spool writes, file creations and deletions the file system refused (a read-only directory); retried, nothing dropped.", func(s spool.Stats) float64 { return float64(s.WriteErrors) }),
		}
		a.m.reg.MustRegister(fr.spoolMetrics...)
	}
}
