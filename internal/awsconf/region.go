package awsconf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// regionNotSet starts the error of Load and CheckRegion when no region is
// found; Load adds why the instance metadata gave none.
const regionNotSet = "region: not set (set region, ?region= in a kinesis:// or firehose:// URL, AWS_REGION, or the profile's region)"

// baseOptions are the loader options that decide the region: the block's
// region and profile.
func baseOptions(c Config) []func(*awsconfig.LoadOptions) error {
	var opts []func(*awsconfig.LoadOptions) error
	if c.Region != "" {
		opts = append(opts, awsconfig.WithRegion(c.Region))
	}
	if c.Profile != "" {
		opts = append(opts, awsconfig.WithSharedConfigProfile(c.Profile))
	}
	return opts
}

// CheckRegion finds the region Load would, without network calls, for
// `agent validate` (and the configuration check of `agent run` and of a
// reload): the block's region, else AWS_REGION or AWS_DEFAULT_REGION, else
// the region of the profile (profile, AWS_PROFILE or default) in the shared
// config files, read by the SDK's loader as Load reads them. Load's last
// resort, the EC2 instance metadata, is a network call: CheckRegion takes
// it as able to answer when the host is an EC2 instance (told by its
// firmware's vendor in /sys, as cloud-init tells it) or an endpoint for it
// is configured, and the SDK's settings do not turn it off
// (AWS_EC2_METADATA_DISABLED). Otherwise it fails with Load's message.
// A profile that is named but missing fails as Load fails.
func (c Config) CheckRegion() error {
	if c.Region != "" {
		return nil // Validate checks its form
	}
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	// Legacy defaults mode: "auto" (AWS_DEFAULTS_MODE, defaults_mode)
	// would ask the instance metadata; the region does not depend on it.
	opts := append(baseOptions(c), awsconfig.WithDefaultsMode(aws.DefaultsModeLegacy))
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		if c.Profile != "" {
			return fmt.Errorf("profile: load the AWS configuration: %w", err)
		}
		return fmt.Errorf("load the AWS configuration: %w", err)
	}
	if cfg.Region != "" {
		return nil
	}
	why := imdsUnavailable(cfg.ConfigSources)
	if why == "" {
		return nil // Load asks the instance metadata
	}
	return fmt.Errorf("%s, and EC2 instance metadata gives none: %s", regionNotSet, why)
}

// imdsUnavailable says why the EC2 instance metadata cannot give a region
// here, or "" when it may. sources are the loader's (aws.Config's
// ConfigSources).
func imdsUnavailable(sources []any) string {
	for _, s := range sources {
		switch s := s.(type) {
		case awsconfig.EnvConfig:
			if s.EC2IMDSClientEnableState == imds.ClientDisabled {
				return "turned off (AWS_EC2_METADATA_DISABLED)"
			}
			if s.EC2IMDSEndpoint != "" {
				return ""
			}
		case awsconfig.SharedConfig:
			if s.EC2IMDSEndpoint != "" {
				return ""
			}
		}
	}
	if onEC2() {
		return ""
	}
	return "this host is not an EC2 instance"
}

// ec2Markers are files whose content tells an EC2 instance (readable by
// any user): the DMI vendor of Nitro and bare-metal instances, the Xen
// hypervisor UUID of older ones. A variable for tests.
var ec2Markers = []struct{ path, prefix string }{
	{"/sys/devices/virtual/dmi/id/sys_vendor", "amazon ec2"},
	{"/sys/devices/virtual/dmi/id/bios_vendor", "amazon ec2"},
	{"/sys/hypervisor/uuid", "ec2"},
}

// onEC2 reports whether this host looks like an EC2 instance, from files
// only (no network).
func onEC2() bool {
	for _, m := range ec2Markers {
		b, err := os.ReadFile(m.path)
		if err == nil && strings.HasPrefix(strings.ToLower(strings.TrimSpace(string(b))), m.prefix) {
			return true
		}
	}
	return false
}

// errNoRegion is Load's error when neither the configuration nor the
// instance metadata gave a region.
func errNoRegion(imdsErr error) error {
	if imdsErr == nil {
		imdsErr = errors.New("no region")
	}
	return fmt.Errorf("%s, and EC2 instance metadata gave none: %w", regionNotSet, imdsErr)
}
