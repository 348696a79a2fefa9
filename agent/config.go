package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kplagent/agent/agent/source/file"
	"github.com/kplagent/agent/internal/units"
	fileout "github.com/kplagent/agent/outputs/file"
	httpout "github.com/kplagent/agent/outputs/http"
	"github.com/kplagent/agent/outputs/stdout"
	"github.com/kplagent/agent/spool"
)

// Config is the agent's configuration file (agent.yaml). Every field's
// default and meaning is documented in agent.yaml.example, which a test
// parses and validates.
type Config struct {
	StateDir        string         `yaml:"state_dir"`
	ShutdownTimeout time.Duration  `yaml:"shutdown_timeout"`
	Log             LogConfig      `yaml:"log"`
	Admin           AdminConfig    `yaml:"admin"`
	Spool           spool.Config   `yaml:"spool"`
	Checkpoint      CheckpointCfg  `yaml:"checkpoint"`
	Sources         []SourceConfig `yaml:"sources"`
	Outputs         []OutputConfig `yaml:"outputs"`
	Flows           []FlowConfig   `yaml:"flows"`

	// DeadLetter caps the dead-letter files (deadletter.go).
	DeadLetter DeadLetterConfig `yaml:"dead_letter"`
}

// LogConfig selects the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug|info|warn|error
	Format string `yaml:"format"` // text|json
}

// AdminConfig is the admin HTTP endpoint (/metrics, /healthz, /readyz).
type AdminConfig struct {
	Listen string `yaml:"listen"` // "" or "off" disables it
}

// CheckpointCfg controls how often file positions are persisted.
type CheckpointCfg struct {
	Interval time.Duration `yaml:"interval"`
}

// SourceConfig is one named input.
type SourceConfig struct {
	Name string       `yaml:"name"`
	Type string       `yaml:"type"` // file
	File *file.Config `yaml:"file"`
}

func (*SourceConfig) strictYAML() {}

// UnmarshalYAML fills the type's defaults before decoding the user's values.
func (s *SourceConfig) UnmarshalYAML(n *yaml.Node) error {
	type plain SourceConfig
	fc := file.DefaultConfig()
	p := plain{File: &fc}
	if err := n.Decode(&p); err != nil {
		return err
	}
	*s = SourceConfig(p)
	if s.Type != "file" {
		s.File = nil
	}
	return nil
}

// OutputConfig is one named destination; the block named like Type holds
// its options.
type OutputConfig struct {
	Name   string          `yaml:"name"`
	Type   string          `yaml:"type"` // http|stdout|file
	HTTP   *httpout.Config `yaml:"http"`
	Stdout *stdout.Config  `yaml:"stdout"`
	File   *fileout.Config `yaml:"file"`
}

func (*OutputConfig) strictYAML() {}

// UnmarshalYAML fills the type's defaults before decoding the user's values.
func (o *OutputConfig) UnmarshalYAML(n *yaml.Node) error {
	type plain OutputConfig
	h, s, f := httpout.DefaultConfig(), stdout.DefaultConfig(), fileout.DefaultConfig()
	p := plain{HTTP: &h, Stdout: &s, File: &f}
	if err := n.Decode(&p); err != nil {
		return err
	}
	*o = OutputConfig(p)
	if o.Type != "http" {
		o.HTTP = nil
	}
	if o.Type != "stdout" {
		o.Stdout = nil
	}
	if o.Type != "file" {
		o.File = nil
	}
	return nil
}

// FlowConfig binds sources to an output.
type FlowConfig struct {
	Name         string   `yaml:"name"`
	Sources      []string `yaml:"sources"`
	Output       string   `yaml:"output"`
	Failover     string   `yaml:"failover"`
	PartitionKey string   `yaml:"partition_key"` // random|deterministic
	// SpoolBypass lets aggregates go to the output in memory while it keeps
	// up, writing to the spool only what is not delivered at the first
	// attempt. Only for flows whose sources can replay (files).
	SpoolBypass bool              `yaml:"spool_bypass"`
	Aggregation AggregationConfig `yaml:"aggregation"`
	Sender      SenderConfig      `yaml:"sender"`
}

func (*FlowConfig) strictYAML() {}

// UnmarshalYAML fills defaults before decoding the user's values.
func (f *FlowConfig) UnmarshalYAML(n *yaml.Node) error {
	type plain FlowConfig
	p := plain(DefaultFlowConfig())
	if err := n.Decode(&p); err != nil {
		return err
	}
	*f = FlowConfig(p)
	return nil
}

// AggregationConfig sets when a KPL aggregate closes (KPL's
// AggregationMaxSize, AggregationMaxCount and RecordMaxBufferedTime).
type AggregationConfig struct {
	MaxBytes        units.ByteSize `yaml:"max_bytes"`
	MaxRecords      int            `yaml:"max_records"`
	MaxBufferedTime time.Duration  `yaml:"max_buffered_time"`
}

// SenderConfig is the retry policy shared by every output.
type SenderConfig struct {
	Concurrency      int            `yaml:"concurrency"`        // requests in flight
	BatchMaxBytes    units.ByteSize `yaml:"batch_max_bytes"`    // spool entries per Send, by size
	BatchMaxRecords  int            `yaml:"batch_max_records"`  // spool entries per Send, by count
	BackoffInitial   time.Duration  `yaml:"backoff_initial"`    // first retry delay
	BackoffMax       time.Duration  `yaml:"backoff_max"`        // cap of the exponential backoff
	MaxRetryDuration time.Duration  `yaml:"max_retry_duration"` // 0: retry forever; else dead-letter after it
	FailoverAfter    int            `yaml:"failover_after"`     // consecutive failures before using the failover output
	FailbackAfter    time.Duration  `yaml:"failback_after"`     // how long to stay on the failover before trying the primary again
}

// DefaultConfig returns the daemon's defaults.
func DefaultConfig() Config {
	return Config{
		StateDir: "/var/lib/agent",
		// Long enough to deliver a typical in-flight window after SIGTERM,
		// short enough for systemd's default 90 s stop timeout.
		ShutdownTimeout: 10 * time.Second,
		Log:             LogConfig{Level: "info", Format: "text"},
		Admin:           AdminConfig{Listen: "127.0.0.1:8686"},
		Spool:           spool.DefaultConfig(),
		Checkpoint:      CheckpointCfg{Interval: time.Second},
		DeadLetter:      DefaultDeadLetterConfig(),
	}
}

// DefaultFlowConfig returns a flow's defaults.
func DefaultFlowConfig() FlowConfig {
	return FlowConfig{
		PartitionKey: PartitionKeyRandom,
		SpoolBypass:  true,
		Aggregation: AggregationConfig{
			MaxBytes: 51200, // the KPL's AggregationMaxSize
			// The KPL's default count limit is effectively unlimited; size
			// closes aggregates first for any record over 4 bytes.
			MaxRecords:      100000,
			MaxBufferedTime: 100 * time.Millisecond, // the KPL's RecordMaxBufferedTime
		},
		Sender: SenderConfig{
			Concurrency:     4,
			BatchMaxBytes:   1 << 20, // bounds the memory of each request in flight; PutRecords takes up to 5 MiB
			BatchMaxRecords: 500,     // PutRecords' per-request limit
			BackoffInitial:  100 * time.Millisecond,
			BackoffMax:      30 * time.Second,
			FailoverAfter:   3,
			FailbackAfter:   time.Minute,
		},
	}
}

// Partition key policies.
const (
	PartitionKeyRandom        = "random"
	PartitionKeyDeterministic = "deterministic"
)

// ConfigError lists every problem of a configuration, each with its place.
type ConfigError struct {
	File     string
	Problems []fieldError
}

type fieldError struct {
	Path string
	Line int
	Msg  string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.File)
		if p.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
		if p.Path != "" {
			b.WriteString(p.Path)
			b.WriteString(": ")
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// LoadConfig reads, expands, strictly decodes and validates a config file.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return ParseConfig(path, data, os.LookupEnv)
}

// ParseConfig is LoadConfig on bytes; name is used in error messages and to
// resolve relative paths; lookup resolves ${ENV} references.
func ParseConfig(name string, data []byte, lookup func(string) (string, bool)) (Config, error) {
	cerr := &ConfigError{File: name}
	data, envProblems := expandEnv(data, lookup)
	cerr.Problems = append(cerr.Problems, envProblems...)

	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		cerr.Problems = append(cerr.Problems, yamlErrors(err)...)
		return Config{}, cerr
	}
	cfg := DefaultConfig()
	lines := lineIndex{}
	checkNode(&root, reflect.TypeOf(cfg), "", lines, &cerr.Problems)
	if len(root.Content) > 0 {
		if err := root.Decode(&cfg); err != nil {
			cerr.Problems = append(cerr.Problems, yamlErrors(err)...)
		}
	}
	if len(cerr.Problems) == 0 {
		for _, e := range flatten(cfg.Validate()) {
			cerr.Problems = append(cerr.Problems, placeError(e, lines))
		}
	}
	if len(cerr.Problems) > 0 {
		sort.SliceStable(cerr.Problems, func(i, j int) bool { return cerr.Problems[i].Line < cerr.Problems[j].Line })
		return cfg, cerr
	}
	cfg.resolve(filepath.Dir(name))
	return cfg, nil
}

var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)

// expandEnv replaces ${VAR} and ${VAR:-default} in the raw text (so line
// numbers stay), and $$ with $. An unset variable without a default, or a
// value with a newline, is a problem.
func expandEnv(data []byte, lookup func(string) (string, bool)) ([]byte, []fieldError) {
	var problems []fieldError
	out := make([]byte, 0, len(data))
	for n, line := range bytes.SplitAfter(data, []byte("\n")) {
		if t := bytes.TrimLeft(line, " \t"); len(t) > 0 && t[0] == '#' {
			out = append(out, line...) // comments may show ${VAR} syntax
			continue
		}
		out = append(out, envRef.ReplaceAllFunc(line, func(m []byte) []byte {
			if string(m) == "$$" {
				return []byte("$")
			}
			sub := envRef.FindSubmatch(m)
			name := string(sub[1])
			hasDefault := bytes.Contains(m, []byte(":-"))
			v, ok := lookup(name)
			if !ok || v == "" {
				if hasDefault {
					return sub[2]
				}
				if !ok {
					problems = append(problems, fieldError{Line: n + 1,
						Msg: fmt.Sprintf("environment variable %s is not set (use ${%s:-default} for a default)", name, name)})
					return nil
				}
			}
			if strings.ContainsAny(v, "\r\n") {
				problems = append(problems, fieldError{Line: n + 1, Msg: fmt.Sprintf("environment variable %s contains a newline", name)})
				return nil
			}
			return []byte(v)
		})...)
	}
	return out, problems
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func yamlErrors(err error) []fieldError {
	var te *yaml.TypeError
	var msgs []string
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	out := make([]fieldError, 0, len(msgs))
	for _, m := range msgs {
		m = strings.TrimSpace(m)
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			n, _ := strconv.Atoi(sm[1])
			out = append(out, fieldError{Line: n, Msg: sm[2]})
			continue
		}
		out = append(out, fieldError{Msg: strings.TrimPrefix(m, "yaml: ")})
	}
	return out
}

// flatten unwraps errors.Join trees into their leaves.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// pathError is a validation problem at a config path.
type pathError struct {
	path string
	err  error
}

func (e *pathError) Error() string { return e.path + ": " + e.err.Error() }
func (e *pathError) Unwrap() error { return e.err }

// at prefixes every leaf of err with path (a package's Validate reports keys
// relative to its own block: "max_bytes: ...").
func at(path string, err error) error {
	var out []error
	for _, e := range flatten(err) {
		out = append(out, &pathError{path: path, err: e})
	}
	return errors.Join(out...)
}

var keyPrefix = regexp.MustCompile(`^([a-z0-9_\[\]\.]+): (.*)$`)

// placeError turns a validation error into a problem with the deepest path
// and line we can find.
func placeError(e error, lines lineIndex) fieldError {
	path := ""
	msg := e.Error()
	var pe *pathError
	if errors.As(e, &pe) {
		path = pe.path
		msg = pe.err.Error()
	}
	// A package's own prefix ("max_bytes: must be ...") extends the path.
	if m := keyPrefix.FindStringSubmatch(msg); m != nil {
		path = joinPath(path, m[1])
		msg = m[2]
	}
	line := 0
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := lines[p]; ok {
			line = l
			break
		}
	}
	return fieldError{Path: path, Line: line, Msg: msg}
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// Validate checks the whole configuration without I/O and returns every
// problem, each prefixed with its path.
func (c Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, &pathError{path: path, err: fmt.Errorf(format, args...)})
	}
	if c.StateDir == "" {
		add("state_dir", "required")
	}
	if c.ShutdownTimeout < 0 {
		add("shutdown_timeout", "must not be negative")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "unknown %q (want debug, info, warn or error)", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add("log.format", "unknown %q (want text or json)", c.Log.Format)
	}
	if c.Checkpoint.Interval <= 0 {
		add("checkpoint.interval", "must be positive")
	}
	if err := c.DeadLetter.Validate(); err != nil {
		errs = append(errs, at("dead_letter", err))
	}
	sp := c.Spool
	if sp.Dir == "" {
		sp.Dir = "-" // defaults to state_dir/spool, resolved later
	}
	if err := sp.Validate(); err != nil {
		errs = append(errs, at("spool", err))
	}

	sources := map[string]bool{}
	for i, s := range c.Sources {
		p := fmt.Sprintf("sources[%d]", i)
		uniqueName(p, "source", s.Name, sources, add)
		switch s.Type {
		case "file":
			if err := s.File.Validate(); err != nil {
				errs = append(errs, at(p+".file", err))
			}
		case "":
			add(p+".type", "required (file)")
		default:
			add(p+".type", "unknown %q (want file)", s.Type)
		}
	}
	outputs := map[string]bool{}
	for i, o := range c.Outputs {
		p := fmt.Sprintf("outputs[%d]", i)
		uniqueName(p, "output", o.Name, outputs, add)
		switch o.Type {
		case "http":
			if err := o.HTTP.Validate(); err != nil {
				errs = append(errs, at(p+".http", err))
			}
		case "stdout":
			if err := o.Stdout.Validate(); err != nil {
				errs = append(errs, at(p+".stdout", err))
			}
		case "file":
			if err := o.File.Validate(); err != nil {
				errs = append(errs, at(p+".file", err))
			}
		case "":
			add(p+".type", "required (http, stdout or file)")
		default:
			add(p+".type", "unknown %q (want http, stdout or file)", o.Type)
		}
	}
	if len(c.Flows) == 0 {
		add("flows", "at least one flow is required")
	}
	flows := map[string]bool{}
	used := map[string]string{}
	for i, f := range c.Flows {
		p := fmt.Sprintf("flows[%d]", i)
		if f.Name == "" {
			add(p+".name", "required")
		} else if flows[f.Name] {
			add(p+".name", "duplicate flow name %q", f.Name)
		} else if strings.ContainsAny(f.Name, `/\`) || f.Name == "." || f.Name == ".." {
			add(p+".name", "%q cannot be used as a directory name", f.Name)
		}
		flows[f.Name] = true
		if len(f.Sources) == 0 {
			add(p+".sources", "at least one source is required")
		}
		for j, s := range f.Sources {
			if !sources[s] {
				add(fmt.Sprintf("%s.sources[%d]", p, j), "no source named %q", s)
			} else if other, ok := used[s]; ok {
				add(fmt.Sprintf("%s.sources[%d]", p, j), "source %q is already used by flow %q", s, other)
			}
			used[s] = f.Name
		}
		if f.Output == "" {
			add(p+".output", "required")
		} else if !outputs[f.Output] {
			add(p+".output", "no output named %q", f.Output)
		}
		if f.Failover != "" {
			if !outputs[f.Failover] {
				add(p+".failover", "no output named %q", f.Failover)
			} else if f.Failover == f.Output {
				add(p+".failover", "must differ from output")
			}
		}
		switch f.PartitionKey {
		case PartitionKeyRandom, PartitionKeyDeterministic:
		default:
			add(p+".partition_key", "unknown %q (want random or deterministic)", f.PartitionKey)
		}
		a := f.Aggregation
		if a.MaxBytes < 1024 || a.MaxBytes > 10<<20 {
			add(p+".aggregation.max_bytes", "must be between 1KiB and 10MiB (the largest Kinesis record), got %d", a.MaxBytes)
		}
		if a.MaxRecords < 1 {
			add(p+".aggregation.max_records", "must be at least 1")
		}
		if a.MaxBufferedTime <= 0 {
			add(p+".aggregation.max_buffered_time", "must be positive")
		}
		s := f.Sender
		if s.Concurrency < 1 || s.Concurrency > 256 {
			add(p+".sender.concurrency", "must be between 1 and 256")
		}
		if s.BatchMaxBytes < 1 {
			add(p+".sender.batch_max_bytes", "must be positive")
		}
		if s.BatchMaxRecords < 1 {
			add(p+".sender.batch_max_records", "must be at least 1")
		}
		if s.BackoffInitial <= 0 {
			add(p+".sender.backoff_initial", "must be positive")
		}
		if s.BackoffMax < s.BackoffInitial {
			add(p+".sender.backoff_max", "must be at least backoff_initial")
		}
		if s.MaxRetryDuration < 0 {
			add(p+".sender.max_retry_duration", "must not be negative (0 retries forever)")
		}
		if s.FailoverAfter < 1 {
			add(p+".sender.failover_after", "must be at least 1")
		}
		if s.FailbackAfter <= 0 {
			add(p+".sender.failback_after", "must be positive")
		}
	}
	return errors.Join(errs...)
}

// uniqueName checks that the element at path p has a name not used before
// by another element of its kind, and records it in seen.
func uniqueName(p, kind, name string, seen map[string]bool, add func(path, format string, args ...any)) {
	if name == "" {
		add(p+".name", "required")
	} else if seen[name] {
		add(p+".name", "duplicate %s name %q", kind, name)
	}
	seen[name] = true
}

// resolve fills derived defaults (paths under the state directory) and makes
// relative paths relative to the config file's directory.
func (c *Config) resolve(base string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	c.StateDir = abs(c.StateDir)
	if c.Spool.Dir == "" {
		c.Spool.Dir = filepath.Join(c.StateDir, "spool")
	}
	c.Spool.Dir = abs(c.Spool.Dir)
	for i := range c.Sources {
		if f := c.Sources[i].File; f != nil {
			for j := range f.Include {
				f.Include[j] = abs(f.Include[j])
			}
		}
	}
	for i := range c.Outputs {
		if f := c.Outputs[i].File; f != nil {
			f.Dir, f.Path = abs(f.Dir), abs(f.Path)
		}
		if h := c.Outputs[i].HTTP; h != nil {
			h.TLS.CAFile, h.TLS.CertFile, h.TLS.KeyFile = abs(h.TLS.CAFile), abs(h.TLS.CertFile), abs(h.TLS.KeyFile)
		}
	}
}
