package process

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

func TestPartitionKey(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 300)
	tests := []struct {
		name string
		key  KeyConfig
		in   string
		want string
		ok   bool
	}{
		{"field", KeyConfig{Kind: KeyField, Field: "user"}, `{"user":"u-1","x":2}`, "u-1", true},
		{"field number", KeyConfig{Kind: KeyField, Field: "n"}, `{"n":42}`, "42", true},
		{"field escaped", KeyConfig{Kind: KeyField, Field: "user"}, `{"user":"a\"b"}`, `a"b`, true},
		{"field absent", KeyConfig{Kind: KeyField, Field: "user"}, `{"x":1}`, "", false},
		{"field of text", KeyConfig{Kind: KeyField, Field: "user"}, `plain`, "", false},
		{"regex", KeyConfig{Kind: KeyRegex, Regex: `user=(\w+)`, Group: 1}, `GET /x user=bob ok`, "bob", true},
		{"regex no match", KeyConfig{Kind: KeyRegex, Regex: `user=(\w+)`, Group: 1}, `nobody`, "", false},
		{"fixed", KeyConfig{Kind: KeyFixed, Fixed: "k"}, `x`, "k", true},
		{"hostname", KeyConfig{Kind: KeyHostname}, `x`, "web-1", true},
		{"long key hashed", KeyConfig{Kind: KeyField, Field: "k"}, `{"k":"` + long + `"}`, FitKey([]byte(long)), true},
	}
	for _, tc := range tests {
		s, _ := newStage(t, Config{PartitionKey: tc.key})
		got, ok := s.PartitionKey([]byte(tc.in))
		require.Equal(t, tc.ok, ok, tc.name)
		require.Equal(t, tc.want, got, tc.name)
	}
	require.Len(t, FitKey([]byte(long)), 64)
	require.Equal(t, strings.Repeat("é", 256), FitKey([]byte(strings.Repeat("é", 256))), "256 characters fit")
}

func TestPartitionKey_FieldOfProcessedRecord(t *testing.T) {
	t.Parallel()
	s, _ := newStage(t, Config{Processors: []Processor{{LogToJSON: &LogConfig{Format: FormatApacheCommon}}}, PartitionKey: KeyConfig{Kind: KeyField, Field: "host"}, ExplicitHashKey: "bytes"})
	out, _ := s.Process([]byte(`10.1.2.3 - - [d] "GET / HTTP/1.1" 200 77`), Meta{})
	k, ok := s.PartitionKey(out)
	require.True(t, ok)
	require.Equal(t, "10.1.2.3", k)
	require.Equal(t, "77", s.ExplicitHashKey(out))

	s, _ = newStage(t, Config{ExplicitHashKey: "h"})
	for in, want := range map[string]string{`{"h":"123"}`: "123", `{"h":123}`: "123", `{"h":"x1"}`: "", `{"x":1}`: "", `text`: "", `{"h":"` + strings.Repeat("9", 40) + `"}`: ""} {
		out, _ := s.Process([]byte(in), Meta{})
		require.Equal(t, want, s.ExplicitHashKey(out), in)
	}
}

func TestKeyConfig_YAML(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    KeyConfig
		wantErr string
	}{
		{`random`, KeyConfig{Kind: KeyRandom}, ""},
		{`deterministic`, KeyConfig{Kind: KeyDeterministic}, ""},
		{`{field: user_id, fallback: deterministic}`, KeyConfig{Kind: KeyField, Field: "user_id", Fallback: KeyDeterministic, Group: 1}, ""},
		{`{regex: 'u=(\w+)'}`, KeyConfig{Kind: KeyRegex, Regex: `u=(\w+)`, Group: 1}, ""},
		{`{fixed: k}`, KeyConfig{Kind: KeyFixed, Fixed: "k", Group: 1}, ""},
		{`{field: a, fixed: b}`, KeyConfig{}, "want exactly one of field, regex or fixed"},
		{`{feild: a}`, KeyConfig{}, `unknown key "feild"`},
	}
	for _, tc := range tests {
		var k KeyConfig
		err := yaml.Unmarshal([]byte(tc.in), &k)
		if tc.wantErr != "" {
			require.ErrorContains(t, err, tc.wantErr, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, k, tc.in)
		require.NoError(t, k.Validate())
	}
	require.ErrorContains(t, KeyConfig{Kind: KeyRegex, Regex: `(a)`, Group: 2}.Validate(), "group")
	require.ErrorContains(t, KeyConfig{Kind: "sticky"}.Validate(), `unknown "sticky"`)
	require.Equal(t, KeyConfig{Kind: KeyField, Field: "user", Group: 1}, ParseKeyFlag("field:user"))
	require.Equal(t, KeyConfig{Kind: KeyHostname}, ParseKeyFlag("hostname"))
}
