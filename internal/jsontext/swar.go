package jsontext

import "encoding/binary"

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plainRun returns how many bytes from the start of s, in whole 8-byte
// words, need no escaping in a JSON string (printable ASCII other than '"'
// and '\\'): the string writer and checker skip them a word at a time.
func plainRun(s []byte) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		v := binary.LittleEndian.Uint64(s[i:])
		quote := v ^ (ones * '"')
		bslash := v ^ (ones * '\\')
		special := (v - ones*0x20) | // a byte below 0x20 (or, with the high bit, handled below)
			(quote-ones) & ^quote | // a '"'
			(bslash-ones) & ^bslash // a '\\'
		if (special|v)&highs != 0 {
			return i
		}
	}
	return i
}
