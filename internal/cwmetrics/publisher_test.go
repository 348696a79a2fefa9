package cwmetrics

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/internal/fakeaws"
)

// pipeline is a registry holding a few of the agent's metrics, as
// agent/metrics.go names them.
type pipeline struct {
	reg       *prometheus.Registry
	sent      *prometheus.CounterVec
	sends     *prometheus.CounterVec
	retries   *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	spool     *prometheus.GaugeVec
	bytesSent *prometheus.CounterVec
}

func newPipeline() *pipeline {
	p := &pipeline{reg: prometheus.NewRegistry()}
	p.sent = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_output_records_sent_total"}, []string{"output"})
	p.bytesSent = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_output_bytes_sent_total"}, []string{"output"})
	p.sends = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_output_sends_total"}, []string{"output", "result"})
	p.retries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_output_retries_total"}, []string{"output", "class"})
	p.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_records_dropped_total"}, []string{"flow", "reason"})
	p.spool = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "agent_spool_bytes"}, []string{"flow"})
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "agent_not_published_total"})
	other.Add(7)
	p.reg.MustRegister(p.sent, p.bytesSent, p.sends, p.retries, p.dropped, p.spool, other)
	return p
}

// newTest starts a fake CloudWatch and a publisher on reg with cfg's
// changes; the publisher's log goes to logs.
func newTest(t *testing.T, reg *prometheus.Registry, logs *syncBuffer, mods ...func(*Config)) (*Publisher, *fakeaws.CloudWatch) {
	t.Helper()
	fake := &fakeaws.CloudWatch{}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	cfg := DefaultConfig()
	cfg.Region = "us-east-1"
	cfg.Endpoint = srv.URL
	cfg.Namespace = "Test/Agent"
	cfg.Dimensions = map[string]string{"Host": "web-1", "Env": "prod"}
	for _, m := range mods {
		m(&cfg)
	}
	if logs == nil {
		logs = &syncBuffer{}
	}
	p, err := New(cfg, Settings{Gatherer: reg, Registerer: reg, Logger: slog.New(slog.NewTextHandler(logs, nil)), UserAgent: "agent/test"})
	require.NoError(t, err)
	t.Cleanup(func() { p.tr.CloseIdleConnections() })
	return p, fake
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestPublish_SendsCatalogMetricsAsIncreasesAndValues(t *testing.T) {
	pl := newPipeline()
	pub, fake := newTest(t, pl.reg, nil)
	pl.sent.WithLabelValues("kinesis-main").Add(10)
	pl.bytesSent.WithLabelValues("kinesis-main").Add(1600)
	pl.sends.WithLabelValues("kinesis-main", "ok").Add(3)
	pl.sends.WithLabelValues("kinesis-main", "error").Add(2)
	pl.sends.WithLabelValues("kinesis-main", "partial").Add(1)
	pl.retries.WithLabelValues("kinesis-main", "throttle").Add(4)
	pl.retries.WithLabelValues("kinesis-main", "error").Add(1)
	pl.dropped.WithLabelValues("app", "spool_full").Add(6)
	pl.spool.WithLabelValues("app").Set(4096)

	pub.Publish(t.Context())
	reqs := fake.Requests()
	require.Len(t, reqs, 1)
	require.Equal(t, "Test/Agent", reqs[0].Namespace)
	out := map[string]string{"Output": "kinesis-main"}
	flow := map[string]string{"Flow": "app"}
	for _, c := range []struct {
		name string
		dims map[string]string
		unit string
		want float64
	}{
		{"RecordsSent", out, "Count", 10},
		{"BytesSent", out, "Bytes", 1600},
		{"SendRequests", out, "Count", 6},
		{"SendErrors", out, "Count", 3},
		{"Retries", out, "Count", 5},
		{"Throttles", out, "Count", 4},
		{"RecordsDropped", map[string]string{"Flow": "app", "Reason": "spool_full"}, "Count", 6},
		{"SpoolBytes", flow, "Bytes", 4096},
	} {
		d, ok := fake.Latest(c.name, c.dims)
		require.True(t, ok, c.name)
		require.Equal(t, c.want, d.Value, c.name)
		require.Equal(t, c.unit, d.Unit, c.name)
		require.Equal(t, "web-1", d.Dimensions["Host"], c.name)
		require.Equal(t, "prod", d.Dimensions["Env"], c.name)
		require.Len(t, d.Dimensions, len(c.dims)+2, c.name)
		require.WithinDuration(t, time.Now(), d.Timestamp, time.Minute, c.name)
	}
	// The agent's own dimension first, then the user's, sorted.
	d, _ := fake.Latest("RecordsDropped", nil)
	require.Equal(t, []string{"Flow", "Reason", "Env", "Host"}, d.DimensionOrder)
	for _, d := range reqs[0].Data {
		require.NotContains(t, d.Name, "NotPublished")
	}

	// Counters go as their increase since the last publish, gauges as
	// their value.
	pl.sent.WithLabelValues("kinesis-main").Add(5)
	pl.spool.WithLabelValues("app").Set(1024)
	pub.Publish(t.Context())
	require.Len(t, fake.Requests(), 2)
	d, _ = fake.Latest("RecordsSent", out)
	require.Equal(t, 5.0, d.Value)
	d, _ = fake.Latest("SendErrors", out)
	require.Equal(t, 0.0, d.Value, "no new error: zero, so that alarms see data")
	d, _ = fake.Latest("SpoolBytes", flow)
	require.Equal(t, 1024.0, d.Value)
	require.Equal(t, 15.0, fake.Sum("RecordsSent", out))
	require.Equal(t, 2.0, testutil.ToFloat64(pub.requests.WithLabelValues("ok")))
}

func TestPublish_FailingEndpointIsCountedLoggedOnceAndCarriedOver(t *testing.T) {
	pl := newPipeline()
	logs := &syncBuffer{}
	pub, fake := newTest(t, pl.reg, logs)
	fake.Fail(true)
	out := map[string]string{"Output": "o"}
	pl.sent.WithLabelValues("o").Add(10)
	pub.Publish(t.Context())
	pl.sent.WithLabelValues("o").Add(3)
	pub.Publish(t.Context())
	require.Equal(t, 2, fake.Calls())
	require.Equal(t, 2.0, testutil.ToFloat64(pub.requests.WithLabelValues("error")))
	require.Positive(t, testutil.ToFloat64(pub.dataPoints.WithLabelValues("failed")))
	require.Equal(t, 1, strings.Count(logs.String(), "publishing metrics to CloudWatch failed"), logs.String())
	require.Contains(t, logs.String(), "InternalServiceFault")
	require.NotContains(t, logs.String(), "secret-cwmetrics-test")

	fake.Fail(false)
	pub.Publish(t.Context())
	d, ok := fake.Latest("RecordsSent", out)
	require.True(t, ok)
	require.Equal(t, 13.0, d.Value, "what failed went with the next publish")
	require.Contains(t, logs.String(), "works again")
}

func TestPublish_SplitsRequestsAtPutMetricDataLimits(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "agent_spool_entries"}, []string{"flow"})
	reg.MustRegister(g)
	const flows = 2300
	for i := range flows {
		g.WithLabelValues(fmt.Sprintf("flow-%04d", i)).Set(float64(i))
	}
	pub, fake := newTest(t, reg, nil)
	pub.Publish(t.Context())
	reqs := fake.Requests()
	require.Len(t, reqs, 3)
	require.Len(t, reqs[0].Data, 1000)
	require.Len(t, reqs[1].Data, 1000)
	require.Len(t, reqs[2].Data, 300)
	require.True(t, reqs[0].Gzipped, "the SDK compresses large requests")
	require.Equal(t, float64(flows*(flows-1)/2), fake.Sum("SpoolEntries", nil))

	// Long dimension values: the 1 MB limit cuts first.
	reg2 := prometheus.NewRegistry()
	g2 := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "agent_spool_entries"}, []string{"flow"})
	reg2.MustRegister(g2)
	for i := range 900 {
		g2.WithLabelValues(fmt.Sprintf("%04d-%s", i, strings.Repeat("x", 1000))).Set(1)
	}
	pub2, fake2 := newTest(t, reg2, nil, func(c *Config) {
		c.Dimensions = map[string]string{"Long": strings.Repeat("y", 1000)}
	})
	pub2.Publish(t.Context())
	reqs = fake2.Requests()
	require.Greater(t, len(reqs), 1)
	n := 0
	for _, r := range reqs {
		require.Less(t, len(r.Data), 900)
		n += len(r.Data)
	}
	require.Equal(t, 900, n)
}

func TestStop_PublishesTheLastIncrease(t *testing.T) {
	pl := newPipeline()
	pub, fake := newTest(t, pl.reg, nil, func(c *Config) { c.Interval = time.Hour })
	pub.Start()
	pl.sent.WithLabelValues("o").Add(42)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	pub.Stop(ctx)
	d, ok := fake.Latest("RecordsSent", map[string]string{"Output": "o"})
	require.True(t, ok)
	require.Equal(t, 42.0, d.Value)
}

func TestStop_KeepsItsDeadlineWhenCloudWatchHangs(t *testing.T) {
	pl := newPipeline()
	pub, fake := newTest(t, pl.reg, nil, func(c *Config) { c.Interval = time.Second })
	fake.Block()
	defer fake.Unblock()
	pl.sent.WithLabelValues("o").Add(1)
	pub.Start()
	require.Eventually(t, func() bool { return fake.Calls() > 0 }, 20*time.Second, 10*time.Millisecond, "a publish in flight")
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	pub.Stop(ctx)
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestStart_PublishesEveryInterval(t *testing.T) {
	pl := newPipeline()
	pub, fake := newTest(t, pl.reg, nil, func(c *Config) { c.Interval = time.Second })
	pub.Start()
	defer pub.Stop(t.Context())
	pl.sent.WithLabelValues("o").Add(1)
	require.Eventually(t, func() bool { return len(fake.Requests()) >= 2 }, 30*time.Second, 20*time.Millisecond)
}

func TestConfig_Validate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"defaults", func(*Config) {}, ""},
		{"no namespace", func(c *Config) { c.Namespace = "" }, "namespace: required"},
		{"AWS namespace", func(c *Config) { c.Namespace = "AWS/Kinesis" }, "namespace: \"AWS/Kinesis\": names starting with AWS/ are reserved"},
		{"short interval", func(c *Config) { c.Interval = 10 * time.Millisecond }, "interval: must be at least 1s"},
		{"no timeout", func(c *Config) { c.Timeout = 0 }, "timeout: must be positive"},
		{"reserved dimension", func(c *Config) { c.Dimensions = map[string]string{"Output": "x"} }, "dimensions: \"Output\": the agent sets this dimension itself"},
		{"empty value", func(c *Config) { c.Dimensions = map[string]string{"Host": ""} }, "dimensions: \"Host\": the value must be 1 to 1024 characters"},
		{"too many dimensions", func(c *Config) {
			c.Dimensions = map[string]string{}
			for i := range 29 {
				c.Dimensions[fmt.Sprintf("D%d", i)] = "v"
			}
		}, "dimensions: 29, at most 28"},
		{"bad endpoint", func(c *Config) { c.Endpoint = "ftp://x" }, "endpoint: scheme \"ftp\" not supported"},
		{"external id without role", func(c *Config) { c.ExternalID = "s3cr3t" }, "external_id: set without role_arn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "s3cr3t")
		})
	}
}
