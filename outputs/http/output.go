package http

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kplagent/agent/internal/redact"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/internal/encode"
)

// Settings are the values set in code (not from YAML).
type Settings struct {
	Logger    *slog.Logger // already scoped to this output by the caller; nil: discard
	UserAgent string       // default "kplagent"
	// MaxConns is the sender's in-flight Send limit for this output; it sizes
	// the pool of idle keep-alive connections. Default 64.
	MaxConns int
	// Metrics, when set, receives the output's own metrics (the caller adds
	// the output's name as a label, e.g. with prometheus.WrapRegistererWith).
	Metrics prometheus.Registerer
}

const (
	defaultUserAgent = "kplagent"
	defaultMaxConns  = 64
	dialTimeout      = 10 * time.Second
	// writeBufferSize cuts syscalls for large bodies (net/http's default is 4 KiB).
	writeBufferSize = 64 << 10
)

// Output is the HTTP output. Send is safe for concurrent use.
type Output struct {
	name    string
	cfg     Config // with defaults filled in
	format  format
	enc     encode.Encoding // of ndjson and json
	comp    compressor      // nil: bodies go uncompressed
	url     *url.URL
	host    string      // request Host (virtual host)
	header  http.Header // static headers, cloned per request
	health  string      // healthcheck URL, or ""
	tlsConf *tls.Config // nil for http://

	transport *http.Transport
	client    *http.Client
	log       *slog.Logger
	now       func() time.Time // for Retry-After dates; tests replace it

	bufs    bufPool
	senders sync.Pool // *sender

	// redactedURL names url in errors and logs: no user information, no
	// query values (internal/redact).
	redactedURL string
	// limit is the uncompressed request size requests are packed up to:
	// cfg.MaxRequestBytes, lowered by 413 answers (limit.go).
	limit               atomic.Int64
	metrics             *outputMetrics
	lastUnconfirmedWarn atomic.Int64

	closed atomic.Bool
}

var _ outputs.Output = (*Output)(nil)
var _ outputs.Healthchecker = (*Output)(nil)

// New validates cfg, loads the TLS files it names and returns the output. It
// opens no connection.
func New(name string, cfg Config, set Settings) (*Output, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	cfg = cfg.withDefaults()
	u, err := url.Parse(cfg.URL)
	if err != nil { // unreachable after Validate
		return nil, fmt.Errorf("http: url: %w", err)
	}
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	enc, _ := encode.ParseEncoding(cfg.Encoding, encode.EncodingJSON) // validated
	o := &Output{
		name:   name,
		cfg:    cfg,
		format: parseFormat(cfg.Format),
		enc:    enc,
		url:    u,
		host:   u.Host,
		health: cfg.HealthcheckURL,
		log:    log,
		now:    time.Now,
	}
	if o.comp, err = newCompressor(cfg.Compression); err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	o.redactedURL = redact.URL(u)
	o.bufs.maxKeep = max(2*int(cfg.MaxRequestBytes), 2<<20)
	o.bufs.free = make(chan *[]byte, keptBufs)
	o.limit.Store(int64(cfg.MaxRequestBytes))
	if o.metrics, err = newOutputMetrics(set.Metrics); err != nil {
		return nil, fmt.Errorf("http: metrics: %w", err)
	}
	o.metrics.limit.Set(float64(cfg.MaxRequestBytes))
	if u.Scheme == "https" || cfg.TLS.isSet() {
		if o.tlsConf, err = loadTLS(cfg.TLS); err != nil {
			return nil, fmt.Errorf("http: %w", err)
		}
		if cfg.TLS.InsecureSkipVerify {
			log.Warn("tls.insecure_skip_verify is set: the server's certificate is not verified")
		}
	}
	o.header = o.staticHeader(set.UserAgent)

	maxConns := set.MaxConns
	if maxConns <= 0 {
		maxConns = defaultMaxConns
	}
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	o.transport = &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       o.tlsConf,
		TLSHandshakeTimeout:   dialTimeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          2 * maxConns,
		MaxIdleConnsPerHost:   maxConns,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		WriteBufferSize:       writeBufferSize,
		DisableCompression:    true, // responses are small; don't ask for gzip
	}
	o.client = &http.Client{
		Transport: o.transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return o, nil
}

// Name returns the output's name.
func (o *Output) Name() string { return o.name }

// SendTimeout is the request timeout (timeout): see outputs.SendTimeouter.
func (o *Output) SendTimeout() time.Duration { return o.cfg.Timeout }

// WritesRecords reports whether the format writes user records one by one
// (all but raw, which sends KPL records): see outputs.RecordWriter.
func (o *Output) WritesRecords() bool { return o.format != formatRaw }

// Close closes idle connections. It is idempotent; Send must not be called
// after it.
func (o *Output) Close(context.Context) error {
	if o.closed.Swap(true) {
		return nil
	}
	o.transport.CloseIdleConnections()
	return nil
}

// errClosed is returned by Send after Close.
var errClosed = errors.New("http: output closed")

// staticHeader builds the headers every request carries: defaults, then the
// configured ones (which may override Content-Type and User-Agent), then auth.
func (o *Output) staticHeader(userAgent string) http.Header {
	h := make(http.Header)
	if userAgent == "" {
		userAgent = defaultUserAgent
	}
	h.Set("User-Agent", userAgent)
	if o.format == formatNDJSON && o.enc == encode.EncodingText {
		h.Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		h.Set("Content-Type", o.format.contentType())
	}
	switch o.format {
	case formatKafkaRESTv2:
		h.Set("Accept", "application/vnd.kafka.v2+json")
	case formatKafkaRESTv3:
		h.Set("Accept", kafkaV3ContentType)
	}
	for k, v := range o.cfg.Headers {
		if strings.EqualFold(k, "Host") {
			o.host = v
			continue
		}
		h.Set(k, v)
	}
	switch a := o.cfg.Auth; {
	case a.Basic != nil:
		cred := a.Basic.Username + ":" + a.Basic.Password
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred)))
	case a.Bearer != "":
		h.Set("Authorization", "Bearer "+a.Bearer)
	}
	return h
}

type format int

const (
	formatNDJSON format = iota
	formatJSON
	formatRaw
	formatRawPacked
	formatKafkaRESTv2
	formatKafkaRESTv3
)

func parseFormat(s string) format {
	switch s {
	case FormatJSON:
		return formatJSON
	case FormatRaw:
		return formatRaw
	case FormatRawPacked:
		return formatRawPacked
	case FormatKafkaRESTv2:
		return formatKafkaRESTv2
	case FormatKafkaRESTv3:
		return formatKafkaRESTv3
	}
	return formatNDJSON
}

func (f format) contentType() string {
	switch f {
	case formatJSON:
		return "application/json"
	case formatRaw:
		return "application/octet-stream"
	case formatRawPacked:
		return PackedContentType
	case formatKafkaRESTv2:
		return "application/vnd.kafka.binary.v2+json"
	case formatKafkaRESTv3:
		return kafkaV3ContentType
	}
	return "application/x-ndjson"
}

// prefix, separator and suffix frame the records of a request body.
func (f format) framing() (prefix, sep, suffix string) {
	switch f {
	case formatJSON:
		return "[", ",", "]"
	case formatKafkaRESTv2:
		return `{"records":[`, ",", "]}"
	}
	return "", "", ""
}
