package kafka

import (
	"context"
	"crypto/tls"
	"fmt"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	saslaws "github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kplagent/agent/outputs/internal/tlsconf"
)

// loadTLS builds the client TLS configuration, reading the files it names.
func loadTLS(c TLSConfig) (*tls.Config, error) {
	return tlsconf.Load(tlsconf.Files{CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile,
		ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify})
}

// securityOpts returns the client options for TLS and SASL. Secrets stay in
// the mechanisms' closures; no error or log line carries them.
func securityOpts(ctx context.Context, c Config, userAgent string) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if c.TLS.Enabled {
		conf, err := loadTLS(c.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(conf))
	}
	mech, err := saslMechanism(ctx, c.SASL, userAgent)
	if err != nil || mech == nil {
		return opts, err
	}
	return append(opts, kgo.SASL(mech)), nil
}

// saslMechanism returns the SASL mechanism of c, nil for none.
func saslMechanism(ctx context.Context, c SASLConfig, userAgent string) (sasl.Mechanism, error) {
	switch c.Mechanism {
	case "":
		return nil, nil
	case SASLPlain:
		return plain.Auth{User: c.Username, Pass: c.Password}.AsMechanism(), nil
	case SASLScramSHA256:
		return scram.Auth{User: c.Username, Pass: c.Password}.AsSha256Mechanism(), nil
	case SASLScramSHA512:
		return scram.Auth{User: c.Username, Pass: c.Password}.AsSha512Mechanism(), nil
	case SASLAWSMSKIAM:
		// The default chain: environment, shared config and credentials
		// files, web identity, ECS and EC2 roles. LoadDefaultConfig wraps
		// the provider in a cache that refreshes before expiry, so each
		// (re)connection signs with valid credentials.
		awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, fmt.Errorf("sasl: %s: load the AWS configuration: %w", SASLAWSMSKIAM, err)
		}
		creds := awsCfg.Credentials
		if creds == nil {
			return nil, fmt.Errorf("sasl: %s: no AWS credential provider found", SASLAWSMSKIAM)
		}
		return saslaws.ManagedStreamingIAM(func(ctx context.Context) (saslaws.Auth, error) {
			v, err := creds.Retrieve(ctx)
			if err != nil {
				return saslaws.Auth{}, fmt.Errorf("kafka: %s: AWS credentials: %w", SASLAWSMSKIAM, err)
			}
			return saslaws.Auth{
				AccessKey:    v.AccessKeyID,
				SecretKey:    v.SecretAccessKey,
				SessionToken: v.SessionToken,
				UserAgent:    userAgent,
			}, nil
		}), nil
	}
	return nil, fmt.Errorf("sasl.mechanism: unknown %q", c.Mechanism) // unreachable after Validate
}
