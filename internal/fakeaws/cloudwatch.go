package fakeaws

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/aws/smithy-go/encoding/cbor"
)

// CloudWatch is a fake Amazon CloudWatch taking PutMetricData in the
// Smithy RPC v2 CBOR protocol the AWS SDK for Go v2 speaks to it (POST
// /service/GraniteServiceVersion20100801/operation/PutMetricData,
// Smithy-Protocol: rpc-v2-cbor, gzip-compressed above 10 KiB), an
// http.Handler. It decodes every request and keeps its data. Safe for
// concurrent use.
type CloudWatch struct {
	mu       sync.Mutex
	requests []MetricRequest
	calls    int
	fail     bool
	block    chan struct{}
}

// MetricRequest is one PutMetricData request as received.
type MetricRequest struct {
	Namespace string
	Data      []MetricDatum
	Gzipped   bool
}

// MetricDatum is one datum of a request.
type MetricDatum struct {
	Name       string
	Dimensions map[string]string
	// DimensionOrder is the dimensions' names as sent.
	DimensionOrder []string
	Unit           string
	Value          float64
	Timestamp      time.Time
}

// cloudWatchPath is where the SDK posts PutMetricData.
const cloudWatchPath = "/service/GraniteServiceVersion20100801/operation/PutMetricData"

// Fail makes every call fail (500 InternalServiceFault) while on.
func (c *CloudWatch) Fail(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail = on
}

// Block makes calls hang until their client gives up or Unblock.
func (c *CloudWatch) Block() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.block == nil {
		c.block = make(chan struct{})
	}
}

// Unblock ends Block.
func (c *CloudWatch) Unblock() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.block != nil {
		close(c.block)
		c.block = nil
	}
}

// Requests returns the requests that succeeded, in order.
func (c *CloudWatch) Requests() []MetricRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]MetricRequest(nil), c.requests...)
}

// Calls returns the number of PutMetricData calls, failed ones included.
func (c *CloudWatch) Calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// Latest returns the value of the last datum received named name whose
// dimensions include dims, and whether there is one.
func (c *CloudWatch) Latest(name string, dims map[string]string) (MetricDatum, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.requests) - 1; i >= 0; i-- {
		r := c.requests[i]
		for j := len(r.Data) - 1; j >= 0; j-- {
			if d := r.Data[j]; d.Name == name && hasDims(d.Dimensions, dims) {
				return d, true
			}
		}
	}
	return MetricDatum{}, false
}

// Sum returns the sum of the values received named name whose dimensions
// include dims.
func (c *CloudWatch) Sum(name string, dims map[string]string) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var sum float64
	for _, r := range c.requests {
		for _, d := range r.Data {
			if d.Name == name && hasDims(d.Dimensions, dims) {
				sum += d.Value
			}
		}
	}
	return sum
}

func hasDims(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func (c *CloudWatch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.calls++
	fail, block := c.fail, c.block
	c.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-r.Context().Done():
			return
		}
	}
	req, err := decodePutMetricData(r)
	if err != nil {
		cloudWatchError(w, http.StatusBadRequest, "InvalidParameterValue", err.Error())
		return
	}
	if fail {
		cloudWatchError(w, http.StatusInternalServerError, "InternalServiceFault", "fake failure")
		return
	}
	c.mu.Lock()
	c.requests = append(c.requests, req)
	c.mu.Unlock()
	w.Header().Set("Smithy-Protocol", "rpc-v2-cbor")
	w.Header().Set("Content-Type", "application/cbor")
	_, _ = w.Write(cbor.Encode(cbor.Map{}))
}

func cloudWatchError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Smithy-Protocol", "rpc-v2-cbor")
	w.Header().Set("Content-Type", "application/cbor")
	w.WriteHeader(status)
	_, _ = w.Write(cbor.Encode(cbor.Map{"__type": cbor.String("com.amazonaws.cloudwatch#" + typ), "message": cbor.String(msg)}))
}

// decodePutMetricData checks the request's protocol and decodes it.
func decodePutMetricData(r *http.Request) (MetricRequest, error) {
	var out MetricRequest
	switch {
	case r.Method != http.MethodPost || r.URL.Path != cloudWatchPath:
		return out, fmt.Errorf("not PutMetricData: %s %s", r.Method, r.URL.Path)
	case r.Header.Get("Smithy-Protocol") != "rpc-v2-cbor":
		return out, fmt.Errorf("Smithy-Protocol %q", r.Header.Get("Smithy-Protocol"))
	case r.Header.Get("Content-Type") != "application/cbor":
		return out, fmt.Errorf("Content-Type %q", r.Header.Get("Content-Type"))
	case r.Header.Get("Authorization") == "":
		return out, fmt.Errorf("unsigned request")
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return out, err
		}
		body, out.Gzipped = zr, true
	}
	raw, err := io.ReadAll(io.LimitReader(body, 4<<20))
	if err != nil {
		return out, err
	}
	v, err := cbor.Decode(raw)
	if err != nil {
		return out, fmt.Errorf("decode: %w", err)
	}
	m, ok := v.(cbor.Map)
	if !ok {
		return out, fmt.Errorf("body is a %T", v)
	}
	ns, _ := m["Namespace"].(cbor.String)
	out.Namespace = string(ns)
	list, _ := m["MetricData"].(cbor.List)
	for _, e := range list {
		dm, ok := e.(cbor.Map)
		if !ok {
			return out, fmt.Errorf("datum is a %T", e)
		}
		var d MetricDatum
		name, _ := dm["MetricName"].(cbor.String)
		unit, _ := dm["Unit"].(cbor.String)
		d.Name, d.Unit = string(name), string(unit)
		if d.Value, err = cbor.AsFloat64(dm["Value"]); err != nil {
			return out, fmt.Errorf("%s: Value: %w", d.Name, err)
		}
		if ts, ok := dm["Timestamp"]; ok {
			if d.Timestamp, err = cbor.AsTime(ts); err != nil {
				return out, fmt.Errorf("%s: Timestamp: %w", d.Name, err)
			}
		}
		d.Dimensions = map[string]string{}
		dims, _ := dm["Dimensions"].(cbor.List)
		for _, x := range dims {
			xm, _ := x.(cbor.Map)
			n, _ := xm["Name"].(cbor.String)
			val, _ := xm["Value"].(cbor.String)
			d.Dimensions[string(n)] = string(val)
			d.DimensionOrder = append(d.DimensionOrder, string(n))
		}
		out.Data = append(out.Data, d)
	}
	return out, nil
}
