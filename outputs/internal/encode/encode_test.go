package encode

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/kplagent/agent/aggregate"
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

func TestAppendKinesisData(t *testing.T) {
	t.Parallel()
	plain := aggregate.Aggregate{PartitionKey: "k", Body: []byte("data"), Count: 1}
	require.Equal(t, "data", string(AppendKinesisData(nil, &plain)))

	agg := aggregate.Aggregate{PartitionKey: "a", Aggregated: true, Body: []byte{0x0a, 0x01, 'k'}, Count: 2}
	got := AppendKinesisData([]byte("p"), &agg)
	want := []byte{'p', 0xF3, 0x89, 0x9A, 0xC2, 0x0a, 0x01, 'k',
		// md5 of 0a 01 6b (md5sum)
		0x6d, 0x44, 0x22, 0x0b, 0x0e, 0xea, 0xc8, 0xbc, 0xfd, 0x28, 0xa2, 0x81, 0x07, 0xa9, 0x6f, 0xf4}
	require.Equal(t, want, got)
}
