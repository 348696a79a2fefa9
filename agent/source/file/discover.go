package file

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// scan expands the patterns, attaches what it finds and notices paths that
// are gone.
func (r *runner) scan() {
	r.scanGen++
	r.scanWanted = false
	r.fdPaused = false // the next scan tries again
	if r.wantWatch && r.watch == nil {
		// inotify_init can fail for a while (EMFILE, the per-user instance
		// limit): scans find changes meanwhile, and each tries again.
		w, err := newWatcher(r.hints, r.s.m, r.s.log)
		if err != nil {
			r.watchFailed("", fmt.Errorf("no file events, finding changes by scanning: %w", err))
		} else {
			r.watch = w
		}
	}
	q0 := len(r.waitq)
	dirs := map[string]bool{}
	r.s.m.walk(r.consider, func(d string) { dirs[d] = true }, func(d string, err error) {
		r.c.scanErrors++
		r.scanLog.add(r.s.log, r.now, d, err)
	})
	for p, f := range r.byPath {
		if f.seenGen != r.scanGen {
			r.consider(p) // not listed (gone, or its directory unreadable): look at it directly
		}
	}
	// The files found waiting in this scan take turns most recently written
	// first.
	slices.SortStableFunc(r.waitq[q0:], func(a, b *file) int {
		switch {
		case a.mtime > b.mtime:
			return -1
		case a.mtime < b.mtime:
			return 1
		}
		return 0
	})
	for _, f := range r.live {
		if f.realPath != "" {
			dirs[filepath.Dir(f.realPath)] = true
		}
	}
	if r.watch != nil && r.watch.sync(dirs, r.watchFailed) {
		r.scanWanted = true // look again, now that the new directories are watched
	}
	r.lastScan = r.now
	r.nextScan = r.now.Add(r.cfg.ScanInterval)
	r.s.mu.Lock()
	r.s.scannedAt = r.now
	r.s.mu.Unlock()
}

// findRotatedWhileStopped looks, once after the first scan, for files
// rotated while the source was stopped (logrotate during a restart): a
// checkpointed file that no matching path leads to, not known to be read to
// its end, is searched by its inode in the directory of its last path and
// in the rotated_dirs. Found under another name (app.log.1, not matched by
// app.log) with its identity intact, it is read to its end and let go as a
// rotated file is; else the lines written after the checkpoint would be
// skipped for good. Not found by its inode, it may have been compressed
// (logrotate's compress without delaycompress): a compressed rotation
// whose decompressed bytes begin with its fingerprint and reach its
// checkpoint is read from there (readCompressedRotation). Then the
// rotations named as newer than the one found, versions of the file
// written and rotated away while the source was stopped, are read whole
// (readNewer).
func (r *runner) findRotatedWhileStopped() {
	var want []*file
	byKey := map[devIno]*file{}
	var dirs []string
	for key, f := range r.byKey {
		if f.state != stGone || f.fd != nil || f.path != "" || f.lastPath == "" {
			continue
		}
		want = append(want, f)
		byKey[key] = f
		for _, d := range r.rotationDirs(f.lastPath) {
			if !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	if len(want) == 0 {
		return
	}
	slices.SortFunc(want, func(a, b *file) int { return strings.Compare(a.lastPath, b.lastPath) })
	type at struct {
		path string
		st   fileStat
	}
	found := map[*file]at{}
	for _, dir := range dirs {
		if len(byKey) == 0 {
			break
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue // gone or unreadable: nothing to find there
		}
		for _, e := range ents {
			if len(byKey) == 0 {
				break
			}
			if !e.Type().IsRegular() {
				continue
			}
			p := filepath.Join(dir, e.Name())
			st, err := statPath(p)
			if err != nil || !st.regular {
				continue
			}
			if f := byKey[st.key]; f != nil && slices.Contains(r.rotationDirs(f.lastPath), dir) {
				delete(byKey, st.key)
				found[f] = at{p, st}
			}
		}
	}
	taken := r.startTaken
	for _, f := range want {
		if r.ctx.Err() != nil {
			return
		}
		was := f.lastPath
		a, in := found[f]
		if f.done() {
			// Read to its end while the source ran, and let go: what came
			// next was followed. Only growth after that (a writer that
			// never reopened) can be left: read it if it is still there.
			if in {
				r.drainRotatedAway(f, a.path, a.st)
			}
			continue
		}
		cands := r.rotatedFiles(was)
		var (
			rot rotatedFile
			ok  bool
			err error
		)
		if in && r.drainRotatedAway(f, a.path, a.st) {
			rot, ok = rotationOf(a.path, a.st, was), true
		} else {
			rot, ok, err = r.readCompressedRotation(f, cands, taken)
			if err == nil && !ok && r.ctx.Err() == nil {
				// Said once: the entry is marked read to its end.
				r.s.log.Warn("a file followed before the stop is gone, and no rotation of it was found "+
					"(renamed, copied or compressed, next to it or in rotated_dirs): lines written after its checkpoint, if any, are lost",
					"path", was, "file_id", f.inc.id, "offset", f.offset, "unreadable", unreadable(cands))
				r.markRead(f)
			}
		}
		if err == nil && ok {
			taken[rot.st.key] = true
			err = r.readNewer(f, was, rot, cands, taken)
		}
		if err != nil {
			r.deferErr(err)
			return
		}
	}
}

// drainRotatedAway follows f, found at path (a name the patterns do not
// match) by findRotatedWhileStopped, from its checkpoint to its end. It
// reports whether the file there is f (read, or nothing left to read).
func (r *runner) drainRotatedAway(f *file, path string, st fileStat) bool {
	if f.birth != 0 && st.birth != 0 && f.birth != st.birth {
		return false // the inode holds another file now
	}
	if st.size <= f.offset {
		return st.size == f.offset // read to its end before it was renamed
	}
	if err := r.s.fds.acquire(); err != nil {
		r.s.log.Warn("a file rotated while the source was stopped cannot be read: no descriptor left",
			"path", path, "file_id", f.inc.id, "offset", f.offset, "error", err)
		return true
	}
	fd, err := osOpen(path)
	if err != nil {
		r.s.fds.release()
		r.s.log.Warn("a file rotated while the source was stopped cannot be read", "path", path, "file_id", f.inc.id, "error", err)
		return true
	}
	if fst, err := statFile(fd); err != nil || fst.key != f.key {
		_ = fd.Close()
		r.s.fds.release()
		return false
	}
	if ok, err := f.fp.matches(fd, r.fpBuf); err != nil || !ok {
		_ = fd.Close()
		r.s.fds.release()
		return false // another file under the inode, or rewritten: its offset means nothing there
	}
	r.s.log.Info("reading the rest of a file rotated while the source was stopped", "path", path,
		"was", f.lastPath, "file_id", f.inc.id, "offset", f.offset, "size", st.size)
	r.s.mu.Lock()
	f.lastPath = path
	f.lastSeen = r.now
	f.end = 0 // it grew: where it ends now is set when it is let go
	r.s.mu.Unlock()
	if !slices.Contains(r.live, f) {
		r.live = append(r.live, f)
	}
	r.opens++
	r.use(f, fd)
	r.c.rotations++
	r.setState(f, stDetached)
	f.detachedAt = r.now
	return true
}

func (r *runner) watchFailed(dir string, err error) {
	r.c.watchErrors++
	r.watchLog.add(r.s.log, r.now, dir, err)
}

// isGone reports an error that means no file is at the path any more.
func isGone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// consider looks at a path that matches the patterns (or did).
func (r *runner) consider(path string) {
	f := r.byPath[path]
	st, err := statPath(path)
	if err != nil {
		if isGone(err) {
			if f != nil {
				r.lose(f)
			}
			return
		}
		// Cannot tell (a directory on the way lost its x permission, I/O):
		// the file stays as it was, and is looked at again at the next scan.
		r.c.scanErrors++
		r.scanLog.add(r.s.log, r.now, path, err)
		return
	}
	if !st.regular {
		return
	}
	if f != nil && f.key == st.key {
		f.seenGen = r.scanGen
		r.seen(f)
		r.observe(f, st)
		return
	}
	if f != nil {
		r.lose(f) // the path leads to another file now
	}
	g := r.byKey[st.key]
	if g != nil && g.path != "" && g.path != path {
		// One file under two matching names (a link): follow it under the
		// first while that still leads to it.
		if gst, err := statPath(g.path); err == nil && gst.key == st.key {
			g.seenGen = r.scanGen
			return
		}
	}
	if g == nil {
		g = r.newFile(path, st)
	} else {
		wasGone := g.state == stGone
		r.attach(g, path)
		if wasGone && !r.ignored(st) {
			r.enqueue(g) // open it: confirms its identity, and holds it against rotation
		}
	}
	g.seenGen = r.scanGen
	r.observe(g, st)
}

func (r *runner) seen(f *file) {
	if r.now.Sub(f.lastSeen) >= r.refreshSeen {
		r.s.mu.Lock()
		f.lastSeen = r.now
		r.s.mu.Unlock()
	}
}

// observe notes a stat of f's path: does it need reading?
func (r *runner) observe(f *file, st fileStat) {
	sizeChanged := st.size != f.size
	changed := f.mtime != 0 && st.mtime != f.mtime
	f.size = st.size
	f.sizeA.Store(st.size)
	f.mtime = st.mtime
	if f.fd != nil {
		if st.size != f.offset || changed {
			f.hot = true
		}
		return
	}
	if f.failed {
		// Could not be opened: try again once per scan (a chmod changes
		// neither size nor mtime), or when it changes. A failure that
		// does not pass (--once) is reported, not waited for.
		if (f.failedGen != r.scanGen && !r.s.set.Once) || sizeChanged || changed {
			r.enqueue(f)
		}
		return
	}
	if st.size != f.offset || changed {
		r.enqueue(f)
	}
}

// newFile starts following a file no checkpoint knows; path is "" for a
// file that no matching path leads to any more.
func (r *runner) newFile(path string, st fileStat) *file {
	f := &file{key: st.key, birth: st.birth, mtime: st.mtime, size: st.size}
	f.offset, f.findLineEnd = r.startOffset(path, st)
	f.midLine = f.offset > 0
	f.lastGrowth = r.now
	f.sp = r.newSplitter(f)
	inc := &incarnation{id: newFileID(st.key), f: f}
	inc.committed.Store(f.offset) // nothing before it will be emitted
	f.offsetA.Store(f.offset)
	f.sizeA.Store(st.size)
	r.s.mu.Lock()
	f.inc = inc
	f.path = path
	f.lastSeen = r.now
	f.state = stIdle
	r.s.byID[inc.id] = inc
	r.s.mu.Unlock()
	r.byKey[st.key] = f
	if path != "" {
		r.byPath[path] = f
	}
	r.live = append(r.live, f)
	r.s.log.Debug("following file", "path", path, "file_id", inc.id, "offset", f.offset)
	if !r.ignored(st) {
		r.enqueue(f) // hold it open, so a rotation cannot take lines from us
	} else if fd, err := osOpen(path); err == nil {
		// Not opened for now, but its identity is recorded: a new file that
		// gets its inode later must not resume at its offset.
		if fp, err := readFingerprint(fd, r.cfg.FingerprintBytes, r.fpBuf); err == nil {
			r.s.mu.Lock()
			f.setFingerprint(fp)
			r.s.mu.Unlock()
		}
		_ = fd.Close()
	}
	return f
}

// ignored reports whether a file is older than IgnoreOlder.
func (r *runner) ignored(st fileStat) bool {
	io := r.cfg.IgnoreOlder
	return io > 0 && r.now.Sub(time.Unix(0, st.mtime)) > io
}

// startOffset decides where a file without a checkpoint is read from. It
// reports deferred when the line end before the file's end could not be
// found (the file could not be opened): the offset is then the size, and
// the line end is looked for when the file is opened (see use).
func (r *runner) startOffset(path string, st fileStat) (off int64, deferred bool) {
	if r.ignored(st) {
		return st.size, false // old: counts as read
	}
	if !r.initialScan || r.cfg.StartAt == StartAtBeginning {
		return 0, false // appeared while we run
	}
	if st.birth != 0 && !r.prevScan.IsZero() && st.birth > r.prevScan.UnixNano() {
		return 0, false // appeared while the agent was down
	}
	fd, err := osOpen(path)
	if err != nil {
		return st.size, true
	}
	defer fd.Close()
	off, err = r.lastLineEnd(fd, st.size)
	if err != nil {
		return st.size, true
	}
	return off, false
}

// lastLineEnd returns the offset after the last newline in the file's last
// MaxRecordBytes before size, so reading from the end starts at a line
// boundary (an incomplete last line is read whole once it is complete).
func (r *runner) lastLineEnd(fd *os.File, size int64) (int64, error) {
	if r.tailBuf == nil {
		r.tailBuf = make([]byte, 64<<10)
	}
	buf := r.tailBuf[:min(int64(len(r.tailBuf)), size)]
	limit := max(size-int64(r.cfg.MaxRecordBytes), 0)
	for end := size; end > limit; {
		start := max(end-int64(len(buf)), limit)
		n, err := fd.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return size, err
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] == '\n' {
				return start + int64(i) + 1, nil
			}
		}
		end = start
	}
	if limit == 0 {
		return 0, nil // one incomplete line: all of it is what comes next
	}
	return size, nil
}

func (r *runner) newSplitter(f *file) splitter {
	return splitter{
		max:    int(r.cfg.MaxRecordBytes),
		marker: []byte(r.cfg.TruncateMarker),
		split:  r.cfg.Oversize == OversizeSplit,
		out: func(rec []byte, start, end int64, kind recordKind) error {
			return r.record(f, rec, start, end, kind)
		},
	}
}

// attach follows a known file (from a checkpoint, or renamed) at path. Its
// identity is confirmed when it is opened.
func (r *runner) attach(f *file, path string) {
	if f.path != "" {
		delete(r.byPath, f.path)
	}
	r.s.mu.Lock()
	f.path = path
	f.lastSeen = r.now
	f.end = 0 // followed again: it may grow
	switch f.state {
	case stGone:
		f.state = stIdle
	case stDetached:
		f.state = stOpen // renamed to a name we follow: keeps its position
	}
	r.s.mu.Unlock()
	r.byPath[path] = f
	if !slices.Contains(r.live, f) {
		r.live = append(r.live, f)
	}
	if f.fd != nil {
		f.hot = true
		r.resolve(f)
	}
}

// lose handles a file whose path no longer leads to it: renamed away or
// deleted. An open file is read to its end first.
func (r *runner) lose(f *file) {
	if f.path == "" {
		return
	}
	delete(r.byPath, f.path)
	if f.realPath != "" {
		delete(r.byReal, f.realPath)
		f.realPath = ""
	}
	r.c.rotations++
	r.s.mu.Lock()
	f.lastPath, f.path = f.path, ""
	f.lastSeen = r.now
	if f.fd != nil {
		f.state = stDetached
	} else {
		f.state = stGone
	}
	r.s.mu.Unlock()
	if f.fd != nil {
		f.detachedAt = r.now
		f.hot = true
		return
	}
	f.inQueue = false
	r.dropWaiting(f)
	// What was read of its last line will not be completed now.
	if err := r.flushPending(f); err != nil {
		r.deferErr(err)
	}
	r.dropLive(f)
}

func (r *runner) dropLive(f *file) {
	r.unfail(f)
	if i := slices.Index(r.live, f); i >= 0 {
		r.live = slices.Delete(r.live, i, i+1)
	}
}

func (r *runner) dropWaiting(f *file) {
	if i := slices.Index(r.waitq, f); i >= 0 {
		r.waitq = slices.Delete(r.waitq, i, i+1)
	}
}

// forget removes a file that is proven dead (its inode now belongs to
// another file).
func (r *runner) forget(f *file) {
	if f.path != "" {
		delete(r.byPath, f.path)
	}
	if r.byKey[f.key] == f {
		delete(r.byKey, f.key)
	}
	r.dropLive(f)
	r.dropWaiting(f)
	f.inQueue = false
	r.s.mu.Lock()
	delete(r.s.byID, f.inc.id)
	r.s.dropped = append(r.s.dropped, f.inc.id)
	f.state = stGone
	f.path = ""
	r.s.mu.Unlock()
}

func (r *runner) applyHints() {
	for _, hf := range r.hints.takeHeld() {
		r.adopt(hf)
	}
	ops, overflow := r.hints.take(r.spare)
	for p, op := range ops {
		r.hint(p, op)
	}
	clear(ops)
	r.spare = ops
	if overflow {
		r.scanWanted = true
		for _, f := range r.live {
			if f.fd != nil {
				f.hot = true
			}
		}
	}
}

// adopt takes a file the event goroutine opened when it was created. A file
// the loop already knows is left to the usual path; a new one is followed
// with that descriptor, even if it was renamed away or deleted since.
func (r *runner) adopt(hf heldFile) {
	if r.byKey[hf.st.key] != nil {
		_ = hf.fd.Close()
		r.s.fds.release()
		r.consider(hf.path)
		return
	}
	st, err := statPath(hf.path)
	if err == nil && st.key == hf.st.key {
		if old := r.byPath[hf.path]; old != nil {
			r.lose(old) // the path leads to the new file now
		}
		f := r.newFile(hf.path, hf.st)
		if f.inQueue {
			f.inQueue = false
			r.dropWaiting(f)
		}
		r.use(f, hf.fd)
		return
	}
	// Rotated away before the loop got to it: drain it.
	f := r.newFile("", hf.st)
	r.use(f, hf.fd)
	r.c.rotations++
	r.s.mu.Lock()
	f.lastPath = hf.path
	f.state = stDetached
	r.s.mu.Unlock()
	f.detachedAt = r.now
	if err == nil {
		r.consider(hf.path)
	}
}

func (r *runner) hint(p string, op fsnotify.Op) {
	if r.watch != nil && r.watch.dirs[p] && op&(fsnotify.Remove|fsnotify.Rename) != 0 {
		delete(r.watch.dirs, p) // the kernel dropped the watch with the directory
		r.scanWanted = true
	}
	if f := r.byPath[p]; f != nil {
		if op.Has(fsnotify.Chmod) && f.failed {
			f.failedGen = 0 // its permissions changed: try again now
		}
		if op == fsnotify.Write && f.fd != nil {
			f.hot = true
			return
		}
		r.consider(p)
		if f.fd != nil {
			f.hot = true
		}
		return
	}
	if f := r.byReal[p]; f != nil {
		// The target of a followed symlink: written, or replaced (a
		// container runtime rotating the file the link points to).
		if op == fsnotify.Write && f.fd != nil {
			f.hot = true
			return
		}
		if f.fd != nil {
			f.hot = true
		}
		if f.path != "" {
			r.consider(f.path)
		}
		return
	}
	if op&(fsnotify.Create|fsnotify.Write) != 0 {
		if r.s.m.wanted(p) {
			r.consider(p)
			return
		}
		if op.Has(fsnotify.Create) && r.s.m.mayContain(p) {
			r.scanWanted = true // perhaps a new directory on the way to matches
		}
	}
	if op.Has(fsnotify.Write) {
		// A rotated file written under a name we do not follow.
		for _, f := range r.live {
			if f.state == stDetached {
				f.hot = true
			}
		}
	}
}
