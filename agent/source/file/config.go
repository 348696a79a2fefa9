package file

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/kplagent/agent/internal/units"
)

// Start positions for files that have no checkpoint (Config.StartAt).
const (
	StartAtBeginning = "beginning"
	StartAtEnd       = "end"
)

// Oversize policies for lines longer than Config.MaxRecordBytes.
const (
	OversizeTruncate = "truncate"
	OversizeSplit    = "split"
)

// DefaultMaxRecordBytes is 1 MiB (the Kinesis limit for one record's data
// plus partition key) minus 4 KiB of headroom: a record travels inside a KPL
// aggregate whose magic, MD5 trailer, protobuf framing, partition key table
// (keys of up to 256 characters, so up to 1 KiB of UTF-8) and explicit hash
// key table need about 1.1 KiB, and the aggregate's own partition key counts
// against the same 1 MiB.
const DefaultMaxRecordBytes = units.ByteSize(1<<20 - 4<<10)

// DefaultTruncateMarker is appended to a truncated record. The Kinesis
// Agent's truncatedRecordTerminator defaults to a newline too. Since this
// source strips the newline from every line, a single-line record never ends
// in "\n" unless it was truncated, so the one byte marks truncation
// unambiguously and cheaply.
const DefaultTruncateMarker = "\n"

// Config is a file source as written in the agent's YAML. Start from
// DefaultConfig and decode the user's values over it; Validate reports what
// is wrong without touching the file system.
type Config struct {
	// Include lists glob patterns of files to follow. "*", "?" and "[...]"
	// match within one path element; a "**" element matches zero or more
	// directories. Relative patterns are relative to the working directory.
	Include []string `yaml:"include"`
	// Exclude lists patterns of paths to skip. A pattern without "/" is
	// matched against the file's base name, otherwise against the full path.
	Exclude []string `yaml:"exclude"`
	// IgnoreOlder skips files not modified for this long when they are found
	// without a checkpoint: they count as read up to their size, so a later
	// write is read from there. 0 disables it.
	IgnoreOlder time.Duration `yaml:"ignore_older"`
	// StartAt is where reading starts in a file that exists when the source
	// starts and has no checkpoint: "beginning" or "end". "end" starts after
	// the last complete line. Files that appear while the source runs are
	// always read from the beginning, and so are files born (by their
	// file system's birth time, where it has one) after the source's previous
	// run last looked: they appeared while the agent was down.
	StartAt string `yaml:"start_at"`

	// MaxOpenFiles bounds the descriptors the source holds. When more files
	// have data, the least recently written wait and take turns: an open
	// file at its end, or one that had a long turn, yields its slot. The
	// bound is lowered to what RLIMIT_NOFILE leaves the file sources after
	// a reserve for the rest of the agent (see the package documentation).
	MaxOpenFiles int `yaml:"max_open_files"`
	// ScanInterval is how often the include patterns are expanded again. It
	// is the fallback for file systems whose changes produce no events (NFS,
	// some overlays); where events work, new files are found at once.
	ScanInterval time.Duration `yaml:"scan_interval"`
	// PollInterval is how often an open file is checked (fstat) for growth,
	// truncation and deletion when no event said so.
	PollInterval time.Duration `yaml:"poll_interval"`
	// FlushPartialAfter emits a last line that has no newline once its file
	// has not grown for this long.
	FlushPartialAfter time.Duration `yaml:"flush_partial_after"`
	// CloseInactive releases the descriptor of a file that has not grown for
	// this long; it is reopened when it grows. 0 keeps files open (up to
	// MaxOpenFiles).
	CloseInactive time.Duration `yaml:"close_inactive"`
	// RotateWait is how long a file that was renamed away or deleted stays
	// open after it last grew, so the lines its writer adds before reopening
	// are read. It is read to its end first in any case.
	RotateWait time.Duration `yaml:"rotate_wait"`

	// MaxRecordBytes bounds one record. Longer lines are truncated or split
	// (Oversize).
	MaxRecordBytes units.ByteSize `yaml:"max_record_bytes"`
	// Oversize is "truncate" (keep the first MaxRecordBytes-len(TruncateMarker)
	// bytes, append TruncateMarker, skip the rest of the line) or "split"
	// (emit the line as consecutive records of MaxRecordBytes).
	Oversize string `yaml:"oversize"`
	// TruncateMarker ends a truncated record; "" adds nothing.
	TruncateMarker string `yaml:"truncate_marker"`

	// Multiline joins lines into records; nil means one record per line.
	Multiline *MultilineConfig `yaml:"multiline"`

	// FingerprintBytes is how many leading bytes of a file confirm its
	// identity next to device and inode, so a reused inode is seen as a new
	// file. Shorter files are fingerprinted over what they have.
	FingerprintBytes int `yaml:"fingerprint_bytes"`
	// CheckpointTTL drops the checkpoint of a file not seen for this long.
	// 0 keeps checkpoints forever.
	CheckpointTTL time.Duration `yaml:"checkpoint_ttl"`
	// RotatedDirs are more directories where rotated files are looked for
	// (logrotate's olddir), besides the directory of the file: a file
	// renamed, copied (copytruncate) or compressed there while the source
	// was stopped is found and its unread lines read. A relative path is
	// relative to the directory of each file, as logrotate's olddir is.
	RotatedDirs []string `yaml:"rotated_dirs"`
}

// MultilineConfig joins consecutive lines into one record, separated by
// "\n". Exactly one of Start and Continue is set. Zero numeric fields take
// the defaults of DefaultMultilineConfig (MaxBytes: the source's
// MaxRecordBytes).
type MultilineConfig struct {
	// Start is a regular expression (RE2): a line matching it starts a new
	// record, other lines are appended to the current one.
	Start string `yaml:"start"`
	// Continue is a regular expression: a line matching it is appended to
	// the current record, other lines start a new one.
	Continue string `yaml:"continue"`
	// Negate inverts the match of Start or Continue.
	Negate bool `yaml:"negate"`
	// MaxLines and MaxBytes bound one record; the line that would exceed
	// them starts the next record (nothing is dropped).
	MaxLines int            `yaml:"max_lines"`
	MaxBytes units.ByteSize `yaml:"max_bytes"`
	// Timeout emits a pending record when no line was added to it for this
	// long.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultConfig returns the daemon's defaults. Include is empty and must be
// set.
func DefaultConfig() Config {
	return Config{
		StartAt: StartAtEnd, // a daemon installed on a busy host ships what comes next, not years of history
		// Go raises the soft RLIMIT_NOFILE to the hard limit, so 1024 files
		// leave room for the rest of the agent under any usual limit (often
		// 524288 under systemd). Under a lower limit the source takes less
		// and leaves a reserve (fdbudget.go).
		MaxOpenFiles: 1024,
		ScanInterval: 10 * time.Second, // the fallback only: events find files at once where they work
		PollInterval: time.Second,      // one fstat per open file per second: no busy polling
		// A writer that emits a line in several writes finishes it well
		// within 5 s; the Kinesis Agent and Fluent Bit use similar waits.
		FlushPartialAfter: 5 * time.Second,
		CloseInactive:     5 * time.Minute, // as Filebeat: idle files give back their descriptor
		RotateWait:        5 * time.Second, // as Fluent Bit's rotate_wait: time for the writer to reopen
		MaxRecordBytes:    DefaultMaxRecordBytes,
		Oversize:          OversizeTruncate,
		TruncateMarker:    DefaultTruncateMarker,
		FingerprintBytes:  1024,               // as Filebeat: more than a typical header line, one small read
		CheckpointTTL:     7 * 24 * time.Hour, // survives a long outage of a mounted volume; entries are tiny
	}
}

// DefaultMultilineConfig returns the defaults for a multiline block; Start
// or Continue must be set.
func DefaultMultilineConfig() MultilineConfig {
	return MultilineConfig{
		MaxLines: 500,             // a deep Java stack trace
		Timeout:  5 * time.Second, // the last record of a burst waits at most this long
	}
}

// maxMaxRecordBytes bounds MaxRecordBytes: the source keeps up to that much
// per file with an incomplete line, and one buffer of it.
const maxMaxRecordBytes = units.ByteSize(64 << 20)

// maxFingerprintBytes bounds FingerprintBytes: it is read on every identity
// check.
const maxFingerprintBytes = 64 << 10

// Validate reports every problem, each prefixed with its YAML key.
func (c Config) Validate() error {
	var errs []error
	add := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
	}
	if len(c.Include) == 0 {
		add("include", "at least one pattern is required")
	}
	for i, p := range c.Include {
		if err := checkPattern(p); err != nil {
			add(fmt.Sprintf("include[%d]", i), "%v", err)
		}
	}
	for i, p := range c.Exclude {
		if err := checkPattern(p); err != nil {
			add(fmt.Sprintf("exclude[%d]", i), "%v", err)
		}
	}
	if c.IgnoreOlder < 0 {
		add("ignore_older", "must not be negative")
	}
	if c.StartAt != StartAtBeginning && c.StartAt != StartAtEnd {
		add("start_at", "must be %q or %q, not %q", StartAtBeginning, StartAtEnd, c.StartAt)
	}
	if c.MaxOpenFiles < 1 {
		add("max_open_files", "must be at least 1")
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			add(key, "must be positive")
		}
	}
	positive("scan_interval", c.ScanInterval)
	positive("poll_interval", c.PollInterval)
	positive("flush_partial_after", c.FlushPartialAfter)
	positive("rotate_wait", c.RotateWait)
	if c.CloseInactive < 0 {
		add("close_inactive", "must not be negative (0 keeps files open)")
	}
	if c.MaxRecordBytes < 1 || c.MaxRecordBytes > maxMaxRecordBytes {
		add("max_record_bytes", "must be between 1 and %s", maxMaxRecordBytes)
	}
	switch c.Oversize {
	case OversizeTruncate:
		if c.MaxRecordBytes >= 1 && int64(len(c.TruncateMarker)) >= int64(c.MaxRecordBytes) {
			add("truncate_marker", "must be shorter than max_record_bytes (%s)", c.MaxRecordBytes)
		}
	case OversizeSplit:
	default:
		add("oversize", "must be %q or %q, not %q", OversizeTruncate, OversizeSplit, c.Oversize)
	}
	if c.FingerprintBytes < 1 || c.FingerprintBytes > maxFingerprintBytes {
		add("fingerprint_bytes", "must be between 1 and %d", maxFingerprintBytes)
	}
	if c.CheckpointTTL < 0 {
		add("checkpoint_ttl", "must not be negative (0 keeps checkpoints)")
	}
	for i, d := range c.RotatedDirs {
		if strings.TrimSpace(d) == "" {
			add(fmt.Sprintf("rotated_dirs[%d]", i), "empty directory")
		} else if strings.ContainsAny(d, "*?[") {
			add(fmt.Sprintf("rotated_dirs[%d]", i), "a directory, not a pattern: %q", d)
		}
	}
	if m := c.Multiline; m != nil {
		switch {
		case m.Start == "" && m.Continue == "":
			add("multiline", "one of start or continue is required")
		case m.Start != "" && m.Continue != "":
			add("multiline", "start and continue are exclusive")
		}
		if m.Start != "" {
			if _, err := regexp.Compile(m.Start); err != nil {
				add("multiline.start", "%v", err)
			}
		}
		if m.Continue != "" {
			if _, err := regexp.Compile(m.Continue); err != nil {
				add("multiline.continue", "%v", err)
			}
		}
		if m.MaxLines < 0 {
			add("multiline.max_lines", "must not be negative (0 is the default, %d)", DefaultMultilineConfig().MaxLines)
		}
		if m.MaxBytes < 0 {
			add("multiline.max_bytes", "must not be negative (0 is max_record_bytes)")
		} else if m.MaxBytes > c.MaxRecordBytes && c.MaxRecordBytes >= 1 {
			add("multiline.max_bytes", "must not exceed max_record_bytes (%s)", c.MaxRecordBytes)
		}
		if m.Timeout < 0 {
			add("multiline.timeout", "must not be negative (0 is the default, %s)", DefaultMultilineConfig().Timeout)
		}
	}
	return errors.Join(errs...)
}

// checkPattern reports a pattern that filepath.Match would reject.
func checkPattern(p string) error {
	if p == "" {
		return errors.New("empty pattern")
	}
	els := splitPath(filepath.Clean(p))
	if len(els) == 0 || els[len(els)-1] == "." || els[len(els)-1] == ".." {
		return fmt.Errorf("pattern %q names no file", p)
	}
	for _, el := range els {
		if el == "**" {
			continue
		}
		if _, err := filepath.Match(el, ""); err != nil {
			return fmt.Errorf("bad pattern %q: %w", p, err)
		}
	}
	return nil
}

// multiline returns m with its zero fields defaulted.
func (m MultilineConfig) withDefaults(maxRecord units.ByteSize) MultilineConfig {
	d := DefaultMultilineConfig()
	if m.MaxLines == 0 {
		m.MaxLines = d.MaxLines
	}
	if m.MaxBytes == 0 {
		m.MaxBytes = maxRecord
	}
	if m.Timeout == 0 {
		m.Timeout = d.Timeout
	}
	return m
}
