// Package awscbor is the part of CBOR (RFC 8949) that the AWS JSON 1.1
// protocol's binary form, Content-Type application/x-amz-cbor-1.1, needs
// for Kinesis PutRecords: the request is written by a specialised encoder
// (data as byte strings: no base64), responses and errors are read by a
// small generic decoder. The document shapes are those of the JSON protocol
// ({"__type": ..., "message": ...} for errors).
package awscbor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"unicode/utf8"
)

// ContentType is the Content-Type of the protocol's requests and responses.
const ContentType = "application/x-amz-cbor-1.1"

// Major types.
const (
	majUint   = 0
	majNeg    = 1
	majBytes  = 2
	majText   = 3
	majArray  = 4
	majMap    = 5
	majTag    = 6
	majSimple = 7
)

// AppendHead appends the head of a data item of major type major and
// argument n (a length, a count or an integer), in its shortest form.
func AppendHead(dst []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(dst, m|byte(n))
	case n <= math.MaxUint8:
		return append(dst, m|24, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, m|25), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, m|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, m|27), n)
}

// AppendText appends s as a text string; invalid UTF-8 is replaced by
// U+FFFD (CBOR text must be UTF-8, as encoding/json does for JSON).
func AppendText(dst []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	dst = AppendHead(dst, majText, uint64(len(s)))
	return append(dst, s...)
}

// AppendBytes appends b as a byte string.
func AppendBytes(dst, b []byte) []byte {
	dst = AppendHead(dst, majBytes, uint64(len(b)))
	return append(dst, b...)
}

// Append appends v, one of nil, bool, string, []byte, int, int64, uint64,
// float64, []any, []map[string]any and map[string]any (keys in sorted
// order), nested.
func Append(dst []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(dst, 0xf6), nil
	case bool:
		if v {
			return append(dst, 0xf5), nil
		}
		return append(dst, 0xf4), nil
	case string:
		return AppendText(dst, v), nil
	case []byte:
		return AppendBytes(dst, v), nil
	case int:
		return appendInt(dst, int64(v)), nil
	case int64:
		return appendInt(dst, v), nil
	case uint64:
		return AppendHead(dst, majUint, v), nil
	case float64:
		return binary.BigEndian.AppendUint64(append(dst, 0xfb), math.Float64bits(v)), nil
	case []any:
		dst = AppendHead(dst, majArray, uint64(len(v)))
		for _, e := range v {
			var err error
			if dst, err = Append(dst, e); err != nil {
				return nil, err
			}
		}
		return dst, nil
	case []map[string]any:
		dst = AppendHead(dst, majArray, uint64(len(v)))
		for _, e := range v {
			var err error
			if dst, err = Append(dst, e); err != nil {
				return nil, err
			}
		}
		return dst, nil
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		dst = AppendHead(dst, majMap, uint64(len(v)))
		for _, k := range keys {
			dst = AppendText(dst, k)
			var err error
			if dst, err = Append(dst, v[k]); err != nil {
				return nil, err
			}
		}
		return dst, nil
	}
	return nil, fmt.Errorf("awscbor: cannot encode %T", v)
}

func appendInt(dst []byte, n int64) []byte {
	if n >= 0 {
		return AppendHead(dst, majUint, uint64(n))
	}
	return AppendHead(dst, majNeg, uint64(-(n + 1)))
}

// maxDepth bounds the nesting Decode accepts.
const maxDepth = 32

var errTruncated = errors.New("awscbor: truncated data item")

// Decode reads one data item from b into nil, bool, string, []byte (a
// copy), uint64, int64 (negative integers), float64, []any or
// map[string]any (text keys only), and returns the bytes after it. Tags are
// skipped (their content kept); definite and indefinite lengths are read.
func Decode(b []byte) (any, []byte, error) {
	d := decoder{b: b}
	v, err := d.value(0)
	if err != nil {
		return nil, nil, err
	}
	return v, d.b, nil
}

type decoder struct{ b []byte }

// head reads an item's head: its major type, additional information and
// argument (for additional information 31, indefinite, the argument is 0).
func (d *decoder) head() (major, info byte, arg uint64, err error) {
	if len(d.b) == 0 {
		return 0, 0, 0, errTruncated
	}
	c := d.b[0]
	major, info = c>>5, c&0x1f
	d.b = d.b[1:]
	var n int
	switch {
	case info < 24:
		return major, info, uint64(info), nil
	case info == 24:
		n = 1
	case info == 25:
		n = 2
	case info == 26:
		n = 4
	case info == 27:
		n = 8
	case info == 31:
		if major == majUint || major == majNeg || major == majTag {
			return 0, 0, 0, fmt.Errorf("awscbor: indefinite length for major type %d", major)
		}
		return major, info, 0, nil
	default:
		return 0, 0, 0, fmt.Errorf("awscbor: reserved additional information %d", info)
	}
	if len(d.b) < n {
		return 0, 0, 0, errTruncated
	}
	for _, x := range d.b[:n] {
		arg = arg<<8 | uint64(x)
	}
	d.b = d.b[n:]
	return major, info, arg, nil
}

// length checks that n items of at least min bytes each can fit in what is
// left.
func (d *decoder) length(n uint64, min int) (int, error) {
	if n > uint64(len(d.b)/min) {
		return 0, errTruncated
	}
	return int(n), nil
}

// isBreak consumes the "break" stop code if it comes next.
func (d *decoder) isBreak() (bool, error) {
	if len(d.b) == 0 {
		return false, errTruncated
	}
	if d.b[0] == 0xff {
		d.b = d.b[1:]
		return true, nil
	}
	return false, nil
}

// str reads the content of a byte or text string whose head was read.
func (d *decoder) str(major, info byte, arg uint64) ([]byte, error) {
	if info != 31 {
		n, err := d.length(arg, 1)
		if err != nil {
			return nil, err
		}
		s := make([]byte, n)
		copy(s, d.b)
		d.b = d.b[n:]
		return s, nil
	}
	var s []byte
	for {
		if brk, err := d.isBreak(); err != nil || brk {
			if s == nil && err == nil {
				s = []byte{}
			}
			return s, err
		}
		m, ci, carg, err := d.head()
		if err != nil {
			return nil, err
		}
		if m != major || ci == 31 {
			return nil, errors.New("awscbor: bad chunk in an indefinite-length string")
		}
		n, err := d.length(carg, 1)
		if err != nil {
			return nil, err
		}
		s = append(s, d.b[:n]...)
		d.b = d.b[n:]
	}
}

func (d *decoder) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, errors.New("awscbor: nested too deep")
	}
	major, info, arg, err := d.head()
	if err != nil {
		return nil, err
	}
	switch major {
	case majUint:
		return arg, nil
	case majNeg:
		if arg > math.MaxInt64 {
			return nil, errors.New("awscbor: negative integer out of range")
		}
		return -1 - int64(arg), nil
	case majBytes:
		return d.str(major, info, arg)
	case majText:
		s, err := d.str(major, info, arg)
		if err != nil {
			return nil, err
		}
		if !utf8.Valid(s) {
			return nil, errors.New("awscbor: text string is not UTF-8")
		}
		return string(s), nil
	case majArray:
		var a []any
		if info != 31 {
			n, err := d.length(arg, 1)
			if err != nil {
				return nil, err
			}
			a = make([]any, 0, n)
		}
		for i := 0; info == 31 || i < int(arg); i++ {
			if info == 31 {
				if brk, err := d.isBreak(); err != nil {
					return nil, err
				} else if brk {
					break
				}
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		if a == nil {
			a = []any{}
		}
		return a, nil
	case majMap:
		var m map[string]any
		if info != 31 {
			n, err := d.length(arg, 2)
			if err != nil {
				return nil, err
			}
			m = make(map[string]any, n)
		} else {
			m = make(map[string]any)
		}
		for i := 0; info == 31 || i < int(arg); i++ {
			if info == 31 {
				if brk, err := d.isBreak(); err != nil {
					return nil, err
				} else if brk {
					break
				}
			}
			k, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("awscbor: map key of type %T", k)
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			m[ks] = v
		}
		return m, nil
	case majTag:
		return d.value(depth + 1)
	}
	// Major type 7: simple values and floats.
	switch info {
	case 20:
		return false, nil
	case 21:
		return true, nil
	case 22, 23: // null, undefined
		return nil, nil
	case 25:
		return halfToFloat(uint16(arg)), nil
	case 26:
		return float64(math.Float32frombits(uint32(arg))), nil
	case 27:
		return math.Float64frombits(arg), nil
	case 31:
		return nil, errors.New("awscbor: unexpected break")
	}
	return nil, fmt.Errorf("awscbor: unsupported simple value %d", arg)
}

// halfToFloat converts an IEEE 754 half-precision float.
func halfToFloat(h uint16) float64 {
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	var v float64
	switch exp {
	case 0:
		v = math.Ldexp(mant, -24)
	case 31:
		if mant == 0 {
			v = math.Inf(1)
		} else {
			v = math.NaN()
		}
	default:
		v = math.Ldexp(mant+1024, exp-25)
	}
	if h&0x8000 != 0 {
		return -v
	}
	return v
}
