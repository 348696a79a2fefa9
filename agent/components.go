package agent

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/outputs"
)

// Components lists the source and output types compiled into the program.
// The agent names no concrete type: cmd/agent writes the list once and
// passes it to LoadConfig, ParseConfig and New (Settings.Components).
type Components struct {
	Sources []source.Type
	Outputs []outputs.Type
}

// Source returns the source type named name.
func (c Components) Source(name string) (source.Type, bool) {
	for _, t := range c.Sources {
		if t.Name == name {
			return t, true
		}
	}
	return source.Type{}, false
}

// Output returns the output type named name.
func (c Components) Output(name string) (outputs.Type, bool) {
	for _, t := range c.Outputs {
		if t.Name == name {
			return t, true
		}
	}
	return outputs.Type{}, false
}

// OutputForScheme returns the output type that takes --to URLs of scheme.
func (c Components) OutputForScheme(scheme string) (outputs.Type, bool) {
	for _, t := range c.Outputs {
		if t.FromURL != nil && slices.Contains(t.Schemes, scheme) {
			return t, true
		}
	}
	return outputs.Type{}, false
}

// SourceForScheme returns the source type that takes `agent tail`
// arguments of kind scheme ("file" for paths).
func (c Components) SourceForScheme(scheme string) (source.Type, bool) {
	for _, t := range c.Sources {
		if t.FromArgs != nil && slices.Contains(t.Schemes, scheme) {
			return t, true
		}
	}
	return source.Type{}, false
}

// SourceNames and OutputNames list the types' names, in the list's order.
func (c Components) SourceNames() []string {
	out := make([]string, len(c.Sources))
	for i, t := range c.Sources {
		out[i] = t.Name
	}
	return out
}

// OutputNames lists the output types' names.
func (c Components) OutputNames() []string {
	out := make([]string, len(c.Outputs))
	for i, t := range c.Outputs {
		out[i] = t.Name
	}
	return out
}

// OutputSchemes lists the --to schemes of every output type.
func (c Components) OutputSchemes() []string {
	var out []string
	for _, t := range c.Outputs {
		if t.FromURL != nil {
			out = append(out, t.Schemes...)
		}
	}
	return out
}

// Check reports a list that cannot work: unnamed or duplicate types, a
// type without DefaultConfig or New, a scheme claimed twice.
func (c Components) Check() error {
	var errs []error
	names := map[string]bool{}
	schemes := map[string]string{}
	check := func(kind, name string, hasDefault, hasNew bool, sch []string) {
		switch {
		case name == "":
			errs = append(errs, fmt.Errorf("components: a %s type has no name", kind))
		case name == "name" || name == "type":
			errs = append(errs, fmt.Errorf("components: %s type %q: the name is a reserved key", kind, name))
		case names[kind+" "+name]:
			errs = append(errs, fmt.Errorf("components: %s type %q listed twice", kind, name))
		}
		names[kind+" "+name] = true
		if !hasDefault || !hasNew {
			errs = append(errs, fmt.Errorf("components: %s type %q needs DefaultConfig and New", kind, name))
		}
		for _, s := range sch {
			if other, ok := schemes[kind+" "+s]; ok {
				errs = append(errs, fmt.Errorf("components: %s types %q and %q both take scheme %q", kind, other, name, s))
			}
			schemes[kind+" "+s] = name
		}
	}
	for _, t := range c.Sources {
		check("source", t.Name, t.DefaultConfig != nil, t.New != nil, t.Schemes)
	}
	for _, t := range c.Outputs {
		check("output", t.Name, t.DefaultConfig != nil, t.New != nil, t.Schemes)
	}
	return errors.Join(errs...)
}

// orList formats names as `a, b or c`.
func orList(names []string) string {
	switch len(names) {
	case 0:
		return "none: no types were given to the agent"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
