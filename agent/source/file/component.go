package file

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/internal/units"
)

// Type is the file source's component type: `type: file` with a `file:`
// block, and the plain paths of `agent tail`.
func Type() source.Type {
	return source.Type{
		Name:          "file",
		DefaultConfig: func() any { c := DefaultConfig(); return &c },
		New: func(cfg any, set source.Settings) (source.Source, error) {
			c, ok := cfg.(*Config)
			if !ok {
				return nil, fmt.Errorf("file source %q: config is %T, want *file.Config", set.Name, cfg)
			}
			s, err := New(*c, Settings{Name: set.Name, Logger: set.Logger, Checkpoints: set.Checkpoints,
				Once: set.Once, CheckpointInterval: set.CheckpointInterval})
			if err != nil {
				return nil, err
			}
			if set.Registerer != nil {
				if err := set.Registerer.Register(newMetricsCollector(s)); err != nil {
					return nil, fmt.Errorf("file source %q: metrics: %w", set.Name, err)
				}
			}
			return s, nil
		},
		FromArgs: fromArgs,
		Schemes:  []string{"file"},
	}
}

// fromArgs makes the config of `agent tail PATH...`: every path (or
// quoted glob, or file:// URL) is followed, read from the beginning unless
// --from-end.
func fromArgs(args []string, flags source.TailFlags) (any, error) {
	c := DefaultConfig()
	c.StartAt = StartAtBeginning
	if flags.FromEnd {
		c.StartAt = StartAtEnd
	}
	for _, a := range args {
		a = strings.TrimPrefix(a, "file://")
		abs, err := filepath.Abs(a)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a, err)
		}
		c.Include = append(c.Include, abs)
	}
	if flags.MaxRecordBytes > 0 {
		c.MaxRecordBytes = units.ByteSize(flags.MaxRecordBytes)
	}
	c.RotatedDirs = append([]string(nil), flags.RotatedDirs...) // relative to each file's directory, as in a config file
	if flags.MultilineStart != "" {
		m := DefaultMultilineConfig()
		m.Start = flags.MultilineStart
		c.Multiline = &m
	}
	return &c, nil
}

// ResolvePaths makes relative include and exclude patterns relative to
// base (the config file's directory). Exclude patterns without "/" match
// base names and stay as they are.
func (c *Config) ResolvePaths(base string) {
	for i, p := range c.Include {
		if p != "" && !filepath.IsAbs(p) {
			c.Include[i] = filepath.Join(base, p)
		}
	}
}

// LargestRecord is the most data one record can have: max_record_bytes
// (oversize lines are truncated or split to it; multiline records are
// bounded by it too).
func (c *Config) LargestRecord() (int64, string) { return int64(c.MaxRecordBytes), "max_record_bytes" }
