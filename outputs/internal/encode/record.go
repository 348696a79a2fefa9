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
	if obj := trimSpace(data); IsJSONObject(obj) {
		if bytes.IndexByte(obj, '\n') < 0 && bytes.IndexByte(obj, '\r') < 0 {
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
	dst = append(dst, `{"message":`...)
	dst = AppendJSONString(dst, data)
	return append(dst, '}')
}

// IsJSONObject reports whether b (with no surrounding white space) is one
// valid JSON object.
func IsJSONObject(b []byte) bool { return jsontext.IsObject(b) }

// AppendText appends data with "\n" and "\r" written as \n and \r.
func AppendText(dst, data []byte) []byte {
	start := 0
	for i, c := range data {
		if c != '\n' && c != '\r' {
			continue
		}
		dst = append(dst, data[start:i]...)
		if c == '\n' {
			dst = append(dst, '\\', 'n')
		} else {
			dst = append(dst, '\\', 'r')
		}
		start = i + 1
	}
	return append(dst, data[start:]...)
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
func AppendEncodedLines(dst []byte, f LineFormat, e Encoding, a *aggregate.Aggregate) ([]byte, error) {
	mark := len(dst)
	err := aggregate.ForEach(a, func(pk, ehk, data []byte) error {
		dst = AppendEncodedLine(dst, f, e, pk, ehk, data)
		return nil
	})
	if err != nil {
		return dst[:mark], err
	}
	return dst, nil
}
