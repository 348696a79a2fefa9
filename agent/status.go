package agent

import (
	dto "github.com/prometheus/client_model/go"
)

// Snapshot is a summary of the agent's counters for a status line.
type Snapshot struct {
	RecordsRead    int64
	BytesRead      int64
	RecordsSent    int64
	Retries        int64
	DeadLettered   int64
	Dropped        int64
	BacklogEntries int64 // unacknowledged spool entries
	BacklogBytes   int64 // spool bytes on disk
}

// Snapshot gathers the current counters (cheap enough for once a second).
func (a *Agent) Snapshot() Snapshot {
	var s Snapshot
	fams, err := a.m.reg.Gather()
	if err != nil {
		return s
	}
	sum := func(f *dto.MetricFamily) int64 {
		var t float64
		for _, m := range f.GetMetric() {
			switch {
			case m.Counter != nil:
				t += m.Counter.GetValue()
			case m.Gauge != nil:
				t += m.Gauge.GetValue()
			}
		}
		return int64(t)
	}
	for _, f := range fams {
		switch f.GetName() {
		case "agent_records_received_total":
			s.RecordsRead = sum(f)
		case "agent_bytes_received_total":
			s.BytesRead = sum(f)
		case "agent_output_records_sent_total":
			s.RecordsSent = sum(f)
		case "agent_output_retries_total":
			s.Retries = sum(f)
		case "agent_output_dead_lettered_total":
			s.DeadLettered = sum(f)
		case "agent_records_dropped_total":
			s.Dropped = sum(f)
		case "agent_spool_entries":
			s.BacklogEntries = sum(f)
		case "agent_spool_bytes":
			s.BacklogBytes = sum(f)
		}
	}
	return s
}
