package fakeaws

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// Firehose is a fake Amazon Data Firehose stream (PutRecordBatch,
// DescribeDeliveryStream), an http.Handler. It keeps every record. Safe for
// concurrent use.
type Firehose struct {
	mu      sync.Mutex
	records [][]byte
	calls   int
	// fail > 0 fails as many next PutRecordBatch calls whole
	// (ServiceUnavailableException, how Firehose throttles).
	fail int
	// reject, when set, refuses a whole PutRecordBatch request (HTTP 400
	// with the returned code) when it returns a code; see RejectRequests.
	reject func(records [][]byte) string
}

// RejectRequests makes PutRecordBatch refuse a whole request, keeping none
// of its records, when reject returns an error code for the request's
// records (e.g. "InvalidArgumentException" for a request over a size, as
// Firehose refuses one over 4 MiB). nil: accept every request.
func (f *Firehose) RejectRequests(reject func(records [][]byte) string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reject = reject
}

// FailNext makes the next n PutRecordBatch calls fail whole, throttled.
func (f *Firehose) FailNext(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = n
}

// Records returns the data of every record received, in order.
func (f *Firehose) Records() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.records...)
}

// Calls returns the number of PutRecordBatch calls, failed ones included.
func (f *Firehose) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// ServeHTTP answers the SDK's JSON 1.1 requests.
func (f *Firehose) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "Firehose_20150804."); op {
	case "DescribeDeliveryStream":
		writeJSON(w, http.StatusOK, map[string]any{"DeliveryStreamDescription": map[string]any{
			"DeliveryStreamName": "s", "DeliveryStreamStatus": "ACTIVE", "DeliveryStreamType": "DirectPut",
			"DeliveryStreamARN": "arn:aws:firehose:us-east-1:123456789012:deliverystream/s", "VersionId": "1",
			"Destinations": []any{}, "HasMoreDestinations": false}})
	case "PutRecordBatch":
		f.calls++
		if f.fail > 0 {
			f.fail--
			writeJSON(w, http.StatusBadRequest, map[string]any{"__type": "ServiceUnavailableException", "message": "fake: slow down"})
			return
		}
		var in struct {
			DeliveryStreamName string
			Records            []struct{ Data string }
		}
		if err := json.Unmarshal(body, &in); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"__type": "InvalidArgumentException", "message": err.Error()})
			return
		}
		recs := make([][]byte, len(in.Records))
		for i, rec := range in.Records {
			data, err := base64.StdEncoding.DecodeString(rec.Data)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]any{"__type": "InvalidArgumentException", "message": err.Error()})
				return
			}
			recs[i] = data
		}
		if f.reject != nil {
			if code := f.reject(recs); code != "" {
				writeJSON(w, http.StatusBadRequest, map[string]any{"__type": code, "message": fmt.Sprintf("fake: request of %d records refused", len(recs))})
				return
			}
		}
		resp := make([]map[string]any, 0, len(recs))
		for i, data := range recs {
			f.records = append(f.records, data)
			resp = append(resp, map[string]any{"RecordId": fmt.Sprintf("r%d-%d", f.calls, i)})
		}
		writeJSON(w, http.StatusOK, map[string]any{"FailedPutCount": 0, "RequestResponses": resp})
	default:
		writeJSON(w, http.StatusBadRequest, map[string]any{"__type": "UnknownOperationException", "message": op})
	}
}
