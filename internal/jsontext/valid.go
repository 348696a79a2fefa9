package jsontext

import "bytes"

// validObject reports whether b is exactly one JSON object (RFC 8259), with
// no white space around it. A hand-written recursive descent: several times
// faster than encoding/json.Valid, which the outputs would otherwise run on
// every record.
func validObject(b []byte) bool {
	i, ok := skipObject(b, 0, 0)
	return ok && i == len(b)
}

// maxDepth bounds nesting (encoding/json allows 10000).
const maxDepth = 10000

func ws(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func skipObject(b []byte, i, depth int) (int, bool) {
	if depth > maxDepth || i >= len(b) || b[i] != '{' {
		return i, false
	}
	i = ws(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		var ok bool
		if i, ok = skipStr(b, i); !ok {
			return i, false
		}
		i = ws(b, i)
		if i >= len(b) || b[i] != ':' {
			return i, false
		}
		if i, ok = skipVal(b, ws(b, i+1), depth); !ok {
			return i, false
		}
		i = ws(b, i)
		if i >= len(b) {
			return i, false
		}
		switch b[i] {
		case ',':
			i = ws(b, i+1)
		case '}':
			return i + 1, true
		default:
			return i, false
		}
	}
}

func skipArray(b []byte, i, depth int) (int, bool) {
	if depth > maxDepth {
		return i, false
	}
	i = ws(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, true
	}
	for {
		var ok bool
		if i, ok = skipVal(b, i, depth); !ok {
			return i, false
		}
		i = ws(b, i)
		if i >= len(b) {
			return i, false
		}
		switch b[i] {
		case ',':
			i = ws(b, i+1)
		case ']':
			return i + 1, true
		default:
			return i, false
		}
	}
}

func skipVal(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch c := b[i]; {
	case c == '"':
		return skipStr(b, i)
	case c == '{':
		return skipObject(b, i, depth+1)
	case c == '[':
		return skipArray(b, i, depth+1)
	case c == 't':
		return lit(b, i, "true")
	case c == 'f':
		return lit(b, i, "false")
	case c == 'n':
		return lit(b, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return skipNum(b, i)
	}
	return i, false
}

func lit(b []byte, i int, s string) (int, bool) {
	if len(b)-i < len(s) || string(b[i:i+len(s)]) != s {
		return i, false
	}
	return i + len(s), true
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

func skipNum(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i+1)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return i, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return i, false
		}
		i = j
	}
	return i, true
}

// strPlain[c]: c may appear unescaped in a string and needs no further
// check (ASCII other than controls, quote and backslash).
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// skipStr skips the string at b[i]. Like encoding/json.Valid it takes any
// byte of 0x80 and above (invalid UTF-8 included): the outputs pass such an
// object on as it is.
func skipStr(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return i, false
	}
	i++
	// The common case, a string without escapes: find its end with
	// IndexByte (vectorized) and check the span for control bytes.
	if j := bytes.IndexByte(b[i:], '"'); j >= 0 {
		span := b[i : i+j]
		if bytes.IndexByte(span, '\\') < 0 && !hasControl(span) {
			return i + j + 1, true
		}
	}
	for i < len(b) {
		i += plainRun(b[i:])
		if i >= len(b) {
			break
		}
		c := b[i]
		if strPlain[c] || c >= 0x80 {
			i++
			continue
		}
		switch c {
		case '"':
			return i + 1, true
		case '\\':
			if i+1 >= len(b) {
				return i, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(b)-i < 6 || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return i, false
				}
				i += 6
			default:
				return i, false
			}
		default:
			return i, false // a control character
		}
	}
	return i, false
}

// hasControl reports whether s holds a byte below 0x20.
func hasControl(s []byte) bool {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		v := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if (v-ones*0x20)&^v&highs != 0 {
			return true
		}
	}
	for ; i < len(s); i++ {
		if s[i] < 0x20 {
			return true
		}
	}
	return false
}
