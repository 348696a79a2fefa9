package main

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/kplagent/agent/agent"
	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/internal/redact"
	"github.com/kplagent/agent/internal/units"
	"github.com/kplagent/agent/outputs"
)

// outputFlagNames are the tail flags that fill outputs.TailFlags (see
// outputFlags): each output type takes some of them (its TailFlagNames).
var outputFlagNames = []string{"http-format", "encoding", "header", "gzip", "compression", "bearer-token", "basic-auth",
	"ca-file", "cert-file", "key-file", "insecure-skip-verify", "timeout"}

// checkOutputFlags refuses the output flags given on the command line (set)
// that the destination type t does not take: silently ignored, they would
// surprise (--compression zstd with kafka:// sent uncompressed).
func checkOutputFlags(t outputs.Type, set map[string]bool, comps agent.Components) error {
	var errs []string
	for _, name := range outputFlagNames {
		if !set[name] || slices.Contains(t.TailFlagNames, name) {
			continue
		}
		var takers []string
		for _, ot := range comps.Outputs {
			if ot.FromURL != nil && slices.Contains(ot.TailFlagNames, name) {
				takers = append(takers, ot.Name)
			}
		}
		errs = append(errs, fmt.Sprintf("--%s does not apply to a %s destination (it applies to %s)", name, t.Name, strings.Join(takers, ", ")))
	}
	if len(errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(errs, "; "))
}

// outputFlags are the tail flags a --to URL cannot carry.
func outputFlags(o *tailOptions) outputs.TailFlags {
	return outputs.TailFlags{
		Format:             o.httpFormat,
		Encoding:           o.encoding,
		Headers:            map[string]string(o.headers),
		Gzip:               o.gzip,
		Compression:        o.compression,
		BearerToken:        o.bearer,
		BasicAuth:          o.basic,
		CAFile:             o.caFile,
		CertFile:           o.certFile,
		KeyFile:            o.keyFile,
		InsecureSkipVerify: o.insecure,
		Timeout:            o.httpTimeout,
	}
}

// tailSource makes a source of `agent tail`: the type that takes the
// scheme of args ("file" for plain paths, "-" for standard input and named
// pipes, a URL scheme such as "tcp" for sockets) makes its config from them and the flags.
func tailSource(name, scheme string, args []string, o *tailOptions, maxRecord units.ByteSize, comps agent.Components) (agent.SourceConfig, error) {
	t, ok := comps.SourceForScheme(scheme)
	if !ok {
		return agent.SourceConfig{}, fmt.Errorf("no source type for %q in this build", scheme)
	}
	flags := source.TailFlags{FromEnd: o.fromEnd, MultilineStart: o.multiline, MaxRecordBytes: int64(maxRecord), Format: o.format, RotatedDirs: o.rotatedDirs}
	cfg, err := t.FromArgs(args, flags)
	if err != nil {
		return agent.SourceConfig{}, err
	}
	return agent.SourceConfig{Name: name, Type: t.Name, Config: cfg}, nil
}

// destination maps --to to an output: the URL's scheme picks the type
// ("-" is stdout), which makes its config from the URL and the flags.
func destination(o *tailOptions) (agent.OutputConfig, error) {
	comps := components()
	to := o.to
	// The URL may hold secrets (user:password@, ?api_key=): messages show
	// it redacted, as the outputs' logs do.
	shown := redact.RawURL(to)
	scheme := "-"
	var u *url.URL
	if to != "" && to != "-" {
		var err error
		if u, err = url.Parse(to); err != nil {
			return agent.OutputConfig{}, fmt.Errorf("--to %q: %w", shown, redact.Error(err))
		}
		scheme = u.Scheme
	}
	want := strings.Join(comps.OutputSchemes(), ", ")
	if scheme == "" {
		return agent.OutputConfig{}, fmt.Errorf("--to %q: want - or a URL (schemes: %s)", shown, want)
	}
	t, ok := comps.OutputForScheme(scheme)
	if !ok {
		return agent.OutputConfig{}, fmt.Errorf("--to %q: unknown scheme %q (this build takes %s)", shown, scheme, want)
	}
	if err := checkOutputFlags(t, o.set, comps); err != nil {
		return agent.OutputConfig{}, err
	}
	cfg, err := t.FromURL(u, outputFlags(o))
	if err != nil {
		return agent.OutputConfig{}, fmt.Errorf("--to %q: %w", shown, redact.Error(err))
	}
	if err := checkPartitionKeyFlag(t, cfg, o.set); err != nil {
		return agent.OutputConfig{}, err
	}
	return agent.OutputConfig{Type: t.Name, Config: cfg}, nil
}

// checkPartitionKeyFlag refuses --partition-key with a destination that
// does not send the key (outputs.KeyUser): stdout, file:// and Firehose
// records have none, nor have HTTP bodies in ndjson or json, nor Kafka
// messages with ?key=none. The key would be computed and dropped.
func checkPartitionKeyFlag(t outputs.Type, cfg any, set map[string]bool) error {
	if !set["partition-key"] {
		return nil
	}
	ku, ok := cfg.(outputs.KeyUser)
	if !ok {
		return fmt.Errorf("--partition-key does not apply to a %s destination (its records carry no partition key; it applies to kinesis, kafka and http with --http-format raw, raw-packed, kafka-rest-v2 or kafka-rest-v3)", t.Name)
	}
	if used, why := ku.UsesPartitionKey(); !used {
		return fmt.Errorf("--partition-key does not apply to a %s destination with %s (its records carry no partition key)", t.Name, why)
	}
	return nil
}
