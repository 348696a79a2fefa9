package kinesis

import (
	"context"
	"errors"
	"net/http"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/kplagent/agent/outputs"
)

// throttleCodes are error codes (of a whole request, or of one PutRecords
// entry) that mean "too much, slow down".
var throttleCodes = map[string]bool{
	"ProvisionedThroughputExceededException": true,
	"KMSThrottlingException":                 true,
	"LimitExceededException":                 true,
	"ThrottlingException":                    true,
	"Throttling":                             true,
	"TooManyRequestsException":               true,
	"RequestLimitExceeded":                   true,
	"SlowDown":                               true,
}

// permanentCodes are whole-request errors about the request itself:
// retrying the same records cannot help. (The records are checked before
// sending, so these are rare.)
var permanentCodes = map[string]bool{
	"ValidationException":      true,
	"InvalidArgumentException": true,
	"SerializationException":   true,
}

// authCodes are errors an operator fixes (credentials, policy, KMS key):
// retried, since the records are fine, with a rate-limited warning.
var authCodes = map[string]bool{
	"AccessDeniedException":          true,
	"UnrecognizedClientException":    true,
	"InvalidSignatureException":      true,
	"ExpiredTokenException":          true,
	"MissingAuthenticationToken":     true,
	"IncompleteSignature":            true,
	"KMSAccessDeniedException":       true,
	"KMSDisabledException":           true,
	"KMSInvalidStateException":       true,
	"KMSNotFoundException":           true,
	"KMSOptInRequired":               true,
	"InvalidClientTokenId":           true,
	"SignatureDoesNotMatch":          true,
	"AccessDenied":                   true,
	"RegionDisabledException":        true,
	"ExpiredToken":                   true,
	"InvalidIdentityToken":           true,
	"IDPCommunicationErrorException": true,
}

// errorCode returns the API error code of err, or "".
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// classify wraps a whole-request error for the sender: throttling as
// outputs.Throttle, validation errors as outputs.Permanent, everything else
// (5xx, network, timeouts, a missing stream, refused credentials) as
// retryable. A cancelled ctx is returned as it is.
func classify(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	code := errorCode(err)
	switch {
	case throttleCodes[code]:
		return outputs.Throttle(err, 0)
	case permanentCodes[code]:
		return outputs.Permanent(err)
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusTooManyRequests {
		return outputs.Throttle(err, 0)
	}
	return err
}
