package awsconf

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Validate checks c without I/O. Zero values stand for the defaults. Each
// problem is prefixed by its key relative to the block ("region: ..."), as
// the blocks' own Validate do, so that the agent reports it at its full
// path (outputs[0].kinesis.region); secrets (external_id) are never quoted.
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
		case err != nil:
			add("%s: %v", key, err)
		case u.Scheme != "http" && u.Scheme != "https":
			add("%s: scheme %q not supported (want http or https)", key, u.Scheme)
		case u.Hostname() == "":
			add("%s: no host in %q", key, raw)
		case !validPort(u.Port()):
			add("%s: bad port %q in %q (1 to 65535)", key, u.Port(), raw)
		}
	}
	checkURL("endpoint", c.Endpoint)
	checkURL("sts_endpoint", c.STSEndpoint)
	if c.RoleARN != "" && !strings.HasPrefix(c.RoleARN, "arn:") {
		add("role_arn: %q is not an ARN (arn:aws:iam::ACCOUNT:role/NAME)", c.RoleARN)
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
