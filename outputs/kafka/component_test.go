package kafka

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/outputs"
)

func TestType_FromURLMapsTheURLAndTheTLSFlags(t *testing.T) {
	ty := Type()
	require.Equal(t, "kafka", ty.Name)
	require.Equal(t, []string{"kafka"}, ty.Schemes)

	u, err := url.Parse("kafka://k1:9092,k2:9093/logs?compression=zstd&linger=20ms")
	require.NoError(t, err)
	cfg, err := ty.FromURL(u, outputs.TailFlags{Format: "ndjson", Gzip: true, Timeout: time.Second})
	require.NoError(t, err)
	c := cfg.(*Config)
	want := DefaultConfig()
	want.Brokers, want.Topic = []string{"k1:9092", "k2:9093"}, "logs"
	want.Compression, want.Linger = CompressionZstd, 20*time.Millisecond
	require.Equal(t, &want, c, "the HTTP flags do not apply")

	cfg, err = ty.FromURL(u, outputs.TailFlags{CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem"})
	require.NoError(t, err)
	c = cfg.(*Config)
	require.Equal(t, TLSConfig{Enabled: true, CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem"}, c.TLS)

	_, err = ty.FromURL(u, outputs.TailFlags{CertFile: "c.pem"})
	require.ErrorContains(t, err, "tls: cert_file and key_file go together")

	u, _ = url.Parse("kafka://k1:9092/")
	_, err = ty.FromURL(u, outputs.TailFlags{})
	require.ErrorContains(t, err, "topic: required")
	u, _ = url.Parse("kafka://k1:9092/logs?lingr=1s")
	_, err = ty.FromURL(u, outputs.TailFlags{})
	require.ErrorContains(t, err, `"lingr" is not a setting of kafka:// (it takes client_id, key, format, acks, idempotent, client_metrics, compression, topic_field, linger,`)
	_, err = ty.FromURL(nil, outputs.TailFlags{})
	require.Error(t, err)
}

func TestConfig_ResolvePathsAndCheckFiles(t *testing.T) {
	c := DefaultConfig()
	c.TLS = TLSConfig{Enabled: true, CAFile: "ca.pem", CertFile: "/abs/c.pem", KeyFile: "k.pem"}
	c.ResolvePaths("/etc/agent")
	require.Equal(t, TLSConfig{Enabled: true, CAFile: "/etc/agent/ca.pem", CertFile: "/abs/c.pem", KeyFile: "/etc/agent/k.pem"}, c.TLS)

	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))
	c.TLS = TLSConfig{Enabled: true, CAFile: notPEM}
	require.ErrorContains(t, c.CheckFiles(), "tls.ca_file: no PEM certificate found")
	c.TLS = TLSConfig{Enabled: true, CertFile: filepath.Join(dir, "missing.pem"), KeyFile: notPEM}
	require.ErrorContains(t, c.CheckFiles(), "tls.cert_file")
	c.TLS = TLSConfig{}
	require.NoError(t, c.CheckFiles())
}

// The agent hands New a registerer that adds output=<name>: the metrics
// carry it once, next to topic.
func TestType_NewUsesTheAgentsLabelledRegisterer(t *testing.T) {
	c := startCluster(t, 1)
	reg := prometheus.NewPedanticRegistry()
	cfg := testConfig(c)
	o, err := Type().New("k1", &cfg, outputs.Settings{Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"output": "k1"}, reg)})
	require.NoError(t, err)
	defer func() { require.NoError(t, o.Close(t.Context())) }()
	deliver(t, o.(*Output), lineBatches(t, 0, 10, 10, 1)[0], time.Now().Add(30*time.Second))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP agent_kafka_records_produced_total Kafka records acknowledged by the brokers.
# TYPE agent_kafka_records_produced_total counter
agent_kafka_records_produced_total{output="k1",topic="logs"} 10
`), "agent_kafka_records_produced_total"))

	_, err = Type().New("k2", &struct{}{}, outputs.Settings{})
	require.ErrorContains(t, err, "want *kafka.Config")
}
