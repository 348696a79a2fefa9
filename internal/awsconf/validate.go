package awsconf

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/arn"

	"github.com/kplagent/agent/internal/redact"
)

// Validate checks c without I/O. Zero values stand for the defaults. Each
// problem is prefixed by its key relative to the block ("region: ..."), as
// the blocks' own Validate do, so that the agent reports it at its full
// path (outputs[0].kinesis.region); secrets (external_id), and a role_arn
// that is not an ARN (see roleARNProblem), are never quoted.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Region != "" && !validRegion(c.Region) {
		add("region: %q is not a region name", c.Region)
	}
	checkURL := func(key, raw string) {
		if raw == "" {
			return
		}
		u, err := url.Parse(raw)
		switch {
		case err != nil && strings.ContainsAny(raw, "@?#"):
			// Its text quotes parts of the URL, user information included.
			add("%s: parse %q: not a valid URL", key, redact.RawURL(raw))
		case err != nil:
			// "127.0.0.1:4567" (no scheme) fails to parse: say what is wanted.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			add("%s: %q: want http://HOST[:PORT] or https://HOST[:PORT] (%v)", key, raw, err)
		case u.Opaque != "" && u.Host == "":
			// "localhost:4567" parses as scheme "localhost".
			add("%s: %q: want http://HOST[:PORT] or https://HOST[:PORT] (no scheme)", key, redact.RawURL(raw))
		case u.Scheme != "http" && u.Scheme != "https":
			add("%s: scheme %q not supported (want http or https)", key, u.Scheme)
		case u.Hostname() == "":
			add("%s: no host in %q", key, redact.URL(u))
		case !validPort(u.Port()):
			add("%s: bad port %q in %q (1 to 65535)", key, u.Port(), redact.URL(u))
		}
	}
	checkURL("endpoint", c.Endpoint)
	checkURL("sts_endpoint", c.STSEndpoint)
	if c.RoleARN != "" {
		if why := roleARNProblem(c.RoleARN); why != "" {
			// Not quoted: see roleARNProblem.
			add("role_arn: not an IAM role ARN (want arn:aws:iam::ACCOUNT:role/NAME): %s; the value (%d characters) is not shown, since what is not an ARN may be a secret pasted in the wrong place", why, len(c.RoleARN))
		}
	}
	if c.RoleARN == "" {
		if c.ExternalID != "" {
			add("external_id: set without role_arn")
		}
		if c.STSEndpoint != "" {
			add("sts_endpoint: set without role_arn")
		}
	}
	if n := len(c.RoleSessionName); n > 0 && (n < 2 || n > 64) {
		add("role_session_name: %d characters, want 2 to 64", n)
	}
	return errors.Join(errs...)
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

// validPort says whether port, from url.URL.Port, is empty (the scheme's) or
// a TCP port number: url.Parse takes any digits, and a URL with port 457401
// was retried forever.
func validPort(port string) bool {
	if port == "" {
		return true
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

// roleARNProblem says what makes s not the ARN of an IAM role, or "" when
// it is one, without quoting any part of s. A role's ARN holds no secret
// (an account ID and a role name, which AWS's own AssumeRole errors show),
// but a value that is not one can be anything: an access key or a token
// pasted into the wrong key would otherwise end up in logs, the journal,
// `agent status` and the tickets they are pasted into. The URL form is
// masked (internal/redact) for the same reason.
func roleARNProblem(s string) string {
	a, err := arn.Parse(s)
	switch {
	case !strings.HasPrefix(s, "arn:"):
		return "it does not start with arn:"
	case err != nil:
		return "it does not have the six parts arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE"
	case a.Partition == "":
		return "its partition is empty"
	case a.Service != "iam":
		return "its service is not iam"
	case a.Region != "":
		return "it names a region (IAM ARNs have none)"
	case a.AccountID == "":
		return "its account is empty"
	case !strings.HasPrefix(a.Resource, "role/") || len(a.Resource) == len("role/"):
		return "its resource is not role/NAME"
	}
	return ""
}
