package kinesalite

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// getRecordsProtocol reads GetRecords responses itself. kinesalite keeps a
// record as it was put, in JSON: a record put in CBOR (the agent's default
// protocol) holds its Data as a Node.js Buffer, which kinesalite's JSON
// GetRecords answers as {"type":"Buffer","data":[bytes...]} instead of a
// base64 string (a kinesalite quirk: Kinesis stores bytes). Its CBOR
// answers cannot help: kinesalite's CBOR encoder cuts responses at 16 KiB.
// Both forms of Data are read here, so records put in either protocol read
// back alike; everything else is the SDK's.
type getRecordsProtocol struct {
	smithyhttp.ClientProtocol
}

func (p getRecordsProtocol) DeserializeResponse(ctx context.Context, schema *smithy.OperationSchema, reg *smithy.TypeRegistry, resp *smithyhttp.Response, out smithy.Deserializable) error {
	gro, ok := out.(*kinesis.GetRecordsOutput)
	if !ok || resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return p.ClientProtocol.DeserializeResponse(ctx, schema, reg, resp, out)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return &smithy.DeserializationError{Err: err}
	}
	var doc struct {
		NextShardIterator *string
		Records           []struct {
			Data           json.RawMessage
			PartitionKey   *string
			SequenceNumber *string
		}
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return &smithy.DeserializationError{Err: err}
	}
	gro.NextShardIterator = doc.NextShardIterator
	for i, r := range doc.Records {
		rec := types.Record{PartitionKey: r.PartitionKey, SequenceNumber: r.SequenceNumber}
		switch {
		case isBuffer(r.Data):
			b, err := bufferBytes(r.Data)
			if err != nil {
				return &smithy.DeserializationError{Err: fmt.Errorf("record %d: %w", i, err)}
			}
			rec.Data = b
		case json.Unmarshal(r.Data, &rec.Data) == nil: // base64 string
		default:
			return &smithy.DeserializationError{Err: fmt.Errorf("record %d: Data %.40s is neither base64 nor a Buffer", i, r.Data)}
		}
		gro.Records = append(gro.Records, rec)
	}
	return nil
}

// isBuffer reports whether raw is a Node.js Buffer in JSON:
// {"type":"Buffer","data":[...]}.
func isBuffer(raw []byte) bool {
	var head struct {
		Type string `json:"type"`
	}
	i := bytes.Index(raw, []byte(`"data"`))
	if len(raw) == 0 || raw[0] != '{' || i < 0 {
		return false
	}
	// Only the type is decoded by encoding/json: the data array (one
	// number per byte) is what bufferBytes reads, far faster than
	// encoding/json under -race, where a few MB of records took seconds.
	probe := append(append([]byte{}, raw[:i]...), `"x":0}`...)
	return json.Unmarshal(probe, &head) == nil && head.Type == "Buffer"
}

// bufferBytes reads the "data" array of a Buffer's JSON: integers 0-255
// separated by commas, nothing else.
func bufferBytes(raw []byte) ([]byte, error) {
	i := bytes.Index(raw, []byte(`"data"`))
	j := bytes.IndexByte(raw[i:], '[')
	k := bytes.IndexByte(raw[i:], ']')
	if j < 0 || k < j {
		return nil, fmt.Errorf("Buffer %.40s: no data array", raw)
	}
	arr := raw[i+j+1 : i+k]
	out := make([]byte, 0, len(arr)/3+1)
	n, digits := 0, 0
	for p := 0; p <= len(arr); p++ {
		if p == len(arr) || arr[p] == ',' {
			if digits == 0 {
				if p == len(arr) && len(out) == 0 && len(bytes.TrimSpace(arr)) == 0 {
					break // []
				}
				return nil, fmt.Errorf("Buffer data: empty element at %d", p)
			}
			if n > 255 {
				return nil, fmt.Errorf("Buffer data: byte %d out of range", n)
			}
			out = append(out, byte(n))
			n, digits = 0, 0
			continue
		}
		c := arr[p]
		switch {
		case c >= '0' && c <= '9' && digits < 4:
			n = n*10 + int(c-'0')
			digits++
		case c == ' ' || c == '\n' || c == '\t' || c == '\r':
		default:
			return nil, fmt.Errorf("Buffer data: unexpected %q at %d", c, p)
		}
	}
	return out, nil
}
