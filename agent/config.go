package agent

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kplagent/agent/agent/process"
	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/cwmetrics"
	"github.com/kplagent/agent/internal/units"
	"github.com/kplagent/agent/outputs"
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

	// Metrics publishes the agent's metrics elsewhere than /metrics.
	Metrics MetricsConfig `yaml:"metrics"`

	notices []Notice // what loading it had to tell (Notices)
}

// MetricsConfig is the metrics section: where the agent's own metrics are
// published besides the admin endpoint's /metrics.
type MetricsConfig struct {
	// CloudWatch, when the block is written (and not enabled: false),
	// publishes them to CloudWatch with PutMetricData (cloudwatch.go).
	CloudWatch *cwmetrics.Config `yaml:"cloudwatch"`
}

// LogConfig selects the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug|info|warn|error
	Format string `yaml:"format"` // auto|text|json: auto is JSON when stderr is the systemd journal, text otherwise
}

// AdminConfig is the admin HTTP endpoint (/metrics, /healthz, /readyz).
type AdminConfig struct {
	Listen string `yaml:"listen"` // "" or "off" disables it
	// NotReadyAfter: /readyz fails once a flow's outputs have all been
	// failing, or its full spool has been blocking its sources, for longer
	// than this (0: /readyz only says whether the pipeline runs).
	NotReadyAfter time.Duration `yaml:"not_ready_after"`
}

// DefaultAdminListen is the admin endpoint's default address. Its port is
// used by no common agent or exporter (Vector 8686, Fluent Bit 2020,
// Fluentd 24220, Filebeat 5066, Logstash 9600, Telegraf 8186, the OTel
// Collector 8888/13133, Prometheus exporters 9100-9999), so the agent runs
// beside any of them during a migration.
const DefaultAdminListen = "127.0.0.1:7219"

// CheckpointCfg controls how often file positions are persisted.
type CheckpointCfg struct {
	Interval time.Duration `yaml:"interval"`
}

// SourceConfig is one named input. Type names a compiled-in source type
// (see Components) and the block named like it holds its options:
// `type: file` reads `file:`.
type SourceConfig struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// Config holds the type's options: a pointer made by the type's
	// DefaultConfig with the user's block decoded over it.
	Config any `yaml:"-"`

	node *yaml.Node // the element as written; ParseConfig decodes it
}

// OutputConfig is one named destination; Type names a compiled-in output
// type and the block named like it holds its options.
type OutputConfig struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// Config holds the type's options: a pointer made by the type's
	// DefaultConfig with the user's block decoded over it.
	Config any `yaml:"-"`

	node *yaml.Node
}

// UnmarshalYAML keeps the node: which block to decode, and into what,
// depends on the type, looked up in the Components by ParseConfig.
func (s *SourceConfig) UnmarshalYAML(n *yaml.Node) error { s.node = n; return nil }

// UnmarshalYAML keeps the node (see SourceConfig.UnmarshalYAML).
func (o *OutputConfig) UnmarshalYAML(n *yaml.Node) error { o.node = n; return nil }

func (*SourceConfig) componentYAML() {}
func (*OutputConfig) componentYAML() {}

// FlowConfig binds sources to an output.
type FlowConfig struct {
	Name     string   `yaml:"name"`
	Sources  []string `yaml:"sources"`
	Output   string   `yaml:"output"`
	Failover string   `yaml:"failover"`
	// PartitionKey is random (default), deterministic, hostname, or a
	// mapping with field, regex or fixed (process.KeyConfig).
	PartitionKey process.KeyConfig `yaml:"partition_key"`
	// ExplicitHashKey takes each record's explicit hash key from a field.
	ExplicitHashKey ExplicitHashKeyConfig `yaml:"explicit_hash_key"`
	// Processors run in order on every record of the flow's sources,
	// before aggregation (docs/design/004-processing.md).
	Processors []process.Processor `yaml:"processors"`
	// Envelope adds fields about each record's origin (making it a JSON
	// object) before aggregation.
	Envelope process.Envelope `yaml:"envelope"`
	// SpoolBypass lets aggregates go to the output in memory while it keeps
	// up, writing to the spool only what is not delivered at the first
	// attempt. Only for flows whose sources can replay (files).
	SpoolBypass bool              `yaml:"spool_bypass"`
	Aggregation AggregationConfig `yaml:"aggregation"`
	Sender      SenderConfig      `yaml:"sender"`

	decodeErr error // set by UnmarshalYAML, taken by ParseConfig
	// recordLimit is the largest record the flow's outputs take (set by
	// Run from their configs' MaxRecordBytes).
	recordLimit int
}

func (*FlowConfig) strictYAML() {}

// UnmarshalYAML fills defaults before decoding the user's values.
func (f *FlowConfig) UnmarshalYAML(n *yaml.Node) error {
	type plain FlowConfig
	p := plain(DefaultFlowConfig())
	err := n.Decode(&p)
	*f = FlowConfig(p)
	// A flow with a bad value is kept (yaml drops list elements whose
	// UnmarshalYAML fails), so the rest of it is checked too; ParseConfig
	// reports the error.
	f.decodeErr = err
	return nil
}

// ExplicitHashKeyConfig is flows[].explicit_hash_key.
type ExplicitHashKeyConfig struct {
	// Field names the field of a JSON record holding its explicit hash key
	// (a decimal 0..2^128-1). A record without it, or with a value that is
	// not a decimal number, has none; a number above 2^128-1 dead-letters
	// the record (bad_explicit_hash_key).
	Field string `yaml:"field"`
}

// processConfig is the flow's processing stage.
func (f FlowConfig) processConfig() process.Config {
	return process.Config{Processors: f.Processors, Envelope: f.Envelope, PartitionKey: f.PartitionKey, ExplicitHashKey: f.ExplicitHashKey.Field}
}

// AggregationConfig sets when a KPL aggregate closes (KPL's
// AggregationMaxSize, AggregationMaxCount and RecordMaxBufferedTime).
type AggregationConfig struct {
	MaxBytes        units.ByteSize `yaml:"max_bytes"`
	MaxRecords      int            `yaml:"max_records"`
	MaxBufferedTime time.Duration  `yaml:"max_buffered_time"`
	// MaxPendingBytes bounds the memory of the flow's open aggregates and
	// of the buffers it keeps for the next ones, whatever the number of
	// shards (one open aggregate per shard): past it the oldest aggregates
	// are sent early (aggregate.Config.MaxPendingBytes). 0: 8 MiB, or
	// 2*MaxBytes when larger.
	MaxPendingBytes units.ByteSize `yaml:"max_pending_bytes"`
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
	MaxThrottleDelay time.Duration  `yaml:"max_throttle_delay"` // cap of a throttle's requested delay (Retry-After)
}

// DefaultConfig returns the daemon's defaults.
func DefaultConfig() Config {
	return Config{
		StateDir: "/var/lib/agent",
		// Long enough to deliver a typical in-flight window after SIGTERM,
		// short enough for systemd's default 90 s stop timeout.
		ShutdownTimeout: 10 * time.Second,
		Log:             LogConfig{Level: "info", Format: "auto"},
		Admin:           AdminConfig{Listen: DefaultAdminListen, NotReadyAfter: 5 * time.Minute},
		Spool:           spool.DefaultConfig(),
		Checkpoint:      CheckpointCfg{Interval: time.Second},
		DeadLetter:      DefaultDeadLetterConfig(),
	}
}

// DefaultFlowConfig returns a flow's defaults.
func DefaultFlowConfig() FlowConfig {
	return FlowConfig{
		PartitionKey: process.Key(PartitionKeyRandom),
		SpoolBypass:  true,
		Aggregation: AggregationConfig{
			MaxBytes: 51200, // the KPL's AggregationMaxSize
			// The KPL's default count limit is effectively unlimited; size
			// closes aggregates first for any record over 4 bytes.
			MaxRecords:      100000,
			MaxBufferedTime: 100 * time.Millisecond, // the KPL's RecordMaxBufferedTime
			// MaxPendingBytes 0: 8 MiB, or 2*MaxBytes when larger (the
			// aggregator's default), so that raising max_bytes for a
			// large-record stream needs no other change.
		},
		Sender: SenderConfig{
			Concurrency:     4,
			BatchMaxBytes:   1 << 20, // bounds the memory of each request in flight; PutRecords takes up to 5 MiB
			BatchMaxRecords: 500,     // PutRecords' per-request limit
			BackoffInitial:  100 * time.Millisecond,
			BackoffMax:      30 * time.Second,
			FailoverAfter:   3,
			FailbackAfter:   time.Minute,
			// A Retry-After is honoured up to this long: long enough for
			// any rate limit's window, short enough that a server asking
			// for a day (or a bad clock) does not park the flow's sends.
			MaxThrottleDelay: time.Minute,
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

// LoadConfig reads, expands, strictly decodes and validates a config file
// (ParseConfig), then checks the files it names as the components'
// constructors would (TLS certificates and keys). `agent validate` and
// `agent run` both load through it, so validate accepts nothing run rejects.
func LoadConfig(path string, comps Components) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	p := parse(path, data, os.LookupEnv, comps)
	p.checkFiles()
	sort.SliceStable(p.cfg.notices, func(i, j int) bool { return p.cfg.notices[i].Line < p.cfg.notices[j].Line })
	return p.result()
}

// AdminListen reads only admin.listen from a config file (its default when
// the file does not set it), for the commands that ask a running agent
// (status, top, tap, reload). They must find the address although the rest
// of the file may not load in the caller's shell: a ${VAR} set only in the
// service's environment, a certificate only the agent may read, or a
// problem that the running agent, not the caller, is to report (reload). A
// ${VAR} without a value here is read as empty; only a file that is not
// YAML is an error.
func AdminListen(path string) (string, error) {
	s, err := ReadAdminSettings(path)
	return s.Listen, err
}

// AdminSettings are what the commands that ask a running agent read from
// its config file: where it listens, and how long it may take to stop the
// flows a reload changes.
type AdminSettings struct {
	Listen          string        // admin.listen, DefaultAdminListen when unset
	ShutdownTimeout time.Duration // shutdown_timeout, its default when unset or not a duration
}

// ReadAdminSettings reads only admin.listen and shutdown_timeout from a
// config file, as AdminListen says.
func ReadAdminSettings(path string) (AdminSettings, error) {
	s := AdminSettings{Listen: DefaultAdminListen, ShutdownTimeout: DefaultConfig().ShutdownTimeout}
	data, err := os.ReadFile(path)
	if err != nil {
		return s, fmt.Errorf("config: %w", err)
	}
	data, _ = expandEnv(data, func(name string) (string, bool) {
		if v, ok := os.LookupEnv(name); ok {
			return v, true
		}
		return "", true
	})
	var doc struct {
		Admin struct {
			Listen *string `yaml:"listen"`
		} `yaml:"admin"`
		ShutdownTimeout any `yaml:"shutdown_timeout"` // any: its mistakes are the agent's to report
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return s, fmt.Errorf("config: %s: %w", path, err)
	}
	if doc.Admin.Listen != nil {
		s.Listen = *doc.Admin.Listen
	}
	if d, err := time.ParseDuration(fmt.Sprint(doc.ShutdownTimeout)); err == nil && d >= 0 {
		s.ShutdownTimeout = d
	}
	return s, nil
}

// ParseConfig is LoadConfig on bytes, without I/O: name is used in error
// messages and to resolve relative paths; lookup resolves ${ENV}
// references; comps are the types `type:` may name. Every problem is
// reported, as file:line: path: message.
func ParseConfig(name string, data []byte, lookup func(string) (string, bool), comps Components) (Config, error) {
	return parse(name, data, lookup, comps).result()
}

// parsed is a configuration being loaded, with its problems so far.
type parsed struct {
	cfg   Config
	lines lineIndex
	cerr  *ConfigError
}

func (p *parsed) result() (Config, error) {
	if len(p.cerr.Problems) > 0 {
		sort.SliceStable(p.cerr.Problems, func(i, j int) bool { return p.cerr.Problems[i].Line < p.cerr.Problems[j].Line })
		return p.cfg, p.cerr
	}
	return p.cfg, nil
}

func (p *parsed) add(fe fieldError) { p.cerr.Problems = append(p.cerr.Problems, fe) }

// covered reports whether a problem was found already at path (or a parent
// of it, or a child), or one without a path on line (or, for a problem
// without a path, any on line): a later problem there is a consequence.
func (p *parsed) covered(path string, line int) bool {
	for _, q := range p.cerr.Problems {
		if line > 0 && q.Line == line && (q.Path == "" || path == "") {
			return true
		}
		if q.Path != "" && path != "" && (q.Path == path || isUnder(path, q.Path) || isUnder(q.Path, path)) {
			return true
		}
	}
	return false
}

// reported reports whether a problem with this message was found already.
func (p *parsed) reported(msg string) bool {
	for _, q := range p.cerr.Problems {
		if q.Msg == msg {
			return true
		}
	}
	return false
}

// isUnder reports whether path is strictly inside parent.
func isUnder(path, parent string) bool {
	return strings.HasPrefix(path, parent) && len(path) > len(parent) && (path[len(parent)] == '.' || path[len(parent)] == '[')
}

// addDecodeError adds the decoder's problems that the strict walk did not
// report already (on the same line).
func (p *parsed) addDecodeError(err error) {
	for _, fe := range yamlErrors(err) {
		if fe.Line > 0 && p.covered("", fe.Line) {
			continue
		}
		if fe.Line == 0 && p.reported(fe.Msg) {
			continue // a leaf's own UnmarshalYAML error, placed by the strict walk already
		}
		fe.Path = p.lines.pathAt(fe.Line)
		p.add(fe)
	}
}

func parse(name string, data []byte, lookup func(string) (string, bool), comps Components) *parsed {
	p := &parsed{cfg: DefaultConfig(), lines: lineIndex{}, cerr: &ConfigError{File: name}}
	data, envProblems := expandEnv(data, lookup)
	p.cerr.Problems = append(p.cerr.Problems, envProblems...)

	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		p.cerr.Problems = append(p.cerr.Problems, yamlErrors(err)...)
		return p
	}
	if len(root.Content) == 0 {
		// Empty, or only comments: "want a mapping, not \"\"" and
		// "flows: at least one flow is required" said it less plainly.
		p.cerr.Problems = append(p.cerr.Problems, fieldError{Msg: "the file is empty (or only comments): a configuration needs sources, outputs and flows (see agent.yaml.example)"})
		return p
	}
	checkNode(&root, reflect.TypeOf(p.cfg), "", p.lines, &p.cerr.Problems)
	if len(root.Content) > 0 {
		if err := root.Decode(&p.cfg); err != nil {
			p.addDecodeError(err)
		}
	}
	for i := range p.cfg.Flows {
		if err := p.cfg.Flows[i].decodeErr; err != nil {
			p.addDecodeError(err)
			p.cfg.Flows[i].decodeErr = nil
		}
	}
	p.decodeComponents(comps)
	p.deriveSpoolSizes()
	// Problems found before the walk (unset environment variables) get
	// the path of their line.
	for i := range p.cerr.Problems {
		if fe := &p.cerr.Problems[i]; fe.Path == "" && fe.Line > 0 {
			fe.Path = p.lines.pathAt(fe.Line)
		}
	}
	// Validation runs even when decoding found problems: every problem is
	// listed at once. Those at a place already reported are its echoes.
	var later []fieldError
	for _, e := range flatten(p.cfg.Validate()) {
		fe := placeError(e, p.lines)
		if !p.covered(fe.Path, fe.Line) {
			later = append(later, fe)
		}
	}
	p.cerr.Problems = append(p.cerr.Problems, later...)
	p.warnUnusedPartitionKeys()
	p.warnUnusedExplicitHashKeys()
	sort.SliceStable(p.cfg.notices, func(i, j int) bool { return p.cfg.notices[i].Line < p.cfg.notices[j].Line })
	p.cfg.resolve(filepath.Dir(name))
	return p
}

// dirUsable reports whether dir is a directory the agent can write in, or
// could create, without creating anything: its nearest existing ancestor
// must be a directory, and this process must be allowed to create files
// in it (a read-only directory or file system is an error). validate and
// run both load through here, so a directory run cannot make fails both,
// with the same message. A permission refusal on a directory that belongs
// to another user is only a warning: validate may run as someone else than
// the service (a user checking /etc/agent/agent.yaml, where /var/lib/agent
// belongs to the agent user), and the agent may run as that owner.
func dirUsable(dir string) (warn string, err error) {
	dir = filepath.Clean(dir)
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return "", fmt.Errorf("%s is not a directory", p)
			}
			other, werr := dirWritable(p, fi)
			if werr == nil {
				return "", nil
			}
			what := p + " is not writable"
			if p != dir {
				what = "cannot create " + dir + ": " + what
			}
			if other {
				// Another user's directory inside one of this user's that
				// it writes (spool/ left by a run as root in the service
				// user's state_dir): the agent run as this user fails on
				// it at start, as on another user's file there.
				if parent := ownParent(p); parent != "" {
					if h := givenBackHint(fi, parent); h != "" {
						return "", fmt.Errorf("%s: %w; %s", what, werr, h)
					}
				}
				return fmt.Sprintf("%s by this user (uid %d): %v; the agent must run as a user that may write there (its owner?)",
					what, os.Geteuid(), werr), nil
			}
			return "", fmt.Errorf("%s: %w", what, werr)
		}
		if filepath.Dir(p) == p {
			return "", nil
		}
	}
}

// fileUsable is dirUsable for a file the agent appends to and creates when
// missing, in a directory dirUsable accepted: if it exists it must be a
// regular file this process may write. Another user's file is a warning
// when this user may not write the directory either (validate run by
// someone else than the service).
//
// With read, the file is one the agent reads and replaces by renaming a new
// one over it (the checkpoint file): it must be readable instead (one it
// cannot read is moved aside, and the positions in it forgotten).
func fileUsable(path, what string, read bool) (warn string, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			// Created when first needed; or in a directory this user may
			// not look into, which the check of the directory tells.
			return "", nil
		}
		return "", fmt.Errorf("%s %s: %w", what, path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s %s is not a regular file", what, path)
	}
	access, check := "writable", fileWritable
	if read {
		access, check = "readable", fileReadable
	}
	other, werr := check(path, fi)
	if werr == nil {
		return "", nil
	}
	if other {
		// Another user's file in a directory this user may not write
		// either: validate runs as someone else than the service, which
		// may be its owner. In a directory this user writes (it runs as
		// the service's user), the file stops the agent: an error.
		dir := filepath.Dir(path)
		if dfi, err := os.Stat(dir); err == nil {
			if _, derr := dirWritable(dir, dfi); derr != nil {
				return fmt.Sprintf("%s %s is not %s by this user (uid %d): %v; the agent must run as a user that may write there (its owner?)",
					what, path, access, os.Geteuid(), werr), nil
			}
		}
	}
	if h := givenBackHint(fi, filepath.Dir(path)); other && h != "" {
		return "", fmt.Errorf("%s %s is not %s: %w; %s", what, path, access, werr, h)
	}
	return "", fmt.Errorf("%s %s is not %s: %w", what, path, access, werr)
}

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// componentType is what decoding needs of a source or output type.
type componentType struct {
	name     string
	defaults func() any
}

// decodeComponents decodes every source and output: name, type, and the
// block of the type's name, strictly, over the type's defaults.
func (p *parsed) decodeComponents(comps Components) {
	var srcTypes, outTypes []componentType
	for _, t := range comps.Sources {
		srcTypes = append(srcTypes, componentType{t.Name, t.DefaultConfig})
	}
	for _, t := range comps.Outputs {
		outTypes = append(outTypes, componentType{t.Name, t.DefaultConfig})
	}
	for i := range p.cfg.Sources {
		s := &p.cfg.Sources[i]
		if s.node != nil {
			s.Name, s.Type, s.Config = p.decodeComponent(s.node, fmt.Sprintf("sources[%d]", i), srcTypes)
			s.node = nil
		}
	}
	for i := range p.cfg.Outputs {
		o := &p.cfg.Outputs[i]
		if o.node != nil {
			o.Name, o.Type, o.Config = p.decodeComponent(o.node, fmt.Sprintf("outputs[%d]", i), outTypes)
			o.node = nil
		}
	}
}

func (p *parsed) decodeComponent(n *yaml.Node, path string, types []componentType) (name, typ string, cfg any) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	p.lines.set(path, n.Line)
	if n.Kind != yaml.MappingNode {
		p.add(fieldError{Path: path, Line: n.Line, Msg: "want a mapping with name, type and the type's options"})
		return "", "", nil
	}
	pairs := mappingPairs(n)
	typeLine := n.Line
	for _, kv := range pairs {
		k, v := kv[0], kv[1]
		kp := joinPath(path, k.Value)
		p.lines.set(kp, k.Line)
		switch k.Value {
		case "name":
			name = p.scalarString(v, kp)
		case "type":
			typ, typeLine = p.scalarString(v, kp), k.Line
		}
	}
	var t *componentType
	names := make([]string, 0, len(types))
	for i := range types {
		names = append(names, types[i].name)
		if types[i].name == typ {
			t = &types[i]
		}
	}
	if typ != "" && t == nil {
		p.add(fieldError{Path: path + ".type", Line: typeLine, Msg: fmt.Sprintf("unknown %q (want %s)", typ, orList(names))})
	}
	if t != nil {
		cfg = t.defaults()
	}
	for _, kv := range pairs {
		k, v := kv[0], kv[1]
		kp := joinPath(path, k.Value)
		switch {
		case k.Value == "name" || k.Value == "type":
		case k.Value == typ && t != nil:
			checkNode(v, reflect.TypeOf(cfg), kp, p.lines, &p.cerr.Problems)
			if !isNull(v) {
				if err := v.Decode(cfg); err != nil {
					p.addDecodeError(err)
				}
			}
		case k.Value == typ: // an unknown type, reported above
		case slices.Contains(names, k.Value) && typ == "": // type: required is reported
		case slices.Contains(names, k.Value):
			p.add(fieldError{Path: kp, Line: k.Line, Msg: fmt.Sprintf("options of type %q, but type is %q", k.Value, typ)})
		default:
			known := []string{"name", "type"}
			if t != nil {
				known = append(known, typ)
			}
			p.add(fieldError{Path: kp, Line: k.Line, Msg: unknownFieldMsg(k.Value, known)})
		}
	}
	return name, typ, cfg
}

// scalarString decodes a name or type.
func (p *parsed) scalarString(n *yaml.Node, path string) string {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.ScalarNode {
		p.add(fieldError{Path: path, Line: n.Line, Msg: "want a string"})
		return ""
	}
	if isNull(n) {
		return ""
	}
	return n.Value
}

// checkFiles checks that the state and spool directories can be made, and
// runs the components' file checks (FileChecker) for those whose options
// had no problem.
func (p *parsed) checkFiles() {
	// check runs the file checks of a component at path; whose, when set
	// ("source \"app\""), ends their messages (the path names it only by
	// its index).
	check := func(path, whose string, cfg any) {
		if p.covered(path, 0) {
			return
		}
		if fc, ok := cfg.(outputs.FileChecker); ok {
			for _, e := range flatten(at(path, fc.CheckFiles())) {
				fe := placeError(e, p.lines)
				if whose != "" {
					fe.Msg += " (" + whose + ")"
				}
				p.add(fe)
			}
		}
		if fw, ok := cfg.(outputs.FileWarner); ok {
			for _, w := range fw.WarnFiles() {
				fe := placeError(at(path, w), p.lines)
				if whose != "" {
					fe.Msg += " (" + whose + ")"
				}
				p.notice(slog.LevelWarn, fe.Path, "%s", fe.Msg)
			}
		}
	}
	stateBad := false
	for _, d := range []struct{ key, dir string }{{"state_dir", p.cfg.StateDir}, {"spool.dir", p.cfg.Spool.Dir}} {
		if d.dir == "" || p.covered(d.key, 0) {
			continue
		}
		if d.key == "spool.dir" && stateBad && within(d.dir, p.cfg.StateDir) {
			continue // the problem is the state directory's, said once
		}
		warn, err := dirUsable(d.dir)
		if err != nil {
			p.add(placeError(&pathError{path: d.key, err: err}, p.lines))
			stateBad = stateBad || d.key == "state_dir"
		} else if warn != "" {
			p.notice(slog.LevelWarn, d.key, "%s", warn)
		}
	}
	// The dead-letter file and its lock, in state_dir: one left by another
	// user (an agent run once with sudo) or made read-only would fail only
	// when the first record is dead-lettered.
	if p.cfg.StateDir != "" && !stateBad && !p.covered("state_dir", 0) {
		// So would the checkpoint file and its lock, at start.
		for _, f := range []struct {
			name, what string
			read       bool
		}{
			{checkpointFile, "the checkpoint file", true}, // replaced by a rename: read, not written
			{checkpointFile + ".lock", "the checkpoint lock file", false},
			{DeadLetterFile, "the dead-letter file", false},
			{deadLetterLock, "the dead-letter lock file", false},
		} {
			warn, err := fileUsable(filepath.Join(p.cfg.StateDir, f.name), f.what, f.read)
			if err != nil {
				p.add(placeError(&pathError{path: "state_dir", err: err}, p.lines))
			} else if warn != "" {
				p.notice(slog.LevelWarn, "state_dir", "%s", warn)
			}
		}
		// Root writes everything: validate run as root (sudo agent
		// validate) cannot tell by trying whether the service's user
		// may write these; a file whose owner is not state_dir's (left
		// by a run as root by hand) is most likely one it may not.
		if w := strangerInState(p.cfg.StateDir, stateFile{name: checkpointFile, read: true}, stateFile{name: checkpointFile + ".lock"},
			stateFile{name: DeadLetterFile}, stateFile{name: deadLetterLock}, stateFile{name: "spool"}); w != "" {
			p.notice(slog.LevelWarn, "state_dir", "%s", w)
		}
	}
	for i, s := range p.cfg.Sources {
		whose := ""
		if s.Name != "" {
			whose = fmt.Sprintf("source %q", s.Name)
		}
		check(fmt.Sprintf("sources[%d].%s", i, s.Type), whose, s.Config)
	}
	for i, o := range p.cfg.Outputs {
		check(fmt.Sprintf("outputs[%d].%s", i, o.Type), "", o.Config)
	}
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
	case "auto", "text", "json":
	default:
		add("log.format", "unknown %q (want auto, text or json)", c.Log.Format)
	}
	if c.Admin.NotReadyAfter < 0 {
		add("admin.not_ready_after", "must not be negative")
	}
	if l := c.Admin.Listen; l != "" && l != "off" {
		if _, port, err := net.SplitHostPort(l); err != nil {
			add("admin.listen", "want HOST:PORT or off: %v", err)
		} else if port == "" {
			add("admin.listen", "want HOST:PORT or off: no port in %q", l)
		}
	}
	if c.Checkpoint.Interval <= 0 {
		add("checkpoint.interval", "must be positive")
	}
	if err := c.DeadLetter.Validate(); err != nil {
		errs = append(errs, at("dead_letter", err))
	}
	if cw := c.Metrics.CloudWatch; cw != nil && cw.Enabled {
		if err := cw.Validate(); err != nil {
			errs = append(errs, at("metrics.cloudwatch", err))
		}
	}
	sp := c.Spool
	if sp.Dir == "" {
		sp.Dir = "-" // defaults to state_dir/spool, resolved later
	}
	if err := sp.Validate(); err != nil {
		errs = append(errs, at("spool", err))
	}

	sources := map[string]SourceConfig{}
	for i, s := range c.Sources {
		p := fmt.Sprintf("sources[%d]", i)
		uniqueName(p, "source", s.Name, sources, add)
		sources[s.Name] = s
		errs = append(errs, componentProblems(p, s.Type, s.Config)...)
	}
	// Two sources cannot listen on one address, nor on a wildcard and
	// another address of its port (PortClash): the second failed to
	// start, and the agent with it.
	type listener struct {
		name string
		cfg  any
	}
	listening := map[string]string{}
	var listeners []listener
	for i, s := range c.Sources {
		la, ok := s.Config.(interface{ ListenAddress() string })
		if !ok || la.ListenAddress() == "" {
			continue
		}
		p := fmt.Sprintf("sources[%d].%s.listen", i, s.Type)
		if other, dup := listening[la.ListenAddress()]; dup {
			add(p, "source %q listens on this address already", other)
			continue
		}
		if pc, ok := s.Config.(interface{ PortClash(other any) string }); ok {
			clash := false
			for _, l := range listeners {
				if why := pc.PortClash(l.cfg); why != "" {
					add(p, "source %q cannot listen beside source %q: %s; listen on the wildcard alone, or give the two sources different ports",
						s.Name, l.name, why)
					clash = true
					break
				}
			}
			if clash {
				continue
			}
		}
		listening[la.ListenAddress()] = s.Name
		listeners = append(listeners, listener{s.Name, s.Config})
	}
	outs := map[string]OutputConfig{}
	for i, o := range c.Outputs {
		p := fmt.Sprintf("outputs[%d]", i)
		uniqueName(p, "output", o.Name, outs, add)
		outs[o.Name] = o
		errs = append(errs, componentProblems(p, o.Type, o.Config)...)
	}
	if len(c.Flows) == 0 {
		add("flows", "at least one flow is required")
	}
	flows := map[string]bool{}
	used := map[string]string{}
	sourceIndex := map[string]int{}
	for i, s := range c.Sources {
		sourceIndex[s.Name] = i
	}
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
			if _, ok := sources[s]; !ok {
				add(fmt.Sprintf("%s.sources[%d]", p, j), "no source named %q", s)
			} else if other, ok := used[s]; ok {
				add(fmt.Sprintf("%s.sources[%d]", p, j), "source %q is already used by flow %q", s, other)
			}
			used[s] = f.Name
		}
		if f.Output == "" {
			add(p+".output", "required")
		} else if _, ok := outs[f.Output]; !ok {
			add(p+".output", "no output named %q", f.Output)
		}
		if f.Failover != "" {
			if _, ok := outs[f.Failover]; !ok {
				add(p+".failover", "no output named %q", f.Failover)
			} else if f.Failover == f.Output {
				add(p+".failover", "must differ from output")
			}
		}
		if err := f.PartitionKey.Validate(); err != nil {
			add(p+".partition_key", "%v", err)
		}
		if k := f.ExplicitHashKey.Field; k != "" {
			if err := process.CheckPath(k); err != nil {
				add(p+".explicit_hash_key.field", "%v", err)
			}
		}
		for j, pc := range f.Processors {
			if err := pc.Validate(); err != nil {
				add(fmt.Sprintf("%s.processors[%d]", p, j), "%v", err)
			}
		}
		a := f.Aggregation
		limit, limitBy := flowRecordLimit(f, outs)
		if a.MaxBytes < 1024 || int64(a.MaxBytes) > int64(limit) {
			add(p+".aggregation.max_bytes", "must be between 1KiB and %s (%s), got %s", units.ByteSize(limit), limitBy, a.MaxBytes)
		} else if a.MaxBytes+entryOverhead > c.Spool.MaxEntryBytes && c.Spool.MaxEntryBytes > 0 {
			add(p+".aggregation.max_bytes", "%s does not fit spool.max_entry_bytes (%s): an aggregate that large would be dead-lettered when it goes to the spool (with spool_bypass, after one failed send); raise spool.max_entry_bytes to at least %d bytes or lower aggregation.max_bytes",
				a.MaxBytes, c.Spool.MaxEntryBytes, int64(a.MaxBytes+entryOverhead))
		}
		for _, name := range f.Sources {
			sc, ok := sources[name]
			if !ok {
				continue
			}
			rs, ok := sc.Config.(source.RecordSizer)
			if !ok {
				continue
			}
			largest, key := rs.LargestRecord()
			sp := fmt.Sprintf("sources[%d].%s.%s", sourceIndex[name], sc.Type, key)
			if largest+recordHeadroom > int64(limit) {
				add(sp, "%s is more than %s (%s) less %s for the partition key and KPL framing: longer records would be dead-lettered; at most %s",
					units.ByteSize(largest), limitBy, units.ByteSize(limit), units.ByteSize(recordHeadroom), units.ByteSize(int64(limit)-recordHeadroom))
			} else if c.Spool.MaxEntryBytes > 0 && largest+recordHeadroom > int64(c.Spool.MaxEntryBytes) {
				add(sp, "%s does not fit spool.max_entry_bytes (%s) with %s for the keys: a record that long would be dead-lettered; at most %s, or raise spool.max_entry_bytes",
					units.ByteSize(largest), c.Spool.MaxEntryBytes, units.ByteSize(recordHeadroom), units.ByteSize(int64(c.Spool.MaxEntryBytes)-recordHeadroom))
			}
		}
		if a.MaxRecords < 1 {
			add(p+".aggregation.max_records", "must be at least 1")
		}
		if a.MaxBufferedTime <= 0 {
			add(p+".aggregation.max_buffered_time", "must be positive")
		}
		if a.MaxPendingBytes != 0 && (a.MaxPendingBytes < a.MaxBytes || a.MaxPendingBytes > maxPendingBytes) {
			add(p+".aggregation.max_pending_bytes", "must be between aggregation.max_bytes (%s) and %s, got %s (it bounds the memory of the open aggregates; a few times max_bytes lets several shards fill theirs)",
				a.MaxBytes, units.ByteSize(maxPendingBytes), a.MaxPendingBytes)
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
		if s.MaxThrottleDelay <= 0 {
			add(p+".sender.max_throttle_delay", "must be positive")
		}
	}
	return errors.Join(errs...)
}

// uniqueName checks that the element at path p has a name not used before
// by another element of its kind (a key of seen).
func uniqueName[V any](p, kind, name string, seen map[string]V, add func(path, format string, args ...any)) {
	if name == "" {
		add(p+".name", "required")
	} else if _, ok := seen[name]; ok {
		add(p+".name", "duplicate %s name %q", kind, name)
	}
}

// componentProblems checks a source or output at path p: its type, and its
// options with their own Validate.
func componentProblems(p, typ string, cfg any) []error {
	switch {
	case typ == "":
		return []error{&pathError{path: p + ".type", err: errors.New("required")}}
	case cfg == nil:
		return []error{&pathError{path: p + ".type", err: fmt.Errorf("unknown %q", typ)}}
	}
	if v, ok := cfg.(outputs.ConfigValidator); ok {
		if err := v.Validate(); err != nil {
			return []error{at(p+"."+typ, err)}
		}
	}
	return nil
}

// Sizes the flow checks against the outputs' and the spool's limits.
const (
	// entryOverhead is what a spool entry adds to an aggregate's partition
	// key and body (aggregation.max_bytes counts both): version, flags,
	// record count, three lengths and an explicit hash key of up to 39
	// digits.
	entryOverhead = 64
	// recordHeadroom is what a record may need on top of its data: a
	// partition key of up to 256 characters (1 KiB of UTF-8), an explicit
	// hash key, and the KPL framing when it is aggregated. The file
	// source's default max_record_bytes (1 MiB less 4 KiB) is the 1 MiB
	// Kinesis record limit less this.
	recordHeadroom = 4 << 10
	// maxPendingBytes caps aggregation.max_pending_bytes: a bound on
	// memory, not a way to switch it off.
	maxPendingBytes = 4 << 30
)

// flowRecordLimit is the largest record the flow's outputs take, and a
// phrase naming the output that sets it.
func flowRecordLimit(f FlowConfig, outs map[string]OutputConfig) (int, string) {
	limit, by := aggregate.MaxRecordSize, "the largest Kinesis record"
	first := true
	for _, name := range []string{f.Output, f.Failover} {
		o, ok := outs[name]
		if !ok || name == "" {
			continue
		}
		l := aggregate.MaxRecordSize // the aggregator's record limit
		if rl, ok := o.Config.(outputs.RecordLimiter); ok {
			l = rl.MaxRecordBytes()
		}
		if l < limit || first {
			limit, by = l, fmt.Sprintf("the largest record output %q takes", name)
		}
		first = false
	}
	return limit, by
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
	for _, s := range c.Sources {
		if r, ok := s.Config.(outputs.PathResolver); ok {
			r.ResolvePaths(base)
		}
	}
	for _, o := range c.Outputs {
		if r, ok := o.Config.(outputs.PathResolver); ok {
			r.ResolvePaths(base)
		}
	}
}
