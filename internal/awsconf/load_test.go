package awsconf

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLoad_NoRegionAnywhereSaysWhereToSetIt: no region in the block, the
// environment or the shared files, and no EC2 instance metadata. The error
// was the metadata client's ("operation error ec2imds: GetRegion, access
// disabled ..."), which does not say that the region is what is missing.
func TestLoad_NoRegionAnywhereSaysWhereToSetIt(t *testing.T) {
	none := t.TempDir()
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(none, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(none, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	_, _, err := Load(Config{}, Settings{}, 1)
	require.Error(t, err)
	require.ErrorContains(t, err, "region: not set (set region, ?region= in a kinesis:// or firehose:// URL, AWS_REGION, or the profile's region), and EC2 instance metadata gave none: ")
	require.ErrorContains(t, err, "ec2imds", "the metadata client's reason follows")
}

// TestLoad_RegionFromTheEnvironment does not ask the instance metadata.
func TestLoad_RegionFromTheEnvironment(t *testing.T) {
	none := t.TempDir()
	t.Setenv("AWS_REGION", "eu-west-3")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(none, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(none, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	cfg, tr, err := Load(Config{}, Settings{}, 1)
	require.NoError(t, err)
	defer tr.CloseIdleConnections()
	require.Equal(t, "eu-west-3", cfg.Region)
}
