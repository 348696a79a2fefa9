// Package redact removes secrets from URLs before they are logged or stored
// (log lines, error messages, dead-letter reasons): the values of query
// parameters (?api_key=…) and user information (user:password@). Scheme,
// host, path and parameter names stay, so a message still says where a
// request went.
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
// value replaced by Mask (parameter names are kept). The fragment is
// dropped. nil gives "".
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
		c.RawQuery = query(c.RawQuery)
	}
	c.ForceQuery = false
	return c.String()
}

// query masks the values of a raw query, keeping names and order.
func query(raw string) string {
	parts := strings.Split(raw, "&")
	for i, p := range parts {
		if p == "" {
			continue
		}
		name, _, hasValue := strings.Cut(p, "=")
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
