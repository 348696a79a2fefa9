package file

import (
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/outputs"
)

// CheckFiles rejects what New would fail on, before anything runs.
func TestConfig_CheckFilesMatchesWhatNewRejects(t *testing.T) {
	dir := t.TempDir()
	aFile := filepath.Join(dir, "plain")
	require.NoError(t, os.WriteFile(aFile, nil, 0o600))
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"dir to create", Config{Dir: filepath.Join(dir, "new", "sub")}, ""},
		{"path to create", Config{Path: filepath.Join(dir, "new2", "out.ndjson")}, ""},
		{"dir is a file", Config{Dir: aFile}, "dir: " + aFile + " is not a directory"},
		{"dir under a file", Config{Dir: filepath.Join(aFile, "sub")}, "dir: " + aFile + " is not a directory"},
		{"path is a directory", Config{Path: dir}, "path: " + dir + " is a directory"},
		{"path under a file", Config{Path: filepath.Join(aFile, "out.ndjson")}, "path: " + aFile + " is not a directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Format = FormatNDJSON
			err := tc.cfg.CheckFiles()
			o, newErr := New("o", tc.cfg, Settings{})
			if o != nil {
				require.NoError(t, o.Close(t.Context()))
			}
			if tc.want == "" {
				require.NoError(t, err)
				require.NoError(t, newErr)
				return
			}
			require.EqualError(t, err, tc.want)
			require.Error(t, newErr, "New fails too")
		})
	}
}

func TestType_FromURLAndResolvePaths(t *testing.T) {
	ty := Type()
	u, _ := url.Parse("file:///var/tmp/shipped")
	cfg, err := ty.FromURL(u, outputs.TailFlags{})
	require.NoError(t, err)
	require.Equal(t, "/var/tmp/shipped", cfg.(*Config).Dir)
	u, _ = url.Parse("file://elsewhere/x")
	_, err = ty.FromURL(u, outputs.TailFlags{})
	require.ErrorContains(t, err, "local directory")

	c := &Config{Dir: "rel", Path: "/abs/p"}
	c.ResolvePaths("/etc/agent")
	require.Equal(t, &Config{Dir: "/etc/agent/rel", Path: "/abs/p"}, c)
	require.Equal(t, "file", ty.Name)
}
