package file

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/kplagent/agent/agent/checkpoint"
	"github.com/kplagent/agent/agent/source"
)

// Settings are set in code, not in the config file.
type Settings struct {
	Name        string            // source name: checkpoint namespace, logs, metrics
	Logger      *slog.Logger      // nil discards
	Checkpoints *checkpoint.Store // nil: no persistence
	// Once makes Run return nil once every matched file has been read to its
	// end, its partial last line flushed, and no new data arrived.
	Once bool
	// CheckpointInterval is how often committed offsets are written to
	// Checkpoints; 0 means every second.
	CheckpointInterval time.Duration
}

// Stats are the source's counters.
type Stats struct {
	Records               uint64
	Bytes                 uint64
	TruncatedRecords      uint64
	SplitRecords          uint64
	Truncations           uint64
	Rotations             uint64
	FilesOpen             int
	FilesWaiting          int
	PartialFlushes        uint64
	CheckpointWriteErrors uint64
}

// FileStatus describes one followed file.
type FileStatus struct {
	Path      string
	FileID    string
	Size      int64
	Offset    int64
	Committed int64
	Open      bool
	State     string
}

// Source follows files. Stub until the implementation lands.
type Source struct {
	cfg Config
	set Settings
}

// New validates cfg.
func New(cfg Config, set Settings) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if set.Name == "" {
		return nil, errors.New("file source: empty name")
	}
	return &Source{cfg: cfg, set: set}, nil
}

// Name returns the source's name.
func (s *Source) Name() string { return s.set.Name }

// Run follows the files until ctx is done.
func (s *Source) Run(ctx context.Context, emit source.Emit) error {
	<-ctx.Done()
	return nil
}

// Commit notes that records of fileID up to offset are durable.
func (s *Source) Commit(fileID string, offset int64) {}

// Stats returns the counters.
func (s *Source) Stats() Stats { return Stats{} }

// Files returns the followed files.
func (s *Source) Files() []FileStatus { return nil }

var (
	_ source.Source    = (*Source)(nil)
	_ source.Committer = (*Source)(nil)
)
