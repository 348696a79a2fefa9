package units

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
	}{
		{"512", 512}, {"64KiB", 64 << 10}, {"10MiB", 10 << 20}, {"1GiB", 1 << 30}, {"2TiB", 2 << 40},
		{"100kB", 100_000}, {"1.5GB", 1_500_000_000}, {"1MB", 1_000_000}, {" 4 MiB ", 4 << 20}, {"1m", 1 << 20}, {"0", 0},
	} {
		got, err := ParseByteSize(tc.in)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
	for _, bad := range []string{"", "MiB", "-1KiB", "ten", "1 parsec", "NaN", "1e300TiB"} {
		_, err := ParseByteSize(bad)
		require.Error(t, err, bad)
	}
}

func TestByteSize_YAMLRoundTrip(t *testing.T) {
	var v struct {
		A ByteSize `yaml:"a"`
		B ByteSize `yaml:"b"`
	}
	require.NoError(t, yaml.Unmarshal([]byte("a: 64MiB\nb: 1500\n"), &v))
	require.Equal(t, ByteSize(64<<20), v.A)
	require.Equal(t, ByteSize(1500), v.B)
	out, err := yaml.Marshal(v)
	require.NoError(t, err)
	require.Equal(t, "a: 64MiB\nb: \"1500\"\n", string(out))
	require.Error(t, yaml.Unmarshal([]byte("a: [1]\n"), &v))
	require.Error(t, yaml.Unmarshal([]byte("a: lots\n"), &v))
}

// A size prints in the unit that says it exactly with the fewest digits, so
// that messages give back what the user wrote: 10TB printed as
// "9765625000KiB" (the largest binary unit dividing 10^13), 3MB as "3000000".
func TestByteSize_StringUsesTheUnitThatSaysItExactly(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"10TB", "10TB"}, {"3MB", "3MB"}, {"1.5GB", "1500MB"}, {"100kB", "100kB"}, {"1000", "1kB"},
		{"64MiB", "64MiB"}, {"1GiB", "1GiB"}, {"2TiB", "2TiB"}, {"1536KiB", "1536KiB"}, {"4KiB", "4KiB"},
		{"512000", "500KiB"}, // a tie (512kB): the binary unit
		{"1500", "1500"}, {"1", "1"}, {"0", "0"}, {"1048575", "1048575"},
	} {
		v, err := ParseByteSize(tc.in)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, v.String(), tc.in)
		back, err := ParseByteSize(v.String())
		require.NoError(t, err, tc.in)
		require.Equal(t, v, back, "%s reads back", tc.in)
	}
}

// Regression: a bad size aborted decoding with an error that had no line,
// so `agent validate` printed "file: invalid byte size" and nothing after it.
func TestByteSize_BadValueIsATypeErrorWithItsLine(t *testing.T) {
	var v struct {
		A ByteSize `yaml:"a"`
		B ByteSize `yaml:"b"`
		C int      `yaml:"c"`
	}
	err := yaml.Unmarshal([]byte("a: -5\nb: [1]\nc: 7\n"), &v)
	var te *yaml.TypeError
	require.ErrorAs(t, err, &te)
	require.Equal(t, []string{`line 1: invalid byte size "-5" (want e.g. 512, 64KiB, 10MiB, 1GiB)`, "line 2: byte size must be a scalar"}, te.Errors)
	require.Equal(t, 7, v.C, "decoding goes on after a bad size")
}
