package jsontext

import (
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// appendBodyRef is the byte-at-a-time AppendBody that the word-at-a-time
// one is checked against.
func appendBodyRef(dst, s []byte) []byte {
	start := 0
	for i := plainRun(s); i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				if i&7 == 0 {
					// Back on a word boundary: skip plain words again
					// (a line has a few quotes among long plain runs).
					i += plainRun(s[i:])
				}
				continue
			}
			dst = append(dst, s[start:i]...)
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
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

func FuzzAppendBody_MatchesByteAtATime(f *testing.F) {
	for _, s := range []string{"", "plain", `a "quoted" run of words \ and more`, "ctl \x00\x1f\x7f", "é漢🎉\xff\xc3(", "12345678\"12345678\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		require.Equal(t, string(appendBodyRef([]byte("x"), s)), string(AppendBody([]byte("x"), s)))
	})
}
