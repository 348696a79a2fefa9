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

// readKafkaV3Response reads a 2xx produce response and fails the Kinesis
// records of the user records whose reports carry an error, or that got no
// report.
func (s *sender) readKafkaV3Response(resp *http.Response) error {
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxKafkaResponse))
	j := 0        // user record index in the request
	readErr := -1 // index in s.errs of the error that ended the reports
	stop := func(err error, rec int) {
		readErr = s.addErr(err)
		s.fail(rec, classRetry, readErr)
	}
	for _, r := range s.runs {
		for k := 0; k < r.n; k, j = k+1, j+1 {
			if readErr >= 0 {
				s.fail(r.rec, classRetry, readErr)
				continue
			}
			var rep kafkaV3Report
			if err := dec.Decode(&rep); err != nil {
				if errors.Is(err, io.EOF) {
					err = fmt.Errorf("http: POST %s: %s: delivery reports for %d of %d records: the others are retried", s.o.url.Redacted(), resp.Status, j, s.n)
				} else {
					err = fmt.Errorf("http: POST %s: %s: cannot read delivery report %d: %w", s.o.url.Redacted(), resp.Status, j, err)
				}
				stop(err, r.rec)
				continue
			}
			if rep.ErrorCode == nil {
				stop(fmt.Errorf("http: POST %s: %s: delivery report %d has no error_code", s.o.url.Redacted(), resp.Status, j), r.rec)
				continue
			}
			code := *rep.ErrorCode
			if code == kafkaV3OK {
				continue
			}
			err := fmt.Errorf("http: kafka-rest-v3: record %d of the request: error_code %d: %s", j, code, rep.Message)
			class := classRetry
			if kafkaV3Permanent(code) {
				class, err = classPermanent, outputs.Permanent(err)
			}
			s.fail(r.rec, class, s.addErr(err))
		}
	}
	if readErr >= 0 {
		return nil // every record is settled
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		// More reports than records: the pairing cannot be trusted.
		return fmt.Errorf("http: POST %s: %s: more delivery reports than the %d records sent", s.o.url.Redacted(), resp.Status, s.n)
	}
	return nil
}
