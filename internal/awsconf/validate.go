package awsconf

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
)

// Validate checks the AWS settings of an output block without I/O, with
// endpoint, the block's service endpoint override. Each problem is prefixed
// by its key relative to the block; secrets (external_id) are never quoted.
func (s Settings) Validate(endpoint string) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if s.Region != "" && !validRegion(s.Region) {
		add("region: %q is not a region name", s.Region)
	}
	checkURL := func(key, raw string) {
		if raw == "" {
			return
		}
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			add("%s: %v", key, err)
		case u.Scheme != "http" && u.Scheme != "https":
			add("%s: scheme %q not supported (want http or https)", key, u.Scheme)
		case u.Host == "":
			add("%s: no host in %q", key, raw)
		}
	}
	checkURL("endpoint", endpoint)
	checkURL("sts_endpoint", s.STSEndpoint)
	if s.RoleARN != "" && !strings.HasPrefix(s.RoleARN, "arn:") {
		add("role_arn: %q is not an ARN (arn:aws:iam::ACCOUNT:role/NAME)", s.RoleARN)
	}
	if s.RoleARN == "" {
		if s.ExternalID != "" {
			add("external_id: set without role_arn")
		}
		if s.STSEndpoint != "" {
			add("sts_endpoint: set without role_arn")
		}
	}
	if n := len(s.RoleSessionName); n > 0 && (n < 2 || n > 64) {
		add("role_session_name: %d characters, want 2 to 64", n)
	}
	return errs
}

// validRegion reports whether s looks like a region name (us-east-1).
func validRegion(s string) bool {
	if len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
		default:
			return false
		}
	}
	return true
}

// With returns s with the User-Agent product and the SDK's logger set.
func (s Settings) With(userAgent string, log *slog.Logger) Settings {
	s.UserAgent, s.Logger = userAgent, log
	return s
}
