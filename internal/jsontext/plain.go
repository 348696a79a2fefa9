package jsontext

import "unicode/utf8"

// PlainLen returns the length of the longest prefix of s that a JSON
// string holds as it is: no '"', '\\', control character or non-ASCII
// byte. Parsers use it to find where a value needs escaping (or ends).
func PlainLen(s []byte) int {
	i := plainRun(s)
	for i < len(s) && s[i] < utf8.RuneSelf && jsonSafe[s[i]] {
		i++
	}
	return i
}
