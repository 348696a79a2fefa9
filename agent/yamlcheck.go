package agent

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Strict YAML checking. yaml.v3's KnownFields does not reach into values
// decoded by custom UnmarshalYAML methods (which we need for per-element
// defaults), so we check the node tree against the Go types ourselves. The
// walk also records the line of every path, so validation errors found later
// can be reported as file:line.

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// lineIndex maps a config path ("sources[0].file.include") to its line.
type lineIndex map[string]int

// checkNode walks n against type t. Unknown keys are returned as problems.
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
	lines[path] = n.Line
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) && !hasStrictFields(t) {
		return // a leaf with its own syntax (ByteSize, enums)
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // the decoder reports the type mismatch
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				continue // merge keys: checked when decoded
			}
			p := joinPath(path, k.Value)
			lines[p] = k.Line
			ft, ok := fields[k.Value]
			if !ok {
				*problems = append(*problems, fieldError{Path: p, Line: k.Line, Msg: unknownFieldMsg(k.Value, fields)})
				continue
			}
			checkNode(v, ft, p, lines, problems)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			checkNode(c, t.Elem(), path+"["+strconv.Itoa(i)+"]", lines, problems)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := joinPath(path, n.Content[i].Value)
			lines[p] = n.Content[i].Line
			checkNode(n.Content[i+1], t.Elem(), p, lines, problems)
		}
	}
}

// hasStrictFields reports struct types that implement UnmarshalYAML only to
// apply defaults and whose fields must still be checked.
func hasStrictFields(t reflect.Type) bool {
	_, ok := reflect.New(t).Interface().(interface{ strictYAML() })
	return ok
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

func unknownFieldMsg(key string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown field %q (did you mean %q?)", key, best)
	}
	return fmt.Sprintf("unknown field %q (known: %s)", key, strings.Join(names, ", "))
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
