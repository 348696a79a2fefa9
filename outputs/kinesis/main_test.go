package kinesis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/fakeaws"
	"github.com/kplagent/agent/outputs"
)

// envAccessKey is the access key the tests' default credential chain finds
// (in the environment, set by TestMain).
const envAccessKey = "AKIDFROMENVIRONMENT"

func TestMain(m *testing.M) {
	// A known default credential chain: environment credentials, no shared
	// files, no IMDS, no container or web identity credentials.
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_STS"} {
		os.Unsetenv(k)
	}
	none := filepath.Join(os.TempDir(), "kinesis-test-no-such-dir")
	os.Setenv("AWS_ACCESS_KEY_ID", envAccessKey)
	os.Setenv("AWS_SECRET_ACCESS_KEY", "secret-from-environment")
	os.Setenv("AWS_CONFIG_FILE", filepath.Join(none, "config"))
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(none, "credentials"))
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	goleak.VerifyTestMain(m)
}

// testConfig is a config for the fake at url.
func testConfig(url string, mods ...func(*Config)) Config {
	c := DefaultConfig()
	c.Stream = "test-stream"
	c.Region = "us-east-1"
	c.Endpoint = url
	for _, m := range mods {
		m(&c)
	}
	return c
}

// withProtocol sets Config.Protocol.
func withProtocol(p string) func(*Config) { return func(c *Config) { c.Protocol = p } }

// requireProtocol asserts that fake's PutRecords requests were all in p.
func requireProtocol(t *testing.T, fake *fakeaws.Kinesis, p string) {
	t.Helper()
	st := fake.Stats()
	require.Positive(t, st.PutRecords)
	if p == ProtocolCBOR {
		require.Equal(t, st.PutRecords, st.CBORRequests, "PutRecords requests in CBOR")
	} else {
		require.Zero(t, st.CBORRequests, "PutRecords requests in CBOR")
	}
}

// newTestOutput builds an output on cfg whose clock and pacing sleeps are
// clock's (time moves only when the output paces); closed at cleanup.
func newTestOutput(t testing.TB, cfg Config, clock *fakeClock) *Output {
	t.Helper()
	o, err := New("test", cfg, Settings{})
	require.NoError(t, err)
	if clock != nil {
		o.now = clock.Now
		o.sleep = func(ctx context.Context, d time.Duration) error {
			clock.Advance(d)
			return ctx.Err()
		}
	}
	t.Cleanup(func() { require.NoError(t, o.Close(context.Background())) })
	return o
}

// build packs recs with a Builder on m, like a flow, into a batch.
func build(t testing.TB, m *aggregate.ShardMap, recs []aggregate.Record) outputs.Batch {
	t.Helper()
	b, err := aggregate.NewBuilder(aggregate.Config{}, m)
	require.NoError(t, err)
	var batch outputs.Batch
	emit := func(_ int, a *aggregate.Aggregate) error {
		c := *a
		c.Body = append([]byte(nil), a.Body...)
		batch.Records = append(batch.Records, c)
		return nil
	}
	now := time.Unix(0, 0)
	for _, r := range recs {
		_, err := b.Add(r, now, emit)
		require.NoError(t, err)
	}
	require.NoError(t, b.FlushAll(emit))
	return batch
}

// lines makes n user records "<prefix> <i>" with random partition keys
// (from a set of keys) and, for one in ten, a random explicit hash key.
func lines(r *rand.Rand, prefix string, n, keys int) []aggregate.Record {
	recs := make([]aggregate.Record, n)
	for i := range recs {
		recs[i] = aggregate.Record{Data: fmt.Appendf(nil, "%s %d", prefix, i), PartitionKey: fmt.Sprintf("key-%d", r.IntN(keys))}
		if i%10 == 3 {
			recs[i].ExplicitHashKey = aggregate.HashKey{Hi: r.Uint64(), Lo: r.Uint64()}.String()
		}
	}
	return recs
}

func dataOf(recs []aggregate.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Data)
	}
	return out
}

// plainBatch makes plain records, record i with partition key "pk<i>".
func plainBatch(data ...string) outputs.Batch {
	b := outputs.Batch{Records: make([]aggregate.Aggregate, len(data))}
	for i, d := range data {
		b.Records[i] = aggregate.Aggregate{PartitionKey: fmt.Sprintf("pk%d", i), Body: []byte(d), Count: 1}
	}
	return b
}

// requireRetryable asserts err is retryable: not permanent, not a throttle,
// not partial.
func requireRetryable(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	require.False(t, outputs.IsPermanent(err), "permanent: %v", err)
	var te *outputs.ThrottleError
	require.False(t, errors.As(err, &te), "throttle: %v", err)
	var pe *outputs.PartialError
	require.False(t, errors.As(err, &pe), "partial: %v", err)
}

// AGENT_TEST_SEED replays a logged seed.
func testSeed(t testing.TB) uint64 {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("AGENT_TEST_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("AGENT_TEST_SEED: %v", err)
		}
		seed = n
	}
	t.Logf("seed %d (AGENT_TEST_SEED replays it)", seed)
	return seed
}

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}
