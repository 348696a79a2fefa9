package cwmetrics

import (
	"slices"

	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
)

// spec maps one of the agent's Prometheus metric families to a CloudWatch
// metric. The series of the family that pass only are summed by the labels
// of dims (each becoming a dimension); a counter is published as its
// increase since the last successful publish, a gauge as its value.
type spec struct {
	prom    string
	name    string
	unit    types.StandardUnit
	counter bool
	dims    []dim
	// only keeps the series whose label has one of the values.
	only *filter
}

type dim struct{ label, name string }

type filter struct {
	label  string
	values []string
}

func (f *filter) keeps(labels map[string]string) bool {
	return f == nil || slices.Contains(f.values, labels[f.label])
}

var (
	bySource = []dim{{"source", "Source"}}
	byOutput = []dim{{"output", "Output"}}
	byFlow   = []dim{{"flow", "Flow"}}
)

// reserved reports whether a dimension name is one the agent sets.
func reserved(name string) bool {
	switch name {
	case "Source", "Output", "Flow", "Reason":
		return true
	}
	return false
}

// catalog is what is published: what the Kinesis Agent (records and bytes
// sent, send errors, service errors) and the KPL (user records received
// and put, errors, retries, throttling) publish, plus what an operator
// alarms on here (backlog and its age, drops, dead letters, failovers).
// The Prometheus names are the agent's (agent/metrics.go,
// agent/statemetrics.go); a family that is absent is skipped.
var catalog = []spec{
	{prom: "agent_records_received_total", name: "RecordsReceived", unit: types.StandardUnitCount, counter: true, dims: bySource},
	{prom: "agent_bytes_received_total", name: "BytesReceived", unit: types.StandardUnitBytes, counter: true, dims: bySource},

	{prom: "agent_output_records_sent_total", name: "RecordsSent", unit: types.StandardUnitCount, counter: true, dims: byOutput},
	{prom: "agent_output_bytes_sent_total", name: "BytesSent", unit: types.StandardUnitBytes, counter: true, dims: byOutput},
	{prom: "agent_output_sends_total", name: "SendRequests", unit: types.StandardUnitCount, counter: true, dims: byOutput},
	{prom: "agent_output_sends_total", name: "SendErrors", unit: types.StandardUnitCount, counter: true, dims: byOutput,
		only: &filter{"result", []string{"error", "partial", "rejected"}}},
	{prom: "agent_output_retries_total", name: "Retries", unit: types.StandardUnitCount, counter: true, dims: byOutput},
	{prom: "agent_output_retries_total", name: "Throttles", unit: types.StandardUnitCount, counter: true, dims: byOutput,
		only: &filter{"class", []string{"throttle"}}},
	{prom: "agent_output_dead_lettered_total", name: "RecordsDeadLettered", unit: types.StandardUnitCount, counter: true, dims: byOutput},

	{prom: "agent_records_dropped_total", name: "RecordsDropped", unit: types.StandardUnitCount, counter: true,
		dims: []dim{{"flow", "Flow"}, {"reason", "Reason"}}},
	{prom: "agent_output_failovers_total", name: "Failovers", unit: types.StandardUnitCount, counter: true, dims: byFlow},
	{prom: "agent_spool_bytes", name: "SpoolBytes", unit: types.StandardUnitBytes, dims: byFlow},
	{prom: "agent_spool_entries", name: "SpoolEntries", unit: types.StandardUnitCount, dims: byFlow},
	{prom: "agent_flow_oldest_undelivered_age_seconds", name: "OldestUndeliveredAge", unit: types.StandardUnitSeconds, dims: byFlow},
	{prom: "agent_spool_blocked_appends", name: "SpoolBlockedAppends", unit: types.StandardUnitCount, dims: byFlow},
	{prom: "agent_spool_dropped_oldest_total", name: "SpoolEntriesDropped", unit: types.StandardUnitCount, counter: true, dims: byFlow},
	{prom: "agent_spool_dropped_newest_total", name: "SpoolEntriesDropped", unit: types.StandardUnitCount, counter: true, dims: byFlow},
	{prom: "agent_spool_write_errors_total", name: "SpoolWriteErrors", unit: types.StandardUnitCount, counter: true, dims: byFlow},
}
