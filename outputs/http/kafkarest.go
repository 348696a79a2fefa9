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
	// Offsets is nil when the response has no "offsets" (or it is null).
	Offsets *[]kafkaOffset `json:"offsets"`
}

type kafkaOffset struct {
	Partition *int32  `json:"partition"`
	Offset    *int64  `json:"offset"`
	ErrorCode *int    `json:"error_code"`
	Error     *string `json:"error"`
}

// readKafkaResponse reads a 2xx produce response and fails the Kinesis
// records (or rejects the user records) it reports failed.
//
// A 2xx response that carries no offsets at all (an empty body, a body that
// is not JSON, or JSON without "offsets") cannot come from the REST Proxy,
// which always lists them: something in between (a gateway, a load
// balancer) answered. It is taken as delivered, as far as we can tell, and
// counted and logged as unconfirmed: resending cannot get a better answer
// from the same hop and would loop forever. An offsets array that does not
// match the request is a malformed answer from the proxy itself: retryable.
func (s *sender) readKafkaResponse(resp *http.Response) error {
	var pr kafkaProduceResponse
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxKafkaResponse))
	n := s.hi - s.lo
	if err := dec.Decode(&pr); err != nil || pr.Offsets == nil {
		why := "no offsets"
		if err != nil {
			why = "not a JSON produce response: " + err.Error()
		}
		s.o.unconfirmed(n, resp.Status, why)
		return nil
	}
	offsets := *pr.Offsets
	if len(offsets) != n {
		return fmt.Errorf("http: POST %s: %s: produce response has %d offsets for %d records", s.o.redactedURL, resp.Status, len(offsets), n)
	}
	for j := s.lo; j < s.hi; j++ {
		off := offsets[j-s.lo]
		if off.ErrorCode == nil {
			continue
		}
		msg := ""
		if off.Error != nil {
			msg = *off.Error
		}
		err := fmt.Errorf("http: kafka-rest: record %d of the request: error_code %d: %s", j-s.lo, *off.ErrorCode, msg)
		if *off.ErrorCode == kafkaNonRetriable {
			s.reject(j, s.addErr(outputs.Permanent(err)))
			continue
		}
		s.fail(s.refs[j].rec, classRetry, s.addErr(err))
	}
	return nil
}
