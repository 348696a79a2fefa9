package process

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// The object is kept in its output form and edited in place: every edit
// must leave one valid JSON object with the fields in order.
func TestRecord_EditsKeepTheOutputForm(t *testing.T) {
	t.Parallel()
	var r Record
	r.Reset([]byte(`{"a":1,"b":"x","c":[1,2],"d":{"e":null}}`))
	r.toObject()
	require.True(t, r.IsObject())
	steps := []struct {
		do   func()
		want string
	}{
		{func() {}, `{"a":1,"b":"x","c":[1,2],"d":{"e":null}}`},
		{func() { r.SetString("b", []byte(`longer "quoted"`)) }, `{"a":1,"b":"longer \"quoted\"","c":[1,2],"d":{"e":null}}`},
		{func() { r.SetInt("a", 1234567) }, `{"a":1234567,"b":"longer \"quoted\"","c":[1,2],"d":{"e":null}}`},
		{func() { require.True(t, r.Remove("a")) }, `{"b":"longer \"quoted\"","c":[1,2],"d":{"e":null}}`},
		{func() { require.True(t, r.Remove("c")) }, `{"b":"longer \"quoted\"","d":{"e":null}}`},
		{func() { require.True(t, r.Remove("d")) }, `{"b":"longer \"quoted\""}`},
		{func() { require.False(t, r.Remove("zz")) }, `{"b":"longer \"quoted\""}`},
		{func() { r.SetString("new", []byte("v")) }, `{"b":"longer \"quoted\"","new":"v"}`},
		{func() { require.True(t, r.Rename("b", "renamed_b")) }, `{"renamed_b":"longer \"quoted\"","new":"v"}`},
		{func() { require.True(t, r.Rename("new", "renamed_b")) }, `{"renamed_b":"v"}`},
		{func() { r.SetString("k\"ey", []byte("q")) }, `{"renamed_b":"v","k\"ey":"q"}`},
		{func() { r.SetString("k\"ey", []byte("r")) }, `{"renamed_b":"v","k\"ey":"r"}`},
		{func() { require.True(t, r.Remove("renamed_b")); require.True(t, r.Remove("k\"ey")) }, `{}`},
		{func() { r.SetJSON("j", []byte(`[true]`)) }, `{"j":[true]}`},
	}
	for i, st := range steps {
		st.do()
		out := r.Bytes()
		require.Equal(t, st.want, string(out), "step %d", i)
		require.True(t, json.Valid(out), "step %d", i)
	}
}

func TestRecord_PrettyInputIsOneLine(t *testing.T) {
	t.Parallel()
	s, _ := newStage(t, procs(Processor{JSON: &JSONConfig{}}))
	out, _ := s.Process([]byte("{\n  \"a\": {\n    \"b\": [1,\n 2]\n  },\n  \"c\": \"x\"\n}\n"), Meta{})
	require.Equal(t, `{"a":{"b":[1,2]},"c":"x"}`, string(out))
	require.True(t, s.Object())
}

func TestStage_Object(t *testing.T) {
	t.Parallel()
	s, _ := newStage(t, procs(Processor{LogToJSON: &LogConfig{Format: FormatApacheCommon}}))
	out, _ := s.Process([]byte(`127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326`), Meta{})
	require.True(t, s.Object())
	require.True(t, json.Valid(out))
	s.Process([]byte(`not an access log line`), Meta{})
	require.False(t, s.Object(), "a record the parser left as text")
	s.Process([]byte(`{"a":1}`), Meta{})
	require.False(t, s.Object(), "JSON text the stage did not make an object: the output checks it")

	s, _ = newStage(t, Config{Envelope: Envelope{Host: "h"}})
	s.Process([]byte(`{"a":1}`), Meta{})
	require.True(t, s.Object())
}

func TestRedact_CannotBreakJSON(t *testing.T) {
	t.Parallel()
	s, _ := newStage(t, procs(Processor{JSON: &JSONConfig{}}, Processor{Redact: &RedactConfig{Patterns: []string{`"`, `\\`, `x.*`}, Mask: "#"}}))
	out, _ := s.Process([]byte(`{"a":"q\"b\\c","b":"xyz","n":12}`), Meta{})
	require.Equal(t, `{"a":"q#b#c","b":"#","n":12}`, string(out))
}
