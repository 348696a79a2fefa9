// Package blackhole is the output that discards what it is sent (like
// Vector's blackhole sink): every Send succeeds at once. It is for
// measuring the rest of the pipeline (sources, aggregation, the spool, the
// sender) without a destination's cost, for trying a configuration, and
// for draining a flow on purpose. What it discards is counted
// (agent_output_records_sent_total and agent_output_bytes_sent_total of
// the output, as for any output) and, with print_interval, summarised in
// the log.
//
// Config (outputs[].blackhole, all optional):
//
//	print_interval: 0   # log records and bytes discarded at most this often (0: never)
//
// `agent tail … --to blackhole:` (or blackhole://, with
// ?print_interval=10s) sends to one.
package blackhole

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kplagent/agent/outputs"
)

// Config is the user configuration of a blackhole output
// (outputs[].blackhole).
type Config struct {
	// PrintInterval, when positive, logs what was discarded (records,
	// bytes, since the last line) at most this often, from Send.
	PrintInterval time.Duration `yaml:"print_interval"`
}

// DefaultConfig returns the defaults: nothing logged.
func DefaultConfig() Config { return Config{} }

// Validate checks c.
func (c Config) Validate() error {
	if c.PrintInterval < 0 {
		return fmt.Errorf("print_interval: must not be negative")
	}
	return nil
}

// Settings are the values set in code.
type Settings struct {
	Logger *slog.Logger // nil discards
}

// Output discards batches. Send is safe for concurrent use.
type Output struct {
	name string
	cfg  Config
	log  *slog.Logger

	records, bytes atomic.Int64

	mu                     sync.Mutex // the summary line's state
	last                   time.Time
	lastRecords, lastBytes int64
}

var _ outputs.Output = (*Output)(nil)

// New returns a blackhole output.
func New(name string, cfg Config, set Settings) (*Output, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("blackhole: %w", err)
	}
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Output{name: name, cfg: cfg, log: log, last: time.Now()}, nil
}

// Name returns the output's name.
func (o *Output) Name() string { return o.name }

// Send discards b.
func (o *Output) Send(_ context.Context, b outputs.Batch) error {
	var n int64
	for i := range b.Records {
		n += int64(len(b.Records[i].Body))
	}
	records := o.records.Add(int64(b.UserRecords()))
	bytes := o.bytes.Add(n)
	if o.cfg.PrintInterval > 0 {
		o.print(records, bytes)
	}
	return nil
}

func (o *Output) print(records, bytes int64) {
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if now.Sub(o.last) < o.cfg.PrintInterval {
		return
	}
	o.log.Info("discarded", "records", records-o.lastRecords, "bytes", bytes-o.lastBytes,
		"seconds", now.Sub(o.last).Seconds(), "records_total", records, "bytes_total", bytes)
	o.last, o.lastRecords, o.lastBytes = now, records, bytes
}

// Discarded returns the user records and aggregate body bytes discarded so
// far.
func (o *Output) Discarded() (records, bytes int64) { return o.records.Load(), o.bytes.Load() }

// Close does nothing.
func (o *Output) Close(context.Context) error { return nil }

// Type is the blackhole output's component type: `type: blackhole` with an
// optional `blackhole:` block, and `agent tail --to blackhole:`.
func Type() outputs.Type {
	return outputs.Type{
		Name:          "blackhole",
		DefaultConfig: func() any { c := DefaultConfig(); return &c },
		New: func(name string, cfg any, set outputs.Settings) (outputs.Output, error) {
			c, ok := cfg.(*Config)
			if !ok {
				return nil, fmt.Errorf("blackhole: config is %T, want *blackhole.Config", cfg)
			}
			return New(name, *c, Settings{Logger: set.Logger})
		},
		FromURL: func(u *url.URL, _ outputs.TailFlags) (any, error) {
			c := DefaultConfig()
			if u == nil {
				return &c, nil
			}
			q := u.Query()
			for k := range q {
				if k != "print_interval" {
					return nil, fmt.Errorf("unknown parameter %q (blackhole takes print_interval)", k)
				}
			}
			if v := q.Get("print_interval"); v != "" {
				d, err := time.ParseDuration(v)
				if err != nil {
					return nil, fmt.Errorf("print_interval: %w", err)
				}
				c.PrintInterval = d
			}
			if err := c.Validate(); err != nil {
				return nil, err
			}
			return &c, nil
		},
		Schemes: []string{"blackhole"},
	}
}
