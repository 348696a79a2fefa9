package journald

import (
	"encoding/base64"
	"strconv"
	"time"
	"unicode/utf8"
)

// Address fields of the export format left out of the record: positions in
// one journal file, of no use downstream (the cursor names the entry).
var skippedFields = map[string]bool{
	"__MONOTONIC_TIMESTAMP": true,
	"__SEQNUM":              true,
	"__SEQNUM_ID":           true,
}

// truncatedField is added (true) to a record whose values were cut to fit
// max_record_bytes.
const truncatedField = "_AGENT_TRUNCATED"

// encoder turns entries into JSON records. Not safe for concurrent use.
type encoder struct {
	exclude map[string]bool
	max     int // max_record_bytes

	order []int          // the entry's field indexes, grouped by name
	seen  map[string]int // name -> position in groups
	group [][]int
}

func newEncoder(exclude []string, maxRecord int) *encoder {
	ex := map[string]bool{}
	for _, f := range exclude {
		ex[f] = true
	}
	return &encoder{exclude: ex, max: maxRecord, seen: map[string]int{}}
}

// encode appends e as one JSON object to dst[:0]: every field but the
// skipped and excluded ones, in the order of their first appearance; a name
// that appears more than once (the journal allows it) has an array of its
// values. Values that are valid UTF-8 are JSON strings (newlines and all),
// others {"base64": "..."}; __REALTIME_TIMESTAMP becomes an RFC 3339 time
// in UTC with microseconds. A record longer than max is made to fit by
// cutting its longest values and adding "_AGENT_TRUNCATED": true; cut
// reports whether that happened (or the reader already cut the entry).
func (en *encoder) encode(dst []byte, e *entry) (out []byte, cut bool) {
	clear(en.seen)
	en.group = en.group[:0]
	for i, f := range e.fields {
		if skippedFields[f.name] || en.exclude[f.name] {
			continue
		}
		g, ok := en.seen[f.name]
		if !ok {
			g = len(en.group)
			en.seen[f.name] = g
			if g < cap(en.group) {
				en.group = en.group[:g+1]
				en.group[g] = en.group[g][:0]
			} else {
				en.group = append(en.group, nil)
			}
		}
		en.group[g] = append(en.group[g], i)
	}
	cut = e.truncated
	out = en.appendObject(dst[:0], e, cut)
	// Each round shortens a value or drops a field: it ends.
	for len(out) > en.max {
		cut = true
		// Cut the longest value by what is too much (encoded bytes are at
		// least the raw bytes), plus room for the marker.
		longest, size := -1, 0
		for _, g := range en.group {
			for _, i := range g {
				if n := len(e.fields[i].value); n > size {
					longest, size = i, n
				}
			}
		}
		excess := len(out) - en.max + len(truncatedField) + 16
		if longest < 0 {
			// Only names left: drop the last group.
			if len(en.group) == 0 {
				break // "{}" plus the marker: shorter than any max
			}
			en.group = en.group[:len(en.group)-1]
		} else {
			v := e.fields[longest].value
			n := max(len(v)-excess, 0)
			for n > 0 && !utf8.RuneStart(v[n]) {
				n--
			}
			e.fields[longest].value = v[:n]
		}
		out = en.appendObject(out[:0], e, cut)
	}
	return out, cut
}

func (en *encoder) appendObject(b []byte, e *entry, cut bool) []byte {
	b = append(b, '{')
	for gi, g := range en.group {
		if gi > 0 {
			b = append(b, ',')
		}
		name := e.fields[g[0]].name
		b = appendString(b, name)
		b = append(b, ':')
		if len(g) > 1 {
			b = append(b, '[')
		}
		for j, i := range g {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, name, e.fields[i].value)
		}
		if len(g) > 1 {
			b = append(b, ']')
		}
	}
	if cut {
		if len(en.group) > 0 {
			b = append(b, ',')
		}
		b = append(b, `"`+truncatedField+`":true`...)
	}
	return append(b, '}')
}

func appendValue(b []byte, name string, v []byte) []byte {
	if name == "__REALTIME_TIMESTAMP" {
		if us, err := strconv.ParseInt(string(v), 10, 64); err == nil && us >= 0 {
			b = append(b, '"')
			b = time.UnixMicro(us).UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
			return append(b, '"')
		}
	}
	if !utf8.Valid(v) {
		b = append(b, `{"base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, v)
		return append(b, `"}`...)
	}
	return appendString(b, string(v))
}

const hexDigits = "0123456789abcdef"

// appendString appends s (valid UTF-8) as a JSON string. It escapes what
// JSON requires and nothing else ("<", ">" and "&" stay as they are).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
