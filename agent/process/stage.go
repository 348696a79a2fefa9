package process

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is a flow's processing stage.
type Config struct {
	Processors      []Processor
	Envelope        Envelope
	PartitionKey    KeyConfig
	ExplicitHashKey string // a field whose value is the explicit hash key
}

// Settings are the values set in code.
type Settings struct {
	Flow       string
	Logger     *slog.Logger
	Registerer prometheus.Registerer // takes agent_processor_records_total
	Hostname   string                // "" reads os.Hostname
	HTTPClient *http.Client          // for EC2 metadata; nil makes one
}

// Stage runs a flow's processors, envelope and key policies on one record
// at a time. It is not safe for concurrent use (a flow calls it under its
// lock), except Close.
type Stage struct {
	steps    []step
	env      Envelope
	envOn    bool
	envStat  [][2]string // sorted static envelope fields
	host     string
	key      KeyConfig
	keyRe    *regexp.Regexp
	ehkField string
	constKey string // the key of fixed and hostname, hashed down if long
	ec2      []*ec2Fetcher

	rec Record
	tmp Record
	buf []byte
	kb  []byte
	// lastObj: the record last processed is in rec (its fields can be read
	// for keys).
	lastObj bool
}

type step struct {
	name    string
	run     func(s *Stage, r *Record) result
	in, out prometheus.Counter
	failed  prometheus.Counter
	dropped prometheus.Counter
}

type result int

const (
	passed  result = iota // processed (or not applicable)
	failed                // could not parse: passes unchanged
	dropped               // removed by drop/keep
)

// New builds a stage. EC2 metadata is fetched here (bounded by its
// timeout); call Close to stop its refresh.
func New(cfg Config, set Settings) (*Stage, error) {
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host := set.Hostname
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			log.Warn("host name unknown", "error", err)
		}
		host = h
	}
	s := &Stage{env: cfg.Envelope, envOn: cfg.Envelope.Enabled(), host: host, key: cfg.PartitionKey, ehkField: cfg.ExplicitHashKey}
	for _, k := range slices.Sorted(maps.Keys(cfg.Envelope.Fields)) {
		s.envStat = append(s.envStat, [2]string{k, cfg.Envelope.Fields[k]})
	}
	switch s.key.Kind {
	case KeyFixed:
		s.constKey = FitKey([]byte(s.key.Fixed))
	case KeyHostname:
		s.constKey = FitKey([]byte(host))
	}
	if s.key.Kind == KeyRegex {
		re, err := regexp.Compile(s.key.Regex)
		if err != nil {
			return nil, fmt.Errorf("process: partition_key: regex: %w", err)
		}
		s.keyRe = re
	}
	var vec *prometheus.CounterVec
	if set.Registerer != nil {
		vec = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_processor_records_total",
			Help: "Records through each processor of a flow, by result: in, out, failed (could not be parsed, passed unchanged), dropped (drop/keep).",
		}, []string{"flow", "step", "processor", "result"})
		if err := set.Registerer.Register(vec); err != nil {
			if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
				vec = are.ExistingCollector.(*prometheus.CounterVec)
			} else {
				return nil, fmt.Errorf("process: metrics: %w", err)
			}
		}
	}
	for i, p := range cfg.Processors {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("process: processors[%d]: %w", i, err)
		}
		run, err := s.build(p, set, log)
		if err != nil {
			return nil, fmt.Errorf("process: processors[%d].%w", i, err)
		}
		st := step{name: p.Name(), run: run}
		c := func(res string) prometheus.Counter {
			if vec == nil {
				return prometheus.NewCounter(prometheus.CounterOpts{Name: "unused"})
			}
			return vec.WithLabelValues(set.Flow, strconv.Itoa(i), st.name, res)
		}
		st.in, st.out, st.failed, st.dropped = c("in"), c("out"), c("failed"), c("dropped")
		s.steps = append(s.steps, st)
	}
	return s, nil
}

// Close stops background work (the EC2 metadata refresh).
func (s *Stage) Close() {
	for _, f := range s.ec2 {
		f.close()
	}
}

// Active reports whether the stage changes records (processors or an
// envelope); an inactive stage need not be called.
func (s *Stage) Active() bool { return len(s.steps) > 0 || s.envOn }

// Process runs the processors and the envelope on data. It returns the
// record's new bytes (valid until the next call) and false when a drop or
// keep rule removed it.
func (s *Stage) Process(data []byte, meta Meta) ([]byte, bool) {
	r := &s.rec
	r.Reset(data)
	s.lastObj = false
	for i := range s.steps {
		st := &s.steps[i]
		st.in.Inc()
		switch st.run(s, r) {
		case failed:
			st.failed.Inc()
		case dropped:
			st.dropped.Inc()
			return nil, false
		}
		st.out.Inc()
	}
	if s.envOn {
		r.toObject()
		s.envelope(r, meta)
	}
	s.lastObj = r.obj
	return r.Bytes(), true
}

// MadeObject reports whether the record Process returned last is a JSON
// object the stage wrote: one valid JSON object without white space around
// it (its nested values may keep line breaks as white space). Outputs
// writing JSON then need not check it again.
func (s *Stage) MadeObject() bool { return s.lastObj }

var timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func (s *Stage) envelope(r *Record, meta Meta) {
	e := &s.env
	if e.Timestamp != "" {
		s.buf = time.Now().UTC().AppendFormat(s.buf[:0], timeLayout)
		r.SetString(e.Timestamp, s.buf)
	}
	if e.Host != "" {
		r.SetString(e.Host, []byte(s.host))
	}
	if e.File != "" && meta.Path != "" {
		r.SetString(e.File, []byte(meta.Path))
	}
	if e.Offset != "" && meta.Path != "" {
		r.SetInt(e.Offset, meta.Offset)
	}
	if e.Source != "" {
		r.SetString(e.Source, []byte(meta.Source))
	}
	for _, kv := range s.envStat {
		r.SetString(kv[0], []byte(kv[1]))
	}
}

// PartitionKey returns the key for the record last processed (data is its
// bytes, as Process returned them or as read when the stage is inactive),
// and false when the policy has no key for it: the caller then applies the
// fallback (KeyConfig.Fallback). Random and deterministic are the caller's.
func (s *Stage) PartitionKey(data []byte) (string, bool) {
	switch s.key.Kind {
	case KeyFixed, KeyHostname:
		return s.constKey, s.constKey != ""
	case KeyField:
		v, ok := s.field(data, s.key.Field)
		if !ok || len(v) == 0 {
			return "", false
		}
		return FitKey(v), true
	case KeyRegex:
		m := s.keyRe.FindSubmatchIndex(data)
		g := s.key.Group
		if m == nil || m[2*g] < 0 || m[2*g+1] == m[2*g] {
			return "", false
		}
		return FitKey(data[m[2*g]:m[2*g+1]]), true
	}
	return "", false
}

// ExplicitHashKey returns the explicit hash key field's value for the
// record last processed ("" when not configured, absent or not a decimal
// number of at most 39 digits).
func (s *Stage) ExplicitHashKey(data []byte) string {
	if s.ehkField == "" {
		return ""
	}
	v, ok := s.field(data, s.ehkField)
	if !ok || len(v) > 39 || !isDigits(v) {
		// Absent or not a decimal number: the record has none (the
		// partition key places it).
		return ""
	}
	return string(v)
}

// field reads a field of the record last processed, parsing data when the
// stage did not make it an object.
func (s *Stage) field(data []byte, name string) ([]byte, bool) {
	r := &s.rec
	if !s.lastObj {
		r = &s.tmp
		if !r.parseObject(data) {
			return nil, false
		}
	}
	var ok bool
	s.kb, ok = r.Value(s.kb, name)
	return s.kb, ok
}

// KeyFallback is the policy for records the key policy has no key for.
func (s *Stage) KeyFallback() string {
	if s.key.Fallback == "" {
		return KeyRandom
	}
	return s.key.Fallback
}

// onText runs parse on a text record, or on the "message" string of an
// object (whose fields are kept, message replaced by what was parsed).
func (s *Stage) onText(r *Record, parse func(r *Record, text []byte) bool) result {
	if !r.obj {
		if parse(r, r.text) {
			return passed
		}
		r.obj = false
		return failed
	}
	var ok bool
	s.buf, ok = r.Value(s.buf, "message")
	if !ok {
		return failed
	}
	t := &s.tmp
	t.Reset(s.buf)
	if !parse(t, t.text) {
		return failed
	}
	r.Remove("message")
	for _, f := range t.fields {
		r.setRaw(t.arena[f.ks:f.ke], t.arena[f.vs:f.ve])
	}
	return passed
}

func (s *Stage) build(p Processor, set Settings, log *slog.Logger) (func(*Stage, *Record) result, error) {
	switch {
	case p.SingleLine != nil:
		sep := []byte(" ")
		if p.SingleLine.Separator != nil {
			sep = []byte(*p.SingleLine.Separator)
		}
		return func(s *Stage, r *Record) result {
			if r.obj || (bytes.IndexByte(r.text, '\n') < 0 && bytes.IndexByte(r.text, '\r') < 0) {
				return passed
			}
			r.text = singleLine(r.text, sep)
			return passed
		}, nil
	case p.CSVToJSON != nil:
		c := &csvParser{names: p.CSVToJSON.Fields, delim: ',', quote: '"'}
		if p.CSVToJSON.Delimiter != "" {
			c.delim = p.CSVToJSON.Delimiter[0]
		}
		if p.CSVToJSON.Quote != "" {
			c.quote = p.CSVToJSON.Quote[0]
		}
		return func(s *Stage, r *Record) result { return s.onText(r, c.parse) }, nil
	case p.LogToJSON != nil:
		parse := logParserFor(p.LogToJSON.Format)
		return func(s *Stage, r *Record) result { return s.onText(r, parse) }, nil
	case p.Regex != nil:
		re := regexp.MustCompile(p.Regex.Pattern) // validated
		names := re.SubexpNames()
		parse := func(r *Record, text []byte) bool {
			m := re.FindSubmatchIndex(text)
			if m == nil {
				return false
			}
			r.startObject()
			for i, n := range names {
				if n == "" || m[2*i] < 0 {
					continue
				}
				r.SetString(n, text[m[2*i]:m[2*i+1]])
			}
			return true
		}
		return func(s *Stage, r *Record) result { return s.onText(r, parse) }, nil
	case p.JSON != nil:
		target := p.JSON.Target
		var compact bytes.Buffer
		parse := func(r *Record, text []byte) bool {
			if target == "" {
				return r.parseObject(text)
			}
			t := bytes.TrimSpace(text)
			if !json.Valid(t) {
				return false
			}
			if bytes.ContainsAny(t, "\r\n") {
				compact.Reset()
				_ = json.Compact(&compact, t) // valid
				t = compact.Bytes()
			}
			r.startObject()
			r.SetString("message", text)
			r.SetJSON(target, t)
			return true
		}
		return func(s *Stage, r *Record) result { return s.onText(r, parse) }, nil
	case p.AddFields != nil:
		a := p.AddFields
		static := slices.Sorted(maps.Keys(a.Fields))
		var fetch *ec2Fetcher
		if a.EC2 != nil {
			var err error
			if fetch, err = newEC2Fetcher(*a.EC2, set.HTTPClient, log); err != nil {
				return nil, fmt.Errorf("add_fields.ec2: %w", err)
			}
			s.ec2 = append(s.ec2, fetch)
		}
		host := []byte(s.host)
		return func(s *Stage, r *Record) result {
			r.toObject()
			for _, k := range static {
				r.SetString(k, []byte(a.Fields[k]))
			}
			if a.Hostname != "" {
				r.SetString(a.Hostname, host)
			}
			if fetch != nil {
				for _, kv := range fetch.fields() {
					r.SetString(kv[0], []byte(kv[1]))
				}
			}
			return passed
		}, nil
	case p.Drop != nil || p.Keep != nil:
		m, drop := p.Drop, true
		if m == nil {
			m, drop = p.Keep, false
		}
		re := regexp.MustCompile(m.Regex)
		field := m.Field
		return func(s *Stage, r *Record) result {
			var match bool
			switch {
			case field != "":
				var ok bool
				s.buf, ok = r.Value(s.buf, field)
				match = ok && re.Match(s.buf)
			case r.obj:
				match = re.Match(r.Bytes())
			default:
				match = re.Match(r.text)
			}
			if match == drop {
				return dropped
			}
			return passed
		}, nil
	case p.Redact != nil:
		res, mask := redactRegexps(*p.Redact)
		return func(s *Stage, r *Record) result {
			if !r.obj {
				for _, re := range res {
					if re.Match(r.text) {
						r.text = re.ReplaceAllLiteral(r.text, mask)
					}
				}
				return passed
			}
			for i := range r.fields {
				f := r.fields[i]
				v := r.arena[f.vs:f.ve]
				if len(v) < 2 || v[0] != '"' {
					continue
				}
				nv := v
				for _, re := range res {
					if re.Match(nv) {
						nv = re.ReplaceAllLiteral(nv, mask)
					}
				}
				if len(nv) != len(v) || !bytes.Equal(nv, v) {
					vs := len(r.arena)
					r.arena = append(r.arena, nv...)
					r.fields[i].vs, r.fields[i].ve = int32(vs), int32(len(r.arena))
				}
			}
			return passed
		}, nil
	case p.Rename != nil:
		from := slices.Sorted(maps.Keys(p.Rename))
		return func(s *Stage, r *Record) result {
			if r.obj {
				for _, k := range from {
					r.Rename(k, p.Rename[k])
				}
			}
			return passed
		}, nil
	case p.Remove != nil:
		return func(s *Stage, r *Record) result {
			if r.obj {
				for _, k := range p.Remove {
					r.Remove(k)
				}
			}
			return passed
		}, nil
	}
	return nil, fmt.Errorf("no processor")
}

// singleLine replaces each line break of text, with the white space that
// follows it, by sep; line breaks at the end are removed.
func singleLine(text, sep []byte) []byte {
	end := len(text)
	for end > 0 && (text[end-1] == '\n' || text[end-1] == '\r') {
		end--
	}
	out := make([]byte, 0, end)
	for i := 0; i < end; i++ {
		c := text[i]
		if c != '\n' && c != '\r' {
			out = append(out, c)
			continue
		}
		for i+1 < end && (text[i+1] == '\n' || text[i+1] == '\r' || text[i+1] == ' ' || text[i+1] == '\t') {
			i++
		}
		// trailing white space of the line before goes too
		for len(out) > 0 && (out[len(out)-1] == ' ' || out[len(out)-1] == '\t') {
			out = out[:len(out)-1]
		}
		out = append(out, sep...)
	}
	return out
}

// Redaction patterns by name.
var redactPatterns = map[string]string{
	"email":       `[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`,
	"credit_card": `\b(?:\d[ -]?){12,18}\d\b`,
	"ipv4":        `\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b`,
	"aws_key":     `\b(?:AKIA|ASIA)[0-9A-Z]{16}\b`,
}

func redactRegexps(c RedactConfig) ([]*regexp.Regexp, []byte) {
	pats := c.Patterns
	if len(pats) == 0 {
		pats = []string{"email", "credit_card"}
	}
	var res []*regexp.Regexp
	for _, p := range pats {
		if named, ok := redactPatterns[p]; ok {
			p = named
		}
		res = append(res, regexp.MustCompile(p)) // validated
	}
	mask := c.Mask
	if mask == "" {
		mask = "[REDACTED]"
	}
	return res, []byte(mask)
}
