package journald

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/kplagent/agent/internal/units"
)

// Start positions without a checkpoint (Config.StartAt).
const (
	StartAtBeginning = "beginning"
	StartAtEnd       = "end"
)

// DefaultMaxRecordBytes is the default bound of one record, as for files:
// the Kinesis record limit minus 4 KiB of headroom for the KPL aggregate.
const DefaultMaxRecordBytes = units.ByteSize(1<<20 - 4<<10)

// maxMaxRecordBytes bounds MaxRecordBytes.
const maxMaxRecordBytes = units.ByteSize(64 << 20)

// Config is a journald source as written in the agent's YAML
// (sources[].journald). Start from DefaultConfig.
type Config struct {
	// JournalctlPath is the journalctl program: a path, or a name looked up
	// in PATH when the source starts.
	JournalctlPath string `yaml:"journalctl_path"`
	// Directory reads the journal files of this directory (journalctl
	// --directory) instead of the system's journal.
	Directory string `yaml:"directory"`
	// Units keeps the entries of these systemd units (journalctl --unit,
	// each; globs as journalctl takes them). Units, identifiers and
	// matches combine as journalctl combines them.
	Units []string `yaml:"units"`
	// Identifiers keeps the entries with these SYSLOG_IDENTIFIERs
	// (journalctl --identifier, each).
	Identifiers []string `yaml:"identifiers"`
	// Priority keeps entries of this priority or more severe ("err", "4"),
	// or of a range ("debug..notice"): journalctl --priority.
	Priority string `yaml:"priority"`
	// Matches are more journalctl matches: "FIELD=VALUE", and "+" between
	// groups for a logical OR.
	Matches []string `yaml:"matches"`
	// StartAt is where the source starts when it has no checkpoint:
	// "beginning" of the journal (or Since) or its "end" (only entries
	// written from then on).
	StartAt string `yaml:"start_at"`
	// Since, with start_at: beginning, starts at this time instead of the
	// journal's beginning (journalctl --since: "2025-01-02 03:04:05",
	// "yesterday", "-1h").
	Since string `yaml:"since"`
	// ExcludeFields are journal fields left out of the records (say
	// "_CMDLINE" or "__CURSOR").
	ExcludeFields []string `yaml:"exclude_fields"`
	// MaxRecordBytes bounds one record; longer entries have their longest
	// values cut and "_AGENT_TRUNCATED": true added.
	MaxRecordBytes units.ByteSize `yaml:"max_record_bytes"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{JournalctlPath: "journalctl", StartAt: StartAtEnd, MaxRecordBytes: DefaultMaxRecordBytes}
}

var priorities = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

func validPriority(p string) bool {
	if n, err := strconv.Atoi(p); err == nil {
		return n >= 0 && n <= 7 && len(p) == 1
	}
	for _, q := range priorities {
		if p == q {
			return true
		}
	}
	return false
}

// Validate reports every problem, each prefixed with its YAML key. It does
// no I/O: a missing journalctl is reported when the source starts.
func (c Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.JournalctlPath == "" {
		add("journalctl_path", "required")
	}
	for i, u := range c.Units {
		if u == "" || strings.HasPrefix(u, "-") {
			add(fmt.Sprintf("units[%d]", i), "must be a unit name, not %q", u)
		}
	}
	for i, u := range c.Identifiers {
		if u == "" || strings.HasPrefix(u, "-") {
			add(fmt.Sprintf("identifiers[%d]", i), "must be an identifier, not %q", u)
		}
	}
	if c.Priority != "" {
		lo, hi, isRange := strings.Cut(c.Priority, "..")
		if !validPriority(lo) || isRange && !validPriority(hi) {
			add("priority", "must be a level (0-7 or %s) or a range LOW..HIGH, not %q", strings.Join(priorities, ", "), c.Priority)
		}
	}
	for i, m := range c.Matches {
		name, _, ok := strings.Cut(m, "=")
		if m != "+" && (!ok || checkName([]byte(name)) != nil) {
			add(fmt.Sprintf("matches[%d]", i), "must be FIELD=VALUE or \"+\", not %q", m)
		}
	}
	if c.StartAt != StartAtBeginning && c.StartAt != StartAtEnd {
		add("start_at", "must be %q or %q, not %q", StartAtBeginning, StartAtEnd, c.StartAt)
	}
	if c.Since != "" && c.StartAt != StartAtBeginning {
		add("since", "needs start_at: %s", StartAtBeginning)
	}
	if c.MaxRecordBytes < 1024 || c.MaxRecordBytes > maxMaxRecordBytes {
		add("max_record_bytes", "must be between 1KiB and %s", maxMaxRecordBytes)
	}
	return errors.Join(errs...)
}

// LargestRecord is the most data one record can have: max_record_bytes.
func (c *Config) LargestRecord() (int64, string) { return int64(c.MaxRecordBytes), "max_record_bytes" }

// args are journalctl's arguments: after a cursor when there is one, else
// from the configured start (end: since, an "@unix-seconds" time, when the
// source restarts journalctl before it saw any cursor).
func (c Config) args(after, since string) []string {
	a := []string{"--follow", "--output=export", "--no-pager"}
	if c.Directory != "" {
		a = append(a, "--directory="+c.Directory)
	}
	switch {
	case after != "":
		a = append(a, "--no-tail", "--after-cursor="+after)
	case since != "":
		a = append(a, "--no-tail", "--since="+since)
	case c.StartAt == StartAtEnd:
		a = append(a, "--lines=0")
	case c.Since != "":
		a = append(a, "--no-tail", "--since="+c.Since)
	default:
		a = append(a, "--no-tail")
	}
	for _, u := range c.Units {
		a = append(a, "--unit="+u)
	}
	for _, id := range c.Identifiers {
		a = append(a, "--identifier="+id)
	}
	if c.Priority != "" {
		a = append(a, "--priority="+c.Priority)
	}
	return append(a, c.Matches...)
}
