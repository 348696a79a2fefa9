package process

import (
	"fmt"
	"strings"
)

// Path names a field where a processor or a key policy names one:
// "user" is a top-level field, "user.id" the field id of the object in
// user (at any depth: "a.b.c"). A top-level field whose name is the whole
// path, dots included, wins: a record {"log.file": "x"} is read by
// "log.file" as written.
type Path struct {
	name  string   // escaped as a JSON key
	parts []string // escaped; one part when the name has no dot
}

// ParsePath makes a Path of a field name.
func ParsePath(name string) Path {
	p := Path{name: string(appendKeyBody(nil, name))}
	for _, part := range strings.Split(name, ".") {
		p.parts = append(p.parts, string(appendKeyBody(nil, part)))
	}
	return p
}

// nested reports whether p has more than one part.
func (p *Path) nested() bool { return len(p.parts) > 1 }

// validPath reports whether name is a usable field name or path (no empty
// part: "a..b", ".a" and "a." are mistakes).
func validPath(name string) bool {
	if !validUTF8Key(name) {
		return false
	}
	for _, part := range strings.Split(name, ".") {
		if part == "" {
			return false
		}
	}
	return true
}

// CheckPath returns an error when name is not a usable field name or path
// (see Path), for the settings outside this package that name a field.
func CheckPath(name string) error {
	if !validPath(name) {
		return fmt.Errorf("%q: want a name or a path of names (a.b.c)", name)
	}
	return nil
}

// member finds key (escaped) in the JSON object starting at b[i] (valid
// JSON, white space allowed). It returns the span of the member from its
// key's quote (ms) to its value's end (ve), its value's start (vs), and
// where a removal of the member ends and starts (rs, re: the member with
// the comma that joins it to a neighbour). When key is absent, found is
// false and ms is the index of the object's closing brace, empty whether
// the object has no member.
func member(b []byte, i int, key string) (ms, vs, ve, rs, re int, empty, found bool) {
	i = skipWS(b, i+1)
	if b[i] == '}' {
		return i, 0, 0, 0, 0, true, false
	}
	prevEnd := -1 // the end of the previous member's value
	for {
		ms = i
		ke := skipString(b, i)
		k := b[i+1 : ke-1]
		i = skipWS(b, ke) + 1 // past ':'
		vs = skipWS(b, i)
		ve = skipValue(b, vs)
		next := skipWS(b, ve)
		if string(k) == key {
			switch {
			case prevEnd >= 0: // ",<ws>"k":v"
				rs, re = prevEnd, ve
			case b[next] == ',': // the first of several: "k":v,<ws>
				rs, re = ms, skipWS(b, next+1)
			default: // the only member
				rs, re = ms, ve
			}
			return ms, vs, ve, rs, re, false, true
		}
		if b[next] != ',' {
			return next, 0, 0, 0, 0, false, false // b[next] is '}'
		}
		prevEnd = ve
		i = skipWS(b, next+1)
	}
}

// lookup returns the arena span of the raw JSON value at p, and the index
// of the top-level field it is in.
func (r *Record) lookup(p *Path) (vs, ve, top int, ok bool) {
	if !r.obj {
		return 0, 0, -1, false
	}
	top = r.find(p.name)
	if top >= 0 {
		f := r.fields[top]
		return int(f.vs), int(f.ve), top, true
	}
	if len(p.parts) == 1 && p.parts[0] == p.name {
		return 0, 0, -1, false
	}
	top = r.find(p.parts[0])
	if top < 0 {
		return 0, 0, -1, false
	}
	f := r.fields[top]
	vs, ve = int(f.vs), int(f.ve)
	for _, part := range p.parts[1:] {
		if r.arena[vs] != '{' {
			return 0, 0, -1, false
		}
		var found bool
		_, vs, ve, _, _, _, found = member(r.arena, vs, part)
		if !found {
			return 0, 0, -1, false
		}
	}
	return vs, ve, top, true
}

// RawAt returns the raw JSON value at p.
func (r *Record) RawAt(p *Path) ([]byte, bool) {
	vs, ve, _, ok := r.lookup(p)
	if !ok {
		return nil, false
	}
	return r.arena[vs:ve], true
}

// ValueAt returns the value at p as text: a string's contents (unescaped),
// or the raw JSON of any other value. dst is reused.
func (r *Record) ValueAt(dst []byte, p *Path) ([]byte, bool) {
	raw, ok := r.RawAt(p)
	if !ok {
		return dst, false
	}
	return jsonText(dst[:0], raw), true
}

// RemoveAt deletes the field at p; it reports whether it was there.
func (r *Record) RemoveAt(p *Path) bool {
	if !r.obj {
		return false
	}
	if i := r.find(p.name); i >= 0 || !p.nested() {
		if i < 0 {
			return false
		}
		r.removeAt(i)
		return true
	}
	parent := Path{name: "\x00", parts: p.parts[:len(p.parts)-1]} // never a top-level name
	vs, _, _, ok := r.lookup(&parent)
	if !ok || r.arena[vs] != '{' {
		return false
	}
	_, _, _, rs, re, _, found := member(r.arena, vs, p.parts[len(p.parts)-1])
	if !found {
		return false
	}
	r.splice(rs, re, nil)
	return true
}

// SetRawAt sets the field at p to the raw JSON value v (valid, not in the
// arena), making the objects on the way when they are absent. It reports
// false, changing nothing, when a field on the way is not an object.
func (r *Record) SetRawAt(p *Path, v []byte) bool {
	if i := r.find(p.name); i >= 0 || !p.nested() {
		r.setRaw([]byte(p.name), v)
		return true
	}
	top := r.find(p.parts[0])
	if top < 0 {
		r.scr2 = nestValue(r.scr2[:0], p.parts[1:], v)
		r.setRaw([]byte(p.parts[0]), r.scr2)
		return true
	}
	f := r.fields[top]
	vs := int(f.vs)
	for d, part := range p.parts[1:] {
		if r.arena[vs] != '{' {
			return false
		}
		ms, mvs, mve, _, _, empty, found := member(r.arena, vs, part)
		if found {
			if d == len(p.parts)-2 {
				r.splice(mvs, mve, v)
				return true
			}
			vs = mvs
			continue
		}
		// Insert "part":{...v} before the closing brace at ms.
		b := r.scr2[:0]
		if !empty {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, part...)
		b = append(b, '"', ':')
		b = nestValue(b, p.parts[d+2:], v)
		r.scr2 = b
		r.splice(ms, ms, b)
		return true
	}
	return false
}

// nestValue appends v inside objects named by parts ({"a":{"b":v}}).
func nestValue(dst []byte, parts []string, v []byte) []byte {
	for _, part := range parts {
		dst = append(dst, '{', '"')
		dst = append(dst, part...)
		dst = append(dst, '"', ':')
	}
	dst = append(dst, v...)
	for range parts {
		dst = append(dst, '}')
	}
	return dst
}

// RenameAt moves the value at from to to (replacing what is there), as
// if it were removed from from and then set at to. It reports whether from
// was there; when to cannot be set (a field on its way is not an object),
// nothing changes and ok is false. A to under from ("s" to "s.t") moves
// the value down into the objects made on the way, in from's place:
// {"s":"v"} becomes {"s":{"t":"v"}}.
func (r *Record) RenameAt(from, to *Path) (present, ok bool) {
	if !from.nested() && !to.nested() {
		return r.renameTop(from.name, to.name), true
	}
	vs, ve, _, found := r.lookup(from)
	if !found {
		return false, true
	}
	if from.name == to.name {
		return true, true
	}
	raw := r.arena[vs:ve]
	if r.under(vs, from, to) {
		r.scr = nestValue(r.scr[:0], to.parts[len(from.parts):], raw)
		r.splice(vs, ve, r.scr)
		return true, true
	}
	r.scr = append(r.scr[:0], raw...) // out of the arena: the edits below move it
	v := r.scr
	// Set first (it may fail), then remove the old place (its span may
	// have moved).
	if !r.SetRawAt(to, v) {
		return true, false
	}
	if raw2, ok := r.RawAt(from); ok && string(raw2) == string(v) {
		r.RemoveAt(from)
	}
	return true, true
}

// under reports whether to names a place inside the value at from (which
// starts at vs): to is not a top-level name and its first parts walk to
// from's value.
func (r *Record) under(vs int, from, to *Path) bool {
	if len(to.parts) <= len(from.parts) || r.find(to.name) >= 0 {
		return false
	}
	prefix := Path{name: "\x00", parts: to.parts[:len(from.parts)]} // never a top-level name: walked
	pvs, _, _, ok := r.lookup(&prefix)
	return ok && pvs == vs
}
