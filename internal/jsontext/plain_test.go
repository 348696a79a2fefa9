package jsontext

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPlainLen(t *testing.T) {
	for in, want := range map[string]int{
		"": 0, "abc": 3, "0123456789abcdef": 16, `0123456789"x`: 10, "01234567\\": 8,
		"0123456789abcd\x01": 14, "0123é": 4, "\x7f": 1, "a\tb": 1,
	} {
		require.Equal(t, want, PlainLen([]byte(in)), "%q", in)
	}
}
