// Package units holds the value types used in the agent's configuration.
package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ByteSize is a number of bytes that reads from YAML as an integer or as a
// string with a unit: "512", "64KiB", "10MiB", "1GiB", "1.5GB", "100kB".
// Binary units (KiB, MiB, GiB, TiB) are powers of 1024; decimal units
// (kB/KB, MB, GB, TB) are powers of 1000.
type ByteSize int64

var units = []struct {
	suffix string
	mult   float64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"ki", 1 << 10}, {"mi", 1 << 20}, {"gi", 1 << 30}, {"ti", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"b", 1},
}

// ParseByteSize parses a size such as "64MiB".
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "" {
		return 0, fmt.Errorf("empty byte size")
	}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			mult = u.mult
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("invalid byte size %q (want e.g. 512, 64KiB, 10MiB, 1GiB)", s)
	}
	v := f * mult
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("byte size %q is too large", s)
	}
	return ByteSize(v), nil
}

// UnmarshalYAML implements yaml.Unmarshaler. Its errors are
// *yaml.TypeError with the node's line, so the decoder reports the place and
// goes on decoding the rest of the document.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: byte size must be a scalar", n.Line)}}
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*b = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// String formats b in the unit, binary (KiB…TiB) or decimal (kB…TB), that
// divides it exactly with the fewest digits, so that a size reads back as the
// user wrote it: 10TB prints "10TB" (not "9765625000KiB"), 64MiB "64MiB",
// 3MB "3MB". On a tie the binary unit wins (512000 is "500KiB"); a size no
// unit divides prints as bytes ("1500"). ParseByteSize reads every form back.
func (b ByteSize) String() string {
	v := int64(b)
	best := strconv.FormatInt(v, 10)
	if v == 0 {
		return best
	}
	bestDigits := len(best)
	for _, u := range []struct {
		s string
		m int64
	}{
		{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3},
	} {
		if v%u.m != 0 {
			continue
		}
		n := strconv.FormatInt(v/u.m, 10)
		if len(n) < bestDigits {
			best, bestDigits = n+u.s, len(n)
		}
	}
	return best
}
