package journald

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func entryOf(kv ...string) *entry {
	e := &entry{}
	for i := 0; i < len(kv); i += 2 {
		e.fields = append(e.fields, field{name: kv[i], value: []byte(kv[i+1])})
		if kv[i] == "__CURSOR" {
			e.cursor = kv[i+1]
		}
	}
	return e
}

func TestEncode_FieldsTypesAndOrder(t *testing.T) {
	en := newEncoder([]string{"_CMDLINE"}, 1<<20)
	e := entryOf(
		"__CURSOR", "s=1;i=2",
		"__REALTIME_TIMESTAMP", "1733456789123456",
		"__MONOTONIC_TIMESTAMP", "99",
		"__SEQNUM", "7",
		"PRIORITY", "3",
		"MESSAGE", "line one\nline \"two\"\t<&>",
		"_CMDLINE", "/usr/bin/secret --token x",
		"TAG", "a",
		"BLOB", "\xff\x00\xfe",
		"TAG", "b",
	)
	out, cut := en.encode(nil, e)
	require.False(t, cut)
	require.True(t, json.Valid(out), "%s", out)
	require.Equal(t, `{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"2024-12-06T03:46:29.123456Z","PRIORITY":"3",`+
		`"MESSAGE":"line one\nline \"two\"\t<&>","TAG":["a","b"],"BLOB":{"base64":"/wD+"}}`, string(out))
	var m map[string]any
	require.NoError(t, json.Unmarshal(out, &m))
	require.Equal(t, "line one\nline \"two\"\t<&>", m["MESSAGE"])
}

func TestEncode_ControlCharactersAreEscaped(t *testing.T) {
	en := newEncoder(nil, 1<<20)
	out, _ := en.encode(nil, entryOf("M", "a\x01b\x1fc\rd\\"))
	require.Equal(t, `{"M":"a\u0001b\u001fc\rd\\"}`, string(out))
	var m map[string]string
	require.NoError(t, json.Unmarshal(out, &m))
	require.Equal(t, "a\x01b\x1fc\rd\\", m["M"])
}

func TestEncode_OversizeEntryIsCutToFitAndMarked(t *testing.T) {
	const max = 2000
	en := newEncoder(nil, max)
	e := entryOf("__CURSOR", "c", "PRIORITY", "3", "MESSAGE", strings.Repeat("é", 3000), "OTHER", strings.Repeat("\"", 300))
	out, cut := en.encode(nil, e)
	require.True(t, cut)
	require.LessOrEqual(t, len(out), max)
	var m map[string]any
	require.NoError(t, json.Unmarshal(out, &m), "still valid JSON (cut on a rune boundary)")
	require.Equal(t, true, m[truncatedField])
	require.Equal(t, "c", m["__CURSOR"])
	require.Equal(t, "3", m["PRIORITY"])
	require.True(t, strings.HasPrefix(strings.Repeat("é", 3000), m["MESSAGE"].(string)))
	require.Greater(t, len(m["MESSAGE"].(string)), 1000, "only what is too much is cut")

	out, cut = en.encode(out, &entry{fields: e.fields[:2], truncated: true})
	require.True(t, cut, "an entry the reader cut is marked too")
	require.Equal(t, `{"__CURSOR":"c","PRIORITY":"3","_AGENT_TRUNCATED":true}`, string(out))
}

// Many fields, each escaping to six bytes a byte, still fit.
func TestEncode_ManyEscapedFieldsFit(t *testing.T) {
	const max = 1024
	en := newEncoder(nil, max)
	var kv []string
	for i := range 200 {
		kv = append(kv, "F"+strings.Repeat("X", i%50), strings.Repeat("\x01", 40))
	}
	out, cut := en.encode(nil, entryOf(kv...))
	require.True(t, cut)
	require.LessOrEqual(t, len(out), max)
	require.True(t, json.Valid(out), "%s", out)
}
