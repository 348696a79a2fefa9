package aggregate

import (
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"math/bits"
)

// HashKey is a Kinesis hash key: an unsigned 128-bit integer. Kinesis maps a
// record to the shard whose hash-key range holds the record's explicit hash
// key or, when it has none, the MD5 of its partition key read as a big-endian
// integer. The zero value is hash key 0.
type HashKey struct {
	Hi, Lo uint64
}

// MaxHashKey is the largest hash key, 2^128-1.
var MaxHashKey = HashKey{Hi: ^uint64(0), Lo: ^uint64(0)}

// maxHashKeyDigits is the number of decimal digits of 2^128-1
// (340282366920938463463374607431768211455).
const maxHashKeyDigits = 39

// PartitionKeyHash returns the hash key Kinesis computes for a partition key:
// MD5 of its UTF-8 bytes as a big-endian unsigned 128-bit integer.
func PartitionKeyHash(pk string) HashKey {
	sum := md5.Sum([]byte(pk)) // the conversion does not escape: no allocation
	return HashKey{Hi: binary.BigEndian.Uint64(sum[:8]), Lo: binary.BigEndian.Uint64(sum[8:])}
}

// ParseHashKey parses an explicit hash key: a decimal integer from 0 to
// 2^128-1 in the form the Kinesis API accepts (digits only, no sign, no
// leading zero except for "0" itself). Errors wrap ErrExplicitHashKey.
func ParseHashKey(s string) (HashKey, error) {
	if s == "" {
		return HashKey{}, fmt.Errorf("%w: empty", ErrExplicitHashKey)
	}
	if len(s) > maxHashKeyDigits {
		return HashKey{}, fmt.Errorf("%w: %d digits, more than 2^128-1 has", ErrExplicitHashKey, len(s))
	}
	if len(s) > 1 && s[0] == '0' {
		return HashKey{}, fmt.Errorf("%w: %q has a leading zero", ErrExplicitHashKey, s)
	}
	var h HashKey
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return HashKey{}, fmt.Errorf("%w: %q is not a decimal integer", ErrExplicitHashKey, truncateForError(s))
		}
		// h = h*10 + digit, detecting overflow past 2^128-1.
		over, lo := bits.Mul64(h.Lo, 10)
		hiOver, hi := bits.Mul64(h.Hi, 10)
		hi, carry := bits.Add64(hi, over, 0)
		if hiOver != 0 || carry != 0 {
			return HashKey{}, fmt.Errorf("%w: %s is larger than 2^128-1", ErrExplicitHashKey, s)
		}
		lo, carry = bits.Add64(lo, uint64(c-'0'), 0)
		hi, carry = bits.Add64(hi, 0, carry)
		if carry != 0 {
			return HashKey{}, fmt.Errorf("%w: %s is larger than 2^128-1", ErrExplicitHashKey, s)
		}
		h = HashKey{Hi: hi, Lo: lo}
	}
	return h, nil
}

// Cmp compares h and o: -1 if h < o, 0 if equal, +1 if h > o.
func (h HashKey) Cmp(o HashKey) int {
	switch {
	case h.Hi < o.Hi:
		return -1
	case h.Hi > o.Hi:
		return 1
	case h.Lo < o.Lo:
		return -1
	case h.Lo > o.Lo:
		return 1
	}
	return 0
}

// String returns h in decimal, the form of Kinesis' ExplicitHashKey.
func (h HashKey) String() string {
	var buf [maxHashKeyDigits]byte
	return string(h.AppendDecimal(buf[:0]))
}

// AppendDecimal appends h in decimal to dst.
func (h HashKey) AppendDecimal(dst []byte) []byte {
	const chunk = 1e19 // the largest power of ten below 2^64
	var buf [maxHashKeyDigits]byte
	i := len(buf)
	hi, lo := h.Hi, h.Lo
	for {
		// (hi, lo), r = (hi, lo) / 1e19: at most three rounds.
		var r uint64
		hi, r = hi/chunk, hi%chunk
		lo, r = bits.Div64(r, lo, chunk)
		if hi == 0 && lo == 0 {
			for r != 0 || i == len(buf) {
				i--
				buf[i] = byte('0' + r%10)
				r /= 10
			}
			break
		}
		for range 19 { // a full chunk, zero-padded
			i--
			buf[i] = byte('0' + r%10)
			r /= 10
		}
	}
	return append(dst, buf[i:]...)
}

// truncateForError shortens user input quoted in an error message.
func truncateForError(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
