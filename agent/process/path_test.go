package process

import (
	"encoding/json"
	"testing"

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
