package journald

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConfig_Validate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		errs []string
	}{
		{name: "defaults", mod: func(*Config) {}},
		{name: "everything valid", mod: func(c *Config) {
			c.Units = []string{"a.service"}
			c.Identifiers = []string{"sshd"}
			c.Priority = "0..warning"
			c.Matches = []string{"_UID=0", "+", "MESSAGE_ID=abc"}
			c.StartAt = StartAtBeginning
			c.Since = "-1h"
		}},
		{name: "every problem", mod: func(c *Config) {
			c.JournalctlPath = ""
			c.Units = []string{"", "-x"}
			c.Identifiers = []string{""}
			c.Priority = "loud"
			c.Matches = []string{"nonsense", "bad name=1"}
			c.StartAt = "middle"
			c.Since = "yesterday"
			c.MaxRecordBytes = 10
		}, errs: []string{
			"journalctl_path: required",
			`units[0]: must be a unit name, not ""`,
			`units[1]: must be a unit name, not "-x"`,
			`identifiers[0]: must be an identifier`,
			`priority: must be a level (0-7 or emerg, alert, crit, err, warning, notice, info, debug) or a range LOW..HIGH, not "loud"`,
			`matches[0]: must be FIELD=VALUE or "+", not "nonsense"`,
			`matches[1]: must be FIELD=VALUE`,
			`start_at: must be "beginning" or "end", not "middle"`,
			"since: needs start_at: beginning",
			"max_record_bytes: must be between 1KiB and",
		}},
		{name: "bad range end", mod: func(c *Config) { c.Priority = "err..9" }, errs: []string{"priority:"}},
		{name: "two digits", mod: func(c *Config) { c.Priority = "03" }, errs: []string{"priority:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if len(tc.errs) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, e := range tc.errs {
				require.ErrorContains(t, err, e)
			}
		})
	}
}

func TestConfig_ResolvePaths(t *testing.T) {
	c := DefaultConfig()
	c.ResolvePaths("/etc/agent")
	require.Equal(t, "journalctl", c.JournalctlPath, "a bare name is looked up in PATH")
	require.Empty(t, c.Directory)
	c.JournalctlPath, c.Directory = "bin/journalctl", "journal"
	c.ResolvePaths("/etc/agent")
	require.Equal(t, "/etc/agent/bin/journalctl", c.JournalctlPath)
	require.Equal(t, "/etc/agent/journal", c.Directory)
	c.JournalctlPath, c.Directory = "/usr/bin/journalctl", "/var/log/journal"
	c.ResolvePaths("/etc/agent")
	require.Equal(t, "/usr/bin/journalctl", c.JournalctlPath)
	require.Equal(t, "/var/log/journal", c.Directory)
}
