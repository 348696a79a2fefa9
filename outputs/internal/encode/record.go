package encode

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/jsontext"
)

// Encoding is how an output writes one user record's data.
type Encoding int

const (
	// EncodingJSON writes one JSON object per record: the record itself when
	// it is a JSON object (the processing stage makes records objects, with
	// their envelope fields), else {"message":"<the record as a JSON
	// string>"}. A record with line breaks stays one object (they are
	// escaped), and the output is valid JSON for any bytes.
	EncodingJSON Encoding = iota
	// EncodingText writes the record's bytes as they are, except that a
	// line break inside a record (a multiline record: a stack trace) is
	// written as the two characters \n (and a carriage return as \r), so
	// every record is exactly one line. Lossy for records that contain
	// "\n" or "\r"; use json where they must come back byte for byte.
	EncodingText
)

// Encoding names as they appear in configuration.
const (
	EncodingNameJSON = "json"
	EncodingNameText = "text"
)

// ParseEncoding maps a configured name to an Encoding; "" is def.
func ParseEncoding(s string, def Encoding) (Encoding, error) {
	switch s {
	case "":
		return def, nil
	case EncodingNameJSON:
		return EncodingJSON, nil
	case EncodingNameText:
		return EncodingText, nil
	}
	return 0, fmt.Errorf("unknown %q (want %s or %s)", s, EncodingNameJSON, EncodingNameText)
}

// String returns the configuration name.
func (e Encoding) String() string {
	if e == EncodingText {
		return EncodingNameText
	}
	return EncodingNameJSON
}

// AppendRecord appends data in encoding e, without a line terminator.
func AppendRecord(dst []byte, e Encoding, data []byte) []byte {
	if e == EncodingText {
		return AppendText(dst, data)
	}
	return AppendJSONObject(dst, data)
}

// AppendJSONObject appends data as one JSON object: data itself (without
// surrounding white space) when it is a valid JSON object, else
// {"message":<data as a JSON string>}.
func AppendJSONObject(dst, data []byte) []byte {
	if !maybeObject(data) {
		return appendMessage(dst, data)
	}
	if obj := trimSpace(data); IsJSONObject(obj) {
		if indexLineBreak(obj) < 0 {
			return append(dst, obj...)
		}
		// A pretty-printed object: its line breaks are white space (a JSON
		// string cannot hold a raw one), dropped to keep it one line.
		buf := bytes.NewBuffer(dst)
		if json.Compact(buf, obj) == nil {
			return buf.Bytes()
		}
		dst = buf.Bytes()[:len(dst)]
	}
	return appendMessage(dst, data)
}

// appendMessage appends {"message":<data as a JSON string>}.
func appendMessage(dst, data []byte) []byte {
	dst = append(dst, `{"message":`...)
	dst = AppendJSONString(dst, data)
	return append(dst, '}')
}

// AppendMadeJSONObject is AppendJSONObject for data known to be one valid
// JSON object without white space around it (aggregate.Aggregate.JSONObjects:
// the processing stage made it): it is not checked again, only kept on one
// line.
func AppendMadeJSONObject(dst, data []byte) []byte {
	if indexLineBreak(data) < 0 {
		return append(dst, data...)
	}
	return AppendJSONObject(dst, data)
}

// AppendRecordOf is AppendRecord for a record of an aggregate whose records
// are all JSON objects when objects is true (AppendMadeJSONObject).
func AppendRecordOf(dst []byte, e Encoding, data []byte, objects bool) []byte {
	if e == EncodingJSON && objects {
		return AppendMadeJSONObject(dst, data)
	}
	return AppendRecord(dst, e, data)
}

// IsJSONObject reports whether b (with no surrounding white space) is one
// valid JSON object.
func IsJSONObject(b []byte) bool { return jsontext.IsObject(b) }

// AppendText appends data with "\n" and "\r" written as \n and \r.
func AppendText(dst, data []byte) []byte {
	for {
		i := indexLineBreak(data)
		if i < 0 {
			return append(dst, data...)
		}
		dst = append(dst, data[:i]...)
		if data[i] == '\n' {
			dst = append(dst, '\\', 'n')
		} else {
			dst = append(dst, '\\', 'r')
		}
		data = data[i+1:]
	}
}

// indexLineBreak returns the index of the first "\n" or "\r" in b, or -1:
// two vectorized scans, much faster than a loop over the bytes for records
// that have none (almost all).
func indexLineBreak(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i >= 0 {
		b = b[:i]
	}
	if j := bytes.IndexByte(b, '\r'); j >= 0 {
		return j
	}
	return i
}

// maybeObject reports whether b's first byte other than white space is
// '{': the cheap test that tells most text lines are no objects (before
// trimSpace walks back over their trailing blanks).
func maybeObject(b []byte) bool {
	for _, c := range b {
		if !isSpace(c) {
			return c == '{'
		}
	}
	return false
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// AppendEncodedLine appends one user record as a line: in LineKPLJSON the
// KPL fields (e is not used: the data is base64), else the record in
// encoding e followed by "\n".
func AppendEncodedLine(dst []byte, f LineFormat, e Encoding, pk, ehk, data []byte) []byte {
	if f == LineKPLJSON {
		return AppendLine(dst, f, pk, ehk, data)
	}
	dst = AppendRecord(dst, e, data)
	return append(dst, '\n')
}

// AppendEncodedLines is AppendLines with an encoding (AppendEncodedLine).
// The records of an aggregate of JSON objects (Aggregate.JSONObjects) are
// not checked again.
func AppendEncodedLines(dst []byte, f LineFormat, e Encoding, a *aggregate.Aggregate) ([]byte, error) {
	mark := len(dst)
	if f == LineNDJSON {
		if out, ok := AppendLinesAsIs(dst, e, a); ok {
			return out, nil
		}
	}
	objects := a.JSONObjects
	err := aggregate.ForEach(a, func(pk, ehk, data []byte) error {
		if f == LineKPLJSON {
			dst = AppendLine(dst, f, pk, ehk, data)
			return nil
		}
		dst = AppendRecordOf(dst, e, data, objects)
		dst = append(dst, '\n')
		return nil
	})
	if err != nil {
		return dst[:mark], err
	}
	return dst, nil
}

// AppendLinesAsIs appends the records of a as lines in encoding e (each
// followed by "\n") in one copy, when a's body already is those lines: an
// aggregate in the newline framing (aggregate.FramingLines) without "\r",
// whose records are written as they are (encoding text, or json for an
// aggregate of JSON objects). It reports false, appending nothing, otherwise.
func AppendLinesAsIs(dst []byte, e Encoding, a *aggregate.Aggregate) ([]byte, bool) {
	if !LinesAsIs(e, a) {
		return dst, false
	}
	return append(dst, a.Body...), true
}

// LinesAsIs reports whether AppendLinesAsIs would append a as it is.
func LinesAsIs(e Encoding, a *aggregate.Aggregate) bool {
	// The count is checked too: a body that is not what it says goes
	// through ForEach, which refuses it.
	return LinesShaped(e, a) && (a.Count <= 0 || bytes.Count(a.Body, newline) == a.Count)
}

// LinesShaped is LinesAsIs without counting the lines: for a caller that
// counts them as it copies them, and checks the count itself.
func LinesShaped(e Encoding, a *aggregate.Aggregate) bool {
	if !a.Aggregated || a.Framing != aggregate.FramingLines || (e == EncodingJSON && !a.JSONObjects) {
		return false
	}
	body := a.Body
	return len(body) > 0 && body[len(body)-1] == '\n' && bytes.IndexByte(body, '\r') < 0
}

var newline = []byte{'\n'}
