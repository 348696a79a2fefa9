package kinesis

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/internal/fakeaws"
)

// A stream not found is logged once per episode, saying where the records
// wait. It said "records wait in the spool" also while a flow waited for
// its first shard map (ShardMap), when the records wait unread in their
// sources and the spool holds none of them.
func TestStreamNotFound_TheWarningSaysWhereTheRecordsWait(t *testing.T) {
	const spooled, unread, unknown = "records wait in the spool", "records wait unread in their sources", "nothing can be sent until it exists"
	for _, tc := range []struct {
		name string
		call func(t *testing.T, o *Output, fake *fakeaws.Kinesis)
		want string
	}{
		{name: "a flow waits for its first shard map", want: unread, call: func(t *testing.T, o *Output, _ *fakeaws.Kinesis) {
			for range 3 {
				_, err := o.ShardMap(t.Context())
				require.ErrorContains(t, err, "ResourceNotFoundException")
			}
		}},
		{name: "a send fetches the first shard map", want: spooled, call: func(t *testing.T, o *Output, _ *fakeaws.Kinesis) {
			for range 3 {
				requireRetryable(t, o.Send(t.Context(), plainBatch("a")))
			}
		}},
		{name: "a send with a shard map", want: spooled, call: func(t *testing.T, o *Output, fake *fakeaws.Kinesis) {
			fake.SetStreamMissing(false)
			_, err := o.ShardMap(t.Context())
			require.NoError(t, err)
			fake.SetStreamMissing(true)
			for range 3 {
				requireRetryable(t, o.Send(t.Context(), plainBatch("a")))
			}
		}},
		{name: "a health check", want: unknown, call: func(t *testing.T, o *Output, _ *fakeaws.Kinesis) {
			require.ErrorContains(t, o.Healthcheck(t.Context()), "ResourceNotFoundException")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, srv := newFakeKinesis(t, 1)
			fake.SetStreamMissing(true)
			var logs strings.Builder
			clock := newFakeClock()
			o := newTestOutput(t, testConfig(srv.URL), clock)
			o.log = newTextLogger(&logs)
			tc.call(t, o, fake)
			out := logs.String()
			require.Equal(t, 1, strings.Count(out, "stream not found"), "one warning per episode: %s", out)
			require.Contains(t, out, tc.want)
			for _, other := range []string{spooled, unread, unknown} {
				if other != tc.want {
					require.NotContains(t, out, other)
				}
			}
		})
	}

	// One warning per episode whichever call saw it: a flow waiting for
	// its map while the sender sends a spooled backlog.
	fake, srv := newFakeKinesis(t, 1)
	fake.SetStreamMissing(true)
	var logs strings.Builder
	clock := newFakeClock()
	o := newTestOutput(t, testConfig(srv.URL), clock)
	o.log = newTextLogger(&logs)
	_, err := o.ShardMap(t.Context())
	require.Error(t, err)
	requireRetryable(t, o.Send(t.Context(), plainBatch("a")))
	require.Equal(t, 1, strings.Count(logs.String(), "stream not found"), logs.String())
	clock.Advance(warnInterval + time.Second)
	requireRetryable(t, o.Send(t.Context(), plainBatch("a")))
	require.Equal(t, 2, strings.Count(logs.String(), "stream not found"), "the next after warnInterval: %s", logs.String())
	require.Contains(t, logs.String(), spooled)
}
