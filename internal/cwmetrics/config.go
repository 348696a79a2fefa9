package cwmetrics

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kplagent/agent/internal/awsconf"
)

// Limits of CloudWatch's PutMetricData and its dimensions.
const (
	// maxRequestData is the most metric data one PutMetricData takes.
	maxRequestData = 1000
	// maxRequestBytes is the largest request PutMetricData takes (1 MB);
	// requests are cut well below it by an estimate of each datum's size.
	maxRequestBytes = 1_000_000
	// maxDimensions is the most dimensions a metric may have.
	maxDimensions = 30
	// ownDimensions is the most dimensions the agent adds to a metric
	// (Flow and Reason): the user's take the rest.
	ownDimensions = 2
)

// DefaultNamespace is the namespace metrics go to unless configured.
const DefaultNamespace = "KPLAgent"

// Config is metrics.cloudwatch in agent.yaml: the agent's own metrics
// published to CloudWatch with PutMetricData. Credentials come from the
// SDK's default chain (environment, shared config and profiles, SSO, web
// identity, ECS, IMDSv2), optionally through an assumed role, as for the
// Kinesis output; secrets are never part of the config.
type Config struct {
	// Enabled turns publishing on. Writing the block turns it on; false
	// keeps the block and turns it off.
	Enabled bool `yaml:"enabled"`
	// Namespace is the metrics' CloudWatch namespace. Default KPLAgent.
	Namespace string `yaml:"namespace"`
	// Interval is how often the metrics are collected and published.
	// Default 1m (CloudWatch's standard resolution).
	Interval time.Duration `yaml:"interval"`
	// Dimensions are added to every metric (Host: web-1, Env: prod), on
	// top of the one naming the metric's source, flow or output.
	Dimensions map[string]string `yaml:"dimensions"`
	// Timeout bounds each PutMetricData call. Default 10s.
	Timeout time.Duration `yaml:"timeout"`

	// The AWS settings (region, endpoint, profile, role_arn, external_id,
	// role_session_name, sts_endpoint), as in a Kinesis output's block;
	// endpoint overrides the CloudWatch endpoint.
	awsconf.Config `yaml:",inline"`
}

// DefaultConfig is what a metrics.cloudwatch block starts from.
func DefaultConfig() Config {
	return Config{
		Config:    awsconf.DefaultConfig(),
		Enabled:   true,
		Namespace: DefaultNamespace,
		// CloudWatch keeps standard-resolution metrics per minute: a
		// shorter interval costs more requests for no finer graph.
		Interval: time.Minute,
		// Long enough for a distant region, short enough that a stuck
		// call does not skip many intervals.
		Timeout: 10 * time.Second,
	}
}

// UnmarshalYAML fills the defaults before decoding the user's values.
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	type plain Config
	p := plain(DefaultConfig())
	if err := n.Decode(&p); err != nil {
		return err
	}
	*c = Config(p)
	return nil
}

// StrictYAML marks Config for the agent's strict config walk: its keys are
// checked although it decodes itself.
func (*Config) StrictYAML() {}

// Validate checks c without I/O. Each problem is prefixed by its key
// relative to the block; secrets (external_id) are never quoted.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch {
	case c.Namespace == "":
		add("namespace: required")
	case len(c.Namespace) > 255:
		add("namespace: %d characters, at most 255", len(c.Namespace))
	case strings.HasPrefix(c.Namespace, "AWS/"):
		add("namespace: %q: names starting with AWS/ are reserved for AWS services", c.Namespace)
	case !printableASCII(c.Namespace) || strings.HasPrefix(c.Namespace, ":"):
		add("namespace: %q: want printable ASCII, not starting with a colon", c.Namespace)
	}
	if c.Interval < time.Second {
		add("interval: must be at least 1s, got %s", c.Interval)
	}
	if c.Timeout <= 0 {
		add("timeout: must be positive")
	}
	if len(c.Dimensions) > maxDimensions-ownDimensions {
		add("dimensions: %d, at most %d (CloudWatch takes %d per metric and the agent adds up to %d)",
			len(c.Dimensions), maxDimensions-ownDimensions, maxDimensions, ownDimensions)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Dimensions)) {
		v := c.Dimensions[k]
		switch {
		case len(k) == 0 || len(k) > 255 || !printableASCII(k) || strings.HasPrefix(k, ":"):
			add("dimensions: %q: the name must be 1 to 255 printable ASCII characters, not starting with a colon", k)
		case reserved(k):
			add("dimensions: %q: the agent sets this dimension itself", k)
		case v == "" || len(v) > 1024 || strings.HasPrefix(v, ":"):
			add("dimensions: %q: the value must be 1 to 1024 characters, not starting with a colon", k)
		}
	}
	errs = append(errs, c.Config.Validate())
	return errors.Join(errs...)
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
