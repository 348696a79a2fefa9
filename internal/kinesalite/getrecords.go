package kinesalite

import (
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
		var nums struct {
			Type string `json:"type"`
			Data []int  `json:"data"`
		}
		switch {
		case json.Unmarshal(r.Data, &rec.Data) == nil: // base64 string
		case json.Unmarshal(r.Data, &nums) == nil && nums.Type == "Buffer":
			rec.Data = make([]byte, len(nums.Data))
			for j, n := range nums.Data {
				if n < 0 || n > 255 {
					return &smithy.DeserializationError{Err: fmt.Errorf("record %d: byte %d out of range", i, n)}
				}
				rec.Data[j] = byte(n)
			}
		default:
			return &smithy.DeserializationError{Err: fmt.Errorf("record %d: Data %.40s is neither base64 nor a Buffer", i, r.Data)}
		}
		gro.Records = append(gro.Records, rec)
	}
	return nil
}
