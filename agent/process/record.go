package process

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/kplagent/agent/internal/jsontext"
)

// Record is one user record in the processing stage: either text (the
// bytes as read) or a JSON object held as an ordered list of top-level
// fields whose values are raw JSON. Its buffers are reused from record to
// record: a Record belongs to one flow and is used under its lock.
type Record struct {
	text   []byte  // the record while it is text
	obj    bool    // the record is a JSON object (fields)
	arena  []byte  // keys (escaped, unquoted) and raw JSON values of fields
	fields []field // in order; a key appears once
	out    []byte  // Bytes' buffer
	scr    []byte  // scratch for processors
}

type field struct{ ks, ke, vs, ve int32 }

// Meta is what a source knows about a record besides its bytes: the
// envelope's file, offset and source fields.
type Meta struct {
	Source string // the source's name
	Path   string // the file it was read from ("" when not a file)
	Offset int64  // the byte offset where the record began
}

// Reset makes r the text record data. data is not copied: it must stay
// unchanged while r is used (processors that change the text make new
// buffers).
func (r *Record) Reset(data []byte) {
	r.text = data
	r.obj = false
	r.arena = r.arena[:0]
	r.fields = r.fields[:0]
}

// IsObject reports whether the record is a JSON object.
func (r *Record) IsObject() bool { return r.obj }

// Text returns the record's bytes while it is text.
func (r *Record) Text() []byte { return r.text }

// Bytes returns the record as it goes to the aggregator: the text, or the
// JSON object on one line. Valid until the next change of r.
func (r *Record) Bytes() []byte {
	if !r.obj {
		return r.text
	}
	b := append(r.out[:0], '{')
	for i, f := range r.fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, r.arena[f.ks:f.ke]...)
		b = append(b, '"', ':')
		b = append(b, r.arena[f.vs:f.ve]...)
	}
	b = append(b, '}')
	r.out = b
	return b
}

// toObject makes a text record an object: its fields when the text is a
// JSON object, else {"message": text}.
func (r *Record) toObject() {
	if r.obj {
		return
	}
	if r.parseObject(r.text) {
		return
	}
	r.obj = true
	r.arena = r.arena[:0]
	r.fields = r.fields[:0]
	r.SetString("message", r.text)
}

// parseObject makes r the object b, reporting false (r unchanged) when b
// is not one valid JSON object.
func (r *Record) parseObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	if !jsontext.IsObject(b) {
		return false
	}
	r.obj = true
	r.arena = r.arena[:0]
	r.fields = r.fields[:0]
	i := 1
	for {
		i = skipWS(b, i)
		if b[i] == '}' {
			return true
		}
		ks := i + 1
		ke := skipString(b, i) - 1
		i = skipWS(b, ke+1) + 1 // past ':'
		i = skipWS(b, i)
		vs := i
		ve := skipValue(b, i)
		r.setRaw(b[ks:ke], b[vs:ve])
		i = skipWS(b, ve)
		if b[i] == ',' {
			i++
		}
	}
}

// skipWS returns the index of the first non-space byte from i.
func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the JSON string starting at b[i]
// (b is valid JSON).
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// skipValue returns the index after the JSON value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
		i++
	}
	return i
}

// find returns the index of the field named key, or -1.
func (r *Record) find(key string) int {
	for i, f := range r.fields {
		if string(r.arena[f.ks:f.ke]) == key {
			return i
		}
	}
	return -1
}

// setRaw sets key (escaped, unquoted) to the raw JSON value v.
func (r *Record) setRaw(key, v []byte) {
	ks := len(r.arena)
	r.arena = append(r.arena, key...)
	ke := len(r.arena)
	r.arena = append(r.arena, v...)
	r.put(ks, ke, len(r.arena))
}

func (r *Record) put(ks, ke, ve int) {
	nf := field{int32(ks), int32(ke), int32(ke), int32(ve)}
	if i := r.find(string(r.arena[ks:ke])); i >= 0 {
		r.fields[i] = nf
		return
	}
	r.fields = append(r.fields, nf)
}

// appendKey appends a plain key to the arena, escaped.
func (r *Record) appendKey(key string) (int, int) {
	ks := len(r.arena)
	if plainKey(key) {
		r.arena = append(r.arena, key...)
		return ks, len(r.arena)
	}
	r.arena = jsontext.AppendString(r.arena, []byte(key))
	// drop the quotes
	copy(r.arena[ks:], r.arena[ks+1:len(r.arena)-1])
	r.arena = r.arena[:len(r.arena)-2]
	return ks, len(r.arena)
}

// SetString sets field key to the JSON string of v (the record must be an
// object).
func (r *Record) SetString(key string, v []byte) {
	ks, ke := r.appendKey(key)
	r.arena = jsontext.AppendString(r.arena, v)
	r.put(ks, ke, len(r.arena))
}

// addString appends field key (not already set: a parser filling a new
// object) with the JSON string of v.
func (r *Record) addString(key string, v []byte) {
	ks, ke := r.appendKey(key)
	r.arena = jsontext.AppendString(r.arena, v)
	r.fields = append(r.fields, field{int32(ks), int32(ke), int32(ke), int32(len(r.arena))})
}

// SetInt sets field key to the number v.
func (r *Record) SetInt(key string, v int64) {
	ks, ke := r.appendKey(key)
	r.arena = strconv.AppendInt(r.arena, v, 10)
	r.put(ks, ke, len(r.arena))
}

// SetJSON sets field key to the raw JSON value v (valid JSON).
func (r *Record) SetJSON(key string, v []byte) {
	ks, ke := r.appendKey(key)
	r.arena = append(r.arena, v...)
	r.put(ks, ke, len(r.arena))
}

// Remove deletes field key; it reports whether it was there.
func (r *Record) Remove(key string) bool {
	i := r.find(key)
	if i < 0 {
		return false
	}
	r.fields = append(r.fields[:i], r.fields[i+1:]...)
	return true
}

// Rename renames field from to to (replacing a field named to).
func (r *Record) Rename(from, to string) bool {
	i := r.find(from)
	if i < 0 || from == to {
		return i >= 0
	}
	f := r.fields[i]
	r.Remove(to)
	i = r.find(from)
	ks, ke := r.appendKey(to)
	r.fields[i] = field{int32(ks), int32(ke), f.vs, f.ve}
	return true
}

// Raw returns field key's raw JSON value.
func (r *Record) Raw(key string) ([]byte, bool) {
	if !r.obj {
		return nil, false
	}
	i := r.find(key)
	if i < 0 {
		return nil, false
	}
	f := r.fields[i]
	return r.arena[f.vs:f.ve], true
}

// Value returns field key's value as text: a string's contents (unescaped),
// or the raw JSON of any other value. dst is reused.
func (r *Record) Value(dst []byte, key string) ([]byte, bool) {
	raw, ok := r.Raw(key)
	if !ok {
		return dst, false
	}
	return jsonText(dst[:0], raw), true
}

// jsonText appends the text of a raw JSON value: a string unescaped, any
// other value as it is.
func jsonText(dst, raw []byte) []byte {
	if len(raw) < 2 || raw[0] != '"' {
		return append(dst, raw...)
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return append(dst, inner...)
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return append(dst, inner...)
	}
	return append(dst, s...)
}

// validUTF8Key reports whether s can be a field name.
func validUTF8Key(s string) bool { return s != "" && utf8.ValidString(s) }

func appendStr(dst, s []byte) []byte { return jsontext.AppendString(dst, s) }

// plainKey reports whether key needs no escaping in JSON.
func plainKey(key string) bool {
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return false
		}
	}
	return true
}
