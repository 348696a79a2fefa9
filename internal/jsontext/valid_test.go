package jsontext

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestIsObject(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		`{}`, `{"a":1}`, `{ "a" : [1, -2.5e+3, true, false, null, "x\"\\\/\b\f\n\r\t\u00e9"], "b": {"c": {}} }`,
		"{\"a\":\n1}", `{"é":"😀"}`, "{\"bad utf8\":\"\xff\"}", `{"a":0}`, `{"a":-0.0E1}`,
		`{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":tru}`,
		`{"a":"x` + "\x01" + `"}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":1}{}`, `{"a":1} `, `[1]`, `"s"`, `{'a':1}`,
		`{"a":[1,]}`, `{"a":[}`, `{"a":nul}`, `{"a":-}`, `{"a":1}}`, `{"a" 1}`,
	} {
		require.Equal(t, json.Valid([]byte(s)) && strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"), IsObject([]byte(s)), "%q", s)
	}
}

func FuzzIsObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,{"b":null}]}`, `{"a":1e5}`, `{"a":"\ud800"}`, `{"a"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := len(b) >= 2 && b[0] == '{' && b[len(b)-1] == '}' && json.Valid(b)
		if got := IsObject(b); got != want {
			t.Fatalf("IsObject(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}
