package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/kplagent/agent/agent"
	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/agent/source/file"
	"github.com/kplagent/agent/agent/source/journald"
	"github.com/kplagent/agent/agent/source/socket"
	"github.com/kplagent/agent/agent/source/stdin"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/blackhole"
	fileout "github.com/kplagent/agent/outputs/file"
	"github.com/kplagent/agent/outputs/firehose"
	httpout "github.com/kplagent/agent/outputs/http"
	kafkaout "github.com/kplagent/agent/outputs/kafka"
	"github.com/kplagent/agent/outputs/kinesis"
	"github.com/kplagent/agent/outputs/stdout"
)

// components lists the source and output types compiled into this program:
// the one place that names them. Adding a type is one package and one line
// here (docs/design/003-components.md).
func components() agent.Components {
	return agent.Components{
		Sources: []source.Type{
			file.Type(),
			stdin.Type(),
			journald.Type(),
			socket.Type(),
		},
		Outputs: []outputs.Type{
			httpout.Type(),
			stdout.Type(),
			fileout.Type(),
			kinesis.Type(),
			firehose.Type(),
			kafkaout.Type(),
			blackhole.Type(),
		},
	}
}

// printVersion prints the version, the commit and build date when stamped,
// and the compiled-in types.
func printVersion(w io.Writer) {
	c := components()
	fmt.Fprintln(w, "agent", version)
	fmt.Fprintln(w, "commit:", orUnknown(buildCommit()))
	fmt.Fprintln(w, "built:", orUnknown(buildDate()))
	fmt.Fprintln(w, "go:", runtime.Version())
	fmt.Fprintln(w, "sources:", strings.Join(c.SourceNames(), ", "))
	fmt.Fprintln(w, "outputs:", strings.Join(c.OutputNames(), ", "))
}

// buildCommit is the VCS revision: stamped by the Makefile, else what the
// Go toolchain recorded (a build in a git checkout), else "".
func buildCommit() string {
	if commit != "" {
		return commit
	}
	return buildSetting("vcs.revision")
}

// buildDate is when the binary was built (stamped), else the commit's time.
func buildDate() string {
	if date != "" {
		return date
	}
	return buildSetting("vcs.time")
}

func buildSetting(key string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
