package file

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// RotatedDirProblem is a rotated_dirs entry that names no directory on
// this host, found by RotatedDirProblems. A path that exists and is not a
// directory (or lies under a file) is an error: the rotations are never
// found there. A path that does not exist is a warning: logrotate makes
// its olddir only with createolddir, and an operator may make it after the
// agent's configuration; rotations are found there once it exists.
type RotatedDirProblem struct {
	Index   int    // in Config.RotatedDirs
	Dir     string // as configured
	Path    string // what was looked at: Dir, or Dir under the directory of an include pattern
	Missing bool   // Path does not exist: a warning; else an error
	Err     error  // why Path is not a directory (Missing: the stat error)
}

// Describe is the problem without its key: what Path is, and what follows.
func (p RotatedDirProblem) Describe() string {
	where := p.Path
	if p.Path != filepath.Clean(p.Dir) {
		where = fmt.Sprintf("%q (%s)", p.Dir, p.Path)
	}
	if p.Missing {
		return fmt.Sprintf("no directory %s (yet): rotations are looked for there once it exists (logrotate makes its olddir only with createolddir)", where)
	}
	return fmt.Sprintf("%s %v: rotations are looked for in a directory (logrotate's olddir); name one", where, p.Err)
}

// errNotDir is the reason of a path that exists and is not a directory.
var errNotDir = errors.New("is not a directory")

// RotatedDirProblems checks the RotatedDirs on this host, after
// ResolvePaths: an absolute one as it is, a relative one under the
// directory of every include pattern whose directory has no wildcard and
// exists (under a wildcard, or a directory not made yet, there is nothing
// to check now). A path this process may not look at is not reported:
// validate may run as another user than the service. `agent validate`,
// `agent run`, a reload (Config.CheckFiles, Config.WarnFiles) and `agent
// tail --rotated-dir` apply this one rule.
func (c *Config) RotatedDirProblems() []RotatedDirProblem {
	var out []RotatedDirProblem
	for i, d := range c.RotatedDirs {
		if d == "" || hasMeta(d) {
			continue // Validate reports them
		}
		var paths []string
		if filepath.IsAbs(d) {
			paths = []string{filepath.Clean(d)}
		} else {
			for _, inc := range c.Include {
				base := filepath.Dir(inc)
				if !filepath.IsAbs(base) || hasMeta(base) {
					continue
				}
				if fi, err := os.Stat(base); err != nil || !fi.IsDir() {
					continue // no file there yet: nothing to look for
				}
				if p := filepath.Join(base, d); !slices.Contains(paths, p) {
					paths = append(paths, p)
				}
			}
		}
		for _, p := range paths {
			fi, err := os.Stat(p)
			switch {
			case err == nil && fi.IsDir():
			case err == nil:
				out = append(out, RotatedDirProblem{Index: i, Dir: d, Path: p, Err: errNotDir})
			case errors.Is(err, syscall.ENOTDIR):
				out = append(out, RotatedDirProblem{Index: i, Dir: d, Path: p, Err: errors.New("is under a file, not a directory")})
			case errors.Is(err, os.ErrNotExist):
				out = append(out, RotatedDirProblem{Index: i, Dir: d, Path: p, Missing: true, Err: err})
			}
		}
	}
	return out
}

// CheckFiles reports the rotated_dirs that exist and are not directories
// (outputs.FileChecker): `agent validate`, `agent run` and a reload refuse
// them.
func (c *Config) CheckFiles() error {
	var errs []error
	for _, p := range c.RotatedDirProblems() {
		if !p.Missing {
			errs = append(errs, fmt.Errorf("rotated_dirs[%d]: %s", p.Index, p.Describe()))
		}
	}
	return errors.Join(errs...)
}

// WarnFiles reports the rotated_dirs that do not exist (yet)
// (outputs.FileWarner): the configuration loads, with a warning.
func (c *Config) WarnFiles() []error {
	var out []error
	for _, p := range c.RotatedDirProblems() {
		if p.Missing {
			out = append(out, fmt.Errorf("rotated_dirs[%d]: %s", p.Index, p.Describe()))
		}
	}
	return out
}
