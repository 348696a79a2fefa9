package firehose

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/kplagent/agent/internal/awsconf"
	"github.com/kplagent/agent/internal/fakeaws"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/internal/batchtest"
)

const envAccessKey = "AKIDFIREHOSETEST"

func TestMain(m *testing.M) {
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_FIREHOSE"} {
		os.Unsetenv(k)
	}
	none := filepath.Join(os.TempDir(), "firehose-test-no-such-dir")
	os.Setenv("AWS_ACCESS_KEY_ID", envAccessKey)
	os.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	os.Setenv("AWS_CONFIG_FILE", filepath.Join(none, "config"))
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(none, "credentials"))
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	goleak.VerifyTestMain(m)
}

// fakeFirehose speaks Firehose's JSON 1.1 protocol (PutRecordBatch,
// DescribeDeliveryStream).
type fakeFirehose struct {
	mu       sync.Mutex
	records  [][]byte
	puts     int
	akids    []string
	failCode func(data []byte) string
	whole    []struct {
		status int
		code   string
	}
}

var credentialRE = regexp.MustCompile(`Credential=([^/]+)/`)

func (f *fakeFirehose) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	if m := credentialRE.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		f.akids = append(f.akids, m[1])
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	switch strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "Firehose_20150804.") {
	case "DescribeDeliveryStream":
		_ = json.NewEncoder(w).Encode(map[string]any{"DeliveryStreamDescription": map[string]any{
			"DeliveryStreamName": "s", "DeliveryStreamStatus": "ACTIVE", "DeliveryStreamARN": "arn:aws:firehose:us-east-1:1:deliverystream/s",
			"DeliveryStreamType": "DirectPut", "VersionId": "1", "Destinations": []any{}, "HasMoreDestinations": false,
		}})
	case "PutRecordBatch":
		f.puts++
		if len(f.whole) > 0 {
			e := f.whole[0]
			f.whole = f.whole[1:]
			w.WriteHeader(e.status)
			_ = json.NewEncoder(w).Encode(map[string]any{"__type": e.code, "message": "fake " + e.code})
			return
		}
		var in struct {
			DeliveryStreamName string
			Records            []struct{ Data string }
		}
		if err := json.Unmarshal(body, &in); err != nil {
			w.WriteHeader(400)
			return
		}
		var resp []map[string]any
		failed := 0
		for i, rec := range in.Records {
			data, _ := base64.StdEncoding.DecodeString(rec.Data)
			if f.failCode != nil {
				if code := f.failCode(data); code != "" {
					failed++
					resp = append(resp, map[string]any{"ErrorCode": code, "ErrorMessage": "fake"})
					continue
				}
			}
			f.records = append(f.records, data)
			resp = append(resp, map[string]any{"RecordId": fmt.Sprint(i)})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"FailedPutCount": failed, "RequestResponses": resp})
	default:
		w.WriteHeader(400)
	}
}

func (f *fakeFirehose) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.records))
	for i, r := range f.records {
		out[i] = string(r)
	}
	return out
}

func newFake(t *testing.T) (*fakeFirehose, *httptest.Server) {
	f := &fakeFirehose{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func newTestOutput(t *testing.T, url string, mods ...func(*Config)) *Output {
	t.Helper()
	c := DefaultConfig()
	c.Stream, c.Region, c.Endpoint = "logs", "us-east-1", url
	for _, m := range mods {
		m(&c)
	}
	o, err := New("fh", c, Settings{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, o.Close(context.Background())) })
	return o
}

func TestSend_JoinsTheLinesOfEachBatchRecord(t *testing.T) {
	fake, srv := newFake(t)
	o := newTestOutput(t, srv.URL)
	b := batchtest.Build(t, 3, 0, batchtest.Records("a", "b", "c\n", "d", "e")...)
	require.Len(t, b.Records, 2)
	require.NoError(t, o.Send(t.Context(), b))
	require.Equal(t, []string{"a\nb\nc\n", "d\ne\n"}, fake.got())
	require.Equal(t, 5.0, testutil.ToFloat64(o.metrics.userRecords))
	require.Equal(t, 2.0, testutil.ToFloat64(o.metrics.records))
	fake.mu.Lock()
	require.Equal(t, []string{envAccessKey}, fake.akids)
	fake.mu.Unlock()
}

func TestSend_JoinedRecordsStayWithinTheRecordLimit(t *testing.T) {
	fake, srv := newFake(t)
	o := newTestOutput(t, srv.URL, func(c *Config) { c.MaxRecordSize = 10 })
	b := batchtest.Build(t, 10, 0, batchtest.Records("1234", "5678", "abc", "defghijk")...)
	require.NoError(t, o.Send(t.Context(), b))
	require.Equal(t, []string{"1234\n5678\n", "abc\n", "defghijk\n"}, fake.got())
}

func TestSend_OneRecordPerLineWithoutNewlines(t *testing.T) {
	fake, srv := newFake(t)
	o := newTestOutput(t, srv.URL, func(c *Config) { c.AggregateLines, c.AppendNewline = false, false })
	require.NoError(t, o.Send(t.Context(), batchtest.Build(t, 10, 0, batchtest.Records("a", "b", "c")...)))
	require.Equal(t, []string{"a", "b", "c"}, fake.got())
}

func TestSend_OnlyFailedRecordsAreReported(t *testing.T) {
	fake, srv := newFake(t)
	fake.failCode = func(data []byte) string {
		if strings.HasPrefix(string(data), "fail") {
			return "ServiceUnavailableException"
		}
		return ""
	}
	o := newTestOutput(t, srv.URL)
	b := batchtest.Build(t, 1, 0, batchtest.Records("ok0", "fail1", "ok2", "fail3")...)
	err := o.Send(t.Context(), b)
	var pe *outputs.PartialError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, []int{1, 3}, pe.Failed)
	require.Contains(t, pe.Reasons[0], "ServiceUnavailableException")
	var te *outputs.ThrottleError
	require.ErrorAs(t, err, &te)
	require.Equal(t, []string{"ok0\n", "ok2\n"}, fake.got())
	require.Equal(t, 2.0, testutil.ToFloat64(o.metrics.throttled))
}

func TestSend_WholeRequestErrorsAreClassified(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		want   string
	}{
		{400, "ResourceNotFoundException", "retry"},
		{400, "InvalidKMSResourceException", "retry"},
		{500, "InternalFailure", "retry"},
		{400, "ServiceUnavailableException", "throttle"},
		{400, "LimitExceededException", "throttle"},
		{400, "InvalidArgumentException", "permanent"},
	} {
		t.Run(tc.code, func(t *testing.T) {
			fake, srv := newFake(t)
			fake.whole = append(fake.whole, struct {
				status int
				code   string
			}{tc.status, tc.code})
			o := newTestOutput(t, srv.URL)
			recs := batchtest.Records("a", "b")
			if tc.want == "permanent" {
				recs = recs[:1] // refused alone (two would be split)
			}
			err := o.Send(t.Context(), batchtest.Build(t, 1, 0, recs...))
			require.ErrorContains(t, err, tc.code)
			var te *outputs.ThrottleError
			var pe *outputs.PartialError
			require.False(t, errors.As(err, &pe), "whole batch: not partial")
			switch tc.want {
			case "retry":
				require.False(t, outputs.IsPermanent(err))
				require.False(t, errors.As(err, &te))
			case "throttle":
				require.ErrorAs(t, err, &te)
			case "permanent":
				require.True(t, outputs.IsPermanent(err))
			}
			require.NoError(t, o.Send(t.Context(), batchtest.Build(t, 1, 0, batchtest.Records("a")...)))
		})
	}
}

func TestSend_RequestLimitsAndOversizedLines(t *testing.T) {
	fake, srv := newFake(t)
	o := newTestOutput(t, srv.URL, func(c *Config) { c.MaxRequestRecords = 2; c.MaxRecordSize = 8 })
	b := batchtest.Build(t, 1, 0, batchtest.Records("a", "b", "c", "far too long", "d")...)
	err := o.Send(t.Context(), b)
	var pe *outputs.PartialError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, []int{3}, pe.Failed)
	require.True(t, outputs.IsPermanent(pe.Err))
	require.Contains(t, pe.Reasons[0], "max_record_bytes")
	require.Equal(t, []string{"a\n", "b\n", "c\n", "d\n"}, fake.got())
	fake.mu.Lock()
	require.Equal(t, 2, fake.puts)
	fake.mu.Unlock()
}

func TestHealthcheck(t *testing.T) {
	_, srv := newFake(t)
	o := newTestOutput(t, srv.URL)
	require.NoError(t, o.Healthcheck(t.Context()))
	srv.Close()
	require.Error(t, o.Healthcheck(t.Context()))
}

// The AWS settings are checked as the Kinesis output checks them (one
// check, in awsconf): a region or a role session name AWS refuses is a
// config error, not a failure at the first request.
func TestConfig_AWSSettingsAsKinesis(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"region":            func(c *Config) { c.Region = "US East" },
		"role_session_name": func(c *Config) { c.RoleARN, c.RoleSessionName = "arn:aws:iam::123456789012:role/w", "x" },
	} {
		t.Run(name, func(t *testing.T) {
			c := DefaultConfig()
			c.Stream = "logs"
			mod(&c)
			require.ErrorContains(t, c.Validate(), name+":")
		})
	}
}

func TestConfig(t *testing.T) {
	c := DefaultConfig()
	require.ErrorContains(t, c.Validate(), "stream: required")
	c.Stream = "logs"
	require.NoError(t, c.Validate())
	require.Equal(t, MaxRecordBytes-1, c.MaxRecordBytes())
	c.MaxRecordSize = MaxRecordBytes + 1
	c.MaxRequestBytes = 5 << 20
	c.ExternalID = "secret-id"
	err := c.Validate()
	require.ErrorContains(t, err, "max_record_bytes:")
	require.ErrorContains(t, err, "max_request_bytes:")
	require.ErrorContains(t, err, "external_id: set without role_arn")
	require.NotContains(t, err.Error(), "secret-id")

	u, _ := url.Parse("firehose://logs?region=eu-west-1&aggregate_lines=false&endpoint=http://127.0.0.1:1")
	got, err := FromURL(u)
	require.NoError(t, err)
	want := DefaultConfig()
	want.Stream, want.Region, want.AggregateLines, want.Endpoint = "logs", "eu-west-1", false, "http://127.0.0.1:1"
	require.Equal(t, want, got)
	u, _ = url.Parse("firehose://logs?region=eu-west-1&endpoint=https://vpce.example&profile=p&role_arn=arn:aws:iam::1:role/r" +
		"&external_id=e&role_session_name=sess&sts_endpoint=https://sts.example")
	got, err = FromURL(u)
	require.NoError(t, err)
	want = DefaultConfig()
	want.Stream = "logs"
	want.Config = awsconf.Config{Region: "eu-west-1", Endpoint: "https://vpce.example", Profile: "p", RoleARN: "arn:aws:iam::1:role/r",
		ExternalID: "e", RoleSessionName: "sess", STSEndpoint: "https://sts.example"}
	require.Equal(t, want, got, "every AWS setting is a URL parameter")
	u, _ = url.Parse("firehose://logs?sts_endpoint=https://sts.example")
	_, err = FromURL(u)
	require.ErrorContains(t, err, "sts_endpoint: set without role_arn")
	u, _ = url.Parse("firehose://logs?colour=red")
	_, err = FromURL(u)
	require.ErrorContains(t, err, "colour: not a setting of firehose:// (it takes region, endpoint, profile, role_arn, external_id, role_session_name, sts_endpoint, aggregate_lines, append_newline)")
	u, _ = url.Parse("firehose://?region=x")
	_, err = FromURL(u)
	require.ErrorContains(t, err, "stream: required")
}

// A user record over max_record_bytes is rejected alone: the user records
// aggregated with it are delivered.
func TestSend_OversizedUserRecordIsRejectedAlone(t *testing.T) {
	fake, srv := newFake(t)
	o := newTestOutput(t, srv.URL, func(c *Config) { c.MaxRecordSize = 8 })
	long := strings.Repeat("x", 20)
	b := batchtest.Build(t, 10, 0, batchtest.Records("a", long, "b")...)
	require.Len(t, b.Records, 1)
	err := o.Send(t.Context(), b)
	var re *outputs.RejectedRecordsError
	require.ErrorAs(t, err, &re, "got %v", err)
	require.NoError(t, re.Err, "the rest of the aggregate is delivered")
	require.Len(t, re.Rejected, 1)
	require.Equal(t, 0, re.Rejected[0].Record)
	require.Equal(t, 1, re.Rejected[0].UserRecord)
	require.Contains(t, re.Rejected[0].Reason, "max_record_bytes 8")
	require.Contains(t, re.Rejected[0].Reason, "21 bytes")
	require.Equal(t, "a\nb\n", strings.Join(fake.got(), ""))
	require.Equal(t, 2.0, testutil.ToFloat64(o.metrics.userRecords))
}

// newFakeAWS serves internal/fakeaws's Firehose, refusing whole requests
// as reject says, and returns it with its URL.
func newFakeAWS(t *testing.T, reject func(records [][]byte) string) (*fakeaws.Firehose, string) {
	f := &fakeaws.Firehose{}
	f.RejectRequests(reject)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func strs(recs [][]byte) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r)
	}
	return out
}

// A request refused whole as invalid is split in halves: only the records
// refused alone are rejected, the others delivered.
func TestSend_InvalidRequestIsSplit(t *testing.T) {
	t.Run("too large", func(t *testing.T) {
		fake, url := newFakeAWS(t, func(recs [][]byte) string {
			n := 0
			for _, r := range recs {
				n += len(r)
			}
			if n > 8 {
				return "InvalidArgumentException"
			}
			return ""
		})
		o := newTestOutput(t, url)
		b := batchtest.Build(t, 1, 0, batchtest.Records("a", "b", "c", "d", "e", "f", "g")...)
		require.NoError(t, o.Send(t.Context(), b))
		got := strs(fake.Records())
		require.Equal(t, []string{"a\n", "b\n", "c\n", "d\n", "e\n", "f\n", "g\n"}, got, "all delivered, in order")
		require.Equal(t, 1.0, testutil.ToFloat64(o.metrics.splits.WithLabelValues("InvalidArgumentException")), "7 records split in 4+3, each fits")
	})
	t.Run("marker record", func(t *testing.T) {
		fake, url := newFakeAWS(t, func(recs [][]byte) string {
			for _, r := range recs {
				if strings.Contains(string(r), "BAD") {
					return "ValidationException"
				}
			}
			return ""
		})
		o := newTestOutput(t, url, func(c *Config) { c.MaxRecordSize = 8 })
		// Batch record 0: "a\nb\n" and "BAD1\n" (the record limit
		// splits the aggregate); batch records 1, 2: plain.
		b := outputs.Batch{Records: append(batchtest.Build(t, 10, 0, batchtest.Records("a", "b", "BAD1")...).Records,
			batchtest.Build(t, 1, 0, batchtest.Records("c", "BAD2")...).Records...)}
		require.Len(t, b.Records, 3)
		err := o.Send(t.Context(), b)
		var re *outputs.RejectedRecordsError
		require.ErrorAs(t, err, &re, "got %v", err)
		require.Len(t, re.Rejected, 1)
		require.Equal(t, outputs.RejectedRecord{Record: 0, UserRecord: 2, Reason: re.Rejected[0].Reason}, re.Rejected[0])
		require.Contains(t, re.Rejected[0].Reason, "ValidationException")
		var pe *outputs.PartialError
		require.ErrorAs(t, re.Err, &pe, "batch record 2, refused whole, is dead-lettered whole")
		require.Equal(t, []int{2}, pe.Failed)
		require.True(t, outputs.IsPermanent(pe.Err))
		require.Contains(t, pe.Reasons[0], "ValidationException")
		require.ElementsMatch(t, []string{"a\nb\n", "c\n"}, strs(fake.Records()))
	})
	t.Run("joined lines", func(t *testing.T) {
		fake, url := newFakeAWS(t, func(recs [][]byte) string {
			for _, r := range recs {
				if strings.Contains(string(r), "BAD") {
					return "InvalidArgumentException"
				}
			}
			return ""
		})
		o := newTestOutput(t, url)
		b := batchtest.Build(t, 10, 0, batchtest.Records("a", "BAD", "b", "c", "d")...)
		require.Len(t, b.Records, 1)
		err := o.Send(t.Context(), b)
		var re *outputs.RejectedRecordsError
		require.ErrorAs(t, err, &re, "got %v", err)
		require.NoError(t, re.Err)
		require.Len(t, re.Rejected, 1)
		require.Equal(t, 1, re.Rejected[0].UserRecord, "the line refused alone")
		require.Equal(t, []string{"a\n", "b\nc\nd\n"}, strs(fake.Records()))
		require.Equal(t, 4.0, testutil.ToFloat64(o.metrics.userRecords))
	})
	t.Run("splits are bounded", func(t *testing.T) {
		fake, url := newFakeAWS(t, func([][]byte) string { return "InvalidArgumentException" })
		o := newTestOutput(t, url)
		recs := make([]string, 400)
		for i := range recs {
			recs[i] = fmt.Sprint(i)
		}
		b := batchtest.Build(t, 1, 0, batchtest.Records(recs...)...)
		err := o.Send(t.Context(), b)
		require.True(t, outputs.IsPermanent(err), "every record refused: the batch is: %v", err)
		var pe *outputs.PartialError
		require.False(t, errors.As(err, &pe), "the whole batch")
		require.Equal(t, 1+2*maxSplits, fake.Calls(), "one request, then two per split")
		require.Empty(t, fake.Records())
	})
}
