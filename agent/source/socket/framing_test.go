package socket

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

type framed struct {
	rec string
	fl  frameFlags
}

// frameAll feeds in to a framer in chunks of size chunk (0: whole) and
// returns the records, and the error that stopped it (end included).
func frameAll(octet bool, max int, closeOver bool, in []byte, chunk int) ([]framed, error) {
	return frameWith(octet, false, max, closeOver, in, chunk)
}

// frameWith is frameAll, with auto framing (lines and octet frames mixed)
// when auto is set.
func frameWith(octet, auto bool, max int, closeOver bool, in []byte, chunk int) ([]framed, error) {
	var got []framed
	var c []byte // the chunk being fed
	fr := newFramer(octet, max, []byte("\n"), closeOver, func(rec []byte, fl frameFlags) error {
		if fl.stable && len(rec) > 0 && !within(rec, c) {
			return fmt.Errorf("record %q marked stable is not in the chunk fed", rec)
		}
		fl.stable = false // checked here; where it is set depends on the chunks
		got = append(got, framed{string(rec), fl})
		return nil
	})
	fr.auto = auto
	if chunk <= 0 {
		chunk = len(in) + 1
	}
	for len(in) > 0 {
		n := min(chunk, len(in))
		// The framer may keep no reference to a chunk after feed.
		c = append([]byte(nil), in[:n]...)
		err := fr.feed(c)
		clear(c)
		if err != nil {
			return got, err
		}
		in = in[n:]
	}
	return got, fr.end()
}

// within reports whether b lies inside buf's memory.
func within(b, buf []byte) bool {
	if len(buf) == 0 {
		return false
	}
	start, end := uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&buf[0]))+uintptr(len(buf))
	p := uintptr(unsafe.Pointer(&b[0]))
	return p >= start && p+uintptr(len(b)) <= end
}

// Whole lines and octet frames within one chunk are marked stable (what the
// source batches); the framer's own buffer (a record across chunks, a
// truncated one) is not.
func TestFramer_StableRecordsAreInTheChunk(t *testing.T) {
	for _, tc := range []struct {
		octet         bool
		first, second string
	}{{false, "abc\nde", "f\n"}, {true, "3 abc3 de", "f"}} {
		octet := tc.octet
		var fls []frameFlags
		fr := newFramer(octet, 8, []byte("\n"), false, func(rec []byte, fl frameFlags) error { fls = append(fls, fl); return nil })
		require.NoError(t, fr.feed([]byte(tc.first)))
		require.NoError(t, fr.feed([]byte(tc.second)))
		require.NoError(t, fr.end())
		require.Len(t, fls, 2)
		require.True(t, fls[0].stable, "octet %v", octet)
		require.False(t, fls[1].stable, "octet %v: across two chunks", octet)
	}
}

func TestFramer(t *testing.T) {
	tr := func(size int) frameFlags { return frameFlags{truncated: true, size: size} } // size: as received
	pa := frameFlags{partial: true}
	tests := []struct {
		name      string
		octet     bool
		closeOver bool
		in        string
		want      []framed
		err       error
	}{
		{name: "lines", in: "a\nbb\r\n\nccc\n", want: []framed{{"a", frameFlags{}}, {"bb", frameFlags{}}, {"", frameFlags{}}, {"ccc", frameFlags{}}}},
		{name: "partial last line", in: "a\nbc", want: []framed{{"a", frameFlags{}}, {"bc", pa}}},
		{name: "long line truncated", in: "0123456789ab\nx\n", want: []framed{{"0123456\n", tr(12)}, {"x", frameFlags{}}}},
		{name: "exactly max", in: "01234567\n", want: []framed{{"01234567", frameFlags{}}}},
		{name: "max plus CR", in: "01234567\r\n", want: []framed{{"01234567", frameFlags{}}}},
		{name: "long line closes", closeOver: true, in: "a\n0123456789ab\nx\n", want: []framed{{"a", frameFlags{}}}, err: errOversize},
		{name: "octet", octet: true, in: "3 abc5 hello\n2 hi", want: []framed{{"abc", frameFlags{}}, {"hello", frameFlags{}}, {"hi", frameFlags{}}}},
		{name: "octet keeps newlines inside", octet: true, in: "6 a\nb\r\nc\n", want: []framed{{"a\nb\r\nc", frameFlags{}}}},
		{name: "octet oversize truncated", octet: true, in: "12 0123456789ab1 x", want: []framed{{"0123456\n", tr(12)}, {"x", frameFlags{}}}},
		{name: "octet oversize closes", octet: true, closeOver: true, in: "1 a12 0123456789ab1 x", want: []framed{{"a", frameFlags{}}}, err: errOversize},
		{name: "octet malformed header", octet: true, in: "3 abcX 1", want: []framed{{"abc", frameFlags{}}}, err: errMalformedFrame},
		{name: "octet leading zero", octet: true, in: "03 abc", err: errMalformedFrame},
		{name: "octet too many digits", octet: true, in: "12345678901 x", err: errMalformedFrame},
		{name: "octet short frame at end", octet: true, in: "5 ab", want: []framed{{"ab", pa}}},
		{name: "octet header without message at end", octet: true, in: "1 a5 ", want: []framed{{"a", frameFlags{}}}, err: errMalformedFrame},
		{name: "octet header cut at end", octet: true, in: "1 a12", want: []framed{{"a", frameFlags{}}}, err: errMalformedFrame},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{0, 1, 2, 3, 5} {
				got, err := frameAll(tc.octet, 8, tc.closeOver, []byte(tc.in), chunk)
				require.ErrorIs(t, err, tc.err, "chunk %d", chunk)
				if tc.err == nil {
					require.NoError(t, err)
				}
				require.Equal(t, tc.want, got, "chunk %d", chunk)
			}
		})
	}
}

// Auto framing (format syslog on a line-framed stream) takes lines and
// RFC 6587 octet-counted frames mixed, told apart per record: a record
// starting with digits and a space is a frame; one starting otherwise, or
// with digits not followed by a space, is a line. A newline right after a
// frame ends the frame (no empty record).
func TestFramer_AutoTakesLinesAndOctetFrames(t *testing.T) {
	tr := func(size int) frameFlags { return frameFlags{truncated: true, size: size} } // size: as received
	pa := frameFlags{partial: true}
	tests := []struct {
		name      string
		closeOver bool
		in        string
		want      []framed
		err       error
	}{
		{name: "lines", in: "<1>a\r\n<2>b\n", want: []framed{{"<1>a", frameFlags{}}, {"<2>b", frameFlags{}}}},
		{name: "frames", in: "4 <1>a5 <2>bc", want: []framed{{"<1>a", frameFlags{}}, {"<2>bc", frameFlags{}}}},
		{name: "frames ended by newlines", in: "4 <1>a\n5 <2>bc\r\n", want: []framed{{"<1>a", frameFlags{}}, {"<2>bc", frameFlags{}}}},
		{name: "mixed", in: "<1>a\n6 <2>b\nc<3>d\n3 xyz", want: []framed{{"<1>a", frameFlags{}}, {"<2>b\nc", frameFlags{}}, {"<3>d", frameFlags{}}, {"xyz", frameFlags{}}}},
		{name: "digits without space are a line", in: "20-1 x\n12\n", want: []framed{{"20-1 x", frameFlags{}}, {"12", frameFlags{}}}},
		{name: "leading zero is a line", in: "03 abc\n", want: []framed{{"03 abc", frameFlags{}}}},
		{name: "empty line stays a line", in: "<1>a\n\n<2>b\n", want: []framed{{"<1>a", frameFlags{}}, {"", frameFlags{}}, {"<2>b", frameFlags{}}}},
		{name: "digits cut at end are a partial line", in: "<1>a\n12", want: []framed{{"<1>a", frameFlags{}}, {"12", pa}}},
		{name: "short frame at end", in: "5 ab", want: []framed{{"ab", pa}}},
		{name: "frame truncated", in: "12 0123456789ab<1>x\n", want: []framed{{"0123456\n", tr(12)}, {"<1>x", frameFlags{}}}},
		{name: "frame oversize closes", closeOver: true, in: "1 a12 0123456789ab", want: []framed{{"a", frameFlags{}}}, err: errOversize},
		{name: "long digits line truncated", in: "12345678901234\n", want: []framed{{"1234567\n", tr(14)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{0, 1, 2, 3, 5} {
				got, err := frameWith(false, true, 8, tc.closeOver, []byte(tc.in), chunk)
				require.ErrorIs(t, err, tc.err, "chunk %d", chunk)
				if tc.err == nil {
					require.NoError(t, err)
				}
				require.Equal(t, tc.want, got, "chunk %d", chunk)
			}
		})
	}
}

// FuzzOctetFraming: splitOctetFrame never panics and never consumes more
// than it has; the streaming framer, fed the same bytes in any chunks,
// frames the same records.
func FuzzOctetFraming(f *testing.F) {
	for _, s := range []string{"3 abc5 hello", "5 ab", "0 ", "\n12 0123456789ab\n1 x", "X", "99999999999 x"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		const max = 1 << 20
		var want []string
		rest := in
		var refErr error
		for len(rest) > 0 {
			msg, n, err := splitOctetFrame(rest)
			if n < 0 || n > len(rest) {
				t.Fatalf("consumed %d of %d", n, len(rest))
			}
			if err != nil {
				refErr = err
				break
			}
			if n == 0 {
				break
			}
			want = append(want, string(msg))
			rest = rest[n:]
		}
		got, err := frameAll(true, max, false, in, int(chunk))
		n := min(len(got), len(want))
		for i := range n {
			if got[i].rec != want[i] {
				t.Fatalf("record %d: framer %q, reference %q", i, got[i].rec, want[i])
			}
		}
		if refErr == nil && len(rest) == 0 {
			if err != nil || len(got) != len(want) {
				t.Fatalf("complete frames: framer %d records (%v), reference %d", len(got), err, len(want))
			}
		}
		if refErr != nil && len(got) < len(want) {
			t.Fatalf("framer stopped early: %d records, reference %d before its error", len(got), len(want))
		}
		if bytes.Contains(in, []byte{0}) && len(got) > len(want)+1 {
			t.Fatalf("framer made %d records, reference %d", len(got), len(want))
		}
	})
}

// FuzzAutoFraming: auto framing frames the same records (and stops with
// the same error) whatever the chunks the stream arrives in.
func FuzzAutoFraming(f *testing.F) {
	for _, s := range []string{"4 <1>a\n<2>b\n", "12 x\n3 abc", "<1>a\n\n99", "1234567890123 x\n", "5 ab"} {
		f.Add([]byte(s), uint8(3), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8, closeOver bool) {
		whole, werr := frameWith(false, true, 16, closeOver, in, 0)
		got, err := frameWith(false, true, 16, closeOver, in, int(chunk))
		if !errors.Is(err, werr) || !errors.Is(werr, err) {
			t.Fatalf("chunk %d: error %v, whole %v", chunk, err, werr)
		}
		require.Equal(t, whole, got, "chunk %d", chunk)
	})
}
