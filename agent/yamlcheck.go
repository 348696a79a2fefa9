package agent

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kplagent/agent/internal/editdist"
)

// Strict YAML checking. yaml.v3's KnownFields does not reach into values
// decoded by custom UnmarshalYAML methods (which we need for per-element
// defaults), so we check the node tree against the Go types ourselves. The
// walk also records the line of every path, so validation errors found later
// can be reported as file:line.

var (
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	componentIface  = reflect.TypeOf((*interface{ componentYAML() })(nil)).Elem()
	durationType    = reflect.TypeOf(time.Duration(0))
)

// lineIndex maps a config path ("sources[0].file.include") to its line.
type lineIndex map[string]int

// set records the line of path unless it has one (a key's line wins over
// its value's, which may be on the next line).
func (l lineIndex) set(path string, line int) {
	if _, ok := l[path]; !ok {
		l[path] = line
	}
}

// pathAt returns the deepest path that holds every path on line (a line
// may hold several: `tls: {ca_file: a, cert_file: b}`), or "".
func (l lineIndex) pathAt(line int) string {
	var on []string
	for p, n := range l {
		if n == line && p != "" {
			on = append(on, p)
		}
	}
	if len(on) == 0 {
		return ""
	}
	common := on[0]
	for _, p := range on[1:] {
		for common != "" && p != common && !isUnder(p, common) {
			common = parentPath(common)
		}
	}
	return common
}

// checkNode walks n against type t. Unknown keys, and values that do not
// decode into their field's type, are appended to problems with their
// path and line.
func checkNode(n *yaml.Node, t reflect.Type, path string, lines lineIndex, problems *[]fieldError) {
	if n == nil {
		return
	}
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			checkNode(c, t, path, lines, problems)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	lines.set(path, n.Line)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(componentIface) {
		return // a source or output: decoded once its type is known
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) && !hasStrictFields(t) {
		checkLeaf(n, t, path, problems) // a leaf with its own syntax (ByteSize)
		return
	}
	bad := func(msg string) {
		if !isNull(n) {
			*problems = append(*problems, fieldError{Path: path, Line: n.Line, Msg: msg})
		}
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == durationType {
			checkLeaf(n, t, path, problems)
			return
		}
		if n.Kind != yaml.MappingNode {
			bad("want a mapping, not " + nodeKind(n))
			return
		}
		fields := yamlFields(t)
		for _, kv := range mappingPairs(n) {
			k, v := kv[0], kv[1]
			p := joinPath(path, k.Value)
			lines.set(p, k.Line)
			ft, ok := fields[k.Value]
			if !ok {
				*problems = append(*problems, fieldError{Path: p, Line: k.Line, Msg: unknownFieldMsg(k.Value, slices.Sorted(maps.Keys(fields)))})
				continue
			}
			checkNode(v, ft, p, lines, problems)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			bad("want a list, not " + nodeKind(n))
			return
		}
		for i, c := range n.Content {
			checkNode(c, t.Elem(), path+"["+strconv.Itoa(i)+"]", lines, problems)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			bad("want a mapping, not " + nodeKind(n))
			return
		}
		for _, kv := range mappingPairs(n) {
			p := joinPath(path, kv[0].Value)
			lines.set(p, kv[0].Line)
			checkNode(kv[1], t.Elem(), p, lines, problems)
		}
	case reflect.Interface:
	default:
		checkLeaf(n, t, path, problems)
	}
}

// checkLeaf decodes a scalar into a value of type t and reports why it
// does not fit, in the terms of the config file.
func checkLeaf(n *yaml.Node, t reflect.Type, path string, problems *[]fieldError) {
	if isNull(n) {
		return
	}
	err := n.Decode(reflect.New(t).Interface())
	if err == nil {
		return
	}
	msg := ""
	switch {
	case reflect.PointerTo(t).Implements(unmarshalerType) && n.Kind == yaml.MappingNode:
		// A value with its own syntax that takes a mapping too
		// (partition_key): its own message says what is wrong.
		msg = err.Error()
		if fes := yamlErrors(err); len(fes) > 0 {
			msg = fes[0].Msg
		}
	case n.Kind != yaml.ScalarNode:
		msg = "want a single value, not " + nodeKind(n)
	case reflect.PointerTo(t).Implements(unmarshalerType):
		if fes := yamlErrors(err); len(fes) > 0 {
			msg = fes[0].Msg
		} else {
			msg = err.Error()
		}
	case t == durationType:
		msg = fmt.Sprintf("invalid duration %q (want e.g. 500ms, 10s, 5m, 1h)", n.Value)
	case t.Kind() == reflect.Bool:
		msg = fmt.Sprintf("invalid boolean %q (want true or false)", n.Value)
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		msg = fmt.Sprintf("invalid integer %q", n.Value)
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uintptr:
		msg = fmt.Sprintf("invalid non-negative integer %q", n.Value)
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		msg = fmt.Sprintf("invalid number %q", n.Value)
	default:
		if fes := yamlErrors(err); len(fes) > 0 {
			msg = fes[0].Msg
		} else {
			msg = err.Error()
		}
	}
	*problems = append(*problems, fieldError{Path: path, Line: n.Line, Msg: msg})
}

// mappingPairs returns the key/value pairs of a mapping, with the pairs of
// merge keys ("<<: *base") after its own (own keys win when decoded).
func mappingPairs(n *yaml.Node) [][2]*yaml.Node {
	var out [][2]*yaml.Node
	var merged [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value != "<<" || k.ShortTag() != "!!merge" {
			out = append(out, [2]*yaml.Node{k, v})
			continue
		}
		for _, m := range mergeSources(v) {
			merged = append(merged, mappingPairs(m)...)
		}
	}
	seen := map[string]bool{}
	for _, kv := range out {
		seen[kv[0].Value] = true
	}
	for _, kv := range merged {
		if !seen[kv[0].Value] {
			seen[kv[0].Value] = true
			out = append(out, kv)
		}
	}
	return out
}

func mergeSources(v *yaml.Node) []*yaml.Node {
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	switch v.Kind {
	case yaml.MappingNode:
		return []*yaml.Node{v}
	case yaml.SequenceNode:
		var out []*yaml.Node
		for _, c := range v.Content {
			out = append(out, mergeSources(c)...)
		}
		return out
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return fmt.Sprintf("%q", n.Value)
}

// hasStrictFields reports struct types that implement UnmarshalYAML only to
// apply defaults and whose fields must still be checked.
func hasStrictFields(t reflect.Type) bool {
	v := reflect.New(t).Interface()
	_, ok := v.(interface{ strictYAML() })
	_, exported := v.(interface{ StrictYAML() }) // the same, for types of other packages
	return ok || exported
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// unknownFieldMsg names the known key closest to key, or all of them.
func unknownFieldMsg(key string, names []string) string {
	best, bestD := "", 3
	for _, k := range names {
		if d := editdist.Levenshtein(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown field %q (did you mean %q?)", key, best)
	}
	return fmt.Sprintf("unknown field %q (known: %s)", key, strings.Join(names, ", "))
}
