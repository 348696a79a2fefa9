package awsconf

// Config is the AWS part of a block of agent.yaml: outputs[].kinesis,
// outputs[].firehose and metrics.cloudwatch embed it with `yaml:",inline"`,
// so its keys are written in the block itself (kinesis: {stream: logs,
// region: eu-west-1}). Secrets are never part of it: credentials come from
// the SDK's default chain (environment, shared config and profiles, SSO, web
// identity, ECS, IMDSv2), optionally through an assumed role.
type Config struct {
	// Region is the service's region; empty takes the SDK's (AWS_REGION,
	// the profile's region, IMDS).
	Region string `yaml:"region"`
	// Endpoint overrides the service's endpoint (a VPC endpoint, an
	// emulator): an http or https URL. The block's client sets it
	// (Load does not: it would apply to STS too).
	Endpoint string `yaml:"endpoint"`
	// Profile selects a profile of the shared config files instead of
	// AWS_PROFILE or "default".
	Profile string `yaml:"profile"`
	// RoleARN, when set, is assumed through STS with the default chain's
	// credentials; the temporary credentials are cached and refreshed
	// before they expire.
	RoleARN string `yaml:"role_arn"`
	// ExternalID is passed to AssumeRole (the role's trust policy may want
	// one). It is treated as a secret: never quoted in errors or logs.
	ExternalID string `yaml:"external_id"`
	// RoleSessionName names the assumed role's sessions (CloudTrail).
	// Default DefaultRoleSessionName.
	RoleSessionName string `yaml:"role_session_name"`
	// STSEndpoint overrides the STS endpoint used to assume RoleARN.
	STSEndpoint string `yaml:"sts_endpoint"`
}

// DefaultRoleSessionName names the agent's assumed-role sessions unless
// configured, so that CloudTrail shows which calls the agent made.
const DefaultRoleSessionName = "kplagent"

// DefaultConfig returns the defaults a block starts from.
func DefaultConfig() Config {
	return Config{RoleSessionName: DefaultRoleSessionName}
}

// WithDefaults fills zero values with the defaults (for a Config not built
// from DefaultConfig).
func (c Config) WithDefaults() Config {
	if c.RoleSessionName == "" {
		c.RoleSessionName = DefaultRoleSessionName
	}
	return c
}

// ParamNames are the keys SetParam takes, for messages that list them.
func ParamNames() []string {
	return []string{"region", "endpoint", "profile", "role_arn", "external_id", "role_session_name", "sts_endpoint"}
}

// SetParam sets the setting whose YAML key is key to value, for the query
// parameters of `agent tail --to kinesis://STREAM?region=R&role_arn=ARN`
// (they are named as the YAML keys). It reports false, and changes
// nothing, when key is not one of Config's.
func (c *Config) SetParam(key, value string) bool {
	dst, ok := map[string]*string{
		"region":            &c.Region,
		"endpoint":          &c.Endpoint,
		"profile":           &c.Profile,
		"role_arn":          &c.RoleARN,
		"external_id":       &c.ExternalID,
		"role_session_name": &c.RoleSessionName,
		"sts_endpoint":      &c.STSEndpoint,
	}[key]
	if ok {
		*dst = value
	}
	return ok
}
