// Package jsontext writes and checks JSON text without reflection: the
// string escaper shared by the outputs' encoders and the processing stage,
// and a check that bytes are one JSON object.
package jsontext

import "unicode/utf8"

const hexDigits = "0123456789abcdef"

// jsonSafe[c] is true for the ASCII bytes that need no escaping inside a JSON
// string.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// AppendString appends s as a JSON string (quotes included) to dst.
//
// Bytes are taken as UTF-8. Control characters are escaped; every byte that
// is not part of a valid UTF-8 sequence is replaced by \ufffd (U+FFFD, the
// replacement character), as encoding/json does, so the output is always
// valid JSON. That replacement is lossy: a destination that needs binary data
// byte for byte must use a base64-carrying format instead.
func AppendString(dst, s []byte) []byte {
	dst = append(dst, '"')
	dst = AppendBody(dst, s)
	return append(dst, '"')
}

// AppendBody appends s escaped as AppendString does, without the quotes
// (for a string written in pieces). Runs of bytes that need no escaping are
// found a word at a time and copied whole.
func AppendBody(dst, s []byte) []byte {
	for {
		i := plainPrefix(s)
		dst = append(dst, s[:i]...)
		if i == len(s) {
			return dst
		}
		c := s[i]
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			s = s[i+1:]
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		s = s[i+size:]
	}
}

// IsObject reports whether b (with no surrounding white space) is one
// valid JSON object.
func IsObject(b []byte) bool {
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return false
	}
	return validObject(b)
}
