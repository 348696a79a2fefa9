package file

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/kplagent/agent/outputs"
)

// Type is the file output's component type: `type: file` with a `file:`
// block, and `agent tail --to file:///DIR`.
func Type() outputs.Type {
	return outputs.Type{
		Name:          "file",
		DefaultConfig: func() any { c := DefaultConfig(); return &c },
		New: func(name string, cfg any, set outputs.Settings) (outputs.Output, error) {
			c, ok := cfg.(*Config)
			if !ok {
				return nil, fmt.Errorf("file: config is %T, want *file.Config", cfg)
			}
			return New(name, *c, Settings{Logger: set.Logger})
		},
		FromURL:       fromURL,
		Schemes:       []string{"file"},
		TailFlagNames: []string{"encoding"},
	}
}

// fromURL makes the config of `agent tail --to file:///DIR`.
func fromURL(u *url.URL, f outputs.TailFlags) (any, error) {
	if u.Host != "" && u.Host != "localhost" {
		return nil, errors.New("file URLs name a local directory: file:///path/to/dir")
	}
	if u.Path == "" {
		return nil, errors.New("missing directory")
	}
	c := DefaultConfig()
	c.Dir = u.Path
	// Like stdout, agent tail writes the lines as they are unless
	// --encoding json asks for objects.
	c.Encoding = EncodingText
	if f.Encoding != "" {
		c.Encoding = f.Encoding
	}
	return &c, nil
}

// ResolvePaths makes dir and path relative to base.
func (c *Config) ResolvePaths(base string) {
	for _, p := range []*string{&c.Dir, &c.Path} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
}

// CheckFiles reports what would make New fail whatever the permissions: a
// dir that is not a directory, a path that is one, or a file where a
// directory to create would go.
func (c *Config) CheckFiles() error {
	var errs []error
	if c.Dir != "" {
		if err := dirPossible(c.Dir); err != nil {
			errs = append(errs, fmt.Errorf("dir: %w", err))
		}
	}
	if c.Path != "" {
		if fi, err := os.Stat(c.Path); err == nil && fi.IsDir() {
			errs = append(errs, fmt.Errorf("path: %s is a directory", c.Path))
		} else if err := dirPossible(filepath.Dir(c.Path)); err != nil {
			errs = append(errs, fmt.Errorf("path: %w", err))
		}
	}
	return errors.Join(errs...)
}

// dirPossible reports whether dir is a directory or could be made one: its
// nearest existing ancestor must be a directory.
func dirPossible(dir string) error {
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", p)
			}
			return nil
		}
		if filepath.Dir(p) == p {
			return nil
		}
	}
}
