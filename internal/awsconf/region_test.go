package awsconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// cleanAWSEnv leaves the SDK only what the test sets: no AWS_* variable
// but the shared files' names, in home (an empty directory), and a host
// that is not EC2.
func cleanAWSEnv(t *testing.T) (home string) {
	home = t.TempDir()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			require.NoError(t, os.Unsetenv(k))
		}
	}
	t.Setenv("HOME", home)
	// The SDK reads HOME once, when the process starts: name the files.
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(home, ".aws", "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(home, ".aws", "credentials"))
	old := ec2Markers
	ec2Markers = []struct{ path, prefix string }{{filepath.Join(home, "sys_vendor"), "amazon ec2"}}
	t.Cleanup(func() { ec2Markers = old })
	return home
}

func TestCheckRegion(t *testing.T) {
	const sharedConfig = "[default]\nregion = eu-north-1\n[profile other]\nregion = ap-south-1\n[profile none]\noutput = json\n"
	for _, tc := range []struct {
		name   string
		cfg    Config
		env    map[string]string
		config string // ~/.aws/config
		ec2    bool   // the host's firmware says EC2
		want   string // "" for no error
	}{
		{name: "nothing anywhere", want: regionNotSet + ", and EC2 instance metadata gives none: this host is not an EC2 instance"},
		{name: "the key", cfg: Config{Region: "eu-west-1"}},
		{name: "AWS_REGION", env: map[string]string{"AWS_REGION": "us-east-2"}},
		{name: "AWS_DEFAULT_REGION", env: map[string]string{"AWS_DEFAULT_REGION": "us-west-1"}},
		{name: "the default profile", config: sharedConfig},
		{name: "the profile key", cfg: Config{Profile: "other"}, config: sharedConfig},
		{name: "AWS_PROFILE", env: map[string]string{"AWS_PROFILE": "other"}, config: sharedConfig},
		{name: "a profile without a region", cfg: Config{Profile: "none"}, config: sharedConfig,
			want: regionNotSet + ", and EC2 instance metadata gives none: this host is not an EC2 instance"},
		{name: "a missing profile", cfg: Config{Profile: "nope"}, config: sharedConfig, want: "profile: load the AWS configuration: "},
		{name: "EC2 asks the instance metadata at start", ec2: true},
		{name: "EC2 with the metadata turned off", ec2: true, env: map[string]string{"AWS_EC2_METADATA_DISABLED": "true"},
			want: regionNotSet + ", and EC2 instance metadata gives none: turned off (AWS_EC2_METADATA_DISABLED)"},
		{name: "a metadata endpoint", env: map[string]string{"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := cleanAWSEnv(t)
			if tc.config != "" {
				dir := filepath.Join(home, ".aws")
				require.NoError(t, os.MkdirAll(dir, 0o700))
				require.NoError(t, os.WriteFile(filepath.Join(dir, "config"), []byte(tc.config), 0o600))
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if tc.ec2 {
				require.NoError(t, os.WriteFile(ec2Markers[0].path, []byte("Amazon EC2\n"), 0o600))
			}
			err := tc.cfg.CheckRegion()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// Load and CheckRegion say the same when no region is found.
func TestCheckRegion_SaysWhatLoadSays(t *testing.T) {
	cleanAWSEnv(t)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	_, _, loadErr := Load(Config{}, Settings{}, 1)
	require.Error(t, loadErr)
	checkErr := Config{}.CheckRegion()
	require.Error(t, checkErr)
	require.Contains(t, loadErr.Error(), regionNotSet)
	require.Contains(t, checkErr.Error(), regionNotSet)
}
