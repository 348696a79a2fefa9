package awscbor

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// AppendPutRecords appends the CBOR body of a PutRecords request, the same
// document as the JSON protocol's with Data as byte strings:
// {"Records":[{"Data":h'..',"ExplicitHashKey":"..","PartitionKey":".."},...],"StreamName":".."}.
// The buffer is grown once to the body's size. StreamARN, StreamId and
// DryRun are not written: callers use StreamName.
func AppendPutRecords(dst []byte, in *kinesis.PutRecordsInput) []byte {
	n := 32
	if in.StreamName != nil {
		n += len(*in.StreamName)
	}
	for _, r := range in.Records {
		n += 48 + len(r.Data)
		if r.PartitionKey != nil {
			n += len(*r.PartitionKey)
		}
		if r.ExplicitHashKey != nil {
			n += len(*r.ExplicitHashKey)
		}
	}
	if cap(dst)-len(dst) < n {
		grown := make([]byte, len(dst), len(dst)+n)
		copy(grown, dst)
		dst = grown
	}
	if in.StreamName != nil {
		dst = AppendPutRecordsHead(dst, len(in.Records))
	} else {
		dst = AppendHead(dst, majMap, 1)
		dst = AppendText(dst, "Records")
		dst = AppendHead(dst, majArray, uint64(len(in.Records)))
	}
	for _, r := range in.Records {
		dst = AppendPutRecordsEntryHead(dst, len(r.Data), r.ExplicitHashKey != nil, r.PartitionKey != nil)
		dst = append(dst, r.Data...)
		if r.ExplicitHashKey != nil {
			dst = AppendText(dst, "ExplicitHashKey")
			dst = AppendText(dst, *r.ExplicitHashKey)
		}
		if r.PartitionKey != nil {
			dst = AppendText(dst, "PartitionKey")
			dst = AppendText(dst, *r.PartitionKey)
		}
	}
	if in.StreamName == nil {
		return dst
	}
	return AppendPutRecordsTail(dst, *in.StreamName)
}

// A PutRecords body can also be written piece by piece, so that a caller
// lays each record's data out in place (no intermediate copy):
//
//	dst = AppendPutRecordsHead(dst, n)
//	for each record:
//		dst = AppendPutRecordsEntryHead(dst, len(data), ehk != "", true)
//		dst = append(dst, data...) // exactly len(data) bytes
//		dst = AppendPutRecordsEntryKeys(dst, pk, ehk)
//	dst = AppendPutRecordsTail(dst, stream)
//
// The bytes are those of AppendPutRecords.

// PutRecordsOverhead bounds the bytes a record adds to a PutRecords body
// besides its data and keys (map head, field names, string heads).
const PutRecordsOverhead = 48

// AppendPutRecordsHead appends the start of a PutRecords body of n
// records, with StreamName (AppendPutRecordsTail): {"Records":[ .
func AppendPutRecordsHead(dst []byte, n int) []byte {
	dst = AppendHead(dst, majMap, 2)
	dst = AppendText(dst, "Records")
	return AppendHead(dst, majArray, uint64(n))
}

// AppendPutRecordsEntryHead appends the start of one record, up to its
// Data's byte string head: the caller appends dataLen bytes of data next,
// then the keys (AppendPutRecordsEntryKeys with the same hasEHK and hasPK).
func AppendPutRecordsEntryHead(dst []byte, dataLen int, hasEHK, hasPK bool) []byte {
	k := uint64(1)
	if hasEHK {
		k++
	}
	if hasPK {
		k++
	}
	dst = AppendHead(dst, majMap, k)
	dst = AppendText(dst, "Data")
	return AppendHead(dst, majBytes, uint64(dataLen))
}

// AppendPutRecordsEntryKeys appends a record's keys after its data: its
// explicit hash key when ehk is not empty, and its partition key.
func AppendPutRecordsEntryKeys(dst []byte, pk, ehk string) []byte {
	if ehk != "" {
		dst = AppendText(dst, "ExplicitHashKey")
		dst = AppendText(dst, ehk)
	}
	dst = AppendText(dst, "PartitionKey")
	return AppendText(dst, pk)
}

// AppendPutRecordsTail appends the end of a PutRecords body: its
// StreamName.
func AppendPutRecordsTail(dst []byte, stream string) []byte {
	dst = AppendText(dst, "StreamName")
	return AppendText(dst, stream)
}

// DecodePutRecordsResponse reads the body of a successful PutRecords
// response into out: FailedRecordCount, EncryptionType and Records
// (SequenceNumber, ShardId, ErrorCode, ErrorMessage). Unknown members are
// ignored, null members left unset; members of the wrong type are an error.
func DecodePutRecordsResponse(b []byte, out *kinesis.PutRecordsOutput) error {
	v, _, err := Decode(b)
	if err != nil {
		return fmt.Errorf("awscbor: PutRecords response: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("awscbor: PutRecords response is a %T, not a map", v)
	}
	if c, ok := m["FailedRecordCount"]; ok && c != nil {
		n, err := toInt32(c)
		if err != nil {
			return fmt.Errorf("awscbor: PutRecords response: FailedRecordCount: %w", err)
		}
		out.FailedRecordCount = &n
	}
	if e, ok := m["EncryptionType"].(string); ok {
		out.EncryptionType = types.EncryptionType(e)
	}
	recs, ok := m["Records"]
	if !ok || recs == nil {
		return nil
	}
	a, ok := recs.([]any)
	if !ok {
		return fmt.Errorf("awscbor: PutRecords response: Records is a %T, not an array", recs)
	}
	out.Records = make([]types.PutRecordsResultEntry, len(a))
	for i, r := range a {
		rm, ok := r.(map[string]any)
		if !ok {
			return fmt.Errorf("awscbor: PutRecords response: record %d is a %T, not a map", i, r)
		}
		e := &out.Records[i]
		for _, f := range []struct {
			name string
			dst  **string
		}{{"SequenceNumber", &e.SequenceNumber}, {"ShardId", &e.ShardId}, {"ErrorCode", &e.ErrorCode}, {"ErrorMessage", &e.ErrorMessage}} {
			switch s := rm[f.name].(type) {
			case nil:
			case string:
				*f.dst = &s
			default:
				return fmt.Errorf("awscbor: PutRecords response: record %d: %s is a %T, not a string", i, f.name, s)
			}
		}
	}
	return nil
}

func toInt32(v any) (int32, error) {
	switch n := v.(type) {
	case uint64:
		if n <= math.MaxInt32 {
			return int32(n), nil
		}
	case int64:
		if n >= math.MinInt32 {
			return int32(n), nil
		}
	case float64:
		if n == math.Trunc(n) && n >= math.MinInt32 && n <= math.MaxInt32 {
			return int32(n), nil
		}
	default:
		return 0, fmt.Errorf("a %T, not an integer", v)
	}
	return 0, errors.New("out of range")
}

// DecodeError reads an error response body: {"__type": code, "message":
// text} (also "code", "Message"). The code is sanitized as the JSON
// protocol does: "aws.namespace#Code:http://..." becomes "Code".
func DecodeError(b []byte) (code, message string, err error) {
	v, _, err := Decode(b)
	if err != nil {
		return "", "", fmt.Errorf("awscbor: error response: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return "", "", fmt.Errorf("awscbor: error response is a %T, not a map", v)
	}
	for _, k := range []string{"__type", "code", "Code"} {
		if s, ok := m[k].(string); ok && s != "" {
			code = s
			break
		}
	}
	for _, k := range []string{"message", "Message", "errorMessage"} {
		if s, ok := m[k].(string); ok && s != "" {
			message = s
			break
		}
	}
	return SanitizeErrorCode(code), message, nil
}

// SanitizeErrorCode strips an error code's namespace ("ns#") and URI
// suffix (":http://...").
func SanitizeErrorCode(code string) string {
	if i := strings.IndexByte(code, ':'); i >= 0 {
		code = code[:i]
	}
	if i := strings.LastIndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	return code
}

// PutEntry is one record of a decoded PutRecords request.
type PutEntry struct {
	Data            []byte
	PartitionKey    string
	ExplicitHashKey string
}

// DecodePutRecordsRequest reads a PutRecords request body (what servers
// and fakes do). The entries' Data alias b when the body uses definite
// lengths (as AppendPutRecords writes it); they are copies otherwise.
func DecodePutRecordsRequest(b []byte) (stream string, entries []PutEntry, err error) {
	stream, entries, ok, err := scanPutRecordsRequest(b)
	if ok || err != nil {
		return stream, entries, err
	}
	return decodePutRecordsRequest(b)
}

// scanPutRecordsRequest reads a request body of definite lengths without
// building generic values; ok is false when it met an indefinite length
// (then decodePutRecordsRequest reads it).
func scanPutRecordsRequest(b []byte) (stream string, entries []PutEntry, ok bool, err error) {
	d := decoder{b: b}
	fail := func(format string, args ...any) (string, []PutEntry, bool, error) {
		return "", nil, true, fmt.Errorf("awscbor: PutRecords request: "+format, args...)
	}
	text := func() (string, bool, error) {
		major, info, arg, err := d.head()
		if err != nil || info == 31 {
			return "", info == 31, err
		}
		if major != majText {
			return "", false, fmt.Errorf("a major type %d, not a text string", major)
		}
		n, err := d.length(arg, 1)
		if err != nil {
			return "", false, err
		}
		s := string(d.b[:n])
		d.b = d.b[n:]
		return s, false, nil
	}
	major, info, fields, err := d.head()
	switch {
	case err != nil:
		return fail("%v", err)
	case major != majMap:
		return fail("a major type %d, not a map", major)
	case info == 31:
		return "", nil, false, nil
	}
	sawRecords := false
	for range fields {
		key, indef, err := text()
		if indef {
			return "", nil, false, nil
		}
		if err != nil {
			return fail("key: %v", err)
		}
		switch key {
		case "StreamName":
			var indef bool
			if stream, indef, err = text(); indef {
				return "", nil, false, nil
			} else if err != nil {
				return fail("StreamName: %v", err)
			}
		case "Records":
			sawRecords = true
			major, info, n, err := d.head()
			switch {
			case err != nil:
				return fail("Records: %v", err)
			case major != majArray:
				return fail("Records is of major type %d, not an array", major)
			case info == 31:
				return "", nil, false, nil
			}
			count, err := d.length(n, 1)
			if err != nil {
				return fail("Records: %v", err)
			}
			entries = make([]PutEntry, count)
			for i := range entries {
				major, info, k, err := d.head()
				switch {
				case err != nil:
					return fail("record %d: %v", i, err)
				case major != majMap:
					return fail("record %d is of major type %d, not a map", i, major)
				case info == 31:
					return "", nil, false, nil
				}
				hasData := false
				for range k {
					name, indef, err := text()
					if indef {
						return "", nil, false, nil
					}
					if err != nil {
						return fail("record %d: key: %v", i, err)
					}
					switch name {
					case "Data":
						major, info, arg, err := d.head()
						switch {
						case err != nil:
							return fail("record %d: Data: %v", i, err)
						case major != majBytes:
							return fail("record %d: Data is of major type %d, not a byte string", i, major)
						case info == 31:
							return "", nil, false, nil
						}
						n, err := d.length(arg, 1)
						if err != nil {
							return fail("record %d: Data: %v", i, err)
						}
						entries[i].Data = d.b[:n:n]
						d.b = d.b[n:]
						hasData = true
					case "PartitionKey", "ExplicitHashKey":
						v, indef, err := text()
						if indef {
							return "", nil, false, nil
						}
						if err != nil {
							return fail("record %d: %s: %v", i, name, err)
						}
						if name == "PartitionKey" {
							entries[i].PartitionKey = v
						} else {
							entries[i].ExplicitHashKey = v
						}
					default:
						if _, err := d.value(1); err != nil {
							return fail("record %d: %s: %v", i, name, err)
						}
					}
				}
				if !hasData {
					return fail("record %d: Data is a <nil>, not a byte string", i)
				}
			}
		default:
			if _, err := d.value(1); err != nil {
				return fail("%s: %v", key, err)
			}
		}
	}
	if !sawRecords {
		return fail("without Records")
	}
	return stream, entries, true, nil
}

// decodePutRecordsRequest reads any request body through Decode.
func decodePutRecordsRequest(b []byte) (stream string, entries []PutEntry, err error) {
	v, _, err := Decode(b)
	if err != nil {
		return "", nil, fmt.Errorf("awscbor: PutRecords request: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return "", nil, fmt.Errorf("awscbor: PutRecords request is a %T, not a map", v)
	}
	stream, _ = m["StreamName"].(string)
	recs, ok := m["Records"].([]any)
	if !ok {
		return "", nil, errors.New("awscbor: PutRecords request without Records")
	}
	entries = make([]PutEntry, len(recs))
	for i, r := range recs {
		rm, ok := r.(map[string]any)
		if !ok {
			return "", nil, fmt.Errorf("awscbor: PutRecords request: record %d is a %T, not a map", i, r)
		}
		data, ok := rm["Data"].([]byte)
		if !ok {
			return "", nil, fmt.Errorf("awscbor: PutRecords request: record %d: Data is a %T, not a byte string", i, rm["Data"])
		}
		entries[i].Data = data
		entries[i].PartitionKey, _ = rm["PartitionKey"].(string)
		entries[i].ExplicitHashKey, _ = rm["ExplicitHashKey"].(string)
	}
	return stream, entries, nil
}
