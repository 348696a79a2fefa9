package spool

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kplagent/agent/internal/units"
	"go.yaml.in/yaml/v3"
)

// SyncPolicy says when appended entries are flushed to stable storage.
type SyncPolicy string

// Sync policies. doc.go states the loss window of each.
const (
	SyncAlways   SyncPolicy = "always"   // Append returns after fsync (group commit)
	SyncInterval SyncPolicy = "interval" // fsync every SyncInterval
	SyncNever    SyncPolicy = "never"    // the OS writes back when it likes
)

// WhenFull says what Append does when the spool is at MaxBytes or the disk is
// at MinFreeBytes.
type WhenFull string

// Policies when full.
const (
	WhenFullBlock      WhenFull = "block"       // Append waits (context-aware): sources pause
	WhenFullDropNewest WhenFull = "drop_newest" // Append returns ErrFull; counted
	WhenFullDropOldest WhenFull = "drop_oldest" // the oldest segment is deleted; counted
)

// Config is the user-facing configuration (the `spool:` block of agent.yaml).
type Config struct {
	// Dir holds the segment files, the ack files and the lock. One process
	// at a time; one spool per directory.
	Dir string `yaml:"dir"`
	// MaxBytes caps the bytes on disk (segments and ack files).
	MaxBytes units.ByteSize `yaml:"max_bytes"`
	// SegmentBytes is the size at which a segment file is closed and a new
	// one started. Disk space is given back a whole segment at a time.
	SegmentBytes units.ByteSize `yaml:"segment_bytes"`
	// MaxEntryBytes is the largest entry Append accepts (ErrTooLarge above).
	// An entry larger than a segment gets a segment of its own. Open lowers
	// it, with a warning, to what fits under MaxBytes in a segment of its
	// own (MaxBytes less 88 bytes of header, frame header and seal), so that
	// once everything is acknowledged any accepted entry finds room.
	MaxEntryBytes units.ByteSize `yaml:"max_entry_bytes"`
	// Sync is the durability policy; see doc.go for each one's loss window.
	Sync SyncPolicy `yaml:"sync"`
	// SyncInterval paces the fsync of SyncInterval and, for every policy,
	// how often acknowledgements are written to disk.
	SyncInterval time.Duration `yaml:"sync_interval"`
	// WhenFull is what Append does at MaxBytes or MinFreeBytes.
	WhenFull WhenFull `yaml:"when_full"`
	// MinFreeBytes is the free-disk floor: when the file system holding Dir
	// has less free space than this, the spool behaves as full. 0 disables;
	// "auto" (MinFreeAuto, the default) is the smaller of 256 MiB and 5% of
	// the file system's size, measured at Open.
	MinFreeBytes MinFree `yaml:"min_free_bytes"`
}

// MinFree is min_free_bytes: a byte size (see units.ByteSize) or "auto".
type MinFree int64

// MinFreeAuto is min_free_bytes: auto.
const MinFreeAuto MinFree = -1

// The automatic free-disk floor is the smaller of autoFloorMax and
// autoFloorPercent of the file system's size. 256 MiB keeps room for the
// system's own logs and package updates when the spool shares a root file
// system, but on a small partition (a 1 GiB /var on a device, a 2 GiB
// container volume) it would take a quarter of the disk or more and leave
// the spool no room at all. 5% is what ext4 reserves for root by default for
// the same purpose; it is kept free on top of that reserve (free space is
// measured as an unprivileged user sees it). The floor is 256 MiB from a
// 5 GiB file system up.
const (
	autoFloorMax     = 256 << 20
	autoFloorPercent = 5
)

// autoFloor is the floor of min_free_bytes: auto on a file system of total
// bytes; 0 when the size is unknown.
func autoFloor(total int64) int64 {
	if total <= 0 {
		return autoFloorMax
	}
	return min(autoFloorMax, total/100*autoFloorPercent)
}

// UnmarshalYAML reads "auto" or a byte size.
func (m *MinFree) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && strings.EqualFold(strings.TrimSpace(n.Value), "auto") {
		*m = MinFreeAuto
		return nil
	}
	var b units.ByteSize
	if err := b.UnmarshalYAML(n); err != nil {
		return fmt.Errorf("%w (or \"auto\")", err)
	}
	*m = MinFree(b)
	return nil
}

// MarshalYAML writes "auto" or the size.
func (m MinFree) MarshalYAML() (any, error) { return m.String(), nil }

func (m MinFree) String() string {
	if m == MinFreeAuto {
		return "auto"
	}
	return units.ByteSize(m).String()
}

// MinSegmentBytes is the smallest segment_bytes, so the smallest max_bytes
// is twice it: a segment larger than its header, seal and a few frames.
// Tests use it to roll often; tiny spools (small devices) can too.
const MinSegmentBytes = 4 << 10

const (
	// maxEntryLimit keeps a frame's length in its 32-bit field with room to
	// spare, and one entry's buffer within reason.
	maxEntryLimit = 1 << 30
	// minSyncInterval stops a typo ("1ns") from turning into an fsync loop.
	minSyncInterval = time.Millisecond
)

// maxFitEntry is the largest entry that fits under cfg.MaxBytes in an
// otherwise empty spool: one segment with its header, the entry's frame and
// the seal.
func maxFitEntry(cfg Config) int64 { return MaxEntryFor(cfg.MaxBytes) }

// MaxEntryFor is the largest entry a spool of maxBytes takes: Open lowers
// max_entry_bytes to it (an entry in a segment of its own, with the
// segment's header, the entry's frame header and the seal).
func MaxEntryFor(maxBytes units.ByteSize) int64 {
	return int64(maxBytes) - segHeaderSize - frameHeaderSize - sealFrameSize
}

// DefaultConfig returns the defaults. Dir is left empty: the agent puts the
// spool under its state directory.
func DefaultConfig() Config {
	return Config{
		// 4 GiB rides out about an hour of a 1 MB/s flow while the
		// destination is down, and fits the smallest common VM disks.
		MaxBytes: 4 << 30,
		// 64 MiB: 64 files per default cap, so space comes back in 1/64ths,
		// while the per-segment costs (an open, an fsync of the directory,
		// an unlink) stay rare.
		SegmentBytes: 64 << 20,
		// 16 MiB: above the largest batch any output sends as one entry (a
		// 10 MiB HTTP blob; Kinesis records are at most 1 MiB).
		MaxEntryBytes: 16 << 20,
		// interval: one fsync a second whatever the rate; a power loss costs
		// at most the last second, and source checkpoints wait for it.
		Sync:         SyncInterval,
		SyncInterval: time.Second,
		// block: nothing is lost; file sources pause and resume from their
		// checkpoints. Inputs that cannot wait choose a drop policy.
		WhenFull: WhenFullBlock,
		// auto: 256 MiB, or 5% of a file system smaller than 5 GiB (see
		// autoFloor), so that the default works on small partitions too.
		MinFreeBytes: MinFreeAuto,
	}
}

// Validate checks c without touching the disk. It reports every problem, each
// prefixed with its YAML key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	if c.Dir == "" {
		bad("dir", "required")
	}
	if c.SegmentBytes < MinSegmentBytes {
		bad("segment_bytes", "must be at least %s, got %s", units.ByteSize(MinSegmentBytes), c.SegmentBytes)
	}
	if c.MaxBytes < 2*c.SegmentBytes {
		bad("max_bytes", "must be at least twice segment_bytes (%s), got %s", 2*c.SegmentBytes, c.MaxBytes)
	}
	if c.MaxEntryBytes <= 0 || c.MaxEntryBytes > maxEntryLimit {
		bad("max_entry_bytes", "must be between 1 and %s, got %s", units.ByteSize(maxEntryLimit), c.MaxEntryBytes)
	}
	switch c.Sync {
	case SyncAlways, SyncInterval, SyncNever:
	default:
		bad("sync", "must be %q, %q or %q, got %q", SyncAlways, SyncInterval, SyncNever, c.Sync)
	}
	if c.SyncInterval < minSyncInterval {
		bad("sync_interval", "must be at least %s, got %s", minSyncInterval, c.SyncInterval)
	}
	switch c.WhenFull {
	case WhenFullBlock, WhenFullDropNewest, WhenFullDropOldest:
	default:
		bad("when_full", "must be %q, %q or %q, got %q", WhenFullBlock, WhenFullDropNewest, WhenFullDropOldest, c.WhenFull)
	}
	if c.MinFreeBytes < 0 && c.MinFreeBytes != MinFreeAuto {
		bad("min_free_bytes", "must be a size or \"auto\", got %d", int64(c.MinFreeBytes))
	}
	return errors.Join(errs...)
}
