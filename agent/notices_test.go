package agent

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/internal/units"
)

// keyConfig is a config with one flow whose output block and partition key
// are the test's.
func keyConfig(output, key, failover string) string {
	outs := "  - name: out\n" + output + "\n"
	fo := ""
	if failover != "" {
		outs += "  - name: fo\n" + failover + "\n"
		fo = "    failover: fo\n"
	}
	k := ""
	if key != "" {
		k = "    partition_key: " + key + "\n"
	}
	return `state_dir: /tmp/agent-state
sources:
  - name: app
    type: file
    file: {include: [/var/log/app.log], max_record_bytes: 512KiB}
outputs:
` + outs + `flows:
  - name: main
    sources: [app]
    output: out
` + fo + k
}

func TestConfig_PartitionKeyOnAKeylessOutputIsAWarning(t *testing.T) {
	const (
		ndjson    = "    type: http\n    http: {url: http://127.0.0.1:9/x}"
		jsonFmt   = "    type: http\n    http: {url: http://127.0.0.1:9/x, format: json}"
		raw       = "    type: http\n    http: {url: http://127.0.0.1:9/x, format: raw}"
		stdout    = "    type: stdout"
		stdoutKPL = "    type: stdout\n    stdout: {format: kpl-json}"
		blackhole = "    type: blackhole"
		firehose  = "    type: firehose\n    firehose: {stream: s, region: eu-west-1}"
		kinesis   = "    type: kinesis\n    kinesis: {stream: s, region: eu-west-1}"
		kafkaNone = "    type: kafka\n    kafka: {brokers: [\"k:9092\"], topic: t, key: none}"
		kafka     = "    type: kafka\n    kafka: {brokers: [\"k:9092\"], topic: t}"
	)
	const at = "flows[0].partition_key: warning: "
	for _, tc := range []struct {
		name, output, key, failover string
		want                        []string
	}{
		{"http ndjson", ndjson, "{field: user}", "", []string{at + `flow "main" sets partition_key {field: user}, but its output "out" (http, format ndjson) sends no partition key: the key is ignored there (remove it, or use an output or format that sends it)`}},
		{"http json", jsonFmt, "deterministic", "", []string{at + `flow "main" sets partition_key deterministic, but its output "out" (http, format json) sends no partition key: the key is ignored there (remove it, or use an output or format that sends it)`}},
		{"stdout", stdout, "hostname", "", []string{at + `flow "main" sets partition_key hostname, but its output "out" (stdout, format ndjson) sends no partition key: the key is ignored there (remove it, or use an output or format that sends it)`}},
		{"blackhole", blackhole, "{fixed: k}", "", []string{at + `flow "main" sets partition_key {fixed: "k"}, but its output "out" (blackhole) sends no partition key: the key is ignored there (remove it, or use an output or format that sends it)`}},
		{"firehose", firehose, `{regex: 'u=(\w+)'}`, "", []string{at + `flow "main" sets partition_key {regex: "u=(\\w+)"}, but its output "out" (firehose) sends no partition key: the key is ignored there (remove it, or use an output or format that sends it)`}},
		{"kafka key none", kafkaNone, "hostname", "", []string{at + `flow "main" sets partition_key hostname, but its output "out" (kafka, key none) sends no partition key: the key is ignored there (remove it, or use an output or format that sends it)`}},
		{"keyless failover", kinesis, "hostname", stdout, []string{at + `flow "main" sets partition_key hostname, but its failover output "fo" (stdout, format ndjson) sends no partition key: the key is ignored there (remove it, or use an output or format that sends it)`}},
		{"kinesis", kinesis, "hostname", "", nil},
		{"stdout kpl-json writes the key", stdoutKPL, "hostname", "", nil},
		{"kafka", kafka, "{field: user}", "", nil},
		{"http raw", raw, "{field: user}", "", nil},
		{"random is the default", ndjson, "random", "", nil},
		{"not set", ndjson, "", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("a.yaml", []byte(keyConfig(tc.output, tc.key, tc.failover)), noEnv, testComponents)
			require.NoError(t, err, "a warning, not an error: the config loads")
			var got []string
			for _, n := range cfg.Notices() {
				require.Equal(t, slog.LevelWarn, n.Level)
				require.Equal(t, strings.Count(keyConfig(tc.output, tc.key, tc.failover), "\n"), n.Line, "the line of partition_key (the last)")
				got = append(got, strings.TrimPrefix(n.String(), fmt.Sprintf("a.yaml:%d: ", n.Line)))
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func TestConfig_ExplicitHashKeyOnAnOutputWithoutItIsAWarning(t *testing.T) {
	const (
		ndjson    = "    type: http\n    http: {url: http://127.0.0.1:9/x}"
		kafkaREST = "    type: http\n    http: {url: http://127.0.0.1:9/x, format: kafka-rest-v2}"
		raw       = "    type: http\n    http: {url: http://127.0.0.1:9/x, format: raw}"
		packed    = "    type: http\n    http: {url: http://127.0.0.1:9/x, format: raw-packed}"
		stdout    = "    type: stdout"
		stdoutKPL = "    type: stdout\n    stdout: {format: kpl-json}"
		blackhole = "    type: blackhole"
		firehose  = "    type: firehose\n    firehose: {stream: s, region: eu-west-1}"
		kinesis   = "    type: kinesis\n    kinesis: {stream: s, region: eu-west-1}"
		kafka     = "    type: kafka\n    kafka: {brokers: [\"k:9092\"], topic: t}"
		kafkaKPL  = "    type: kafka\n    kafka: {brokers: [\"k:9092\"], topic: t, format: kpl}"
	)
	const at = "flows[0].explicit_hash_key: warning: "
	msg := func(role, name, what string) string {
		return at + `flow "main" sets explicit_hash_key {field: ehk}, but its ` + role + ` "` + name + `" (` + what + `) sends no explicit hash key: the field is ignored there (remove it, or use kinesis or an output format that sends it)`
	}
	for _, tc := range []struct {
		name, output, failover string
		want                   []string
	}{
		{"http ndjson", ndjson, "", []string{msg("output", "out", "http, format ndjson")}},
		{"http kafka rest", kafkaREST, "", []string{msg("output", "out", "http, format kafka-rest-v2")}},
		{"stdout ndjson", stdout, "", []string{msg("output", "out", "stdout, format ndjson")}},
		{"blackhole", blackhole, "", []string{msg("output", "out", "blackhole")}},
		{"firehose", firehose, "", []string{msg("output", "out", "firehose")}},
		{"kafka records", kafka, "", []string{msg("output", "out", "kafka, format records")}},
		{"failover without it", kinesis, firehose, []string{msg("failover output", "fo", "firehose")}},
		{"both without it", ndjson, blackhole, []string{msg("output", "out", "http, format ndjson"), msg("failover output", "fo", "blackhole")}},
		{"kinesis", kinesis, "", nil},
		{"http raw", raw, "", nil},
		{"http raw-packed", packed, "", nil},
		{"stdout kpl-json", stdoutKPL, "", nil},
		{"kafka kpl", kafkaKPL, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := keyConfig(tc.output, "", tc.failover) + "    explicit_hash_key: {field: ehk}\n"
			cfg, err := ParseConfig("a.yaml", []byte(text), noEnv, testComponents)
			require.NoError(t, err, "a warning, not an error: the config loads")
			var got []string
			for _, n := range cfg.Notices() {
				require.Equal(t, slog.LevelWarn, n.Level)
				require.Equal(t, strings.Count(text, "\n"), n.Line, "the line of explicit_hash_key (the last)")
				got = append(got, strings.TrimPrefix(n.String(), fmt.Sprintf("a.yaml:%d: ", n.Line)))
			}
			require.Equal(t, tc.want, got)
		})
	}
	t.Run("not set", func(t *testing.T) {
		cfg, err := ParseConfig("a.yaml", []byte(keyConfig(ndjson, "", "")+"    explicit_hash_key: {field: \"\"}\n"), noEnv, testComponents)
		require.NoError(t, err)
		require.Empty(t, cfg.Notices())
	})
}

func TestConfig_SmallSpoolMaxBytesDerivesUnsetSizes(t *testing.T) {
	base := keyConfig("    type: blackhole", "", "")
	for _, tc := range []struct {
		name, spool      string
		seg, entry       units.ByteSize
		note, wantErrSub string
		warn             string // a warning about what does not fit in an entry
	}{
		{name: "both derived", spool: "{max_bytes: 4MiB}", seg: 1 << 20, entry: 4<<20 - 4<<10,
			note: "a.yaml:2: spool.max_bytes: note: 4MiB is too small for the spool's default segment and entry sizes: using segment_bytes 1MiB and max_entry_bytes 4092KiB (set them under spool: to choose)"},
		{name: "explicit segment kept", spool: "{max_bytes: 4MiB, segment_bytes: 256KiB}", seg: 256 << 10, entry: 4<<20 - 4<<10,
			note: "a.yaml:2: spool.max_bytes: note: 4MiB is too small for the spool's default segment and entry sizes: using max_entry_bytes 4092KiB (set them under spool: to choose)"},
		{name: "explicit entry kept", spool: "{max_bytes: 4MiB, max_entry_bytes: 16MiB}", seg: 1 << 20, entry: 16 << 20,
			note: "a.yaml:2: spool.max_bytes: note: 4MiB is too small for the spool's default segment and entry sizes: using segment_bytes 1MiB (set them under spool: to choose)"},
		{name: "large cap keeps the defaults", spool: "{max_bytes: 1GiB}", seg: 64 << 20, entry: 16 << 20},
		{name: "not set", spool: "{}", seg: 64 << 20, entry: 16 << 20},
		// Entries smaller than the file source's records would refuse
		// them: the default stays (the spool caps it at open, warning).
		{name: "too small for the records", spool: "{max_bytes: 512KiB}", seg: 128 << 10, entry: 16 << 20,
			note: "a.yaml:2: spool.max_bytes: note: 512KiB is too small for the spool's default segment and entry sizes: using segment_bytes 128KiB (set them under spool: to choose)",
			warn: "a.yaml:2: spool.max_bytes: warning: 512KiB holds no spool entry over 524200 bytes, and larger ones are dead-lettered (spool_entry_too_large): lower sources[0].file.max_record_bytes 512KiB (at most 507KiB fits), or raise max_bytes"},
		// Under 128KiB (two 64KiB segments) the segments get smaller
		// still, down to the spool's smallest: tiny spools, for tests
		// and small devices. This was refused, naming a segment_bytes
		// the file does not set.
		{name: "tiny", spool: "{max_bytes: 100KiB}", seg: 25 << 10, entry: 16 << 20,
			note: "a.yaml:2: spool.max_bytes: note: 100KiB is too small for the spool's default segment and entry sizes: using segment_bytes 25KiB (set them under spool: to choose)",
			warn: "a.yaml:2: spool.max_bytes: warning: 100KiB holds no spool entry over 102312 bytes, and larger ones are dead-lettered (spool_entry_too_large): lower sources[0].file.max_record_bytes 512KiB (at most 95KiB fits), or raise max_bytes"},
		{name: "tinier than an aggregate", spool: "{max_bytes: 16KiB}", seg: 4 << 10, entry: 16 << 20,
			note: "a.yaml:2: spool.max_bytes: note: 16KiB is too small for the spool's default segment and entry sizes: using segment_bytes 4KiB (set them under spool: to choose)",
			warn: "a.yaml:2: spool.max_bytes: warning: 16KiB holds no spool entry over 16296 bytes, and larger ones are dead-lettered (spool_entry_too_large): lower flows[0].aggregation.max_bytes 50KiB (at most 15KiB fits) and sources[0].file.max_record_bytes 512KiB (at most 11KiB fits), or raise max_bytes"},
		{name: "the smallest", spool: "{max_bytes: 8KiB}", seg: 4 << 10, entry: 16 << 20,
			note: "a.yaml:2: spool.max_bytes: note: 8KiB is too small for the spool's default segment and entry sizes: using segment_bytes 4KiB (set them under spool: to choose)",
			warn: "a.yaml:2: spool.max_bytes: warning: 8KiB holds no spool entry over 8104 bytes, and larger ones are dead-lettered (spool_entry_too_large): lower flows[0].aggregation.max_bytes 50KiB (at most 7KiB fits) and sources[0].file.max_record_bytes 512KiB (at most 3KiB fits), or raise max_bytes"},
		{name: "too small for two segments", spool: "{max_bytes: 6KiB}",
			wantErrSub: "a.yaml:2: spool.max_bytes: must be at least 8KiB (two segments of the smallest segment_bytes, 4KiB), got 6KiB"},
		{name: "explicit inconsistent is still refused", spool: "{max_bytes: 4MiB, segment_bytes: 4MiB}", wantErrSub: "spool.max_bytes: must be at least twice segment_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yml := strings.Replace(base, "state_dir: /tmp/agent-state\n", "state_dir: /tmp/agent-state\nspool: "+tc.spool+"\n", 1)
			cfg, err := ParseConfig("a.yaml", []byte(yml), noEnv, testComponents)
			if tc.wantErrSub != "" {
				require.ErrorContains(t, err, tc.wantErrSub)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.seg, cfg.Spool.SegmentBytes, "segment_bytes")
			require.Equal(t, tc.entry, cfg.Spool.MaxEntryBytes, "max_entry_bytes")
			var got, warns []string
			for _, n := range cfg.Notices() {
				if n.Level == slog.LevelWarn {
					warns = append(warns, fmt.Sprint(n))
					continue
				}
				require.Equal(t, slog.LevelInfo, n.Level)
				got = append(got, fmt.Sprint(n))
			}
			if tc.note == "" {
				require.Empty(t, got)
			} else {
				require.Equal(t, []string{tc.note}, got)
			}
			if tc.warn == "" {
				require.Empty(t, warns)
			} else {
				require.Equal(t, []string{tc.warn}, warns)
			}
		})
	}
}
