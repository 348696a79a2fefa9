package file

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

type piece struct {
	data       string
	start, end int64
	kind       recordKind
}

// splitAll feeds data to a splitter in chunks of the given sizes (cycled),
// keeping the unconsumed tail as the run loop does, and flushes at the end.
func splitAll(t testing.TB, limit int, marker string, split bool, data []byte, chunks []int) []piece {
	var out []piece
	sp := splitter{max: limit, marker: []byte(marker), split: split}
	sp.out = func(rec []byte, start, end int64, kind recordKind) error {
		out = append(out, piece{string(rec), start, end, kind})
		return nil
	}
	var pending []byte
	base := int64(0)
	for i, off := 0, 0; off < len(data); i++ {
		n := len(data) - off
		if len(chunks) > 0 {
			n = min(n, max(1, chunks[i%len(chunks)]))
		}
		buf := append(append([]byte(nil), pending...), data[off:off+n]...)
		off += n
		c, err := sp.feed(buf, base)
		if err != nil {
			t.Fatal(err)
		}
		if len(buf)-c > limit+1 {
			t.Fatalf("left %d bytes, more than max+1", len(buf)-c)
		}
		pending = buf[c:]
		base += int64(c)
	}
	if err := sp.flush(pending, base); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSplitter_Lines(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    string
		max   int
		split bool
		want  []piece
	}{
		{name: "lf and crlf", in: "a\nbb\r\n\nc", max: 10, want: []piece{
			{"a", 0, 2, kindLine}, {"bb", 2, 6, kindLine}, {"", 6, 7, kindLine}, {"c", 7, 8, kindLine}}},
		{name: "lone cr kept", in: "a\rb\n\r", max: 10, want: []piece{{"a\rb", 0, 4, kindLine}, {"\r", 4, 5, kindLine}}},
		{name: "exactly max with crlf", in: "abcd\r\nx\n", max: 4, want: []piece{{"abcd", 0, 6, kindLine}, {"x", 6, 8, kindLine}}},
		{name: "truncate", in: "abcdefgh\nxy\n", max: 4, want: []piece{{"abc|", 0, 9, kindTruncated}, {"xy", 9, 12, kindLine}}},
		{name: "split", in: "abcdefghij\nxy\n", max: 4, split: true, want: []piece{
			{"abcd", 0, 4, kindSplit}, {"efgh", 4, 8, kindSplitMore}, {"ij", 8, 11, kindSplitMore}, {"xy", 11, 14, kindLine}}},
		{name: "split multiple of max", in: "abcdefgh\r\n", max: 4, split: true, want: []piece{
			{"abcd", 0, 4, kindSplit}, {"efgh", 4, 10, kindSplitMore}}},
		{name: "invalid utf8 passes through", in: "\xff\xfe\x00z\n", max: 10, want: []piece{{"\xff\xfe\x00z", 0, 5, kindLine}}},
		{name: "truncated partial at flush", in: "abcdefgh", max: 4, want: []piece{{"abc|", 0, 8, kindTruncated}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunks := range [][]int{nil, {1}, {2, 3}, {5}} {
				got := splitAll(t, tc.max, "|", tc.split, []byte(tc.in), chunks)
				require.Equal(t, tc.want, got, "chunks %v", chunks)
			}
		})
	}
}

// reference splits data the simple way: whole input at once.
func reference(data []byte, limit int, marker string, split bool) []piece {
	var out []piece
	off := int64(0)
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		var line []byte
		end := off
		if i < 0 {
			line, end, data = data, off+int64(len(data)), nil
		} else {
			line, end, data = data[:i], off+int64(i)+1, data[i+1:]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
		}
		switch {
		case len(line) <= limit:
			out = append(out, piece{string(line), off, end, kindLine})
		case !split:
			out = append(out, piece{string(line[:limit-len(marker)]) + marker, off, end, kindTruncated})
		default:
			s := off
			kind := kindSplit
			for len(line) > limit {
				out = append(out, piece{string(line[:limit]), s, s + int64(limit), kind})
				kind = kindSplitMore
				line, s = line[limit:], s+int64(limit)
			}
			out = append(out, piece{string(line), s, end, kindSplitMore})
		}
		off = end
	}
	return out
}

// FuzzSplitter checks that chunked splitting gives what splitting the whole
// input gives, that records tile the input (every byte is in exactly one
// record or terminator, nothing invented), and that it never panics.
func FuzzSplitter(f *testing.F) {
	f.Add([]byte("a\nbb\r\n\nccc"), uint8(3), uint8(2), false)
	f.Add([]byte("abcdefgh\r\nxy\r"), uint8(4), uint8(3), true)
	f.Add([]byte(strings.Repeat("x", 50)+"\n"), uint8(7), uint8(9), true)
	f.Fuzz(func(t *testing.T, data []byte, max, chunk uint8, split bool) {
		m := int(max%16) + 2
		marker := "#"
		got := splitAll(t, m, marker, split, data, []int{int(chunk%17) + 1})
		want := reference(data, m, marker, split)
		if len(want) == 0 {
			want = nil
		}
		require.Equal(t, want, got)
		next := int64(0)
		for _, p := range got {
			require.Equal(t, next, p.start, "records must tile the input")
			require.Greater(t, p.end, p.start-1)
			next = p.end
		}
		require.Equal(t, int64(len(data)), next)
	})
}

// A line flushed without its newline (the file was idle) goes on with the
// next bytes: their text is the next record, but the newline that only
// ends the flushed line ("\n", "\r\n", or the "\n" of a flushed "\r")
// makes no record.
func TestSplitter_NewlineAfterFlushMakesNoRecord(t *testing.T) {
	const F = "<flush>" // the file was idle: flush what is pending
	for _, tc := range []struct {
		name  string
		parts []string // fed one after another
		want  []piece
	}{
		{name: "cr flushed then lf", parts: []string{"abc\r", F, "\nx\n"}, want: []piece{
			{"abc\r", 0, 4, kindLine}, {"x", 5, 7, kindLine}}},
		{name: "lf", parts: []string{"abc", F, "\n"}, want: []piece{{"abc", 0, 3, kindLine}}},
		{name: "crlf", parts: []string{"abc", F, "\r\nx\n"}, want: []piece{{"abc", 0, 3, kindLine}, {"x", 5, 7, kindLine}}},
		{name: "cr then lf apart", parts: []string{"abc", F, "\r", "\nx\n"}, want: []piece{{"abc", 0, 3, kindLine}, {"x", 5, 7, kindLine}}},
		{name: "rest of the line", parts: []string{"abc", F, "def\n"}, want: []piece{{"abc", 0, 3, kindLine}, {"def", 3, 7, kindLine}}},
		{name: "lone cr is data", parts: []string{"abc", F, "\rx\n"}, want: []piece{{"abc", 0, 3, kindLine}, {"\rx", 3, 6, kindLine}}},
		{name: "an empty line after it is one", parts: []string{"abc", F, "\n\n"}, want: []piece{{"abc", 0, 3, kindLine}, {"", 4, 5, kindLine}}},
		{name: "only the next byte", parts: []string{"abc", F, "x", "\n"}, want: []piece{{"abc", 0, 3, kindLine}, {"x", 3, 5, kindLine}}},
		{name: "rest flushed too", parts: []string{"abc", F, "\r", F, "\n"}, want: []piece{{"abc", 0, 3, kindLine}, {"\r", 3, 4, kindLine}}},
		{name: "truncated line flushed", parts: []string{"abcdefgh", F, "\nx\n"}, want: []piece{{"abc|", 0, 8, kindTruncated}, {"x", 9, 11, kindLine}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out []piece
			sp := splitter{max: 4, marker: []byte("|")}
			sp.out = func(rec []byte, start, end int64, kind recordKind) error {
				out = append(out, piece{string(rec), start, end, kind})
				return nil
			}
			var pending []byte
			base := int64(0)
			for _, part := range tc.parts {
				if part == F {
					require.NoError(t, sp.flush(pending, base))
					base += int64(len(pending))
					pending = nil
					continue
				}
				buf := append(append([]byte(nil), pending...), part...)
				c, err := sp.feed(buf, base)
				require.NoError(t, err)
				pending, base = buf[c:], base+int64(c)
			}
			require.Empty(t, pending)
			require.Equal(t, tc.want, out)
		})
	}
}
