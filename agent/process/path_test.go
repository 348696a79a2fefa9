package process

import (
	"encoding/json"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func TestNestedPaths_Processors(t *testing.T) {
	t.Parallel()
	in := `{"user":{"id":"u-1","name":{"first":"Ann","last":"Lee"}},"http":{"status":500},"log.file":"/x","n":1}`
	runGolden(t, procs(Processor{JSON: &JSONConfig{}}, Processor{Remove: []string{"user.name.last", "http.nope", "nope.x", "n.x", "log.file"}}), []golden{
		{"remove nested, absent paths and a literal dotted key", in, `{"user":{"id":"u-1","name":{"first":"Ann"}},"http":{"status":500},"n":1}`},
		{"remove the only member", `{"user":{"name":{"last":"Lee"}}}`, `{"user":{"name":{}}}`},
		{"remove the first of several, white space kept valid", `{"user": {"name": {"last": "Lee", "x": 1}}}`, `{"user":{"name": {"x": 1}}}`},
	})
	runGolden(t, procs(Processor{JSON: &JSONConfig{}}, Processor{Rename: map[string]string{"user.id": "user_id", "http.status": "http.response.status_code", "n": "meta.count"}}), []golden{
		{"rename out of, into and across objects", in,
			`{"user":{"name":{"first":"Ann","last":"Lee"}},"http":{"response":{"status_code":500}},"log.file":"/x","meta":{"count":1},"user_id":"u-1"}`},
	})
	runGolden(t, procs(Processor{JSON: &JSONConfig{}}, Processor{Rename: map[string]string{"a": "n.x"}}), []golden{
		{"a field on the new path is not an object: unchanged", `{"a":1,"n":2}`, `{"a":1,"n":2}`},
	})
	runGolden(t, procs(Processor{JSON: &JSONConfig{}}, Processor{AddFields: &AddFieldsConfig{Fields: map[string]string{"service.name": "api", "service.env.tier": "prod", "log.file": "set"}}}), []golden{
		{"add into an existing object, make missing ones; a literal dotted key is set as it is", `{"service":{"version":"1"},"log.file":"/x"}`,
			`{"service":{"version":"1","env":{"tier":"prod"},"name":"api"},"log.file":"set"}`},
		{"text record", `plain`, `{"message":"plain","log":{"file":"set"},"service":{"env":{"tier":"prod"},"name":"api"}}`},
	})
	runGolden(t, procs(Processor{JSON: &JSONConfig{}}, Processor{Keep: &MatchConfig{Field: "http.status", Regex: `^5`}}), []golden{
		{"kept by a nested value", in, `{"user":{"id":"u-1","name":{"first":"Ann","last":"Lee"}},"http":{"status":500},"log.file":"/x","n":1}`},
		{"dropped", `{"http":{"status":200}}`, ""},
		{"not an object on the way: dropped", `{"http":"500"}`, ""},
	})
}

// Renaming a field to a path under itself moves its value one level down
// (what `.s.t = del(.s)` does in Vector's remap): the value becomes the
// object on the way, whatever it was, where the field was.
func TestRename_ToAPathUnderItself(t *testing.T) {
	t.Parallel()
	runGolden(t, procs(Processor{JSON: &JSONConfig{}}, Processor{Rename: map[string]string{"s": "s.t"}}), []golden{
		{"a string", `{"s":"value","x":1}`, `{"s":{"t":"value"},"x":1}`},
		{"an object: not merged into itself", `{"x":1,"s":{"a":1,"t":2}}`, `{"x":1,"s":{"t":{"a":1,"t":2}}}`},
		{"absent: unchanged", `{"x":1}`, `{"x":1}`},
		{"a top-level field named s.t is the target (the whole name wins)", `{"s":"v","s.t":1}`, `{"s.t":"v"}`},
	})
	runGolden(t, procs(Processor{JSON: &JSONConfig{}}, Processor{Rename: map[string]string{"a.b": "a.b.c.d"}}), []golden{
		{"nested, two levels down", `{"a":{"b":[1,2],"e":1},"z":0}`, `{"a":{"b":{"c":{"d":[1,2]}},"e":1},"z":0}`},
		{"a flat dotted key moves into new objects", `{"a.b":"v"}`, `{"a":{"b":{"c":{"d":"v"}}}}`},
	})
	runGolden(t, procs(Processor{JSON: &JSONConfig{}}, Processor{Rename: map[string]string{"a.b": "a"}}), []golden{
		{"to a path above it: replaces the object it was in", `{"a":{"b":1,"c":2},"z":0}`, `{"a":1,"z":0}`},
	})
	var r Record
	p := func(s string) *Path { x := ParsePath(s); return &x }
	r.Reset([]byte(`{"s":"value"}`))
	r.toObject()
	present, ok := r.RenameAt(p("s"), p("s.t"))
	require.True(t, present)
	require.True(t, ok, "not a failure")
	require.Equal(t, `{"s":{"t":"value"}}`, string(r.Bytes()))

	s, reg := newStage(t, procs(Processor{JSON: &JSONConfig{}}, Processor{Rename: map[string]string{"s": "s.t"}}))
	s.Process([]byte(`{"s":"value"}`), Meta{})
	require.NoError(t, testutil.GatherAndCompare(reg, stringsReader(`
# HELP agent_processor_records_total Records through each processor of a flow, by result: in, out, failed (could not be parsed, passed unchanged), dropped (drop/keep).
# TYPE agent_processor_records_total counter
agent_processor_records_total{flow="f",processor="json",result="dropped",step="0"} 0
agent_processor_records_total{flow="f",processor="json",result="failed",step="0"} 0
agent_processor_records_total{flow="f",processor="json",result="in",step="0"} 1
agent_processor_records_total{flow="f",processor="json",result="out",step="0"} 1
agent_processor_records_total{flow="f",processor="rename",result="dropped",step="1"} 0
agent_processor_records_total{flow="f",processor="rename",result="failed",step="1"} 0
agent_processor_records_total{flow="f",processor="rename",result="in",step="1"} 1
agent_processor_records_total{flow="f",processor="rename",result="out",step="1"} 1
`), "agent_processor_records_total"))
}

func TestNestedPaths_Keys(t *testing.T) {
	t.Parallel()
	s, _ := newStage(t, Config{PartitionKey: KeyConfig{Kind: KeyField, Field: "user.id"}, ExplicitHashKey: "route.ehk"})
	for _, tc := range []struct{ in, key, ehk string }{
		{`{"user":{"id":"u-1"},"route":{"ehk":"170141183460469231731687303715884105728"}}`, "u-1", "170141183460469231731687303715884105728"},
		{`{"user": {"name": "x", "id": 42}, "route": {"ehk": 12}}`, "42", "12"},
		{`{"user":{"name":"x"}}`, "", ""},
		{`{"user":"u-1"}`, "", ""},
		{`{"user.id":"literal"}`, "literal", ""},
	} {
		out, _ := s.Process([]byte(tc.in), Meta{})
		k, ok := s.PartitionKey(out)
		require.Equal(t, tc.key != "", ok, tc.in)
		require.Equal(t, tc.key, k, tc.in)
		require.Equal(t, tc.ehk, s.ExplicitHashKey(out), tc.in)
	}
}

func TestNestedPaths_Validate(t *testing.T) {
	t.Parallel()
	for _, p := range []Processor{
		{Remove: []string{"a..b"}},
		{Rename: map[string]string{"a.": "b"}},
		{Drop: &MatchConfig{Field: ".a", Regex: "x"}},
		{AddFields: &AddFieldsConfig{Fields: map[string]string{"a..b": "x"}}},
	} {
		require.ErrorContains(t, p.Validate(), "path of names", p.Name())
	}
	require.ErrorContains(t, KeyConfig{Kind: KeyField, Field: "a..b"}.Validate(), "path")
	require.NoError(t, Processor{Remove: []string{"a.b.c"}}.Validate())
}

func TestNestedPaths_EditsStayValid(t *testing.T) {
	t.Parallel()
	var r Record
	r.Reset([]byte(`{"a":{"b":{"c":1,"d":[1,{"e":2}]},"f":"x"},"g":{}}`))
	r.toObject()
	p := func(s string) *Path { x := ParsePath(s); return &x }
	require.True(t, r.SetRawAt(p("g.h"), []byte(`true`)))
	require.True(t, r.SetRawAt(p("a.b.c"), []byte(`"replaced"`)))
	require.False(t, r.SetRawAt(p("a.f.x"), []byte(`1`)))
	require.True(t, r.RemoveAt(p("a.b.d")))
	present, ok := r.RenameAt(p("a.b"), p("z"))
	require.True(t, present && ok)
	out := r.Bytes()
	require.True(t, json.Valid(out), string(out))
	require.Equal(t, `{"a":{"f":"x"},"g":{"h":true},"z":{"c":"replaced"}}`, string(out))
	v, ok := r.ValueAt(nil, p("z.c"))
	require.True(t, ok)
	require.Equal(t, "replaced", string(v))
}
