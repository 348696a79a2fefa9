package kinesalite

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBufferBytes(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want []byte
		bad  bool
	}{
		{raw: `{"type":"Buffer","data":[0,1,255,10]}`, want: []byte{0, 1, 255, 10}},
		{raw: `{"type":"Buffer","data":[]}`, want: []byte{}},
		{raw: `{"type":"Buffer","data":[ 7 , 8 ]}`, want: []byte{7, 8}},
		{raw: `{"type":"Buffer","data":[256]}`, bad: true},
		{raw: `{"type":"Buffer","data":[1,,2]}`, bad: true},
		{raw: `{"type":"Buffer","data":[-1]}`, bad: true},
		{raw: `{"type":"Buffer","data":[1.5]}`, bad: true},
	} {
		require.True(t, isBuffer([]byte(tc.raw)), tc.raw)
		got, err := bufferBytes([]byte(tc.raw))
		if tc.bad {
			require.Error(t, err, tc.raw)
			continue
		}
		require.NoError(t, err, tc.raw)
		require.Equal(t, tc.want, got, tc.raw)
	}
	require.False(t, isBuffer([]byte(`"aGVsbG8="`)))
	require.False(t, isBuffer([]byte(`{"type":"Other","data":[1]}`)))
}
