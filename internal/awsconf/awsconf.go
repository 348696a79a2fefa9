// Package awsconf holds the AWS settings the Kinesis and Firehose outputs
// and the CloudWatch metrics publisher (internal/cwmetrics) share: Config,
// the region, endpoint, profile and assumed role their blocks of agent.yaml
// embed inline, with its defaults and validation; and Load, which resolves
// the SDK configuration from it: the default credential chain, the region
// and an optionally assumed role, with the SDK's own retries off.
package awsconf

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/logging"
)

// loadTimeout bounds reading the shared config files and, when no region is
// configured anywhere, asking IMDS for one.
const loadTimeout = 10 * time.Second

// credentialsExpiryWindow is how long before they expire assumed-role
// credentials are refreshed (AssumeRole's shortest session is 15 minutes).
const credentialsExpiryWindow = 5 * time.Minute

// Settings are what Load takes from code rather than from the user's block.
type Settings struct {
	// UserAgent is the User-Agent product to add (kplagent/VERSION).
	UserAgent string
	// Logger receives the SDK's own log lines (at debug level); nil
	// discards them.
	Logger *slog.Logger
}

// sdkLogger passes the SDK's log lines to slog at debug level: they are
// about connection reuse and the like, and the outputs report what matters.
type sdkLogger struct{ log *slog.Logger }

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	if l.log != nil {
		l.log.Debug(fmt.Sprintf(format, v...), "sdk_level", string(c))
	}
}

// hideWriterTo hides the request body's io.WriterTo from net/http. The SDK
// closes a request's body once the response arrives, and its body's WriteTo
// then answers io.EOF where Read answers (0, io.EOF): when a fast server
// answers before net/http's writer has done with the body (it reads past the
// content length to check for extra bytes), that EOF is a write error, and
// the connection is closed under the response being read ("use of closed
// network connection"). With Read alone, the EOF is the end of the body.
type hideWriterTo struct{ base http.RoundTripper }

func (h hideWriterTo) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		if _, ok := req.Body.(io.WriterTo); ok {
			r := new(http.Request)
			*r = *req // a shallow copy: a RoundTripper must not modify req
			r.Body = readCloser{req.Body}
			req = r
		}
	}
	return h.base.RoundTrip(req)
}

// readCloser exposes only Read and Close.
type readCloser struct{ rc io.ReadCloser }

func (r readCloser) Read(p []byte) (int, error) { return r.rc.Read(p) }
func (r readCloser) Close() error               { return r.rc.Close() }

// transportOptions tune the transport of every SDK call of one output.
func transportOptions(tr *http.Transport, maxConns int) {
	tr.MaxIdleConns = 2 * maxConns
	tr.MaxIdleConnsPerHost = maxConns
	tr.IdleConnTimeout = 90 * time.Second
	tr.WriteBufferSize = 64 << 10 // requests of up to 5 MiB
	tr.ForceAttemptHTTP2 = true
}

// Load resolves the SDK configuration of a block's settings c (zero values
// stand for the defaults): the default credential chain (environment,
// shared config and profiles, SSO, web identity, ECS, IMDSv2), the region,
// and, when c.RoleARN is set, credentials of that role assumed through STS,
// cached and refreshed before they expire. The SDK's own retries are off:
// the agent's sender retries. c.Endpoint is left to the caller's client
// (it is not STS's endpoint). Load does not validate c: the caller has.
//
// The calls of the Kinesis (or Firehose, CloudWatch) and STS clients go
// through the returned transport, which the caller closes
// (CloseIdleConnections) when done. It honours a custom CA bundle
// (AWS_CA_BUNDLE, ca_bundle).
func Load(c Config, set Settings, maxConns int) (aws.Config, *http.Transport, error) {
	c = c.WithDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	opts := append(baseOptions(c),
		awsconfig.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		awsconfig.WithLogger(sdkLogger{set.Logger}),
	)
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, nil, fmt.Errorf("load the AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		// Last, the instance metadata. Asked apart, so that its failure
		// reads as the region missing, not as an IMDS problem.
		cfg, err = awsconfig.LoadDefaultConfig(ctx, append(opts, awsconfig.WithEC2IMDSRegion())...)
		if err != nil || cfg.Region == "" {
			return aws.Config{}, nil, errNoRegion(err)
		}
	}
	// The loader's client carries the CA bundle; take its transport to
	// own the connections.
	var tr *http.Transport
	if bc, ok := cfg.HTTPClient.(*awshttp.BuildableClient); ok {
		tr = bc.GetTransport()
	} else {
		tr = awshttp.NewBuildableClient().GetTransport()
	}
	transportOptions(tr, max(1, maxConns))
	cfg.HTTPClient = &http.Client{
		Transport:     hideWriterTo{tr},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if set.UserAgent != "" {
		cfg.APIOptions = append(cfg.APIOptions, awsmiddleware.AddUserAgentKey(set.UserAgent))
	}
	if cfg.Credentials != nil { // also the source of an assumed role
		cfg.Credentials = explainedChain{cfg.Credentials}
	}
	if c.RoleARN != "" {
		stsClient := sts.NewFromConfig(cfg, func(o *sts.Options) {
			if c.STSEndpoint != "" {
				o.BaseEndpoint = aws.String(c.STSEndpoint)
			}
		})
		provider := stscreds.NewAssumeRoleProvider(stsClient, c.RoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = c.RoleSessionName
			if c.ExternalID != "" {
				o.ExternalID = aws.String(c.ExternalID)
			}
		})
		cfg.Credentials = aws.NewCredentialsCache(provider, func(o *aws.CredentialsCacheOptions) {
			// Refresh ahead of expiry, so that no request is signed with
			// credentials that expire in flight.
			o.ExpiryWindow = credentialsExpiryWindow
			o.ExpiryWindowJitterFrac = 0.2
		})
	}
	return cfg, tr, nil
}
