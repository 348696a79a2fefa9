package kinesis

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCredentials_EnvironmentSignsTheRequests(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDSETBYTHISTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "another-secret")
	fake, srv := newFakeKinesis(t, 1)
	o := newTestOutput(t, testConfig(srv.URL), nil)
	require.NoError(t, o.Send(t.Context(), plainBatch("a")))
	require.Equal(t, []string{"AKIDSETBYTHISTEST", "AKIDSETBYTHISTEST"}, fake.AccessKeyIDs()) // ListShards, PutRecords
	require.Empty(t, fake.Violations(), "signatures")
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

func TestCredentials_SharedProfile(t *testing.T) {
	dir := t.TempDir()
	creds := dir + "/credentials"
	require.NoError(t, writeFile(creds, "[other]\naws_access_key_id = AKIDFROMPROFILE\naws_secret_access_key = s\n"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	fake, srv := newFakeKinesis(t, 1)
	o := newTestOutput(t, testConfig(srv.URL, func(c *Config) { c.Profile = "other" }), nil)
	require.NoError(t, o.Send(t.Context(), plainBatch("a")))
	akids := fake.AccessKeyIDs()
	require.Equal(t, "AKIDFROMPROFILE", akids[len(akids)-1])
	require.Empty(t, fake.Violations(), "signatures")
}

// fakeSTS answers AssumeRole (query protocol, XML) with temporary
// credentials, and records the requests.
type fakeSTS struct {
	mu    sync.Mutex
	calls []url.Values
	akids []string
	ttl   time.Duration
}

func (f *fakeSTS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(body))
	f.mu.Lock()
	f.calls = append(f.calls, form)
	if m := credentialRE.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		f.akids = append(f.akids, m[1])
	}
	n := len(f.calls)
	f.mu.Unlock()
	if form.Get("Action") != "AssumeRole" {
		http.Error(w, "unexpected action "+form.Get("Action"), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>ASIAASSUMED%d</AccessKeyId>
      <SecretAccessKey>assumed-secret</SecretAccessKey>
      <SessionToken>assumed-session-token</SessionToken>
      <Expiration>%s</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/writer/kplagent</Arn>
      <AssumedRoleId>AROAEXAMPLE:kplagent</AssumedRoleId>
    </AssumedRoleUser>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>req-%d</RequestId></ResponseMetadata>
</AssumeRoleResponse>`, n, time.Now().Add(f.ttl).UTC().Format(time.RFC3339), n)
}

func TestCredentials_AssumedRoleSignsPutRecords(t *testing.T) {
	sts := &fakeSTS{ttl: time.Hour}
	stsSrv := httptest.NewServer(sts)
	t.Cleanup(stsSrv.Close)
	fake, srv := newFakeKinesis(t, 1)
	var logs strings.Builder
	cfg := testConfig(srv.URL, func(c *Config) {
		c.RoleARN = "arn:aws:iam::123456789012:role/writer"
		c.ExternalID = "external-secret-id"
		c.RoleSessionName = "agent-test"
		c.STSEndpoint = stsSrv.URL
	})
	o, err := New("k", cfg, Settings{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	defer o.Close(t.Context())
	for range 3 {
		require.NoError(t, o.Send(t.Context(), plainBatch("a", "b")))
	}

	sts.mu.Lock()
	require.Len(t, sts.calls, 1, "the assumed credentials are cached")
	call := sts.calls[0]
	require.Equal(t, "arn:aws:iam::123456789012:role/writer", call.Get("RoleArn"))
	require.Equal(t, "external-secret-id", call.Get("ExternalId"))
	require.Equal(t, "agent-test", call.Get("RoleSessionName"))
	require.Equal(t, []string{envAccessKey}, sts.akids, "AssumeRole is signed with the default chain's credentials")
	sts.mu.Unlock()

	akids := fake.AccessKeyIDs()
	require.NotEmpty(t, akids)
	for _, id := range akids {
		require.Equal(t, "ASIAASSUMED1", id)
	}
	require.Empty(t, fake.Violations(), "signatures")
	for _, secret := range []string{"assumed-secret", "assumed-session-token", "external-secret-id", "secret-from-environment"} {
		require.NotContains(t, logs.String(), secret)
	}
}

func TestCredentials_AssumedRoleIsRefreshedBeforeItExpires(t *testing.T) {
	// Credentials that expire within the refresh window (5 minutes) are
	// fetched again before the next request.
	sts := &fakeSTS{ttl: 30 * time.Second}
	stsSrv := httptest.NewServer(sts)
	t.Cleanup(stsSrv.Close)
	fake, srv := newFakeKinesis(t, 1)
	cfg := testConfig(srv.URL, func(c *Config) {
		c.RoleARN = "arn:aws:iam::123456789012:role/writer"
		c.STSEndpoint = stsSrv.URL
	})
	o := newTestOutput(t, cfg, nil)
	_, err := o.ShardMap(t.Context())
	require.NoError(t, err)
	require.NoError(t, o.Send(t.Context(), plainBatch("a")))
	require.Equal(t, []string{"ASIAASSUMED1", "ASIAASSUMED2"}, fake.AccessKeyIDs())
	require.Empty(t, fake.Violations(), "signatures")
}

func TestCredentials_ValidateNeverQuotesSecrets(t *testing.T) {
	c := DefaultConfig()
	c.ExternalID = "very-secret-external-id"
	err := c.Validate()
	require.Error(t, err)
	require.Contains(t, err.Error(), "external_id: set without role_arn")
	require.NotContains(t, err.Error(), "very-secret-external-id")
}

// TestCredentials_NoneFoundSaysWhereItLooked clears every source of the
// default chain (TestMain disables IMDS and points the shared files
// nowhere): the error says that no credentials were found and where the
// agent looked, not only the chain's last step ("no EC2 IMDS role found").
func TestCredentials_NoneFoundSaysWhereItLooked(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	fake, srv := newFakeKinesis(t, 1)
	o := newTestOutput(t, testConfig(srv.URL), nil)
	err := o.Send(t.Context(), plainBatch("a"))
	require.Error(t, err)
	require.Contains(t, err.Error(), "no AWS credentials found (environment AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "+
		"shared files ~/.aws/credentials and ~/.aws/config, AWS_PROFILE or profile, SSO, web identity, ECS, EC2 instance role)")
	require.Empty(t, fake.AccessKeyIDs(), "nothing was sent unsigned")
}
