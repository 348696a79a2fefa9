package kafka

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/kplagent/agent/outputs"
)

// Type is the Kafka output's component type: `type: kafka` with a `kafka:`
// block, and `agent tail --to kafka://HOST:PORT[,HOST:PORT...]/TOPIC[?PARAMS]`.
func Type() outputs.Type {
	return outputs.Type{
		Name:          "kafka",
		DefaultConfig: func() any { c := DefaultConfig(); return &c },
		New: func(name string, cfg any, set outputs.Settings) (outputs.Output, error) {
			c, ok := cfg.(*Config)
			if !ok {
				return nil, fmt.Errorf("kafka: config is %T, want *kafka.Config", cfg)
			}
			// set.Registerer already labels every metric output=<name>.
			return New(name, *c, Settings{Logger: set.Logger, UserAgent: set.UserAgent, Registerer: set.Registerer})
		},
		FromURL:       fromURL,
		Schemes:       []string{"kafka"},
		TailFlagNames: []string{"ca-file", "cert-file", "key-file", "insecure-skip-verify"},
	}
}

// fromURL makes the config of `agent tail --to kafka://...` (see FromURL
// for the URL's parameters). Of the flags a URL cannot carry it takes the
// TLS ones: --ca-file, --cert-file/--key-file and --insecure-skip-verify
// enable TLS to the brokers. The HTTP flags (--http-format, --header,
// --gzip, --bearer-token, --basic-auth, --timeout) do not apply: agent
// tail refuses them (Type.TailFlagNames).
func fromURL(u *url.URL, f outputs.TailFlags) (any, error) {
	if u == nil {
		return nil, errors.New("kafka: want kafka://HOST:PORT/TOPIC")
	}
	c, err := FromURL(u)
	if err != nil {
		return nil, err
	}
	if f.CAFile != "" || f.CertFile != "" || f.KeyFile != "" || f.InsecureSkipVerify {
		c.TLS.Enabled = true
		if f.CAFile != "" {
			c.TLS.CAFile = f.CAFile
		}
		if f.CertFile != "" || f.KeyFile != "" {
			c.TLS.CertFile, c.TLS.KeyFile = f.CertFile, f.KeyFile
		}
		c.TLS.InsecureSkipVerify = c.TLS.InsecureSkipVerify || f.InsecureSkipVerify
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("kafka: url: %w", err)
		}
	}
	return &c, nil
}

// ResolvePaths makes the TLS files relative to base.
func (c *Config) ResolvePaths(base string) {
	for _, p := range []*string{&c.TLS.CAFile, &c.TLS.CertFile, &c.TLS.KeyFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
}

// CheckFiles loads the TLS files as New does: they exist, hold PEM, and the
// key matches the certificate.
func (c *Config) CheckFiles() error {
	if !c.TLS.Enabled {
		return nil
	}
	var errs []error
	if c.TLS.CAFile != "" {
		if _, err := loadTLS(TLSConfig{CAFile: c.TLS.CAFile}); err != nil {
			errs = append(errs, err) // "tls.ca_file: ..."
		}
	}
	if c.TLS.CertFile != "" && c.TLS.KeyFile != "" {
		if _, err := loadTLS(TLSConfig{CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile}); err != nil {
			errs = append(errs, err) // "tls.cert_file ..., tls.key_file ...: ..."
		}
	}
	return errors.Join(errs...)
}

// defaultConcurrency is the sender concurrency of `agent tail --to
// kafka://`: the producer pipelines up to 5 requests per broker itself. In
// `make bench-kafka` on a quiet machine (2026-12-06 11:07 UTC, after Send
// stopped copying its batch) 3 Sends in flight made 84% of the bare
// producer's throughput at 54 – 55 MiB peak RSS; 2 made 63% (52 MiB) and 4
// made 96 – 116% but touched 66 MiB (BENCHMARKS.md).
const defaultConcurrency = 3

// DefaultConcurrency implements outputs.ConcurrencyAdvisor.
func (*Config) DefaultConcurrency() int { return defaultConcurrency }

var _ outputs.ConcurrencyAdvisor = (*Config)(nil)
