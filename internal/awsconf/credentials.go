package awsconf

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// NoCredentialsError is the error of a request when the default credential
// chain found no credentials. The SDK's own error names only the chain's
// last step ("no EC2 IMDS role found, ... access disabled"), which reads as
// an IMDS problem to an operator who simply forgot to give credentials.
type NoCredentialsError struct{ Err error }

func (e *NoCredentialsError) Error() string {
	return fmt.Sprintf("no AWS credentials found (environment AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "+
		"shared files ~/.aws/credentials and ~/.aws/config, AWS_PROFILE or profile, SSO, web identity, ECS, "+
		"EC2 instance role): %v", e.Err)
}

func (e *NoCredentialsError) Unwrap() error { return e.Err }

// explainedChain wraps the default chain's provider (a CredentialsCache,
// which still caches) so that its failure says where it looked.
type explainedChain struct{ aws.CredentialsProvider }

// Retrieve implements aws.CredentialsProvider.
func (c explainedChain) Retrieve(ctx context.Context) (aws.Credentials, error) {
	creds, err := c.CredentialsProvider.Retrieve(ctx)
	if err != nil && ctx.Err() == nil {
		return creds, &NoCredentialsError{Err: err}
	}
	return creds, err
}

// ProviderSources passes the wrapped provider's sources on (the SDK's
// User-Agent names them).
func (c explainedChain) ProviderSources() []aws.CredentialSource {
	if s, ok := c.CredentialsProvider.(aws.CredentialProviderSource); ok {
		return s.ProviderSources()
	}
	return nil
}
