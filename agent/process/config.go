package process

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Processor is one step of a flow's processing stage (flows[].processors):
// a mapping with exactly one key naming the processor, whose value holds
// its options (`- single_line:` or `- log_to_json: {format: apache_combined}`).
type Processor struct {
	SingleLine *SingleLineConfig `yaml:"single_line"`
	CSVToJSON  *CSVConfig        `yaml:"csv_to_json"`
	LogToJSON  *LogConfig        `yaml:"log_to_json"`
	Regex      *RegexConfig      `yaml:"regex"`
	JSON       *JSONConfig       `yaml:"json"`
	AddFields  *AddFieldsConfig  `yaml:"add_fields"`
	Drop       *MatchConfig      `yaml:"drop"`
	Keep       *MatchConfig      `yaml:"keep"`
	Redact     *RedactConfig     `yaml:"redact"`
	Rename     map[string]string `yaml:"rename"` // old name: new name
	Remove     []string          `yaml:"remove"` // field names
}

// StrictYAML marks Processor for the agent's strict YAML check: its
// UnmarshalYAML only fills defaults, its keys are still checked.
func (*Processor) StrictYAML() {}

// UnmarshalYAML decodes the processor and gives a key written without a
// value (`- single_line:`) its defaults.
func (p *Processor) UnmarshalYAML(n *yaml.Node) error {
	type plain Processor
	var v plain
	if err := n.Decode(&v); err != nil {
		return err
	}
	*p = Processor(v)
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i+1].Tag != "!!null" {
			continue
		}
		switch n.Content[i].Value {
		case "single_line":
			p.SingleLine = &SingleLineConfig{}
		case "json":
			p.JSON = &JSONConfig{}
		case "add_fields":
			p.AddFields = &AddFieldsConfig{}
		case "redact":
			p.Redact = &RedactConfig{}
		}
	}
	return nil
}

// SingleLineConfig: single_line replaces the line breaks of a multi-line
// record (and the white space that starts its next line) by Separator.
type SingleLineConfig struct {
	Separator *string `yaml:"separator"` // default " "
}

// CSVConfig: csv_to_json parses a record as one CSV row (RFC 4180).
type CSVConfig struct {
	Fields    []string `yaml:"fields"`    // field names in column order; more columns are named _N
	Delimiter string   `yaml:"delimiter"` // one character, default ","
	Quote     string   `yaml:"quote"`     // one character, default "\""
}

// LogConfig: log_to_json parses a record in a well-known log format.
type LogConfig struct {
	Format string `yaml:"format"` // apache_common, apache_combined, nginx_combined, apache_error, syslog_rfc3164, syslog_rfc5424
}

// RegexConfig: regex parses a record with a regular expression (RE2
// syntax); each named group becomes a field.
type RegexConfig struct {
	Pattern string `yaml:"pattern"`
}

// JSONConfig: json parses a record as JSON. Without Target an object's
// fields become the record's; with it the value goes to that field (next
// to "message", the text).
type JSONConfig struct {
	Target string `yaml:"target"`
}

// AddFieldsConfig: add_fields sets fields on every record (making text
// records {"message": text}).
type AddFieldsConfig struct {
	Fields   map[string]string `yaml:"fields"`   // static name: value
	Hostname string            `yaml:"hostname"` // a field name for the host name
	EC2      *EC2Config        `yaml:"ec2"`      // EC2 instance metadata (IMDSv2)
}

// EC2Config adds EC2 instance metadata, fetched at start with a short
// timeout and refreshed in the background. Off EC2 (or with IMDS
// unreachable) a warning is logged once and the fields are left out.
type EC2Config struct {
	// Fields maps metadata to field names; the keys are instance_id,
	// instance_type, region, availability_zone, private_ip. Default: all of
	// them under their own names.
	Fields   map[string]string `yaml:"fields"`
	Endpoint string            `yaml:"endpoint"` // default http://169.254.169.254
	Timeout  time.Duration     `yaml:"timeout"`  // per request, default 1s
	Refresh  time.Duration     `yaml:"refresh"`  // default 1h
}

// MatchConfig: drop removes the records it matches, keep removes the
// others. Regex is matched against Field's value when Field is set (a
// record without that field does not match), else against the record's
// text (its JSON when it is an object).
type MatchConfig struct {
	Regex string `yaml:"regex"`
	Field string `yaml:"field"`
}

// RedactConfig: redact replaces what its patterns match by Mask, in the
// text of a text record and in the string values of an object. Best
// effort: a pattern finds what it describes, not every secret.
type RedactConfig struct {
	// Patterns are regular expressions, or the names email, credit_card
	// (13-19 digits, spaces or dashes between groups), ipv4 and aws_key
	// (AKIA... access key IDs). Default: email and credit_card.
	Patterns []string `yaml:"patterns"`
	Mask     string   `yaml:"mask"` // default "[REDACTED]"
}

// Name returns the processor's key ("" when none is set).
func (p Processor) Name() string {
	names := p.names()
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

func (p Processor) names() []string {
	var out []string
	add := func(set bool, name string) {
		if set {
			out = append(out, name)
		}
	}
	add(p.SingleLine != nil, "single_line")
	add(p.CSVToJSON != nil, "csv_to_json")
	add(p.LogToJSON != nil, "log_to_json")
	add(p.Regex != nil, "regex")
	add(p.JSON != nil, "json")
	add(p.AddFields != nil, "add_fields")
	add(p.Drop != nil, "drop")
	add(p.Keep != nil, "keep")
	add(p.Redact != nil, "redact")
	add(p.Rename != nil, "rename")
	add(p.Remove != nil, "remove")
	return out
}

// Validate checks the processor; each problem is prefixed by its key.
func (p Processor) Validate() error {
	names := p.names()
	switch len(names) {
	case 0:
		return errors.New("want one processor (single_line, csv_to_json, log_to_json, regex, json, add_fields, drop, keep, redact, rename or remove)")
	case 1:
	default:
		return fmt.Errorf("one processor per list item, got %s", strings.Join(names, " and "))
	}
	var errs []error
	add := func(key, f string, a ...any) { errs = append(errs, fmt.Errorf(names[0]+key+": "+f, a...)) }
	switch {
	case p.CSVToJSON != nil:
		c := p.CSVToJSON
		if c.Delimiter != "" && len(c.Delimiter) != 1 {
			add(".delimiter", "want one character, got %q", c.Delimiter)
		}
		if c.Quote != "" && len(c.Quote) != 1 {
			add(".quote", "want one character, got %q", c.Quote)
		}
		if c.Delimiter != "" && c.Delimiter == c.Quote {
			add(".quote", "must differ from the delimiter")
		}
		for i, f := range c.Fields {
			if !validUTF8Key(f) {
				add(fmt.Sprintf(".fields[%d]", i), "empty or not UTF-8")
			}
		}
	case p.LogToJSON != nil:
		if !slices.Contains(logFormats, p.LogToJSON.Format) {
			add(".format", "unknown %q (want %s)", p.LogToJSON.Format, strings.Join(logFormats, ", "))
		}
	case p.Regex != nil:
		re, err := regexp.Compile(p.Regex.Pattern)
		switch {
		case err != nil:
			add(".pattern", "%v", err)
		case !slices.ContainsFunc(re.SubexpNames(), func(s string) bool { return s != "" }):
			add(".pattern", "has no named group ((?P<name>...)): nothing to make fields of")
		}
	case p.AddFields != nil:
		a := p.AddFields
		if len(a.Fields) == 0 && a.Hostname == "" && a.EC2 == nil {
			add("", "nothing to add (set fields, hostname or ec2)")
		}
		for _, k := range slices.Sorted(maps.Keys(a.Fields)) {
			if !validPath(k) {
				add(".fields", "%q: want a name or a path of names (a.b.c), not empty, UTF-8", k)
			}
		}
		if a.EC2 != nil {
			for k := range a.EC2.Fields {
				if !slices.Contains(ec2Keys, k) {
					add(".ec2.fields."+k, "unknown (want %s)", strings.Join(ec2Keys, ", "))
				}
			}
			if a.EC2.Timeout < 0 || a.EC2.Refresh < 0 {
				add(".ec2", "timeout and refresh must not be negative")
			}
		}
	case p.Drop != nil || p.Keep != nil:
		m := p.Drop
		if m == nil {
			m = p.Keep
		}
		if m.Field != "" && !validPath(m.Field) {
			add(".field", "%q: want a name or a path of names (a.b.c), not empty, UTF-8", m.Field)
		}
		if m.Regex == "" {
			add(".regex", "required")
		} else if _, err := regexp.Compile(m.Regex); err != nil {
			add(".regex", "%v", err)
		}
	case p.Redact != nil:
		for i, pat := range p.Redact.Patterns {
			if _, ok := redactPatterns[pat]; ok {
				continue
			}
			if _, err := regexp.Compile(pat); err != nil {
				add(fmt.Sprintf(".patterns[%d]", i), "%v", err)
			}
		}
		if strings.ContainsAny(p.Redact.Mask, "\"\\\n\r") {
			add(".mask", "must not contain quotes, backslashes or line breaks")
		}
	case p.Rename != nil:
		for _, from := range slices.Sorted(maps.Keys(p.Rename)) {
			if to := p.Rename[from]; !validPath(from) || !validPath(to) {
				add("."+from, "want a name or a path of names (a.b.c) on each side, not empty, UTF-8")
			}
		}
	case p.Remove != nil:
		for i, k := range p.Remove {
			if !validPath(k) {
				add(fmt.Sprintf("[%d]", i), "%q: want a name or a path of names (a.b.c), not empty, UTF-8", k)
			}
		}
	}
	return errors.Join(errs...)
}

// Envelope asks for fields about each record's origin; each value is the
// field's name, "" leaves it out. Setting any makes every record a JSON
// object ({"message": text} for a text record) before it is aggregated,
// so what only the reader knows (file, offset, read time) travels with the
// record through the spool.
type Envelope struct {
	Timestamp string            `yaml:"timestamp"` // read time, RFC 3339 with nanoseconds, UTC
	Host      string            `yaml:"host"`      // the host name
	File      string            `yaml:"file"`      // the path of the file read ("" for other sources)
	Offset    string            `yaml:"offset"`    // the byte offset where the record began
	Source    string            `yaml:"source"`    // the source's name
	Fields    map[string]string `yaml:"fields"`    // static fields
}

// Enabled reports whether any envelope field is asked for.
func (e Envelope) Enabled() bool {
	return e.Timestamp != "" || e.Host != "" || e.File != "" || e.Offset != "" || e.Source != "" || len(e.Fields) > 0
}

// ParseEnvelopeList parses `agent tail --envelope host,file,offset=pos`:
// each item names an envelope field, optionally renamed with =NAME.
func ParseEnvelopeList(s string) (Envelope, error) {
	var e Envelope
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		kind, name, ok := strings.Cut(item, "=")
		if !ok {
			name = kind
		}
		if name == "" {
			return e, fmt.Errorf("envelope %q: empty field name", item)
		}
		switch kind {
		case "timestamp":
			e.Timestamp = name
		case "host":
			e.Host = name
		case "file":
			e.File = name
		case "offset":
			e.Offset = name
		case "source":
			e.Source = name
		default:
			return e, fmt.Errorf("envelope %q: unknown field (want timestamp, host, file, offset or source)", kind)
		}
	}
	return e, nil
}
