package file

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// glob is a compiled include or exclude pattern: an absolute, clean path
// split into elements, where "**" matches zero or more directories and other
// elements are filepath.Match patterns.
type glob struct {
	raw   string
	elems []string // without the leading "" of the root
	nlit  int      // leading elements without metacharacters
}

func splitPath(p string) []string {
	p = strings.TrimPrefix(p, string(filepath.Separator))
	if p == "" {
		return nil
	}
	return strings.Split(p, string(filepath.Separator))
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

func compileGlob(abs string) *glob {
	g := &glob{raw: abs, elems: splitPath(filepath.Clean(abs))}
	for g.nlit < len(g.elems) && !hasMeta(g.elems[g.nlit]) {
		g.nlit++
	}
	return g
}

// start returns the directory where walking begins (the pattern's literal
// prefix) and the elements left to match below it.
func (g *glob) start() (string, []string) {
	n := min(g.nlit, len(g.elems)-1) // at least the last element is matched by listing
	return string(filepath.Separator) + filepath.Join(g.elems[:n]...), g.elems[n:]
}

// match reports whether the path (absolute, clean) matches.
func (g *glob) match(path string) bool {
	return matchElems(g.elems, splitPath(path), false)
}

// skipsCompressed reports whether g, which matches path, leaves it out as
// a compressed file its wildcard matched ('app.log*' and app.log.1.gz): its
// bytes are not lines, and its content is a rotation's, read as one when
// it holds lines the source has not read (rotated.go). A name written out,
// or a last element that asks for the suffix ('*.gz'), keeps it.
func (g *glob) skipsCompressed(path string) bool {
	if len(g.elems) == 0 {
		return false
	}
	last := g.elems[len(g.elems)-1]
	if !hasMeta(last) {
		return false
	}
	name, lastL := strings.ToLower(filepath.Base(path)), strings.ToLower(last)
	for _, ext := range compressedExts {
		if strings.HasSuffix(name, ext) {
			return !strings.HasSuffix(lastL, ext)
		}
	}
	return false
}

// matchPrefix reports whether dir could hold (at any depth) a path that
// matches.
func (g *glob) matchPrefix(dir string) bool {
	return matchElems(g.elems, splitPath(dir), true)
}

// matchElems matches name against pat. With prefix, it also succeeds when
// name runs out while pat still has elements to match deeper paths.
func matchElems(pat, name []string, prefix bool) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for k := 0; k <= len(name); k++ {
				if matchElems(pat[1:], name[k:], prefix) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return prefix
		}
		if ok, _ := filepath.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// matcher holds a source's patterns.
type matcher struct {
	include []*glob
	exclude []*glob
	names   []string // exclude patterns without a separator: matched against base names
}

func newMatcher(include, exclude []string) (*matcher, error) {
	m := &matcher{}
	for _, p := range include {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, err
		}
		m.include = append(m.include, compileGlob(abs))
	}
	for _, p := range exclude {
		if !strings.ContainsRune(p, filepath.Separator) {
			m.names = append(m.names, p)
			continue
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, err
		}
		m.exclude = append(m.exclude, compileGlob(abs))
	}
	return m, nil
}

func (m *matcher) excluded(path string) bool {
	base := filepath.Base(path)
	for _, p := range m.names {
		if ok, _ := filepath.Match(p, base); ok {
			return true
		}
	}
	for _, g := range m.exclude {
		if g.match(path) {
			return true
		}
	}
	return false
}

// wanted reports whether path is a file the source follows.
func (m *matcher) wanted(path string) bool {
	for _, g := range m.include {
		if g.match(path) && !g.skipsCompressed(path) {
			return !m.excluded(path)
		}
	}
	return false
}

// mayContain reports whether files below dir could be wanted.
func (m *matcher) mayContain(dir string) bool {
	for _, g := range m.include {
		if g.matchPrefix(dir) {
			return true
		}
	}
	return false
}

// walk expands the include patterns: file is called for every existing path
// that matches and is not excluded (possibly more than once for overlapping
// patterns), dir for every directory whose changes could add or remove a
// match (for a pattern whose base does not exist yet, its nearest existing
// ancestor). "**" does not follow symlinked directories, so a link cycle
// cannot trap it; other elements do follow them. listErr is called for a
// directory that exists but could not be listed (permission, descriptors,
// I/O): what it holds is not seen by this walk.
func (m *matcher) walk(file func(path string), dir func(path string), listErr func(dir string, err error)) {
	w := walker{m: m, file: file, dirFn: dir, listErr: listErr, seen: map[string]bool{}}
	for _, g := range m.include {
		if len(g.elems) == 0 {
			continue
		}
		base, rest := g.start()
		if fi, err := os.Stat(base); err != nil || !fi.IsDir() {
			dir(existingAncestor(base))
			continue
		}
		w.g = g
		w.walk(base, rest)
	}
}

func existingAncestor(p string) string {
	for {
		parent := filepath.Dir(p)
		if fi, err := os.Stat(parent); err == nil && fi.IsDir() {
			return parent
		}
		if parent == p {
			return p
		}
		p = parent
	}
}

type walker struct {
	m     *matcher
	g     *glob // the pattern being walked
	file  func(string)
	dirFn func(string)
	// listErr is told of a directory that could not be listed.
	listErr func(string, error)
	seen    map[string]bool // dir + "\x00" + remaining pattern, to visit each once
}

func (w *walker) walk(dir string, rest []string) {
	key := dir + "\x00" + strings.Join(rest, "/")
	if w.seen[key] {
		return
	}
	w.seen[key] = true
	if !w.seen[dir] {
		w.seen[dir] = true
		w.dirFn(dir)
	}
	if len(rest) == 0 {
		return
	}
	el := rest[0]
	if el == "**" {
		if len(rest) > 1 {
			w.walk(dir, rest[1:])
		}
		for _, e := range w.readDir(dir) {
			p := filepath.Join(dir, e.Name())
			switch {
			case e.IsDir(): // not a symlink: no cycles
				w.walk(p, rest)
			case len(rest) == 1 && !w.m.excluded(p) && !w.g.skipsCompressed(p): // a trailing "**" matches every file below
				w.file(p)
			}
		}
		return
	}
	if !hasMeta(el) {
		w.visit(filepath.Join(dir, el), rest, nil)
		return
	}
	for _, e := range w.readDir(dir) {
		if ok, _ := filepath.Match(el, e.Name()); ok {
			w.visit(filepath.Join(dir, e.Name()), rest, e)
		}
	}
}

// visit handles the path that matched rest[0].
func (w *walker) visit(p string, rest []string, e fs.DirEntry) {
	if len(rest) == 1 {
		if e != nil && e.IsDir() {
			return
		}
		if !w.m.excluded(p) && !w.g.skipsCompressed(p) {
			w.file(p)
		}
		return
	}
	if e != nil && e.IsDir() {
		w.walk(p, rest[1:])
		return
	}
	if e != nil && e.Type()&fs.ModeSymlink == 0 {
		return // a plain file where a directory is needed
	}
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		w.walk(p, rest[1:])
	}
}

// readDir lists dir without sorting. A directory that vanished (or is not
// one any more) yields nothing; other errors are reported to listErr, with
// whatever was listed before the error: the next scan tries again.
func (w *walker) readDir(dir string) []fs.DirEntry {
	f, err := openDir(dir)
	if err != nil {
		w.reportErr(dir, err)
		return nil
	}
	defer f.Close()
	es, err := f.ReadDir(-1)
	if err != nil {
		w.reportErr(dir, err)
	}
	return es
}

func (w *walker) reportErr(dir string, err error) {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || w.listErr == nil {
		return
	}
	w.listErr(dir, err)
}
