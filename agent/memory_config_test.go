package agent

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConfig_MaxPendingBytesIsValidated(t *testing.T) {
	for _, tc := range []struct {
		name, agg string
		want      int64  // the key's value once parsed
		err       string // "" when valid
	}{
		{"unset: the aggregator's default", "", 0, ""},
		{"a few aggregates", "{max_bytes: 1MiB, max_pending_bytes: 16MiB}", 16 << 20, ""},
		{"one aggregate", "{max_bytes: 64KiB, max_pending_bytes: 64KiB}", 64 << 10, ""},
		{"below one aggregate", "{max_bytes: 64KiB, max_pending_bytes: 32KiB}", 0,
			"a.yaml:17: flows[0].aggregation.max_pending_bytes: must be between aggregation.max_bytes (64KiB) and 4GiB, got 32KiB"},
		{"no bound", "{max_pending_bytes: 1TiB}", 0,
			"a.yaml:17: flows[0].aggregation.max_pending_bytes: must be between aggregation.max_bytes (50KiB) and 4GiB, got 1TiB"},
		{"not a size", "{max_pending_bytes: lots}", 0, "a.yaml:17: flows[0].aggregation.max_pending_bytes: invalid byte size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := minimal
			if tc.agg != "" {
				y += "    aggregation: " + tc.agg + "\n"
			}
			cfg, err := ParseConfig("a.yaml", []byte(y), noEnv, testComponents)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.Equal(t, 1, strings.Count(err.Error(), "max_pending_bytes"), "one problem: %v", err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, int64(cfg.Flows[0].Aggregation.MaxPendingBytes))
		})
	}
}
