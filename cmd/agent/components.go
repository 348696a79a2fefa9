package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/kplagent/agent/agent"
	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/agent/source/file"
	"github.com/kplagent/agent/agent/source/stdin"
	"github.com/kplagent/agent/outputs"
	fileout "github.com/kplagent/agent/outputs/file"
	httpout "github.com/kplagent/agent/outputs/http"
	kafkaout "github.com/kplagent/agent/outputs/kafka"
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
		},
		Outputs: []outputs.Type{
			httpout.Type(),
			stdout.Type(),
			fileout.Type(),
			kafkaout.Type(),
		},
	}
}

// printVersion prints the version and the compiled-in types.
func printVersion(w io.Writer) {
	c := components()
	fmt.Fprintln(w, "agent", version)
	fmt.Fprintln(w, "sources:", strings.Join(c.SourceNames(), ", "))
	fmt.Fprintln(w, "outputs:", strings.Join(c.OutputNames(), ", "))
}
