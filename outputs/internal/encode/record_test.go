package encode

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAppendRecord(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, json, text string
	}{
		{"plain", "GET / 200", `{"message":"GET / 200"}`, "GET / 200"},
		{"object kept, trimmed", " {\"a\": 1}\r", `{"a": 1}`, ` {"a": 1}\r`},
		{"array is not an object", `[1]`, `{"message":"[1]"}`, `[1]`},
		{"broken object", `{"a":`, `{"message":"{\"a\":"}`, `{"a":`},
		{"braces but not JSON", `{foo}`, `{"message":"{foo}"}`, `{foo}`},
		{"multi-line", "Exception\n\tat a.b(C.java:1)\n", `{"message":"Exception\n\tat a.b(C.java:1)\n"}`, `Exception\n` + "\t" + `at a.b(C.java:1)\n`},
		{"pretty-printed object compacted", "{\n  \"a\": \"x y\"\n}", `{"a":"x y"}`, `{\n  "a": "x y"\n}`},
		{"empty", "", `{"message":""}`, ""},
		{"bad utf8", "a\xff", `{"message":"a\ufffd"}`, "a\xff"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := AppendRecord([]byte("x"), EncodingJSON, []byte(tc.in))
			require.Equal(t, "x"+tc.json, string(got))
			var obj map[string]any
			require.NoError(t, json.Unmarshal(got[1:], &obj))
			got = AppendRecord([]byte("x"), EncodingText, []byte(tc.in))
			require.Equal(t, "x"+tc.text, string(got))
			require.NotContains(t, string(got), "\n")
		})
	}
}

func TestParseEncoding(t *testing.T) {
	t.Parallel()
	e, err := ParseEncoding("", EncodingText)
	require.NoError(t, err)
	require.Equal(t, EncodingText, e)
	e, err = ParseEncoding("json", EncodingText)
	require.NoError(t, err)
	require.Equal(t, EncodingJSON, e)
	_, err = ParseEncoding("xml", EncodingJSON)
	require.EqualError(t, err, `unknown "xml" (want json or text)`)
}

func FuzzAppendJSONObject(f *testing.F) {
	for _, s := range []string{"", "{}", `{"a":1}`, "{", "x\ny", `{"a":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		out := AppendJSONObject(nil, s)
		var obj map[string]any
		require.NoError(t, json.Unmarshal(out, &obj), "output %q", out)
		require.NotContains(t, string(out), "\n")
	})
}
