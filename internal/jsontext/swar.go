package jsontext

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

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

// plainPrefix returns the index of the first byte of s that a JSON string
// cannot hold as it is (a control character, '"', '\\', or a byte of a
// multi-byte or invalid UTF-8 sequence), or len(s): 8 bytes at a time.
func plainPrefix(s []byte) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		v := binary.LittleEndian.Uint64(s[i:])
		quote := v ^ (ones * '"')
		bslash := v ^ (ones * '\\')
		// Each term flags its bytes in their high bit, exactly at its
		// lowest flagged byte (borrows only run upwards): so is the lowest
		// flag of the union.
		special := ((v-ones*0x20)&^v | (quote-ones)&^quote | (bslash-ones)&^bslash | v) & highs
		if special != 0 {
			return i + bits.TrailingZeros64(special)/8
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || !jsonSafe[c] {
			return i
		}
	}
	return i
}
