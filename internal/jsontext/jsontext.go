// Package jsontext writes and checks JSON text without reflection: the
// string escaper shared by the outputs' encoders and the processing stage,
// and a check that bytes are one JSON object.
package jsontext

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

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
// found 8 bytes at a time and copied whole.
func AppendBody(dst, s []byte) []byte {
	for {
		// i: the first byte a JSON string cannot hold as it is (a control
		// character, '"', '\\', or a byte of a multi-byte or invalid UTF-8
		// sequence). Each term of special flags its bytes in their high bit,
		// exactly at its lowest flagged byte (borrows only run upwards), and
		// so is the lowest flag of the union.
		i := 0
		for ; i+8 <= len(s); i += 8 {
			v := binary.LittleEndian.Uint64(s[i:])
			quote := v ^ (ones * '"')
			bslash := v ^ (ones * '\\')
			special := ((v-ones*0x20)&^v | (quote-ones)&^quote | (bslash-ones)&^bslash | v) & highs
			if special != 0 {
				i += bits.TrailingZeros64(special) / 8
				goto found
			}
		}
		for ; i < len(s); i++ {
			if c := s[i]; c >= utf8.RuneSelf || !jsonSafe[c] {
				goto found
			}
		}
		return append(dst, s...)
	found:
		dst = append(dst, s[:i]...)
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
