package http

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/redact"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/internal/tlsconf"
)

// StatusError is a non-2xx response. It is wrapped by outputs.Permanent,
// outputs.Throttle or nothing, per the package classification.
type StatusError struct {
	URL        string // redacted: no user information, no query values
	StatusCode int
	Status     string // e.g. "400 Bad Request"
	Body       string // first bytes of the response body (at most maxErrorBody)
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("http: POST %s: %s", e.URL, e.Status)
	}
	return fmt.Sprintf("http: POST %s: %s: %s", e.URL, e.Status, e.Body)
}

const (
	// maxErrorBody bounds how much of an error response goes into errors.
	maxErrorBody = 1 << 10
	// maxDrain bounds how much of a response is read to keep its
	// connection reusable; larger responses cost a new connection.
	maxDrain = 256 << 10
)

// roundTrip POSTs body (a pooled buffer the caller reuses once roundTrip
// returns) and returns nil for 2xx, else the classified error. onOK, when not
// nil, reads a 2xx response. keys, when not nil, adds the raw format's key
// headers.
func (o *Output) roundTrip(ctx context.Context, body []byte, keys *aggregate.Aggregate, onOK func(*http.Response) error) error {
	payload := body
	if o.comp != nil {
		z := o.bufs.get()
		defer o.bufs.put(z)
		*z = o.comp.appendCompressed((*z)[:0], body)
		payload = *z
	}
	lease := &bodyLease{buf: payload}
	defer lease.detach()

	h := o.header.Clone()
	if o.comp != nil {
		h.Set("Content-Encoding", o.comp.encoding())
	}
	if keys != nil {
		h.Set("X-Partition-Key", keys.PartitionKey)
		if keys.ExplicitHashKey != "" {
			h.Set("X-Explicit-Hash-Key", keys.ExplicitHashKey)
		}
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(parent, o.cfg.Timeout)
	defer cancel()
	req := (&http.Request{
		Method:        http.MethodPost,
		URL:           o.url,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Host:          o.host,
		ContentLength: int64(len(payload)),
		Body:          lease.reader(),
		GetBody:       func() (io.ReadCloser, error) { return lease.reader(), nil },
	}).WithContext(ctx)

	resp, err := o.client.Do(req)
	if err != nil {
		// net/http's *url.Error names the URL with its query: scrub it.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = o.redactedURL
		}
		if parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return redact.Error(fmt.Errorf("http: POST %s: no response within timeout %s: %w", o.redactedURL, o.cfg.Timeout, err))
		}
		return redact.Error(fmt.Errorf("http: %w%s", err, tlsconf.Hint(err)))
	}
	defer drainClose(resp.Body)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if onOK != nil {
			return onOK(resp)
		}
		return nil
	}
	return o.statusError(resp)
}

func drainClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrain))
	_ = body.Close()
}

// statusError classifies a non-2xx response.
func (o *Output) statusError(resp *http.Response) error {
	e := &StatusError{
		URL:        o.redactedURL,
		StatusCode: resp.StatusCode,
		Status:     resp.Status,
		Body:       redact.String(readSnippet(resp.Body)),
	}
	code := resp.StatusCode
	switch {
	case code == http.StatusTooManyRequests:
		d, _ := retryAfter(resp.Header.Get("Retry-After"), o.now())
		return outputs.Throttle(e, d)
	case code == http.StatusServiceUnavailable:
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), o.now()); ok {
			return outputs.Throttle(e, d)
		}
		return e
	case code == http.StatusRequestTimeout, code >= 500, code < 300:
		return e
	case code < 400:
		if loc := resp.Header.Get("Location"); loc != "" {
			e.Body = "redirect to " + redact.RawURL(loc) + " not followed: configure the final url"
		}
		return outputs.Permanent(e)
	}
	return outputs.Permanent(e)
}

// readSnippet reads the start of an error body for an error message.
func readSnippet(r io.Reader) string {
	var buf [maxErrorBody + 1]byte
	n, _ := io.ReadFull(r, buf[:])
	b := buf[:n]
	truncated := n > maxErrorBody
	if truncated {
		b = b[:maxErrorBody] // a rune cut in two becomes U+FFFD below
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD"))
	if truncated {
		s += " …(truncated)"
	}
	return s
}

// retryAfter parses a Retry-After value: delay-seconds or an HTTP date
// (RFC 9110 10.2.3). A date in the past gives 0.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseUint(v, 10, 63); err == nil {
		const maxSecs = uint64(1<<63-1) / uint64(time.Second)
		return time.Duration(min(secs, maxSecs)) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
