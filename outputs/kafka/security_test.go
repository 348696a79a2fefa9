package kafka

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSASL_MSKIAMSignsWithTheDefaultCredentialChain checks the AWS_MSK_IAM
// mechanism takes its credentials from the AWS SDK's default chain (here
// the environment) and signs for the region of the broker's host name,
// without the secret in the message.
func TestSASL_MSKIAMSignsWithTheDefaultCredentialChain(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLEAGENT")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s3cret-key-never-sent")
	t.Setenv("AWS_SESSION_TOKEN", "session-token-1")
	none := filepath.Join(t.TempDir(), "none") // no shared config or credentials files
	t.Setenv("AWS_CONFIG_FILE", none)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", none)
	mech, err := saslMechanism(t.Context(), SASLConfig{Mechanism: SASLAWSMSKIAM}, "kplagent/1.0")
	require.NoError(t, err)
	require.Equal(t, "AWS_MSK_IAM", mech.Name())
	_, first, err := mech.Authenticate(t.Context(), "b-1.logs.abc123.c2.kafka.eu-west-1.amazonaws.com:9098")
	require.NoError(t, err)
	msg := string(first)
	require.Contains(t, msg, "AKIDEXAMPLEAGENT/")
	require.Contains(t, msg, "/eu-west-1/kafka-cluster/aws4_request")
	require.Contains(t, msg, `"x-amz-security-token":"session-token-1"`)
	require.Contains(t, msg, `"user-agent":"kplagent/1.0"`)
	require.NotContains(t, msg, "s3cret-key-never-sent")
}

func TestSASL_Mechanisms(t *testing.T) {
	t.Parallel()
	for _, m := range []string{SASLPlain, SASLScramSHA256, SASLScramSHA512} {
		mech, err := saslMechanism(t.Context(), SASLConfig{Mechanism: m, Username: "u", Password: "p"}, "")
		require.NoError(t, err)
		require.Equal(t, m, mech.Name())
	}
	mech, err := saslMechanism(t.Context(), SASLConfig{}, "")
	require.NoError(t, err)
	require.Nil(t, mech)
}

func TestSASLConfig_PasswordIsNotPrinted(t *testing.T) {
	t.Parallel()
	c := DefaultConfig()
	c.SASL = SASLConfig{Mechanism: SASLPlain, Username: "agent", Password: "s3cret"}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "sasl", c.SASL)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%v", c.SASL), logged.String()} {
		require.NotContains(t, s, "s3cret")
		require.Contains(t, s, "agent")
	}
}
