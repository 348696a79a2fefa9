package jsontext

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAppend_DecodesToTheInputAsEncodingJSONReadsIt(t *testing.T) {
	for _, in := range []string{
		"", "plain", `quote " and \ backslash`, "ctl \x00\x01\x1f\x7f tab\t nl\n cr\r",
		"utf8 é 漢字 🎉", "bad \xff utf8 \xc3", "<html> & u2028 \u2028",
	} {
		out := AppendString(nil, []byte(in))
		require.True(t, json.Valid(out), "%q -> %s", in, out)
		var got string
		require.NoError(t, json.Unmarshal(out, &got))
		want := strings.ToValidUTF8(in, "\ufffd")
		if in == "bad \xff utf8 \xc3" {
			want = "bad \ufffd utf8 \ufffd"
		}
		require.Equal(t, want, got)
		require.Equal(t, string(out[1:len(out)-1]), string(AppendBody(nil, []byte(in))))
	}
}

func TestAppend_MatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "q\"b\\", "\x00\x01\x1f\t\r\n", "é日本\xff\xfe", "\u2028"} {
		got := AppendString(nil, []byte(s))
		var back string
		require.NoError(t, json.Unmarshal(got, &back), "%q", got)
		want, _ := json.Marshal(string([]rune(s))) // invalid bytes become U+FFFD
		var wantBack string
		require.NoError(t, json.Unmarshal(want, &wantBack))
		require.Equal(t, wantBack, back)
	}
}
