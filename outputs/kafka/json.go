package kafka

import (
	"bytes"
	"encoding/json"
	"unsafe"
)

// readOnly returns the bytes of s without copying; they must not be modified.
func readOnly(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// jsonStringField returns the value of the top-level string field name of
// the JSON object data, without decoding the rest of it. It reports false
// when data is not an object, has no such field, or the field is not a
// string. The result aliases data unless the string has escapes.
func jsonStringField(data []byte, name string) ([]byte, bool) {
	v, ok := jsonValue(data, name)
	if !ok || len(v) == 0 || v[0] != '"' {
		return nil, false
	}
	return unquote(v)
}

// jsonStringAt is jsonStringField for a field path (topic_field: a.b.c,
// split into segs): a top-level key equal to the whole path wins, so flat
// dotted keys ("log.file") keep working as they do in the processing stage;
// otherwise each segment names a field of the object the previous one holds.
func jsonStringAt(data []byte, path string, segs []string) ([]byte, bool) {
	if v, ok := jsonStringField(data, path); ok || len(segs) < 2 {
		return v, ok
	}
	v := data
	for _, seg := range segs[:len(segs)-1] {
		var ok bool
		if v, ok = jsonValue(v, seg); !ok {
			return nil, false
		}
	}
	return jsonStringField(v, segs[len(segs)-1])
}

// jsonValue returns the bytes of the value of the top-level field name of
// the JSON object data (a string keeps its quotes), without decoding the
// rest of it; false when data is not an object or has no such field.
func jsonValue(data []byte, name string) ([]byte, bool) {
	p := skipSpace(data, 0)
	if p >= len(data) || data[p] != '{' {
		return nil, false
	}
	p++
	for {
		p = skipSpace(data, p)
		if p >= len(data) || data[p] != '"' {
			return nil, false // "}" or malformed
		}
		kEnd, ok := stringEnd(data, p)
		if !ok {
			return nil, false
		}
		key := data[p:kEnd]
		p = skipSpace(data, kEnd)
		if p >= len(data) || data[p] != ':' {
			return nil, false
		}
		p = skipSpace(data, p+1)
		if p >= len(data) {
			return nil, false
		}
		end, ok := skipValue(data, p)
		if !ok || end == p { // malformed, or no value at all ({"k":,)
			return nil, false
		}
		if keyEquals(key, name) {
			return data[p:end], true
		}
		p = skipSpace(data, end)
		if p >= len(data) || data[p] != ',' {
			return nil, false
		}
		p++
	}
}

func skipSpace(b []byte, p int) int {
	for p < len(b) && (b[p] == ' ' || b[p] == '\t' || b[p] == '\n' || b[p] == '\r') {
		p++
	}
	return p
}

// stringEnd returns the index after the closing quote of the string at p.
func stringEnd(b []byte, p int) (int, bool) {
	for i := p + 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1, true
		}
	}
	return 0, false
}

// skipValue returns the index after the JSON value at p (not validated in
// depth: only strings and nesting are followed).
func skipValue(b []byte, p int) (int, bool) {
	depth := 0
	for p < len(b) {
		switch c := b[p]; c {
		case '"':
			end, ok := stringEnd(b, p)
			if !ok {
				return 0, false
			}
			p = end
			if depth == 0 {
				return p, true
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth < 0 {
				return 0, false
			}
			if depth == 0 {
				return p + 1, true
			}
		case ',':
			if depth == 0 {
				return p, true
			}
		}
		p++
	}
	return p, depth == 0
}

// keyEquals compares a quoted JSON key with name.
func keyEquals(quoted []byte, name string) bool {
	inner := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner) == name
	}
	k, ok := unquote(quoted)
	return ok && string(k) == name
}

// unquote decodes a quoted JSON string.
func unquote(quoted []byte) ([]byte, bool) {
	inner := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner, true
	}
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return nil, false
	}
	return []byte(s), true
}
