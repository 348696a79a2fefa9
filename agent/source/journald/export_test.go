package journald

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func binField(name string, v []byte) string {
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(len(v)))
	return name + "\n" + string(l[:]) + string(v) + "\n"
}

type parsed struct {
	fields    map[string][]string
	cursor    string
	truncated bool
}

func parseAll(t *testing.T, in string, maxValue, maxEntry int) ([]parsed, error) {
	t.Helper()
	p := newExportReader(strings.NewReader(in), maxValue, maxEntry)
	var out []parsed
	for {
		e, err := p.next()
		if err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, err
		}
		pe := parsed{fields: map[string][]string{}, cursor: e.cursor, truncated: e.truncated}
		for _, f := range e.fields {
			pe.fields[f.name] = append(pe.fields[f.name], string(f.value))
		}
		out = append(out, pe)
	}
}

func TestParseExport(t *testing.T) {
	for _, tc := range []struct {
		name          string
		in            string
		maxValue      int
		want          []parsed
		err           error
		errContaining string
	}{
		{name: "text fields, two entries, blank lines around",
			in: "\n__CURSOR=c1\nMESSAGE=hello = world\n\n__CURSOR=c2\nMESSAGE=\n\n\n",
			want: []parsed{
				{fields: map[string][]string{"__CURSOR": {"c1"}, "MESSAGE": {"hello = world"}}, cursor: "c1"},
				{fields: map[string][]string{"__CURSOR": {"c2"}, "MESSAGE": {""}}, cursor: "c2"},
			}},
		{name: "binary field with newlines and a blank line inside",
			in:   "__CURSOR=c1\n" + binField("MESSAGE", []byte("a\n\nb\x00\xff")) + "PRIORITY=3\n\n",
			want: []parsed{{fields: map[string][]string{"__CURSOR": {"c1"}, "MESSAGE": {"a\n\nb\x00\xff"}, "PRIORITY": {"3"}}, cursor: "c1"}}},
		{name: "repeated field", in: "A=1\nA=2\n\n",
			want: []parsed{{fields: map[string][]string{"A": {"1", "2"}}}}},
		{name: "last entry without its blank line is dropped", in: "A=1\n\nA=2\n",
			want: []parsed{{fields: map[string][]string{"A": {"1"}}}}, err: io.ErrUnexpectedEOF},
		{name: "stream ends inside a binary value", in: "A=1\n\n" + binField("B", []byte("0123456789"))[:12],
			want: []parsed{{fields: map[string][]string{"A": {"1"}}}}, err: io.ErrUnexpectedEOF},
		{name: "bad field name", in: "A=1\n\nnot a field\n\n",
			want: []parsed{{fields: map[string][]string{"A": {"1"}}}}, err: errMalformed, errContaining: `field name "not a field"`},
		{name: "binary value without its newline", in: binField("B", []byte("xy"))[:len(binField("B", []byte("xy")))-1] + "Z\n\n",
			err: errMalformed, errContaining: "no newline"},
		{name: "absurd length", in: "B\n\xff\xff\xff\xff\xff\xff\xff\xff", err: errMalformed, errContaining: "length"},
		{name: "long text value cut", maxValue: 4, in: "A=0123456789\nB=ok\n\n",
			want: []parsed{{fields: map[string][]string{"A": {"0123"}, "B": {"ok"}}, truncated: true}}},
		{name: "long binary value cut, rest skipped", maxValue: 4, in: binField("A", []byte("0123456789")) + "B=ok\n\nC=1\n\n",
			want: []parsed{{fields: map[string][]string{"A": {"0123"}, "B": {"ok"}}, truncated: true}, {fields: map[string][]string{"C": {"1"}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mv := tc.maxValue
			if mv == 0 {
				mv = 1 << 20
			}
			got, err := parseAll(t, tc.in, mv, 4<<20)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				if tc.errContaining != "" {
					require.ErrorContains(t, err, tc.errContaining)
				}
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseExport_EntryIsBoundedByMaxEntry(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 100; i++ {
		b.WriteString("FIELD=" + strings.Repeat("x", 100) + "\n")
		b.WriteString(binField("BIN", bytes.Repeat([]byte{0xff}, 100)))
	}
	b.WriteString("\nNEXT=1\n\n")
	p := newExportReader(strings.NewReader(b.String()), 1000, 1000)
	e, err := p.next()
	require.NoError(t, err)
	require.True(t, e.truncated)
	total := 0
	for _, f := range e.fields {
		total += len(f.name) + len(f.value)
	}
	require.LessOrEqual(t, total, 1000)
	require.Less(t, len(e.fields), 200)
	e, err = p.next()
	require.NoError(t, err, "the stream stays in step after dropped fields")
	require.Equal(t, "NEXT", e.fields[0].name)
}

// FuzzParseExport: the reader never panics, keeps within its bounds, and
// what it parsed, written back in the export format, parses the same.
func FuzzParseExport(f *testing.F) {
	f.Add([]byte("__CURSOR=c1\nMESSAGE=hello\n\n"))
	f.Add([]byte("A=1\n" + binField("B", []byte("x\n\ny")) + "\nC=2\n\n"))
	f.Add([]byte(binField("B", []byte("0123456789abcdefghij")) + "\n"))
	f.Add([]byte("\n\n\nA=\n\nbad line\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxValue, maxEntry = 16, 64
		p := newExportReader(bytes.NewReader(data), maxValue, maxEntry)
		var again bytes.Buffer
		var want []string
		en := newEncoder(nil, 100)
		var rec []byte
		for {
			e, err := p.next()
			if err != nil {
				break
			}
			require.NotEmpty(t, e.fields)
			total := 0
			for _, f := range e.fields {
				require.LessOrEqual(t, len(f.value), maxValue)
				require.NoError(t, checkName([]byte(f.name)))
				total += len(f.name) + len(f.value)
				again.WriteString(binField(f.name, f.value))
			}
			require.LessOrEqual(t, total, maxEntry)
			again.WriteString("\n")
			// Encode a copy: encoding may cut values.
			cp := &entry{fields: append([]field(nil), e.fields...), truncated: e.truncated}
			rec, _ = en.encode(rec, cp)
			require.True(t, json.Valid(rec), "%q", rec)
			require.LessOrEqual(t, len(rec), 100)
			want = append(want, dump(e.fields))
		}
		p2 := newExportReader(bytes.NewReader(again.Bytes()), maxValue, maxEntry)
		for i, w := range want {
			e, err := p2.next()
			require.NoError(t, err, "entry %d", i)
			require.Equal(t, w, dump(e.fields))
		}
		_, err := p2.next()
		require.ErrorIs(t, err, io.EOF)
	})
}

func dump(fs []field) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "%q=%q;", f.name, f.value)
	}
	return b.String()
}
