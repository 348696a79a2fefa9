package firehose

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/kplagent/agent/outputs"
)

// Type is the Firehose output's component type: `type: firehose` with a
// `firehose:` block, and `agent tail --to firehose://STREAM?region=R`.
func Type() outputs.Type {
	return outputs.Type{
		Name:          "firehose",
		DefaultConfig: func() any { c := DefaultConfig(); return &c },
		New: func(name string, cfg any, set outputs.Settings) (outputs.Output, error) {
			c, ok := cfg.(*Config)
			if !ok {
				return nil, fmt.Errorf("firehose: config is %T, want *firehose.Config", cfg)
			}
			return New(name, *c, Settings{Logger: set.Logger, UserAgent: set.UserAgent, Registerer: set.Registerer, MaxConns: set.MaxConns, OutputLabelled: true})
		},
		FromURL: func(u *url.URL, f outputs.TailFlags) (any, error) {
			if u == nil {
				return nil, errors.New("firehose: want firehose://STREAM?region=R")
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
		Schemes:       []string{"firehose"},
		TailFlagNames: []string{"timeout"},
	}
}
