package firehose

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kplagent/agent/internal/awsconf"
	"github.com/kplagent/agent/internal/units"
)

// Limits of Firehose's PutRecordBatch.
const (
	// MaxRequestRecords is the most records PutRecordBatch takes.
	MaxRequestRecords = 500
	// MaxRequestBytes is the most bytes of data PutRecordBatch takes.
	MaxRequestBytes = 4 << 20
	// MaxRecordBytes is the largest Firehose record (1,000 KiB).
	MaxRecordBytes = 1000 << 10
)

// Config is the user configuration of an Amazon Data Firehose output
// (outputs[].firehose). Credentials come from the SDK's default chain,
// optionally through an assumed role, as for the Kinesis output.
type Config struct {
	// Stream is the Firehose stream's (delivery stream's) name. Required.
	Stream string `yaml:"stream"`
	// The AWS settings (region, endpoint, profile, role_arn, external_id,
	// role_session_name, sts_endpoint), written in the block itself;
	// endpoint overrides the Firehose endpoint.
	awsconf.Config `yaml:",inline"`

	// AggregateLines joins the user records of a batch record, each
	// followed by the delimiter, into Firehose records of up to
	// max_record_bytes, as the Kinesis Agent does (Firehose bills per
	// record, in 5 KB units). Default true. false: one Firehose record per
	// user record. Firehose has no KPL format: records are always
	// deaggregated.
	AggregateLines bool `yaml:"aggregate_lines"`
	// AppendNewline ends every user record with "\n" unless it already
	// ends with one, so that the objects Firehose writes (S3 and others)
	// hold one record per line. Default true.
	AppendNewline bool `yaml:"append_newline"`
	// MaxRecordSize (max_record_bytes) bounds a Firehose record: default
	// and at most 1000KiB.
	MaxRecordSize units.ByteSize `yaml:"max_record_bytes"`
	// MaxRequestBytes and MaxRequestRecords bound one PutRecordBatch:
	// default and at most 4MiB and 500.
	MaxRequestBytes   units.ByteSize `yaml:"max_request_bytes"`
	MaxRequestRecords int            `yaml:"max_request_records"`
	// Timeout bounds each API call. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
}

const defaultTimeout = 30 * time.Second // a 4 MiB request over a slow uplink still fits

// DefaultConfig returns the defaults; Stream must still be set.
func DefaultConfig() Config {
	return Config{
		Config:            awsconf.DefaultConfig(),
		AggregateLines:    true,
		AppendNewline:     true,
		MaxRecordSize:     MaxRecordBytes,
		MaxRequestBytes:   MaxRequestBytes,
		MaxRequestRecords: MaxRequestRecords,
		Timeout:           defaultTimeout,
	}
}

// withDefaults fills zero values (the bools are taken as they are).
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.Config = c.Config.WithDefaults()
	if c.MaxRecordSize == 0 {
		c.MaxRecordSize = d.MaxRecordSize
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = d.MaxRequestBytes
	}
	if c.MaxRequestRecords == 0 {
		c.MaxRequestRecords = d.MaxRequestRecords
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	return c
}

// MaxRecordBytes returns the largest user record the output can send (the
// Firehose record limit, less the newline it may append): the flow's
// aggregates must hold no larger user record.
func (c Config) MaxRecordBytes() int {
	n := int(c.withDefaults().MaxRecordSize)
	if c.AppendNewline {
		n--
	}
	return n
}

// Validate checks c without I/O. Each problem is prefixed by its key
// relative to the block; secrets are never quoted.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch {
	case c.Stream == "":
		add("stream: required")
	case len(c.Stream) > 64 || !validName(c.Stream):
		add("stream: %q is not a Firehose stream name (1 to 64 of a-z, A-Z, 0-9, _ . -)", c.Stream)
	}
	errs = append(errs, c.Config.Validate())
	if c.MaxRecordSize < 0 || c.MaxRecordSize > MaxRecordBytes || (c.MaxRecordSize > 0 && c.MaxRecordSize < 2) {
		add("max_record_bytes: %d, want 2 to %d (1000KiB, the Firehose limit)", int64(c.MaxRecordSize), MaxRecordBytes)
	}
	if c.MaxRequestBytes < 0 || c.MaxRequestBytes > MaxRequestBytes {
		add("max_request_bytes: %d, want up to %d (4MiB, the PutRecordBatch limit)", int64(c.MaxRequestBytes), MaxRequestBytes)
	}
	if c.MaxRequestRecords < 0 || c.MaxRequestRecords > MaxRequestRecords {
		add("max_request_records: %d, want up to %d", c.MaxRequestRecords, MaxRequestRecords)
	}
	if c.Timeout < 0 {
		add("timeout: negative (%s)", c.Timeout)
	}
	return errors.Join(errs...)
}

func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// FromURL returns the configuration of an `agent tail --to` URL:
//
//	firehose://STREAM?region=R[&endpoint=URL][&profile=P][&role_arn=ARN]
//	  [&external_id=ID][&role_session_name=N][&sts_endpoint=URL]
//	  [&aggregate_lines=false][&append_newline=false]
//
// Unknown parameters are errors. The result is validated.
func FromURL(u *url.URL) (Config, error) {
	c := DefaultConfig()
	if u.Scheme != "firehose" {
		return c, fmt.Errorf("firehose: url scheme %q, want firehose://STREAM", u.Scheme)
	}
	c.Stream = u.Host
	if u.Path != "" && u.Path != "/" {
		return c, fmt.Errorf("firehose: url: unexpected path %q (want firehose://STREAM?region=R)", u.Path)
	}
	var errs []error
	for k, vs := range u.Query() {
		if len(vs) != 1 {
			errs = append(errs, fmt.Errorf("%s: given %d times", k, len(vs)))
			continue
		}
		v := vs[0]
		boolean := func(dst *bool) {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q, want true or false", k, v))
			}
			*dst = b
		}
		if c.SetParam(k, v) { // region, endpoint, role_arn and the other AWS settings
			continue
		}
		switch k {
		case "aggregate_lines":
			boolean(&c.AggregateLines)
		case "append_newline":
			boolean(&c.AppendNewline)
		default:
			errs = append(errs, fmt.Errorf("%s: not a setting of firehose:// (it takes %s)", k,
				strings.Join(append(awsconf.ParamNames(), "aggregate_lines", "append_newline"), ", ")))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("firehose: url: %w", err)
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("firehose: url: %w", err)
	}
	return c, nil
}

// CheckFiles is the I/O part of what New would reject
// (outputs.FileChecker): a region, found as New finds it (the region key,
// AWS_REGION or AWS_DEFAULT_REGION, the profile's region, the EC2 instance
// metadata) but without network calls (awsconf.Config.CheckRegion), so
// that `agent validate` fails where start would.
func (c *Config) CheckFiles() error { return c.Config.CheckRegion() }
