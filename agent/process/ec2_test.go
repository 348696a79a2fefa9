package process

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeIMDS is an IMDSv2 server: a token from PUT /latest/api/token, then
// metadata GETs that must carry it.
func fakeIMDS(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var gets atomic.Int32
	meta := map[string]string{
		"/latest/meta-data/instance-id":                 "i-0123456789abcdef0",
		"/latest/meta-data/instance-type":               "m5.large",
		"/latest/meta-data/placement/region":            "eu-west-1",
		"/latest/meta-data/placement/availability-zone": "eu-west-1b",
		"/latest/meta-data/local-ipv4":                  "10.0.1.23",
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/latest/api/token" {
			if r.Method != http.MethodPut || r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
				http.Error(w, "bad token request", http.StatusBadRequest)
				return
			}
			_, _ = w.Write([]byte("TOKEN"))
			return
		}
		if r.Header.Get("X-aws-ec2-metadata-token") != "TOKEN" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		v, ok := meta[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		gets.Add(1)
		_, _ = w.Write([]byte(v))
	}))
	t.Cleanup(srv.Close)
	return srv, &gets
}

func TestAddFields_EC2FromIMDSv2(t *testing.T) {
	t.Parallel()
	srv, gets := fakeIMDS(t)
	s, _ := newStage(t, procs(Processor{AddFields: &AddFieldsConfig{EC2: &EC2Config{
		Endpoint: srv.URL,
		Fields:   map[string]string{"instance_id": "ec2.instance_id", "region": "ec2.region", "availability_zone": "az", "instance_type": "type", "private_ip": "ip"},
		Refresh:  20 * time.Millisecond,
	}}}))
	out, _ := s.Process([]byte("x"), Meta{})
	require.Equal(t, `{"message":"x","az":"eu-west-1b","ec2.instance_id":"i-0123456789abcdef0","type":"m5.large","ip":"10.0.1.23","ec2.region":"eu-west-1"}`, string(out))
	require.Eventually(t, func() bool { return gets.Load() >= 10 }, 10*time.Second, 10*time.Millisecond, "refreshed")
}

func TestAddFields_EC2Absent_NoHangFieldsLeftOut(t *testing.T) {
	t.Parallel()
	// A server that never answers in time stands for a host off EC2.
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(block) })
	start := time.Now()
	s, _ := newStage(t, procs(Processor{AddFields: &AddFieldsConfig{Fields: map[string]string{"k": "v"}, EC2: &EC2Config{Endpoint: srv.URL, Timeout: 50 * time.Millisecond}}}))
	require.Less(t, time.Since(start), 5*time.Second, "start is bounded by the timeout")
	out, _ := s.Process([]byte("x"), Meta{})
	require.Equal(t, `{"message":"x","k":"v"}`, string(out))
}
