// Package cwmetrics publishes the agent's own metrics to Amazon CloudWatch
// with PutMetricData (metrics.cloudwatch in agent.yaml), like the Kinesis
// Agent and the KPL do: records and bytes received per source, records and
// bytes sent, send requests, errors, retries, throttles and dead letters
// per output, drops (by reason), failovers, spool backlog (bytes, entries,
// blocked appends, dropped entries, write errors) and the age of the oldest
// undelivered entry per flow. The values are read from the agent's
// Prometheus registry (catalog.go names the families): counters are sent as
// their increase since the last successful publish, gauges as their value.
//
// Publishing runs in its own goroutine and never blocks the pipeline: a
// failed request is counted (agent_cloudwatch_requests_total{result="error"}),
// logged at most once per five minutes, and its counters' increase goes
// with the next interval. Stop publishes a last time within the shutdown's
// deadline.
package cwmetrics
