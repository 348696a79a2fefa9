package kinesis

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/kplagent/agent/outputs"
)

// Type is the Kinesis Data Streams output's component type: `type: kinesis`
// with a `kinesis:` block, and `agent tail --to kinesis://STREAM?region=R`.
func Type() outputs.Type {
	return outputs.Type{
		Name:          "kinesis",
		DefaultConfig: func() any { c := DefaultConfig(); return &c },
		New: func(name string, cfg any, set outputs.Settings) (outputs.Output, error) {
			c, ok := cfg.(*Config)
			if !ok {
				return nil, fmt.Errorf("kinesis: config is %T, want *kinesis.Config", cfg)
			}
			return New(name, *c, Settings{Logger: set.Logger, UserAgent: set.UserAgent, Registerer: set.Registerer, MaxConns: set.MaxConns, OutputLabelled: true})
		},
		FromURL: func(u *url.URL, f outputs.TailFlags) (any, error) {
			if u == nil {
				return nil, errors.New("kinesis: want kinesis://STREAM?region=R")
			}
			c, err := FromURL(u)
			if err != nil {
				return nil, err
			}
			if f.Timeout > 0 {
				c.Timeout = f.Timeout
			}
			return &c, nil
		},
		Schemes:       []string{"kinesis"},
		TailFlagNames: []string{"timeout"},
	}
}
