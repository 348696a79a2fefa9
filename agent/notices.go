package agent

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/kplagent/agent/agent/process"
	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/internal/units"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/spool"
)

// Notice is something loading a configuration found worth telling that is
// not a problem: a setting that has no effect (LevelWarn), or a default
// derived from another setting (LevelInfo). `agent validate` prints them
// after the file's name; `agent run` and reloads log them. A configuration
// with notices still loads.
type Notice struct {
	Level slog.Level
	File  string
	Line  int    // 0 when unknown
	Path  string // the YAML path, as in ConfigError ("flows[0].partition_key")
	Msg   string
}

// Place is "FILE:LINE" (or FILE when the line is unknown).
func (n Notice) Place() string {
	if n.Line > 0 {
		return n.File + ":" + strconv.Itoa(n.Line)
	}
	return n.File
}

// String is "FILE:LINE: PATH: warning: MSG" (note: for LevelInfo), the
// shape of a ConfigError's lines.
func (n Notice) String() string {
	kind := "note"
	if n.Level >= slog.LevelWarn {
		kind = "warning"
	}
	var b strings.Builder
	b.WriteString(n.Place())
	b.WriteString(": ")
	if n.Path != "" {
		b.WriteString(n.Path)
		b.WriteString(": ")
	}
	b.WriteString(kind)
	b.WriteString(": ")
	b.WriteString(n.Msg)
	return b.String()
}

// Notices are what loading the configuration had to tell (see Notice), in
// the order of the file's lines.
func (c Config) Notices() []Notice { return c.notices }

// notice records a notice at path (its line from the index).
func (p *parsed) notice(level slog.Level, path, format string, args ...any) {
	line := 0
	for q := path; q != ""; q = parentPath(q) {
		if l, ok := p.lines[q]; ok {
			line = l
			break
		}
	}
	p.cfg.notices = append(p.cfg.notices, Notice{Level: level, File: p.cerr.File, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// isSet reports whether the file writes the key at path.
func (p *parsed) isSet(path string) bool {
	_, ok := p.lines[path]
	return ok
}

// Spool sizes derived from a small spool.max_bytes when the file leaves
// them unset, as `agent tail --spool-max-bytes` does.
const (
	// derivedSegmentFloor is the smallest segment_bytes derived: smaller
	// files would only multiply opens and fsyncs.
	derivedSegmentFloor = 64 << 10
	// spoolEntryMargin is what the largest entry leaves under max_bytes for
	// the spool's own framing around it (a segment header, the entry's
	// frame header and a seal frame: under 100 bytes).
	spoolEntryMargin = 4 << 10
)

// SpoolSegmentFor is the segment_bytes for a spool.max_bytes too small for
// the default (less than two default segments), as derived when the file
// leaves segment_bytes unset, and by `agent tail --spool-max-bytes`: a
// quarter of max_bytes (space comes back a quarter at a time), at least
// derivedSegmentFloor; under twice that floor (128KiB: tiny spools, for
// tests and small devices) a quarter rounded down to whole KiB, at least
// the spool's smallest segment. ok is false under two of those (8KiB).
func SpoolSegmentFor(maxBytes units.ByteSize) (seg units.ByteSize, ok bool) {
	seg = max(maxBytes/4, derivedSegmentFloor)
	if 2*seg > maxBytes {
		seg = max(maxBytes/4/1024*1024, spool.MinSegmentBytes)
	}
	return seg, 2*seg <= maxBytes
}

// deriveSpoolSizes fits segment_bytes and max_entry_bytes to a spool.max_bytes
// too small for their defaults, when the file does not set them: a 4MiB
// cap would otherwise be refused (twice the 64MiB default segment does not
// fit) or warned about (the 16MiB default entry does not fit) for settings
// the operator never made. Explicit values are kept, and validated (or
// warned about by the spool) as they are. Runs before Validate.
func (p *parsed) deriveSpoolSizes() {
	sp := &p.cfg.Spool
	def := DefaultConfig().Spool
	if !p.isSet("spool.max_bytes") || p.covered("spool.max_bytes", 0) {
		return
	}
	var derived []string
	if !p.isSet("spool.segment_bytes") && sp.SegmentBytes == def.SegmentBytes && sp.MaxBytes < 2*sp.SegmentBytes {
		if seg, ok := SpoolSegmentFor(sp.MaxBytes); ok {
			sp.SegmentBytes = seg
			derived = append(derived, "segment_bytes "+seg.String())
		} else {
			// Said here, where it can say what to set: the spool's own
			// check would name a segment_bytes the file does not set
			// (and is then an echo of this one).
			p.add(fieldError{Path: "spool.max_bytes", Line: p.lines["spool.max_bytes"],
				Msg: fmt.Sprintf("must be at least %s (two segments of the smallest segment_bytes, %s), got %s",
					units.ByteSize(2*spool.MinSegmentBytes), units.ByteSize(spool.MinSegmentBytes), sp.MaxBytes)})
		}
	}
	if !p.isSet("spool.max_entry_bytes") && sp.MaxEntryBytes == def.MaxEntryBytes {
		fit := sp.MaxBytes - spoolEntryMargin
		// Only when the flows' aggregates and the sources' records still
		// fit: otherwise the default stays and the spool says, when it
		// opens, what it takes (as before); validate says now what does
		// not fit and what to set.
		if fit < sp.MaxEntryBytes && int64(fit) >= p.largestEntryNeeded() {
			sp.MaxEntryBytes = fit
			derived = append(derived, "max_entry_bytes "+fit.String())
		} else if fit < sp.MaxEntryBytes {
			p.warnEntriesTooLarge(spool.MaxEntryFor(sp.MaxBytes))
		}
	}
	if len(derived) > 0 {
		p.notice(slog.LevelInfo, "spool.max_bytes", "%s is too small for the spool's default segment and entry sizes: using %s (set them under spool: to choose)",
			sp.MaxBytes, strings.Join(derived, " and "))
	}
}

// warnEntriesTooLarge warns, at spool.max_bytes, that the aggregates or
// records this configuration may make do not fit in a spool entry of at
// most fit bytes (what the spool takes under max_bytes): the spool refuses
// them and they are dead-lettered (spool_entry_too_large). It names the
// settings to lower and the largest value that fits.
func (p *parsed) warnEntriesTooLarge(fit int64) {
	var what []string
	for i, f := range p.cfg.Flows {
		if int64(f.Aggregation.MaxBytes+entryOverhead) > fit {
			most := "none fits"
			if fit > entryOverhead {
				most = "at most " + kibFloor(fit-entryOverhead) + " fits"
			}
			what = append(what, fmt.Sprintf("flows[%d].aggregation.max_bytes %s (%s)", i, f.Aggregation.MaxBytes, most))
		}
	}
	for i, s := range p.cfg.Sources {
		if rs, ok := s.Config.(source.RecordSizer); ok {
			largest, key := rs.LargestRecord()
			if largest+recordHeadroom > fit {
				most := "none fits"
				if fit > recordHeadroom {
					most = "at most " + kibFloor(fit-recordHeadroom) + " fits"
				}
				what = append(what, fmt.Sprintf("sources[%d].%s.%s %s (%s)", i, s.Type, key, units.ByteSize(largest), most))
			}
		}
	}
	if len(what) == 0 {
		return
	}
	p.notice(slog.LevelWarn, "spool.max_bytes", "%s holds no spool entry over %d bytes, and larger ones are dead-lettered (spool_entry_too_large): lower %s, or raise max_bytes",
		p.cfg.Spool.MaxBytes, fit, strings.Join(what, " and "))
}

// kibFloor is n rounded down to whole KiB (a value to write in the file),
// or n bytes when under 1KiB.
func kibFloor(n int64) string {
	if n < 1<<10 {
		return units.ByteSize(n).String()
	}
	return units.ByteSize(n / 1024 * 1024).String()
}

// largestEntryNeeded is the largest spool entry the configuration may
// make: an aggregate of aggregation.max_bytes, or a source's largest
// record, with their framing (the sizes Validate checks against
// max_entry_bytes).
func (p *parsed) largestEntryNeeded() int64 {
	var need int64
	for _, f := range p.cfg.Flows {
		need = max(need, int64(f.Aggregation.MaxBytes+entryOverhead))
	}
	for _, s := range p.cfg.Sources {
		if rs, ok := s.Config.(source.RecordSizer); ok {
			largest, _ := rs.LargestRecord()
			need = max(need, largest+recordHeadroom)
		}
	}
	return need
}

// warnUnusedPartitionKeys warns about flows whose partition_key is set in
// the file but whose output sends no partition key (outputs.KeyUser): HTTP
// in ndjson or json, Firehose, stdout, file, blackhole, Kafka with key:
// none. The key would be computed and dropped; `agent tail` refuses
// --partition-key there, but an existing file must still load, so this is
// a warning. Runs after Validate, for flows without problems.
func (p *parsed) warnUnusedPartitionKeys() {
	for i, f := range p.cfg.Flows {
		path := fmt.Sprintf("flows[%d].partition_key", i)
		// random is the default: written out, it asks for nothing more.
		if !p.isSet(path) || f.PartitionKey.Kind == process.KeyRandom || p.covered(fmt.Sprintf("flows[%d]", i), 0) {
			continue
		}
		for _, o := range p.keylessOutputs(f, func(cfg any) (bool, bool, string) {
			ku, ok := cfg.(outputs.KeyUser)
			if !ok {
				return false, false, ""
			}
			used, why := ku.UsesPartitionKey()
			return true, used, why
		}) {
			p.notice(slog.LevelWarn, path, "flow %q sets partition_key %s, but its %s %q (%s) sends no partition key: the key is ignored there (remove it, or use an output or format that sends it)",
				f.Name, keyText(f.PartitionKey), o.role, o.name, o.what)
		}
	}
}

// warnUnusedExplicitHashKeys warns about flows whose explicit_hash_key
// names a field but whose output (or failover output) sends no explicit
// hash key (outputs.HashKeyUser): HTTP in ndjson, json or the Kafka REST
// formats, Kafka in format records, stdout and file in ndjson, Firehose,
// blackhole. Each record's field would be read and the key dropped. A
// warning, as for partition_key: the file still loads. Runs after
// Validate, for flows without problems.
func (p *parsed) warnUnusedExplicitHashKeys() {
	for i, f := range p.cfg.Flows {
		path := fmt.Sprintf("flows[%d].explicit_hash_key", i)
		if f.ExplicitHashKey.Field == "" || p.covered(fmt.Sprintf("flows[%d]", i), 0) {
			continue
		}
		for _, o := range p.keylessOutputs(f, func(cfg any) (bool, bool, string) {
			hu, ok := cfg.(outputs.HashKeyUser)
			if !ok {
				return false, false, ""
			}
			used, why := hu.UsesExplicitHashKey()
			return true, used, why
		}) {
			p.notice(slog.LevelWarn, path, "flow %q sets explicit_hash_key {field: %s}, but its %s %q (%s) sends no explicit hash key: the field is ignored there (remove it, or use kinesis or an output format that sends it)",
				f.Name, f.ExplicitHashKey.Field, o.role, o.name, o.what)
		}
	}
}

// keylessOutput is an output of a flow that drops a key the flow sets.
type keylessOutput struct {
	role, name string // "output" or "failover output", and its name
	what       string // its type, and the setting that drops the key
}

// keylessOutputs returns the output and failover output of f that do not
// send a key: uses says whether an output's config can send one (known;
// outputs whose configs cannot never do) and, if so, whether this one does
// and which setting leaves it out.
func (p *parsed) keylessOutputs(f FlowConfig, uses func(cfg any) (known, used bool, why string)) []keylessOutput {
	var out []keylessOutput
	for _, r := range [][2]string{{"output", f.Output}, {"failover output", f.Failover}} {
		role, name := r[0], r[1]
		if name == "" {
			continue
		}
		i := slices.IndexFunc(p.cfg.Outputs, func(o OutputConfig) bool { return o.Name == name })
		if i < 0 || p.cfg.Outputs[i].Config == nil {
			continue
		}
		o := p.cfg.Outputs[i]
		what := o.Type
		if known, used, why := uses(o.Config); known {
			if used {
				continue
			}
			what += ", " + why
		}
		out = append(out, keylessOutput{role: role, name: name, what: what})
	}
	return out
}

// keyText shows a partition key setting as written.
func keyText(k process.KeyConfig) string {
	switch k.Kind {
	case process.KeyField:
		return "{field: " + k.Field + "}"
	case process.KeyRegex:
		return "{regex: " + strconv.Quote(k.Regex) + "}"
	case process.KeyFixed:
		return "{fixed: " + strconv.Quote(k.Fixed) + "}"
	}
	return k.Kind
}
