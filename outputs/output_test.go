package outputs

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRejected_ClassifiesByHowManyRecordsAreBad(t *testing.T) {
	bad := errors.New("not JSON")
	require.NoError(t, Rejected(nil, nil, 3, nil))

	err := Rejected([]int{0, 1, 2}, nil, 3, bad)
	require.True(t, IsPermanent(err))
	var pe *PartialError
	require.False(t, errors.As(err, &pe), "all bad is a plain permanent error")

	err = Rejected([]int{1}, []string{"not JSON"}, 3, bad)
	require.ErrorAs(t, err, &pe)
	require.Equal(t, []int{1}, pe.Failed)
	require.True(t, IsPermanent(pe.Err))
	require.ErrorIs(t, err, bad)
}

func TestErrors_WrapAndClassify(t *testing.T) {
	base := errors.New("503")
	require.Nil(t, Permanent(nil))
	require.False(t, IsPermanent(base))
	require.True(t, IsPermanent(Permanent(base)))
	require.ErrorIs(t, Permanent(base), base)

	var te *ThrottleError
	require.ErrorAs(t, Throttle(base, 2*time.Second), &te)
	require.Equal(t, 2*time.Second, te.Delay)
	require.ErrorIs(t, te, base)
	require.False(t, IsPermanent(te))
}
