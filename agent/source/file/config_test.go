package file

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

func TestConfig_DefaultsAreValidOnceIncludeIsSet(t *testing.T) {
	c := DefaultConfig()
	require.ErrorContains(t, c.Validate(), "include: at least one pattern is required")
	c.Include = []string{"/var/log/*.log"}
	require.NoError(t, c.Validate())
	require.Equal(t, StartAtEnd, c.StartAt)
	require.Equal(t, "\n", c.TruncateMarker)
	require.Equal(t, int64(1<<20-4<<10), int64(c.MaxRecordBytes))
	require.Equal(t, 5*time.Second, c.FlushPartialAfter)
}

func TestConfig_ValidateReportsEveryProblemWithItsKey(t *testing.T) {
	c := DefaultConfig()
	c.Include = []string{"/ok/*.log", "/bad/[x.log", "/"}
	c.Exclude = []string{"[z"}
	c.StartAt = "middle"
	c.MaxOpenFiles = 0
	c.ScanInterval = 0
	c.FlushPartialAfter = -time.Second
	c.MaxRecordBytes = 1
	c.Oversize = "drop"
	c.FingerprintBytes = 0
	c.CheckpointTTL = -1
	c.RotatedDirs = []string{"old", " ", "/var/log/*/old"}
	c.Multiline = &MultilineConfig{Start: "(", Continue: "x", MaxLines: -1, MaxBytes: 5}
	err := c.Validate()
	require.Error(t, err)
	for _, want := range []string{
		"include[1]: bad pattern", "include[2]: pattern \"/\" names no file", "exclude[0]: bad pattern",
		"start_at: must be", "max_open_files:", "scan_interval: must be positive", "flush_partial_after: must be positive",
		"oversize: must be", "fingerprint_bytes:", "checkpoint_ttl:", "rotated_dirs[1]: empty directory",
		"rotated_dirs[2]: a directory, not a pattern", "multiline: start and continue are exclusive",
		"multiline.start: error parsing regexp", "multiline.max_lines:", "multiline.max_bytes: must not exceed max_record_bytes",
	} {
		require.ErrorContains(t, err, want)
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		require.Regexp(t, `^[a-z0-9_\[\]\.]+: `, line, "every problem starts with its key")
	}
	c = DefaultConfig()
	c.Include = []string{"/x"}
	c.MaxRecordBytes = 4
	c.TruncateMarker = "[cut]"
	require.ErrorContains(t, c.Validate(), "truncate_marker: must be shorter than max_record_bytes")
	c.Oversize = OversizeSplit
	require.NoError(t, c.Validate())
}

func TestConfig_YAML(t *testing.T) {
	c := DefaultConfig()
	dec := yaml.NewDecoder(strings.NewReader(`
include: [/var/log/app/**/*.log]
exclude: ["*.gz"]
rotated_dirs: [old, /var/log/archive]
start_at: beginning
max_record_bytes: 256KiB
oversize: split
flush_partial_after: 2s
multiline:
  start: '^\d{4}-'
  timeout: 3s
`))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&c))
	require.NoError(t, c.Validate())
	require.Equal(t, int64(256<<10), int64(c.MaxRecordBytes))
	require.Equal(t, 2*time.Second, c.FlushPartialAfter)
	require.Equal(t, []string{"old", "/var/log/archive"}, c.RotatedDirs)
	require.Equal(t, `^\d{4}-`, c.Multiline.Start)
	require.Zero(t, c.Multiline.MaxLines) // 0: the default, filled in by New
	src, err := New(c, Settings{Name: "app"})
	require.NoError(t, err)
	require.Equal(t, 500, src.ml.maxLines)
	require.Equal(t, 256<<10, src.ml.maxBytes)
	require.Equal(t, 3*time.Second, src.ml.timeout)
	require.Equal(t, "app", src.Name())
	_, err = New(c, Settings{})
	require.ErrorContains(t, err, "name: required")
}
