package tlsconf

import (
	"crypto/x509"
	"errors"
)

// Hint returns, for an error that is a failed verification of the server's
// certificate, a short text saying which option fixes it (" (...)", to
// append to the error's message), else "". The error alone ("x509:
// certificate signed by unknown authority") names neither the option nor
// the flag, and the sender retries it forever.
func Hint(err error) string {
	var (
		ua x509.UnknownAuthorityError
		he x509.HostnameError
		ci x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &ua):
		return " (the server's certificate is not signed by a CA this host trusts: give the CA's PEM file" +
			" with tls.ca_file, agent tail --ca-file; or install it in the system's trust store)"
	case errors.As(err, &he):
		return " (the server's certificate is not for this host name: connect by a name it holds," +
			" or set tls.server_name to one)"
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return " (the server's certificate has expired or is not valid yet: renew it, or check this host's clock)"
	}
	return ""
}
