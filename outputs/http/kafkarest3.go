package http

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/kplagent/agent/outputs"
)

// Confluent REST Proxy v3 produce (POST .../v3/clusters/C/topics/T/records).
// The request is a stream of concatenated JSON records; the response a
// stream of delivery reports, one per record in order, each with its own
// error_code (HTTP-style: 200 is delivered).
const (
	kafkaV3ContentType = "application/json"
	kafkaV3OK          = 200
)

// appendKafkaV3Record appends
// {"key":{"type":"BINARY","data":b64},"value":{"type":"BINARY","data":b64}}
// and a newline; no key when pk is empty.
func appendKafkaV3Record(dst, pk, data []byte) []byte {
	dst = append(dst, '{')
	if len(pk) > 0 {
		dst = append(dst, `"key":{"type":"BINARY","data":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, pk)
		dst = append(dst, `"},`...)
	}
	dst = append(dst, `"value":{"type":"BINARY","data":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, data)
	return append(dst, "\"}}\n"...)
}

// kafkaV3Report is one delivery report.
type kafkaV3Report struct {
	ErrorCode   *int   `json:"error_code"`
	Message     string `json:"message"`
	PartitionID *int32 `json:"partition_id"`
	Offset      *int64 `json:"offset"`
}

// kafkaV3Permanent reports whether a per-record error_code will not change
// on retry: the record itself is refused (bad request, too large,
// unsupported or unprocessable). Everything else (401 and 403: credentials
// and ACLs can be fixed; 404: the topic may be created; 408, 429, 5xx; codes
// not known here) is retried.
func kafkaV3Permanent(code int) bool {
	switch code {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge,
		http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// readKafkaV3Response reads a 2xx produce response for user records
// [s.lo, s.hi) of the request: a record whose report carries a permanent
// error is rejected on its own (dead-lettered), one with a retryable error
// (or no report) fails its Kinesis record for a retry.
func (s *sender) readKafkaV3Response(resp *http.Response) error {
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxKafkaResponse))
	n := s.hi - s.lo
	readErr := -1 // index in s.errs of the error that ended the reports
	for j := s.lo; j < s.hi; j++ {
		rec := s.refs[j].rec
		if readErr >= 0 {
			s.fail(rec, classRetry, readErr)
			continue
		}
		var rep kafkaV3Report
		if err := dec.Decode(&rep); err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("http: POST %s: %s: delivery reports for %d of %d records: the others are retried", s.o.redactedURL, resp.Status, j-s.lo, n)
			} else {
				err = fmt.Errorf("http: POST %s: %s: cannot read delivery report %d: %w", s.o.redactedURL, resp.Status, j-s.lo, err)
			}
			readErr = s.addErr(err)
			s.fail(rec, classRetry, readErr)
			continue
		}
		if rep.ErrorCode == nil {
			readErr = s.addErr(fmt.Errorf("http: POST %s: %s: delivery report %d has no error_code", s.o.redactedURL, resp.Status, j-s.lo))
			s.fail(rec, classRetry, readErr)
			continue
		}
		code := *rep.ErrorCode
		if code == kafkaV3OK {
			continue
		}
		err := fmt.Errorf("http: kafka-rest-v3: record %d of the request: error_code %d: %s", j-s.lo, code, rep.Message)
		if kafkaV3Permanent(code) {
			s.reject(j, s.addErr(outputs.Permanent(err)))
			continue
		}
		s.fail(rec, classRetry, s.addErr(err))
	}
	if readErr >= 0 {
		return nil // every record is settled
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		// More reports than records: the pairing cannot be trusted.
		return fmt.Errorf("http: POST %s: %s: more delivery reports than the %d records sent", s.o.redactedURL, resp.Status, n)
	}
	return nil
}
