package aggregate

import (
	"crypto/md5"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseHashKey_AcceptsWhatKinesisAccepts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want HashKey
		msg  string // "" ok
	}{
		{in: "0", want: HashKey{}},
		{in: "1", want: HashKey{Lo: 1}},
		{in: "18446744073709551615", want: HashKey{Lo: ^uint64(0)}},
		{in: "18446744073709551616", want: HashKey{Hi: 1}},
		{in: "340282366920938463463374607431768211455", want: MaxHashKey},
		{in: "340282366920938463463374607431768211456", msg: "larger than 2^128-1"},
		{in: "999999999999999999999999999999999999999", msg: "larger than 2^128-1"},
		{in: "1000000000000000000000000000000000000000", msg: "40 digits"},
		{in: "", msg: "empty"},
		{in: "00", msg: "leading zero"},
		{in: "0123", msg: "leading zero"},
		{in: "-1", msg: "not a decimal integer"},
		{in: "+1", msg: "not a decimal integer"},
		{in: " 1", msg: "not a decimal integer"},
		{in: "1 ", msg: "not a decimal integer"},
		{in: "1e3", msg: "not a decimal integer"},
		{in: "١", msg: "not a decimal integer"}, // an Arabic-Indic digit
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseHashKey(tc.in)
			if tc.msg != "" {
				require.ErrorIs(t, err, ErrExplicitHashKey)
				require.ErrorContains(t, err, tc.msg)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.in, got.String())
		})
	}
}

func TestHashKey_DecimalRoundTripMatchesMathBig(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	keys := []HashKey{{}, MaxHashKey, {Lo: 9_999_999_999_999_999_999}, {Lo: 10_000_000_000_000_000_000}, {Hi: 1}}
	for range 2000 {
		h := HashKey{Hi: r.Uint64(), Lo: r.Uint64()}
		switch r.IntN(3) { // also small numbers
		case 0:
			h.Hi = 0
		case 1:
			h.Hi >>= r.IntN(64)
		}
		keys = append(keys, h)
	}
	for _, h := range keys {
		s := h.String()
		require.Equal(t, toBig(h).String(), s)
		back, err := ParseHashKey(s)
		require.NoError(t, err)
		require.Equal(t, h, back)
		require.Equal(t, "x"+s, string(h.AppendDecimal([]byte("x"))))
	}
}

func TestPartitionKeyHash_IsTheMD5AsABigEndianInteger(t *testing.T) {
	for _, pk := range []string{"a", "pk1", "partitionKey-0", "ключ", string(make([]byte, 300))} {
		sum := md5.Sum([]byte(pk))
		want := new(big.Int).SetBytes(sum[:])
		require.Equal(t, want.String(), PartitionKeyHash(pk).String(), pk)
	}
	// A value checked by hand: MD5("a") = 0cc175b9c0f1b6a831c399e269772661.
	require.Equal(t, HashKey{Hi: 0x0cc175b9c0f1b6a8, Lo: 0x31c399e269772661}, PartitionKeyHash("a"))
}

func TestHashKey_CmpOrdersAsIntegers(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		a := HashKey{Hi: r.Uint64N(3), Lo: r.Uint64N(3)}
		b := HashKey{Hi: r.Uint64N(3), Lo: r.Uint64N(3)}
		require.Equal(t, toBig(a).Cmp(toBig(b)), a.Cmp(b))
	}
}
