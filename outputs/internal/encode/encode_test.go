package encode

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs/internal/batchtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestAppendJSONString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", `""`},
		{"ascii", "hello world", `"hello world"`},
		{"quotes and backslash", `a"b\c`, `"a\"b\\c"`},
		{"controls", "a\nb\rc\td\x00e\x1f", `"a\nb\rc\td\u0000e\u001f"`},
		{"utf8 kept", "héllo ☃ 😀", `"héllo ☃ 😀"`},
		{"invalid byte replaced", "a\xffb", `"a\ufffdb"`},
		{"truncated sequence replaced per byte", "a\xe2\x98", `"a\ufffd\ufffd"`},
		{"html is not escaped", "<a&b>", `"<a&b>"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := AppendJSONString([]byte("x"), []byte(tc.in))
			require.Equal(t, "x"+tc.want, string(got))
			require.True(t, json.Valid(got[1:]))
		})
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "abc", "a\"\\\n", "\xff\xfe", "☃\x80", "\u2028"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		out := AppendJSONString(nil, s)
		var back string
		require.NoError(t, json.Unmarshal(out, &back), "output %q", out)
		// Converting to runes maps each invalid byte to U+FFFD, our contract.
		require.Equal(t, string([]rune(string(s))), back)
	})
}

func TestAppendLine(t *testing.T) {
	t.Parallel()
	data := []byte("line \xff")
	require.Equal(t, "line \xff\n", string(AppendLine(nil, LineNDJSON, []byte("pk"), nil, data)))

	got := AppendLine(nil, LineKPLJSON, []byte("pk\"1"), []byte("123"), data)
	require.Equal(t, byte('\n'), got[len(got)-1])
	var v struct{ PK, EHK, Data string }
	require.NoError(t, json.Unmarshal(got, &v))
	require.Equal(t, "pk\"1", v.PK)
	require.Equal(t, "123", v.EHK)
	raw, err := base64.StdEncoding.DecodeString(v.Data)
	require.NoError(t, err)
	require.Equal(t, data, raw)

	got = AppendLine(nil, LineKPLJSON, []byte("k"), nil, []byte("x"))
	require.Equal(t, `{"pk":"k","data":"eA=="}`+"\n", string(got))
}

func TestParseLineFormat(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]LineFormat{"": LineNDJSON, "ndjson": LineNDJSON, "kpl-json": LineKPLJSON} {
		got, err := ParseLineFormat(in)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	_, err := ParseLineFormat("xml")
	require.EqualError(t, err, `unknown "xml" (want ndjson or kpl-json)`)
}

func TestAppendLines(t *testing.T) {
	t.Parallel()
	b := batchtest.Build(t, 3, 0, batchtest.Records("a", "b", "c", "d")...)
	require.Len(t, b.Records, 2)
	require.True(t, b.Records[0].Aggregated)
	require.False(t, b.Records[1].Aggregated, "a lone record is plain")

	var out []byte
	for i := range b.Records {
		var err error
		out, err = AppendLines(out, LineKPLJSON, &b.Records[i])
		require.NoError(t, err)
	}
	require.Equal(t, `{"pk":"pk0","data":"YQ=="}
{"pk":"pk1","data":"Yg=="}
{"pk":"pk2","data":"Yw=="}
{"pk":"pk3","data":"ZA=="}
`, string(out))

	bad := aggregate.Aggregate{PartitionKey: "a", Aggregated: true, Body: []byte{0xff, 0xff}, Count: 2}
	out, err := AppendLines([]byte("keep"), LineNDJSON, &bad)
	require.Error(t, err)
	require.Equal(t, "keep", string(out))
}
