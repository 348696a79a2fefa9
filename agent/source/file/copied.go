package file

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// findCopiedWhileStopped looks, once at start (after the first scan and
// findRotatedWhileStopped), for the copies that logrotate's copytruncate
// made while the source was stopped. A checkpointed file found at its path
// shorter than its checkpoint, or with other first bytes, was truncated (or
// replaced): the lines written after the checkpoint are only in the copy, a
// new inode under another name (app.log.1, app.log-20261206) that the
// patterns do not match. The copy is looked for in the directory of the
// file, by the checkpoint's fingerprint (see copyOf), and read from the
// checkpoint to its end, then let go as a rotated file is. The truncated
// file itself is then read from 0 as usual (open finds the truncation).
func (r *runner) findCopiedWhileStopped() {
	var want []*file
	for _, f := range r.byKey {
		// A resumed file followed at its path, not opened yet (nothing
		// is opened before the first turn of the loop).
		if f.resumed && f.path != "" && f.fd == nil && f.offset > 0 && f.fp.n > 0 {
			want = append(want, f)
		}
	}
	if len(want) == 0 {
		return
	}
	slices.SortFunc(want, func(a, b *file) int { return strings.Compare(a.path, b.path) })
	taken := r.startTaken
	for _, f := range want {
		if !r.lostItsTail(f) {
			continue
		}
		r.readCopy(f, taken)
	}
}

// lostItsTail reports whether f, resumed at its path, no longer holds the
// bytes before its checkpoint: shorter than its checkpoint, first bytes
// that changed, or its inode taken by a new file.
func (r *runner) lostItsTail(f *file) bool {
	st, err := statPath(f.path)
	if err != nil || st.key != f.key {
		return false
	}
	if f.birth != 0 && st.birth != 0 && f.birth != st.birth {
		return true // a new file under the inode: the old one was deleted
	}
	if st.size < f.offset {
		return true
	}
	fd, err := osOpen(f.path)
	if err != nil {
		return false // open tells, and handles it
	}
	defer fd.Close()
	ok, err := f.fp.matches(fd, r.fpBuf)
	return err == nil && !ok
}

// readCopy finds f's copy (see copyOf) and reads it from f's checkpoint to
// its end. Without a plain copy, a compressed one is looked for (copytruncate
// with compress). Then the rotations newer than the copy, versions of the
// file written and rotated away while the source was stopped, are read
// whole (readNewer).
func (r *runner) readCopy(f *file, taken map[devIno]bool) {
	f.copyChecked = true // open finds the truncation next: not looked for again
	c := r.copyOf(f, f.path, taken, true)
	if c.path == "" {
		cands := r.rotatedFiles(f.path)
		rot, ok, err := r.readCompressedCopy(f.path, f.offset, f.fp, cands, taken)
		if err == nil && ok {
			err = r.readNewer(f, f.path, rot, cands, taken)
		}
		if err != nil {
			r.deferErr(err)
			return
		}
		if !ok && r.followedAsCopy(f) {
			// A stop came while its compressed copy was read: the copy's
			// entry goes on with it (findRotatedWhileStopped read it).
			r.s.log.Debug("file truncated while the source was stopped; its copy is read under its own entry",
				"path", f.path, "file_id", f.inc.id, "offset", f.offset)
			return
		}
		if !ok {
			r.s.log.Warn("file truncated while the source was stopped, and no copy of it found next to it or in rotated_dirs "+
				"(compressed in a format the source cannot read, or in another directory?): lines written after its checkpoint and before the truncation, if any, are lost",
				"path", f.path, "file_id", f.inc.id, "offset", f.offset, "unreadable", unreadable(cands))
		}
		return
	}
	taken[c.st.key] = true
	rot := rotationOf(c.path, c.st, f.path)
	defer func() {
		if r.ctx.Err() == nil {
			r.deferErr(r.readNewer(f, f.path, rot, r.rotatedFiles(f.path), taken))
		}
	}()
	if g := c.g; g != nil {
		// The patterns match the copy too (app.log*): it was found by the
		// first scan as a new file, to be read from its start (or its
		// end). Its bytes up to the checkpoint were read as f's: it
		// starts at the checkpoint instead. Nothing of it was read yet.
		r.s.log.Info("reading the rest of a file copied while the source was stopped (copytruncate)",
			"path", c.path, "was", f.path, "file_id", g.inc.id, "offset", f.offset, "size", c.st.size)
		g.offset, g.findLineEnd, g.midLine = f.offset, false, true
		g.offsetA.Store(f.offset)
		g.inc.committed.Store(f.offset)
		r.s.mu.Lock()
		g.setFingerprint(f.fp)
		r.s.mu.Unlock()
		r.enqueue(g) // queued already, unless older than ignore_older (its end counted as read)
		return
	}
	if c.st.size == f.offset {
		_ = c.fd.Close()
		r.s.log.Debug("file truncated while the source was stopped; its copy holds nothing after the checkpoint",
			"path", f.path, "copy", c.path, "file_id", f.inc.id, "offset", f.offset)
		return
	}
	r.drainCopy(c.fd, c.path, c.st, f.path, f.offset, f.fp, "reading the rest of a file copied while the source was stopped (copytruncate)")
}

// followedAsCopy reports whether another entry holds f's content from f's
// offset on: the entry of its copy (compressed, read under the copy's
// inode), saved by a run that stopped before it had read the copy to its
// end and opened f again. f's own entry still says it was truncated.
func (r *runner) followedAsCopy(f *file) bool {
	for _, g := range r.byKey {
		if g != f && g.state == stGone && g.lastPath == f.path && g.fp == f.fp && g.offset >= f.offset {
			return true
		}
	}
	return false
}

// drainCopy reads the copy of a truncated file, open as fd, from offset
// (what was read of the file) to its end, and lets it go as a rotated file.
// fp is the truncated file's fingerprint, which the copy matches.
func (r *runner) drainCopy(fd *os.File, path string, st fileStat, was string, offset int64, fp fingerprint, msg string) {
	if err := r.s.fds.acquire(); err != nil {
		_ = fd.Close()
		r.s.log.Warn("the copy of a truncated file cannot be read: no descriptor left; the lines after the offset are lost",
			"path", path, "was", was, "offset", offset, "error", err)
		return
	}
	g := r.newFile("", st)
	g.offset, g.findLineEnd, g.midLine = offset, false, true
	g.offsetA.Store(offset)
	g.inc.committed.Store(offset) // the bytes before it were read as the truncated file's
	r.s.mu.Lock()
	g.lastPath = path    // its records' Path, as for a file renamed away
	g.setFingerprint(fp) // extended by use
	r.s.mu.Unlock()
	r.s.log.Info(msg, "path", path, "was", was, "file_id", g.inc.id, "offset", offset, "size", st.size)
	r.opens++
	r.use(g, fd)
	r.c.rotations++
	r.setState(g, stDetached)
	g.detachedAt = r.now
}

// compressedExts are the suffixes of compressed rotations (logrotate's
// compress, compressext): their bytes are not the file's.
var compressedExts = []string{".gz", ".bz2", ".xz", ".zst", ".zstd", ".lz4", ".lzma", ".lz", ".lzo", ".z", ".zip", ".br", ".sz", ".7z"}

// copyName reports whether name may be a rotated copy of the file named
// base: base or base without its extension, followed by '.', '-' or '_'
// (app.log.1, app.log-20261206, app-20261206.log, app.1.log), and not a
// compressed one.
func copyName(name, base string) bool {
	return copyNameIn(name, base, true)
}

// copyNameIn is copyName for a file in the directory of the file named
// base (sameDir) or in one of the rotated_dirs, where base itself is a
// copy's name too.
func copyNameIn(name, base string, sameDir bool) bool {
	kind, _, ok := rotatedName(name, base, sameDir)
	return ok && kind == ""
}

// copied is the copy of a truncated file that copyOf found.
type copied struct {
	path string // "" if none
	st   fileStat
	fd   *os.File // open, unless g is set
	g    *file    // the copy, found by the first scan (the patterns match it)
}

// copyOf looks for f's copy in the directory of fpath, f's path, and in the
// rotated_dirs: a
// regular file named as a rotated copy (copyName), not a file the source
// knows already (atStart: unless the first scan just found it), at least
// as long as f's offset, whose first bytes match f's fingerprint. Of
// several, the last modified is taken.
//
// Where f was shorter than fingerprint_bytes when it was checkpointed, its
// fingerprint covers every byte up to the checkpoint (it grows with the
// file as it is read): the copy is known to begin with exactly what was
// read. Otherwise only the first fingerprint_bytes are compared, as
// everywhere in the source.
func (r *runner) copyOf(f *file, fpath string, taken map[devIno]bool, atStart bool) copied {
	var c copied
	base := filepath.Base(fpath)
	for i, dir := range r.rotationDirs(fpath) {
		c = r.copyIn(f, dir, base, i == 0, c, taken, atStart)
	}
	if c.g != nil && c.fd != nil {
		_ = c.fd.Close()
		c.fd = nil
	}
	return c
}

// copyIn is copyOf in one directory; c is the best copy found so far.
func (r *runner) copyIn(f *file, dir, base string, sameDir bool, c copied, taken map[devIno]bool, atStart bool) copied {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return c
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !copyNameIn(e.Name(), base, sameDir) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		cst, err := statPath(p)
		if err != nil || !cst.regular || cst.key == f.key || taken[cst.key] || cst.size < f.offset {
			continue
		}
		if c.path != "" && cst.mtime <= c.st.mtime {
			continue
		}
		known := r.byKey[cst.key]
		if known != nil && (!atStart || known.resumed || known.fd != nil || known.path != p) {
			continue // followed already
		}
		cfd, err := osOpen(p)
		if err != nil {
			continue
		}
		if fst, err := statFile(cfd); err != nil || fst.key != cst.key {
			_ = cfd.Close()
			continue
		}
		if ok, err := f.fp.matches(cfd, r.fpBuf); err != nil || !ok {
			_ = cfd.Close()
			continue
		}
		if c.fd != nil {
			_ = c.fd.Close()
		}
		c = copied{path: p, st: cst, fd: cfd, g: known}
	}
	return c
}
