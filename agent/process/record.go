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
//
// An object is kept in its output form: the arena always holds exactly
// `{"k1":v1,"k2":v2` (no white space, no closing brace) and fields index
// the keys and values in it. Parsers append fields straight into that form,
// edits splice it in place, and Bytes only adds the brace: nothing is
// copied to serialize a record.
type Record struct {
	text   []byte  // the record while it is text
	obj    bool    // the record is a JSON object (arena, fields)
	arena  []byte  // the object without its closing brace
	fields []field // in order; a key appears once
	scr    []byte  // scratch for processors
	scr2   []byte  // scratch for edits
}

// field indexes one member in the arena: the key (escaped, unquoted) is
// arena[ks:ke], the raw JSON value arena[vs:ve] (vs is ke+2, past `":`).
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
	r.arena = append(r.arena, '}')
	b := r.arena
	r.arena = r.arena[:len(b)-1]
	return b
}

// startObject makes r an empty object (its text is kept).
func (r *Record) startObject() {
	r.obj = true
	r.arena = append(r.arena[:0], '{')
	r.fields = r.fields[:0]
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
	r.startObject()
	r.addString(keyMessage, r.text)
}

// parseObject makes r the object b, reporting false (r unchanged) when b
// is not one valid JSON object. Values with line breaks (pretty-printed
// nested objects) are compacted, so the object is one line.
func (r *Record) parseObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	if !jsontext.IsObject(b) {
		return false
	}
	r.startObject()
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
		v := b[vs:ve]
		if len(v) > 0 && (v[0] == '{' || v[0] == '[') && bytes.ContainsAny(v, "\r\n") {
			var c bytes.Buffer
			_ = json.Compact(&c, v) // valid
			v = c.Bytes()
		}
		r.setRaw(b[ks:ke], v)
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

// find returns the index of the top-level field whose escaped key is key,
// or -1.
func (r *Record) find(key string) int {
	for i, f := range r.fields {
		if string(r.arena[f.ks:f.ke]) == key {
			return i
		}
	}
	return -1
}

// openField appends the separator and the quoted escaped key of a new field
// and its colon, returning the key's span. The value follows.
func (r *Record) openField(key []byte, escaped bool) (int, int) {
	if len(r.fields) > 0 {
		r.arena = append(r.arena, ',')
	}
	r.arena = append(r.arena, '"')
	ks := len(r.arena)
	if escaped || plainKey(key) {
		r.arena = append(r.arena, key...)
	} else {
		r.arena = jsontext.AppendBody(r.arena, key)
	}
	ke := len(r.arena)
	r.arena = append(r.arena, '"', ':')
	return ks, ke
}

// closeField records the field opened at ks, ke whose value ends the arena.
func (r *Record) closeField(ks, ke int) {
	r.fields = append(r.fields, field{int32(ks), int32(ke), int32(ke + 2), int32(len(r.arena))})
}

// splice replaces arena[s:e] by v (which must not be in the arena) and
// moves every offset at or after e.
func (r *Record) splice(s, e int, v []byte) {
	d := len(v) - (e - s)
	n := len(r.arena)
	if d > 0 {
		r.arena = append(r.arena, make([]byte, d)...)
	}
	copy(r.arena[s+len(v):], r.arena[e:n])
	copy(r.arena[s:], v)
	if d < 0 {
		r.arena = r.arena[:n+d]
	}
	if d == 0 {
		return
	}
	d32, e32 := int32(d), int32(e)
	for i := range r.fields {
		f := &r.fields[i]
		if f.ks >= e32 {
			f.ks += d32
		}
		if f.ke >= e32 {
			f.ke += d32
		}
		if f.vs >= e32 {
			f.vs += d32
		}
		if f.ve >= e32 {
			f.ve += d32
		}
	}
}

// setValue replaces the raw value of field i by v (not in the arena).
func (r *Record) setValue(i int, v []byte) {
	f := r.fields[i]
	r.splice(int(f.vs), int(f.ve), v)
}

// setRaw sets key (escaped, unquoted) to the raw JSON value v.
func (r *Record) setRaw(key, v []byte) {
	if i := r.find(string(key)); i >= 0 {
		r.setValue(i, v)
		return
	}
	ks, ke := r.openField(key, true)
	r.arena = append(r.arena, v...)
	r.closeField(ks, ke)
}

// SetString sets field key to the JSON string of v (the record must be an
// object).
func (r *Record) SetString(key string, v []byte) {
	if i := r.findName(key); i >= 0 {
		r.scr2 = jsontext.AppendString(r.scr2[:0], v)
		r.setValue(i, r.scr2)
		return
	}
	r.addString(key, v)
}

// findName finds a field by its plain (unescaped) name.
func (r *Record) findName(key string) int {
	if plainKey([]byte(key)) {
		return r.find(key)
	}
	r.scr2 = jsontext.AppendBody(r.scr2[:0], []byte(key))
	return r.find(string(r.scr2))
}

// addString appends field key (not already set: a parser filling a new
// object) with the JSON string of v.
func (r *Record) addString(key string, v []byte) {
	ks, ke := r.openField([]byte(key), false)
	r.arena = jsontext.AppendString(r.arena, v)
	r.closeField(ks, ke)
}

// SetInt sets field key to the number v.
func (r *Record) SetInt(key string, v int64) {
	var b [20]byte
	r.SetJSON(key, strconv.AppendInt(b[:0], v, 10))
}

// SetJSON sets field key to the raw JSON value v (valid JSON, not in the
// arena).
func (r *Record) SetJSON(key string, v []byte) {
	if i := r.findName(key); i >= 0 {
		r.setValue(i, v)
		return
	}
	ks, ke := r.openField([]byte(key), false)
	r.arena = append(r.arena, v...)
	r.closeField(ks, ke)
}

// removeAt deletes field i.
func (r *Record) removeAt(i int) {
	f := r.fields[i]
	s, e := int(f.ks)-1, int(f.ve) // from the key's quote to the value's end
	switch {
	case i > 0:
		s-- // the comma before
	case len(r.fields) > 1:
		e++ // the first field: the comma after
	}
	r.splice(s, e, nil)
	r.fields = append(r.fields[:i], r.fields[i+1:]...)
}

// Remove deletes top-level field key; it reports whether it was there.
func (r *Record) Remove(key string) bool {
	i := r.findName(key)
	if i < 0 {
		return false
	}
	r.removeAt(i)
	return true
}

// Rename renames top-level field from to to (replacing a field named to).
func (r *Record) Rename(from, to string) bool {
	return r.renameTop(string(appendKeyBody(nil, from)), string(appendKeyBody(nil, to)))
}

// renameTop renames a top-level field; the names are escaped.
func (r *Record) renameTop(from, to string) bool {
	i := r.find(from)
	if i < 0 || from == to {
		return i >= 0
	}
	if j := r.find(to); j >= 0 {
		r.removeAt(j)
		i = r.find(from)
	}
	f := r.fields[i]
	r.scr2 = append(r.scr2[:0], to...)
	r.splice(int(f.ks), int(f.ke), r.scr2)
	return true
}

// Raw returns top-level field key's raw JSON value.
func (r *Record) Raw(key string) ([]byte, bool) {
	if !r.obj {
		return nil, false
	}
	i := r.findName(key)
	if i < 0 {
		return nil, false
	}
	f := r.fields[i]
	return r.arena[f.vs:f.ve], true
}

// Value returns top-level field key's value as text: a string's contents
// (unescaped), or the raw JSON of any other value. dst is reused.
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

// appendKeyBody appends a plain name as an escaped key (without quotes).
func appendKeyBody(dst []byte, key string) []byte {
	if plainKey([]byte(key)) {
		return append(dst, key...)
	}
	return jsontext.AppendBody(dst, []byte(key))
}

// plainKey reports whether key needs no escaping in JSON.
func plainKey(key []byte) bool {
	for _, c := range key {
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return false
		}
	}
	return true
}

const keyMessage = "message"
