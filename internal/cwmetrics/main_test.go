package cwmetrics

import (
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// A known default credential chain: environment credentials, no shared
	// files, no IMDS.
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CLOUDWATCH"} {
		os.Unsetenv(k)
	}
	none := filepath.Join(os.TempDir(), "cwmetrics-test-no-such-dir")
	os.Setenv("AWS_ACCESS_KEY_ID", "AKIDCWMETRICSTEST")
	os.Setenv("AWS_SECRET_ACCESS_KEY", "secret-cwmetrics-test")
	os.Setenv("AWS_CONFIG_FILE", filepath.Join(none, "config"))
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(none, "credentials"))
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	goleak.VerifyTestMain(m)
}
