package http

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/kplagent/agent/outputs"
)

// Confluent REST Proxy v2 per-record error codes (offsets[i].error_code).
const (
	kafkaNonRetriable = 1 // non-retriable Kafka exception
	kafkaRetriable    = 2 // retriable Kafka exception
)

// maxKafkaResponse bounds a produce response (about 60 bytes per record).
const maxKafkaResponse = 16 << 20

// appendKafkaRecord appends {"key":b64,"value":b64}; no key when pk is empty.
func appendKafkaRecord(dst, pk, data []byte) []byte {
	if len(pk) > 0 {
		dst = append(dst, `{"key":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, pk)
		dst = append(dst, `","value":"`...)
	} else {
		dst = append(dst, `{"value":"`...)
	}
	dst = base64.StdEncoding.AppendEncode(dst, data)
	return append(dst, `"}`...)
}

type kafkaProduceResponse struct {
	Offsets []struct {
		Partition *int32  `json:"partition"`
		Offset    *int64  `json:"offset"`
		ErrorCode *int    `json:"error_code"`
		Error     *string `json:"error"`
	} `json:"offsets"`
}

// readKafkaResponse reads a 2xx produce response and fails the Kinesis
// records of the user records it reports failed.
func (s *sender) readKafkaResponse(resp *http.Response) error {
	var pr kafkaProduceResponse
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxKafkaResponse))
	if err := dec.Decode(&pr); err != nil {
		return fmt.Errorf("http: POST %s: %s: cannot read the produce response: %w", s.o.url.Redacted(), resp.Status, err)
	}
	if len(pr.Offsets) != s.n {
		return fmt.Errorf("http: POST %s: %s: produce response has %d offsets for %d records", s.o.url.Redacted(), resp.Status, len(pr.Offsets), s.n)
	}
	j := 0 // user record index in the request
	for _, r := range s.runs {
		for k := 0; k < r.n; k, j = k+1, j+1 {
			off := pr.Offsets[j]
			if off.ErrorCode == nil {
				continue
			}
			msg := ""
			if off.Error != nil {
				msg = *off.Error
			}
			err := fmt.Errorf("http: kafka-rest: record %d of the request: error_code %d: %s", j, *off.ErrorCode, msg)
			class := classRetry
			if *off.ErrorCode == kafkaNonRetriable {
				class, err = classPermanent, outputs.Permanent(err)
			}
			s.fail(r.rec, class, s.addErr(err))
		}
	}
	return nil
}
