package main

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A role_arn that is not a role's ARN may be a secret pasted into the
// wrong key: neither `agent tail --to` (which masks it in the URL) nor
// `agent validate` shows it; both say which key is wrong and why.
func TestRoleARN_ABadValueIsNamedNotShown(t *testing.T) {
	t.Parallel()
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	for _, scheme := range []string{"kinesis", "firehose"} {
		to := scheme + "://logs?region=eu-west-1&role_arn=" + url.QueryEscape(secret)
		_, err := destination(&tailOptions{to: to, gzip: true})
		require.Error(t, err, to)
		require.Contains(t, err.Error(), "role_arn=REDACTED")
		require.Contains(t, err.Error(), "role_arn: not an IAM role ARN (want arn:aws:iam::ACCOUNT:role/NAME): it does not start with arn:")
		require.NotContains(t, err.Error(), "wJalr")
	}

	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`state_dir: `+filepath.Join(dir, "state")+`
sources:
  - {name: app, type: file, file: {include: [`+filepath.Join(dir, "*.log")+`], max_record_bytes: 512KiB}}
  - {name: web, type: file, file: {include: [`+filepath.Join(dir, "*.web")+`], max_record_bytes: 512KiB}}
outputs:
  - name: k
    type: kinesis
    kinesis:
      stream: logs
      region: eu-west-1
      role_arn: "arn:aws:iam::123456789012:user/`+secret+`"
  - name: f
    type: firehose
    firehose: {stream: logs, region: eu-west-1, role_arn: "`+secret+`"}
flows:
  - {name: a, sources: [app], output: k}
  - {name: b, sources: [web], output: f}
`), 0o600))
	out, errOut, code := runBin(t, "validate", "-c", cfg)
	require.Equal(t, exitUsage, code, out+errOut)
	require.Contains(t, errOut, cfg+":11: outputs[0].kinesis.role_arn: not an IAM role ARN (want arn:aws:iam::ACCOUNT:role/NAME): its resource is not role/NAME")
	require.Contains(t, errOut, cfg+":14: outputs[1].firehose.role_arn: not an IAM role ARN (want arn:aws:iam::ACCOUNT:role/NAME): it does not start with arn:")
	require.NotContains(t, errOut, "wJalr")
	require.Equal(t, 2, strings.Count(errOut, "\n"), errOut)
}
