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
		resp := make([]map[string]any, 0, len(in.Records))
		for i, rec := range in.Records {
			data, err := base64.StdEncoding.DecodeString(rec.Data)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]any{"__type": "InvalidArgumentException", "message": err.Error()})
				return
			}
			f.records = append(f.records, data)
			resp = append(resp, map[string]any{"RecordId": fmt.Sprintf("r%d-%d", f.calls, i)})
		}
		writeJSON(w, http.StatusOK, map[string]any{"FailedPutCount": 0, "RequestResponses": resp})
	default:
		writeJSON(w, http.StatusBadRequest, map[string]any{"__type": "UnknownOperationException", "message": op})
	}
}
