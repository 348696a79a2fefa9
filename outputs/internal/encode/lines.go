package encode

import (
	"encoding/base64"
	"fmt"

	"github.com/kplagent/agent/aggregate"
)

// LineFormat is how the local outputs (stdout, file) write a user record.
type LineFormat int

const (
	// LineNDJSON writes the record followed by "\n": in AppendLine the
	// record's bytes (a record that contains "\n" reads back as several
	// lines), in AppendEncodedLine the record in an Encoding.
	LineNDJSON LineFormat = iota
	// LineKPLJSON writes one JSON object per record and line:
	// {"pk":"<partition key>","ehk":"<explicit hash key>","data":"<base64>"},
	// with "ehk" left out when the record has none. Lossless for any bytes.
	LineKPLJSON
)

// Line format names as they appear in configuration.
const (
	FormatNDJSON  = "ndjson"
	FormatKPLJSON = "kpl-json"
)

// ParseLineFormat maps a configured name to a LineFormat; "" is ndjson.
func ParseLineFormat(s string) (LineFormat, error) {
	switch s {
	case "", FormatNDJSON:
		return LineNDJSON, nil
	case FormatKPLJSON:
		return LineKPLJSON, nil
	}
	return 0, fmt.Errorf("unknown %q (want %s or %s)", s, FormatNDJSON, FormatKPLJSON)
}

// AppendLine appends one user record as a line in format f.
func AppendLine(dst []byte, f LineFormat, pk, ehk, data []byte) []byte {
	if f == LineKPLJSON {
		dst = append(dst, `{"pk":`...)
		dst = AppendJSONString(dst, pk)
		if len(ehk) > 0 {
			dst = append(dst, `,"ehk":`...)
			dst = AppendJSONString(dst, ehk)
		}
		dst = append(dst, `,"data":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, data)
		return append(dst, "\"}\n"...)
	}
	dst = append(dst, data...)
	return append(dst, '\n')
}

// AppendLines appends every user record of a as a line in format f. When a
// cannot be decoded it returns dst unchanged and the error.
func AppendLines(dst []byte, f LineFormat, a *aggregate.Aggregate) ([]byte, error) {
	mark := len(dst)
	err := aggregate.ForEach(a, func(pk, ehk, data []byte) error {
		dst = AppendLine(dst, f, pk, ehk, data)
		return nil
	})
	if err != nil {
		return dst[:mark], err
	}
	return dst, nil
}
