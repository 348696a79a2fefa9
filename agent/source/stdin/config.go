package stdin

import (
	"errors"
	"fmt"

	"github.com/kplagent/agent/internal/units"
)

// DefaultMaxRecordBytes is the file source's default (1 MiB, the Kinesis
// record limit, minus 4 KiB of headroom for the KPL aggregate around the
// record): a line read from a pipe fits the same destinations as one read
// from a file.
const DefaultMaxRecordBytes = units.ByteSize(1<<20 - 4<<10)

// DefaultTruncateMarker ends a truncated record. Lines are emitted without
// their newline, so a record ending in "\n" was truncated: the one byte marks
// it unambiguously (as the file source does).
const DefaultTruncateMarker = "\n"

// maxMaxRecordBytes bounds MaxRecordBytes: the source keeps up to that much
// of a line that did not end yet.
const maxMaxRecordBytes = units.ByteSize(64 << 20)

// Config is a stdin source as written in the agent's YAML
// (sources[].stdin). Start from DefaultConfig.
type Config struct {
	// Path names a FIFO (named pipe) to read instead of standard input;
	// "" or "-" reads standard input. The FIFO is opened when the source
	// starts (waiting for a writer) and read until its writers close it.
	Path string `yaml:"path"`
	// MaxRecordBytes bounds one record: the first
	// MaxRecordBytes-len(TruncateMarker) bytes of a longer line are kept,
	// TruncateMarker is appended and the rest of the line is skipped
	// (counted in agent_stdin_truncated_records_total).
	MaxRecordBytes units.ByteSize `yaml:"max_record_bytes"`
	// TruncateMarker ends a truncated record; "" adds nothing.
	TruncateMarker string `yaml:"truncate_marker"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{MaxRecordBytes: DefaultMaxRecordBytes, TruncateMarker: DefaultTruncateMarker}
}

// Validate reports every problem, each prefixed with its YAML key. It does
// no I/O.
func (c Config) Validate() error {
	var errs []error
	if c.MaxRecordBytes < 1 || c.MaxRecordBytes > maxMaxRecordBytes {
		errs = append(errs, fmt.Errorf("max_record_bytes: must be between 1 and %s", maxMaxRecordBytes))
	} else if int64(len(c.TruncateMarker)) >= int64(c.MaxRecordBytes) {
		errs = append(errs, fmt.Errorf("truncate_marker: must be shorter than max_record_bytes (%s)", c.MaxRecordBytes))
	}
	return errors.Join(errs...)
}
