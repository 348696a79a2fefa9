// Package redact removes secrets from URLs before they are logged or stored
// (log lines, error messages, dead-letter reasons): the values of query
// parameters (?api_key=…) and user information (user:password@). Scheme,
// host, path and parameter names stay, so a message still says where a
// request went.
//
// The query of an agent's own destination URL (kinesis://, firehose://,
// kafka://, file://, blackhole:, as `agent tail --to` takes them) holds the
// agent's settings: the values of the settings known to hold no secret
// (region, endpoint, format, compression...) stay readable there, so a
// usage error says what was given. Every other value is masked: an unknown
// name may be a secret, and the query of an http(s) URL belongs to its
// receiver, which may take keys under any name.
package redact

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// Mask replaces every secret.
const Mask = "REDACTED"

// URL returns u as a string with its user information and every query
// value replaced by Mask (parameter names are kept), except the readable
// settings of an agent destination URL (see the package doc). The fragment
// is dropped. nil gives "".
func URL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	if c.User != nil {
		c.User = url.User(Mask)
	}
	c.Fragment, c.RawFragment = "", ""
	if c.RawQuery != "" {
		c.RawQuery = query(c.RawQuery, agentSchemes[strings.ToLower(c.Scheme)])
	}
	c.ForceQuery = false
	return c.String()
}

// agentSchemes are the schemes whose query parameters are the agent's own
// settings (see readable).
var agentSchemes = map[string]bool{"kinesis": true, "firehose": true, "kafka": true, "file": true, "blackhole": true}

// readable are the settings of agent URLs whose values hold no secret. Not
// here, so masked: role_arn and external_id (an account and a shared
// value of a role's trust policy), client_id, and anything unknown.
var readable = map[string]bool{
	// kinesis, firehose (internal/awsconf and the outputs' URLs)
	"region": true, "endpoint": true, "sts_endpoint": true, "profile": true, "stream": true,
	"protocol": true, "rate_limit": true, "aggregation": true, "shard_map_refresh": true,
	"max_record_bytes": true, "aggregate_lines": true, "append_newline": true, "timeout": true,
	// kafka (key is the choice of message key: partition_key or none)
	"key": true, "acks": true, "idempotent": true, "client_metrics": true, "compression": true,
	"topic_field": true, "linger": true, "produce_timeout": true, "send_timeout": true,
	"batch_max_bytes": true, "max_buffered_bytes": true, "max_in_flight": true, "tls": true,
	"tls_ca_file": true, "tls_server_name": true, "tls_insecure_skip_verify": true, "sasl": true,
	// file, blackhole, and settings common to several
	"format": true, "encoding": true, "print_interval": true, "partition_key": true, "hash_key": true,
}

// secretName matches names that say they hold a secret, whatever the list
// above says: a readable name never shows such a value.
var secretName = regexp.MustCompile(`(?i)secret|token|passw|pwd|credential|signature|sig$|auth|session|private|apikey|api_key|access_key|_key$`)

// readableValue reports whether the value of parameter name (raw, as in
// the query) may be shown in an agent URL. A value holding user
// information or a query of its own (an endpoint's user:password@ or
// ?signature=) is masked all the same.
func readableValue(name, value string) bool {
	n, err := url.QueryUnescape(name)
	if err != nil || !readable[n] || (n != "key" && n != "partition_key" && n != "hash_key" && secretName.MatchString(n)) {
		return false
	}
	v, err := url.QueryUnescape(value)
	return err == nil && !strings.ContainsAny(v, "@?#")
}

// query masks the values of a raw query, keeping names and order. With
// agent set (an agent destination URL), the values of readable settings
// stay as written.
func query(raw string, agent bool) string {
	parts := strings.Split(raw, "&")
	for i, p := range parts {
		if p == "" {
			continue
		}
		name, value, hasValue := strings.Cut(p, "=")
		if hasValue && agent && readableValue(name, value) {
			continue
		}
		if hasValue {
			parts[i] = name + "=" + Mask
		} else {
			// A bare token (?SECRET) may itself be a key.
			parts[i] = Mask
		}
	}
	return strings.Join(parts, "&")
}

// RawURL is URL for a string. A string that does not parse as a URL is
// masked whole after its scheme, if any, unless it has no user
// information, query or fragment to hide: a usage hint such as
// kafka://HOST:PORT/TOPIC or a mistyped http://[::1 stays readable.
func RawURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if !strings.ContainsAny(s, "@?#") {
			return s
		}
		if i := strings.Index(s, "://"); i > 0 {
			return s[:i+3] + Mask
		}
		return Mask
	}
	if u.User == nil && u.RawQuery == "" && u.Fragment == "" && !u.ForceQuery {
		return s
	}
	return URL(u)
}

// urlInText finds absolute URLs (and scheme-less authority-with-userinfo
// forms such as //user:pw@host) in free text.
var urlInText = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.\-]*://[^\s"'<>]+`)

// userInfoInText catches user:password@host left outside a URL.
var userInfoInText = regexp.MustCompile(`//[^\s/@"'<>]+@`)

// String scrubs every URL found in s (an error message, a response body, a
// Location header): see URL. Text without "://" or "?"-style URLs is
// returned unchanged.
func String(s string) string {
	if !strings.Contains(s, "://") && !strings.Contains(s, "@") {
		return s
	}
	s = urlInText.ReplaceAllStringFunc(s, func(m string) string {
		// Trailing punctuation is usually the sentence's, not the URL's.
		trail := ""
		for len(m) > 0 && strings.ContainsRune(".,;:)]}", rune(m[len(m)-1])) {
			trail = m[len(m)-1:] + trail
			m = m[:len(m)-1]
		}
		return RawURL(m) + trail
	})
	return userInfoInText.ReplaceAllString(s, "//"+Mask+"@")
}

// Error wraps err so that its message is scrubbed by String; errors.Is and
// errors.As still see err and what it wraps. nil gives nil.
func Error(err error) error {
	if err == nil {
		return nil
	}
	var r *redacted
	if errors.As(err, &r) && r == err {
		return err
	}
	return &redacted{err: err, msg: String(err.Error())}
}

type redacted struct {
	err error
	msg string
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }
