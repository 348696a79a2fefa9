package file

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// osOpen opens files to follow (regular files only, never blocking on a
// FIFO); tests make it fail.
var osOpen = openRegular

// poll checks every open file for growth, truncation and deletion.
func (r *runner) poll() {
	r.nextPoll = r.now.Add(r.cfg.PollInterval)
	for i := 0; i < len(r.live); i++ {
		f := r.live[i]
		if f.fd == nil {
			continue
		}
		st, err := statFile(f.fd)
		if err != nil {
			r.readFailed(f, err) // a followed file is opened again at the next scan
			continue
		}
		r.checkOpen(f, st, true)
	}
}

// checkOpen acts on a fresh fstat of an open file.
func (r *runner) checkOpen(f *file, st fileStat, recheck bool) {
	f.size = st.size
	f.sizeA.Store(st.size)
	if st.size < f.offset {
		r.truncated(f)
		return
	}
	if recheck && st.size != f.pollSize {
		// Truncated and rewritten past our offset between two looks? pollSize
		// is the size at the last check, not the last size seen: a file that
		// was read meanwhile may have been truncated and regrown before the
		// read, and its size says nothing of that.
		ok, err := f.fp.matches(f.fd, r.fpBuf)
		if err == nil && !ok {
			r.truncated(f)
			return
		}
		if err == nil {
			f.pollSize = st.size // else check again at the next poll
		}
	}
	if st.size > f.offset {
		f.hot = true
	}
	if st.nlink == 0 && f.state == stOpen {
		path := f.path
		r.lose(f)
		r.consider(path) // recreated already?
	}
}

// truncated restarts a file whose size fell below the read offset
// (copytruncate) or whose first bytes changed: the rest of its old content
// is read from its copy if one is found next to it (else what was read of
// its last line is emitted), and reading restarts at 0 under a new FileID.
func (r *runner) truncated(f *file) {
	r.truncatedCopy(f, true)
}

// truncatedCopy is truncated; withCopy looks for a copy that logrotate's
// copytruncate made of the file and reads it from the read offset to its
// end (see copyOf): the lines the source had not read yet when the file was
// truncated are there.
func (r *runner) truncatedCopy(f *file, withCopy bool) {
	var (
		cp    copied
		from  = f.offset
		oldFP = f.fp
		was   = f.path
	)
	if was == "" {
		was = f.lastPath
	}
	if withCopy && !f.copyChecked && f.fd != nil && from > 0 && oldFP.n > 0 && was != "" {
		cp = r.copyOf(f, was, nil, false)
		if cp.path != "" && !f.sp.busy() && !f.sp.splitting {
			// The incomplete last line goes on in the copy: read it
			// there, whole.
			from -= int64(len(f.spill))
		}
		switch {
		case cp.path == "":
		case cp.st.size <= from: // (size == offset, no incomplete line)
			_ = cp.fd.Close() // it holds nothing that was not read
			cp, from = copied{}, f.offset
		default:
			f.spill = f.spill[:0] // read again from the copy
		}
		if cp.path == "" && r.ctx.Err() == nil {
			// No plain copy: compressed already (copytruncate with
			// compress and no delaycompress compresses it right after
			// the copy, and removes it only once the compressed file is
			// complete). Its lines after the read offset are read at
			// once, before the file's new content.
			if r.readCompressedCopyRunning(f, was, oldFP) {
				f.spill = f.spill[:0] // read again from the copy
			}
		}
	}
	f.copyChecked = false
	if err := r.flushPending(f); err != nil {
		r.deferErr(err)
	}
	r.c.truncations++
	inc := &incarnation{id: newFileID(f.key), f: f}
	var fp fingerprint
	if f.fd != nil {
		fp, _ = readFingerprint(f.fd, r.cfg.FingerprintBytes, r.fpBuf)
		if _, err := f.fd.Seek(0, io.SeekStart); err != nil {
			r.s.log.Warn("seek after truncation", "path", f.path, "error", err)
		}
	}
	r.s.mu.Lock()
	old := f.inc
	delete(r.s.byID, old.id)
	r.s.dropped = append(r.s.dropped, old.id)
	r.s.byID[inc.id] = inc
	f.inc = inc
	f.setFingerprint(fp)
	r.s.mu.Unlock()
	r.s.log.Info("file truncated; reading it again from the start", "path", f.path, "old_file_id", old.id, "file_id", inc.id)
	f.offset, f.pollSize = 0, 0
	f.findLineEnd = false
	f.offsetA.Store(0)
	f.spill = f.spill[:0]
	f.sp.reset()
	f.hot, f.eof, f.atEnd = true, false, false
	if cp.path != "" {
		r.drainCopy(cp.fd, cp.path, cp.st, was, from, oldFP, "file truncated; reading the rest of its copy (copytruncate)")
	}
}

// readCompressedCopyRunning looks for the compressed copy of f, a file
// at was found truncated while the source runs, and reads it from f's read
// offset (the start of its incomplete last line, read again whole, when
// its splitter allows) to its end, under a FileID of its own. oldFP is f's
// fingerprint before the truncation. It reports whether a copy was read.
func (r *runner) readCompressedCopyRunning(f *file, was string, oldFP fingerprint) bool {
	from := f.offset
	if !f.sp.busy() && !f.sp.splitting {
		from -= int64(len(f.spill))
	}
	cands := r.rotatedFiles(was)
	if !slices.ContainsFunc(cands, func(c rotatedFile) bool { return c.compressed() && decoders[c.kind] != nil }) {
		return false
	}
	if err := r.s.fds.acquire(); err != nil {
		r.s.log.Warn("the compressed copy of a truncated file cannot be looked for: no descriptor left; the lines after the offset, if any, are lost",
			"path", was, "offset", from, "error", err)
		return false
	}
	defer r.s.fds.release()
	c, ok, err := r.readCompressedCopy(was, from, oldFP, cands, map[devIno]bool{})
	if err != nil {
		r.deferErr(err)
	}
	if ok {
		r.s.log.Info("file truncated; read the rest of its compressed copy (copytruncate with compress)",
			"path", was, "copy", c.path, "offset", from)
	}
	return ok
}

// open gives f a descriptor and confirms its identity. The caller has
// acquired a descriptor from the pool; open keeps it with the file or
// releases it. It reports retry when the kernel had no descriptor for the
// file (EMFILE, ENFILE): the file is fine and should keep its place.
func (r *runner) open(f *file) (retry bool) {
	path := f.path
	fd, err := osOpen(path)
	if err != nil {
		r.s.fds.release()
		switch {
		case isGone(err) || errors.Is(err, errNotRegular):
			r.lose(f) // gone, or replaced by something that is not a file
		case isNoDescriptor(err):
			// Not the file's fault: it waits at the head of the queue, and
			// no other file is tried until a descriptor is freed or the
			// next scan.
			r.c.noDescriptor++
			r.fdPaused = true
			r.fdLog.add(r.s.log, r.now, path, err)
			return true
		default:
			r.failed(f, err, &r.openLog, &r.c.openErrors)
		}
		return false
	}
	st, err := statFile(fd)
	if err != nil {
		_ = fd.Close()
		r.s.fds.release()
		r.failed(f, err, &r.openLog, &r.c.openErrors)
		return false
	}
	if st.key != f.key {
		_ = fd.Close()
		r.s.fds.release()
		r.lose(f)
		r.consider(path)
		return false
	}
	r.unfail(f)
	truncated := false
	if f.birth != 0 && st.birth != 0 && f.birth != st.birth {
		f = r.reborn(f, path, st) // inode reused by a new file
	} else if ok, err := f.fp.matches(fd, r.fpBuf); err != nil {
		// Its first bytes cannot be read, so its identity is not
		// confirmed: resuming at its offset could skip a new file's
		// lines. Tried again at the next scan.
		_ = fd.Close()
		r.s.fds.release()
		r.failed(f, err, &r.readLog, &r.c.readErrors)
		return false
	} else if !ok {
		switch {
		case f.birth == 0 || f.birth != st.birth:
			f = r.reborn(f, path, st) // inode reused, or rewritten: either way new
		case f.offset != 0:
			truncated = true // same file, new content
		default:
			// Same file, new content, and nothing of the old content was
			// read: it is read from 0 anyway, under its ID. Only the
			// fingerprint must follow, or the next check (reopen, restart)
			// would take the same content for another truncation and read
			// it all again.
			if fp, err := readFingerprint(fd, r.cfg.FingerprintBytes, r.fpBuf); err == nil {
				r.s.mu.Lock()
				f.setFingerprint(fp)
				r.s.mu.Unlock()
			}
		}
	}
	r.opens++
	r.use(f, fd)
	if truncated && f.offset != 0 {
		r.truncated(f)
	}
	f.copyChecked = false // only the truncation found at start was looked into already
	return false
}

// failed notes that f could not be opened (or read, after which its
// descriptor was closed): it is idle until the next scan tries again. The
// failure is counted in *count and logged through l, rate-limited.
func (r *runner) failed(f *file, err error, l *errLog, count *uint64) {
	*count++
	l.add(r.s.log, r.now, f.path, err)
	if !f.failed {
		f.failed = true
		r.nFailed++
	}
	f.failedGen = r.scanGen
	r.setState(f, stIdle)
}

// unfail clears f's failure: it was opened, or left the live set.
func (r *runner) unfail(f *file) {
	if f.failed {
		f.failed = false
		r.nFailed--
	}
}

// use gives f the descriptor fd (positioned anywhere) and starts reading it
// at f.offset, or from 0 if the file is now shorter.
func (r *runner) use(f *file, fd *os.File) {
	f.fd = fd
	r.nOpen++
	r.setState(f, stOpen)
	f.hot, f.eof, f.caughtUp, f.atEnd = true, false, false, false // the identity was just checked
	f.lastGrowth, f.admitted = r.now, r.now
	f.turnBytes = 0
	st, err := statFile(fd)
	if f.findLineEnd && err == nil && st.size >= f.offset {
		// start_at: end, and the file could not be read when it was
		// found: start after its last complete line as of then, now.
		f.findLineEnd = false
		if off, lerr := r.lastLineEnd(fd, f.offset); lerr == nil && off != f.offset {
			f.offset = off
			f.offsetA.Store(off)
			f.inc.committed.Store(off) // nothing of it was emitted yet
			f.midLine = off > 0
		}
	}
	if err == nil && st.size < f.offset {
		r.truncated(f)
	} else if _, err := fd.Seek(f.offset, io.SeekStart); err != nil {
		r.s.log.Warn("seek", "path", f.path, "error", err)
	}
	if err == nil {
		f.size, f.pollSize = st.size, st.size
		f.sizeA.Store(st.size)
	}
	if f.midLine {
		// The offset came from a checkpoint or a start position. If it is
		// not at a line start, the line's beginning was emitted (a flushed
		// partial line) or skipped (counted as read): the newline that ends
		// it makes no record.
		f.midLine = false
		var b [1]byte
		if f.offset > 0 {
			if n, _ := fd.ReadAt(b[:], f.offset-1); n == 1 && b[0] != '\n' {
				f.sp.cont = true
			}
		}
	}
	r.fingerprint(f)
	r.resolve(f)
}

// resolve notes the target of an open file reached through a symlink, so
// events in the target's directory reach it.
func (r *runner) resolve(f *file) {
	if f.realPath != "" {
		delete(r.byReal, f.realPath)
		f.realPath = ""
	}
	if f.fd == nil || f.path == "" {
		return
	}
	lfi, err := os.Lstat(f.path)
	if err != nil || lfi.Mode()&fs.ModeSymlink == 0 {
		return
	}
	real, err := filepath.EvalSymlinks(f.path)
	if err != nil {
		return
	}
	f.realPath = real
	r.byReal[real] = f
	if r.watch != nil && !r.watch.dirs[filepath.Dir(real)] {
		r.scanWanted = true // watch the target's directory too
	}
}

// reborn replaces f, whose inode now holds another file, with a new file at
// path read from the beginning. What was read of f and not emitted yet (its
// incomplete last line, its multiline record) is emitted first, under f's
// FileID: those bytes were in f.
func (r *runner) reborn(f *file, path string, st fileStat) *file {
	r.s.log.Info("inode reused by a new file; reading it from the start", "path", path, "old_file_id", f.inc.id)
	if err := r.flushPending(f); err != nil {
		r.deferErr(err)
	}
	r.forget(f)
	g := r.newFile(path, st)
	if g.inQueue { // the caller opens it now
		g.inQueue = false
		r.dropWaiting(g)
	}
	g.offset = 0
	g.offsetA.Store(0)
	g.inc.committed.Store(0)
	return g
}

// fingerprint extends f's fingerprint while the file is shorter than
// FingerprintBytes was. If the bytes the fingerprint was taken of changed,
// the file was truncated and rewritten: it restarts (truncated) and
// fingerprint reports false. Hashing the new content instead would hide the
// truncation for good.
func (r *runner) fingerprint(f *file) bool {
	if f.fd == nil || f.fp.n >= r.cfg.FingerprintBytes || f.size <= int64(f.fp.n) {
		return true
	}
	fp, err := readFingerprint(f.fd, r.cfg.FingerprintBytes, r.fpBuf)
	if err != nil {
		return true
	}
	if fp.n < f.fp.n || (f.fp.n > 0 && sumBytes(r.fpBuf[:f.fp.n]) != f.fp.sum) {
		// Bytes of the new content may have been read as the old
		// content's: where the old content ended is not known, so its
		// copy is not read (readTurn's check before the bytes are used
		// catches a truncation of a file at its end).
		r.truncatedCopy(f, false)
		return false
	}
	r.s.mu.Lock()
	f.setFingerprint(fp)
	r.s.mu.Unlock()
	return true
}

func (r *runner) setState(f *file, st state) {
	if f.state == st {
		return
	}
	r.s.mu.Lock()
	f.state = st
	r.s.mu.Unlock()
}

func (r *runner) enqueue(f *file) {
	if f.inQueue || f.fd != nil || f.path == "" {
		return
	}
	f.inQueue = true
	r.setState(f, stWaiting)
	r.waitq = append(r.waitq, f)
}

// closeFD releases f's descriptor (it keeps its path and position).
func (r *runner) closeFD(f *file) {
	if f.fd == nil {
		return
	}
	_ = f.fd.Close()
	f.fd = nil
	r.nOpen--
	r.s.fds.release()
	r.fdPaused = false // a descriptor is free: waiting files may try again
	if f.realPath != "" {
		delete(r.byReal, f.realPath)
		f.realPath = ""
	}
}

// schedule hands descriptors to waiting files, taking them from open files
// that are at their end or had their share.
func (r *runner) schedule() {
	r.admit()
	if len(r.waitq) == 0 {
		if r.s.fds.proc.starved.Load() > 0 && !r.starved {
			r.yieldIdle()
		}
		return
	}
	if r.fdPaused {
		return // the kernel has no descriptor for us: closing files would only shuffle them
	}
	want := len(r.waitq)
	for i := 0; i < len(r.live) && want > 0; i++ {
		f := r.live[i]
		if f.state != stOpen || f.fd == nil {
			continue // a rotated file holds its descriptor: nothing else can reach its data
		}
		// Its turn ends once it caught up with its writer, or had its
		// share while others wait.
		if !f.caughtUp && f.turnBytes < fairShare && r.now.Sub(f.admitted) < fairTime {
			continue
		}
		r.closeFD(f)
		r.setState(f, stIdle)
		if f.hot || !f.eof {
			r.enqueue(f) // more to read: back of the queue
		}
		want--
	}
	r.admit()
}

// yieldIdleMax bounds the descriptors one turn gives up to other sources.
const yieldIdleMax = 64

// yieldIdle closes open files that have nothing to read, because another
// file source of the process waits for a descriptor of the shared budget.
// They are opened again when they grow (an event, or the next scan).
func (r *runner) yieldIdle() {
	n := 0
	for _, f := range r.live {
		if n == yieldIdleMax {
			return
		}
		if f.state != stOpen || f.fd == nil || !f.caughtUp || f.hot || !f.eof {
			continue
		}
		r.closeFD(f)
		r.setState(f, stIdle)
		n++
	}
}

// admit opens waiting files, most deserving first, while descriptors last.
func (r *runner) admit() {
	for len(r.waitq) > 0 && !r.fdPaused {
		f := r.waitq[0]
		if !f.inQueue || f.path == "" || f.fd != nil {
			r.waitq = r.waitq[1:]
			f.inQueue = false
			continue
		}
		if err := r.s.fds.acquire(); err != nil {
			r.setStarved(errors.Is(err, errNoBudget))
			return
		}
		r.setStarved(false)
		r.waitq = r.waitq[1:]
		f.inQueue = false
		if r.open(f) {
			// No descriptor after all: back to the head of the queue.
			r.waitq = slices.Insert(r.waitq, 0, f)
			f.inQueue = true
			r.setState(f, stWaiting)
			return
		}
	}
	if len(r.waitq) == 0 {
		r.waitq = r.waitq[:0:0]
		r.setStarved(false)
	}
}

// setStarved records whether this source waits on the process budget, so
// that other sources yield their idle descriptors.
func (r *runner) setStarved(v bool) {
	if r.starved == v {
		return
	}
	r.starved = v
	if v {
		r.s.fds.proc.starved.Add(1)
	} else {
		r.s.fds.proc.starved.Add(-1)
	}
}
