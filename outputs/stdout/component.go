package stdout

import (
	"fmt"
	"net/url"

	"github.com/kplagent/agent/outputs"
)

// Type is the stdout output's component type: `type: stdout` with an
// optional `stdout:` block, and `agent tail --to -` (the default).
func Type() outputs.Type {
	return outputs.Type{
		Name:          "stdout",
		DefaultConfig: func() any { c := DefaultConfig(); return &c },
		New: func(name string, cfg any, set outputs.Settings) (outputs.Output, error) {
			c, ok := cfg.(*Config)
			if !ok {
				return nil, fmt.Errorf("stdout: config is %T, want *stdout.Config", cfg)
			}
			return New(name, *c, Settings{Logger: set.Logger, Writer: set.Stdout})
		},
		FromURL: func(_ *url.URL, f outputs.TailFlags) (any, error) {
			// agent tail prints the lines as they are (it is tail -F)
			// unless --encoding json asks for objects.
			c := DefaultConfig()
			c.Encoding = EncodingText
			if f.Encoding != "" {
				c.Encoding = f.Encoding
			}
			return &c, nil
		},
		Schemes:       []string{"-"},
		TailFlagNames: []string{"encoding"},
	}
}
