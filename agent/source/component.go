package source

import (
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kplagent/agent/agent/checkpoint"
)

// Type describes one source type, as outputs.Type does for outputs: a source
// package exports one (func Type() source.Type) and cmd/agent lists the
// compiled-in types once.
type Type struct {
	// Name is the `type:` value and the key of the source's own block.
	Name string
	// DefaultConfig returns a pointer to a new config struct holding the
	// defaults; the user's block is decoded over it strictly. The config
	// should implement Validate() error and may implement
	// ResolvePaths(base string), CheckFiles() error and RecordSizer (see
	// outputs.ConfigValidator and its neighbours: the same contracts).
	DefaultConfig func() any
	// New builds the source from a config made by DefaultConfig.
	New func(cfg any, set Settings) (Source, error)
	// FromArgs, optional, turns `agent tail` arguments into a config: the
	// positional arguments the type takes (see Schemes) and the flags.
	FromArgs func(args []string, flags TailFlags) (any, error)
	// Schemes are the kinds of `agent tail` argument FromArgs takes: "file"
	// for plain paths (and file:// URLs), "-" for standard input, or a URL
	// scheme.
	Schemes []string
}

// Settings are what the agent passes to every source it builds.
type Settings struct {
	// Name is the source's name: its checkpoint namespace and its label in
	// logs and metrics.
	Name   string
	Logger *slog.Logger // scoped to the source
	// Checkpoints persists committed positions (sources that replay).
	Checkpoints *checkpoint.Store
	// CheckpointInterval is how often committed positions are persisted.
	CheckpointInterval time.Duration
	// Once makes Run return once the source reached its end (agent tail
	// --once).
	Once bool
	// Registerer takes the source's own metrics, labelled source=<name>.
	Registerer prometheus.Registerer
	// Stdin is what stream sources without a path read (os.Stdin when nil).
	Stdin io.Reader
}

// TailFlags are the `agent tail` options for sources. Each type uses those
// that apply to it.
type TailFlags struct {
	FromEnd        bool   // --from-end: start at the end of existing input
	MaxRecordBytes int64  // --max-record-bytes (0: the type's default)
	MultilineStart string // --multiline-start REGEX
	Format         string // --format: how records are parsed (socket: lines, json, syslog; "" the type's default)
	// RotatedDirs: --rotated-dir DIR (repeatable), more directories where
	// the rotations of files are looked for (the file source's rotated_dirs).
	RotatedDirs []string
}

// RecordSizer is implemented by source configs that bound their records:
// LargestRecord is the most data bytes one record can have, and key the
// config key (relative to the type's block) that sets it. The agent checks
// it against the flow's output and spool limits.
type RecordSizer interface {
	LargestRecord() (bytes int64, key string)
}
