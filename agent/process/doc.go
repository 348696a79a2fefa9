// Package process is a flow's processing stage: the processors a user lists
// under flows[].processors (single_line, csv_to_json, log_to_json, regex,
// json, add_fields, drop, keep, redact, rename, remove), the envelope
// (timestamp, host, file, offset, source and static fields) and the
// partition key policies (random, deterministic, hostname, field, regex,
// fixed) with the explicit hash key from a field. Wherever a field is
// named it may be a path into nested objects (Path: "user.id").
//
// The agent calls Stage.Process once per record under the flow's lock,
// before aggregation, so what the stage makes of a record (a JSON object
// with its envelope) is what is spooled and sent. A record a parser cannot
// parse passes unchanged and is counted; only drop and keep remove records.
// Stage.Object tells the caller when a record is an object the stage made
// (valid JSON on one line), which an output need not check again.
// See docs/design/004-processing.md.
package process
