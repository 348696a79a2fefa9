package file

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/kplagent/agent/agent/source"
)

const (
	// readChunk is one read(2). Large enough that the syscall is noise next
	// to the per-line work, small enough to stay in L2.
	readChunk = 256 << 10
	// turnBudget is how much one file may read before the loop looks at
	// events, timers and the other files.
	turnBudget = 4 << 20
	// fairShare and fairTime bound a file's turn with a descriptor while
	// other files wait for one (a file that caught up with its writer yields
	// at once): the files written fastest cannot starve the others, even when
	// the source cannot keep up with them.
	fairShare = 8 << 20
	fairTime  = 250 * time.Millisecond
	// minScanGap bounds how often events may trigger a full scan.
	minScanGap = 100 * time.Millisecond
	// timerCheckEvery bounds how often per-file timers are checked while
	// data keeps flowing.
	timerCheckEvery = 50 * time.Millisecond
)

// disableWatch lets tests run without events, as on NFS.
var disableWatch = false

// counters are the run loop's, published to Source after each turn.
type counters struct {
	records, bytes, truncated, split, truncations, rotations, partial uint64
}

// runner is the state of one Run call. Everything in it belongs to the run
// goroutine.
type runner struct {
	s    *Source
	cfg  *Config
	ctx  context.Context // Run's: passed to emit
	emit source.Emit
	now  time.Time

	byKey  map[devIno]*file
	byPath map[string]*file
	byReal map[string]*file
	live   []*file // every file that is not gone
	waitq  []*file
	nOpen  int

	hints *hints
	spare map[string]fsnotify.Op
	watch *watcher

	buf   []byte // the work buffer: an incomplete line plus one chunk
	fpBuf []byte

	prevScan    time.Time // when the previous run last completed a scan
	initialScan bool
	scanGen     uint64
	lastScan    time.Time
	nextScan    time.Time
	nextPoll    time.Time
	scanWanted  bool
	nextTimers  time.Time
	timerDue    time.Time // earliest per-file deadline found by the last timers pass
	nextPrune   time.Time
	refreshSeen time.Duration

	c        counters
	deferred error // an emit error raised where it could not be returned
	tailBuf  []byte
	readErrs map[*file]bool
}

func newRunner(s *Source, ctx context.Context, emit source.Emit) *runner {
	r := &runner{
		s: s, cfg: &s.cfg, ctx: ctx, emit: emit,
		byKey: map[devIno]*file{}, byPath: map[string]*file{}, byReal: map[string]*file{},
		hints: newHints(), spare: map[string]fsnotify.Op{},
		buf:   make([]byte, int(s.cfg.MaxRecordBytes)+1+readChunk),
		fpBuf: make([]byte, s.cfg.FingerprintBytes),
	}
	// LastSeen only needs the TTL's precision; refreshing it rarely keeps
	// an idle agent from rewriting its checkpoints.
	r.refreshSeen = time.Hour
	if ttl := s.cfg.CheckpointTTL; ttl > 0 {
		r.refreshSeen = min(r.refreshSeen, max(ttl/8, time.Second))
	}
	return r
}

// loop is the run goroutine's body.
func (r *runner) loop() error {
	ctx := r.ctx
	r.now = time.Now()
	r.initialScan = true
	r.scan()
	r.initialScan = false
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if ctx.Err() != nil {
			return nil
		}
		r.now = time.Now()
		r.applyHints()
		if r.now.After(r.nextScan) || (r.scanWanted && r.now.Sub(r.lastScan) >= minScanGap) {
			r.scan()
		}
		if !r.now.Before(r.nextPoll) {
			r.poll()
		}
		r.schedule()
		progressed, err := r.readAll()
		if err == nil && (!progressed || !r.now.Before(r.nextTimers)) {
			err = r.timers()
		}
		r.publish()
		if err != nil {
			return err
		}
		if progressed {
			continue
		}
		if r.s.set.Once && r.onceDone() {
			r.now = time.Now()
			r.scan()
			r.poll()
			if r.onceDone() {
				return nil
			}
			continue
		}
		r.wait(timer)
	}
}

// wait blocks until an event, the next deadline or the end.
func (r *runner) wait(timer *time.Timer) {
	next := r.nextScan
	if r.nOpen > 0 {
		next = minTime(next, r.nextPoll)
	}
	if r.scanWanted {
		next = minTime(next, r.lastScan.Add(minScanGap))
	}
	if !r.timerDue.IsZero() {
		next = minTime(next, r.timerDue)
	}
	if !r.nextPrune.IsZero() {
		next = minTime(next, r.nextPrune)
	}
	d := time.Until(next)
	if d <= 0 {
		return
	}
	timer.Reset(d)
	select {
	case <-r.ctx.Done():
	case <-r.hints.wake:
	case <-timer.C:
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// publish moves the loop's counters to the Source.
func (r *runner) publish() {
	s := r.s
	c := &r.c
	if c.records != 0 {
		s.records.Add(c.records)
		s.bytes.Add(c.bytes)
	}
	if c.truncated|c.split|c.truncations|c.rotations|c.partial != 0 {
		s.truncatedRecords.Add(c.truncated)
		s.splitRecords.Add(c.split)
		s.truncations.Add(c.truncations)
		s.rotations.Add(c.rotations)
		s.partialFlushes.Add(c.partial)
	}
	*c = counters{}
	s.filesOpen.Store(int64(r.nOpen))
	s.filesWaiting.Store(int64(len(r.waitq)))
}

// ---- discovery ----

// scan expands the patterns, attaches what it finds and notices paths that
// are gone.
func (r *runner) scan() {
	r.scanGen++
	r.scanWanted = false
	q0 := len(r.waitq)
	dirs := map[string]bool{}
	r.s.m.walk(r.consider, func(d string) { dirs[d] = true })
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
	if r.watch != nil && r.watch.sync(dirs) {
		r.scanWanted = true // look again, now that the new directories are watched
	}
	r.lastScan = r.now
	r.nextScan = r.now.Add(r.cfg.ScanInterval)
	r.s.mu.Lock()
	r.s.scannedAt = r.now
	r.s.mu.Unlock()
}

// consider looks at a path that matches the patterns (or did).
func (r *runner) consider(path string) {
	f := r.byPath[path]
	st, err := statPath(path)
	if err != nil {
		if f != nil && errors.Is(err, fs.ErrNotExist) {
			r.lose(f)
		}
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
	f.size = st.size
	f.sizeA.Store(st.size)
	changed := f.mtime != 0 && st.mtime != f.mtime
	f.mtime = st.mtime
	if f.fd != nil {
		if st.size != f.offset || changed {
			f.hot = true
		}
		return
	}
	if st.size != f.offset || changed {
		r.enqueue(f)
	}
}

// newFile starts following a file no checkpoint knows.
func (r *runner) newFile(path string, st fileStat) *file {
	f := &file{key: st.key, birth: st.birth, mtime: st.mtime, size: st.size}
	f.offset = r.startOffset(path, st)
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
	r.byPath[path] = f
	r.live = append(r.live, f)
	r.s.log.Debug("following file", "path", path, "file_id", inc.id, "offset", f.offset)
	if !r.ignored(st) {
		r.enqueue(f) // hold it open, so a rotation cannot take lines from us
	}
	return f
}

// ignored reports whether a file is older than IgnoreOlder.
func (r *runner) ignored(st fileStat) bool {
	io := r.cfg.IgnoreOlder
	return io > 0 && r.now.Sub(time.Unix(0, st.mtime)) > io
}

// startOffset decides where a file without a checkpoint is read from.
func (r *runner) startOffset(path string, st fileStat) int64 {
	if r.ignored(st) {
		return st.size // old: counts as read
	}
	if !r.initialScan || r.cfg.StartAt == StartAtBeginning {
		return 0 // appeared while we run
	}
	if st.birth != 0 && !r.prevScan.IsZero() && st.birth > r.prevScan.UnixNano() {
		return 0 // appeared while the agent was down
	}
	return r.lastLineEnd(path, st.size)
}

// lastLineEnd returns the offset after the last newline in the file's last
// MaxRecordBytes, so reading from the end starts at a line boundary (an
// incomplete last line is read whole once it is complete).
func (r *runner) lastLineEnd(path string, size int64) int64 {
	fd, err := os.Open(path)
	if err != nil {
		return size
	}
	defer fd.Close()
	if r.tailBuf == nil {
		r.tailBuf = make([]byte, 64<<10)
	}
	buf := r.tailBuf[:min(int64(len(r.tailBuf)), size)]
	limit := max(size-int64(r.cfg.MaxRecordBytes), 0)
	for end := size; end > limit; {
		start := max(end-int64(len(buf)), limit)
		n, err := fd.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return size
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] == '\n' {
				return start + int64(i) + 1
			}
		}
		end = start
	}
	if limit == 0 {
		return 0 // one incomplete line: all of it is what comes next
	}
	return size
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

// ---- events ----

func (r *runner) applyHints() {
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

func (r *runner) hint(p string, op fsnotify.Op) {
	if r.watch != nil && r.watch.dirs[p] && op&(fsnotify.Remove|fsnotify.Rename) != 0 {
		delete(r.watch.dirs, p) // the kernel dropped the watch with the directory
		r.scanWanted = true
	}
	if f := r.byPath[p]; f != nil {
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
		if f.fd != nil {
			f.hot = true
		} else if f.path != "" {
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

// ---- open files ----

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
	if recheck && st.size != f.pollSize && f.fp.n > 0 {
		// Truncated and rewritten past our offset between two looks?
		if ok, err := f.fp.matches(f.fd, r.fpBuf); err == nil && !ok {
			r.truncated(f)
			return
		}
	}
	f.pollSize = st.size
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
// (copytruncate) or whose first bytes changed: what was read of its old
// content is emitted, and reading restarts at 0 under a new FileID.
func (r *runner) truncated(f *file) {
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
	f.fp = fp
	r.s.mu.Unlock()
	r.s.log.Info("file truncated; reading it again from the start", "path", f.path, "old_file_id", old.id, "file_id", inc.id)
	f.offset, f.pollSize = 0, 0
	f.offsetA.Store(0)
	f.spill = f.spill[:0]
	f.sp.reset()
	f.hot, f.eof = true, false
}

// open gives f a descriptor and confirms its identity.
func (r *runner) open(f *file) {
	path := f.path
	fd, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			r.lose(f)
			return
		}
		if !f.failed {
			f.failed = true
			r.s.log.Warn("cannot open file", "path", path, "error", err)
		}
		r.setState(f, stIdle)
		return
	}
	st, err := statFile(fd)
	if err != nil {
		_ = fd.Close()
		r.setState(f, stIdle)
		return
	}
	if st.key != f.key {
		_ = fd.Close()
		r.lose(f)
		r.consider(path)
		return
	}
	f.failed = false
	truncated := false
	if f.birth != 0 && st.birth != 0 && f.birth != st.birth {
		f = r.reborn(f, path, st) // inode reused by a new file
	} else if ok, err := f.fp.matches(fd, r.fpBuf); err == nil && !ok {
		if f.birth != 0 && f.birth == st.birth {
			truncated = true // same file, new content
		} else {
			f = r.reborn(f, path, st) // inode reused, or rewritten: either way new
		}
	}
	f.fd = fd
	r.nOpen++
	r.setState(f, stOpen)
	f.hot, f.eof, f.caughtUp = true, false, false
	f.lastGrowth, f.admitted = r.now, r.now
	f.turnBytes = 0
	if truncated || st.size < f.offset {
		r.truncated(f)
	} else if _, err := fd.Seek(f.offset, io.SeekStart); err != nil {
		r.s.log.Warn("seek", "path", path, "error", err)
	}
	f.size, f.pollSize = st.size, st.size
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
// path read from the beginning.
func (r *runner) reborn(f *file, path string, st fileStat) *file {
	r.s.log.Info("inode reused by a new file; reading it from the start", "path", path, "old_file_id", f.inc.id)
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
// FingerprintBytes was.
func (r *runner) fingerprint(f *file) {
	if f.fd == nil || f.fp.n >= r.cfg.FingerprintBytes || f.size <= int64(f.fp.n) {
		return
	}
	fp, err := readFingerprint(f.fd, r.cfg.FingerprintBytes, r.fpBuf)
	if err != nil {
		return
	}
	r.s.mu.Lock()
	f.fp = fp
	r.s.mu.Unlock()
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
		return
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

func (r *runner) admit() {
	for len(r.waitq) > 0 && r.nOpen < r.cfg.MaxOpenFiles {
		f := r.waitq[0]
		r.waitq = r.waitq[1:]
		if !f.inQueue {
			continue
		}
		f.inQueue = false
		if f.path == "" || f.fd != nil {
			continue
		}
		r.open(f)
	}
	if len(r.waitq) == 0 {
		r.waitq = r.waitq[:0:0]
	}
}

// ---- reading ----

// readAll gives every open file with data one turn.
func (r *runner) readAll() (bool, error) {
	progressed := false
	for i := 0; i < len(r.live); i++ {
		f := r.live[i]
		if f.fd == nil || !f.hot {
			continue
		}
		n, err := r.readTurn(f)
		if n > 0 {
			progressed = true
		}
		if err != nil {
			return progressed, err
		}
		if r.ctx.Err() != nil {
			return progressed, nil
		}
	}
	return progressed, r.takeErr()
}

// readTurn reads up to turnBudget bytes of f and emits what they complete.
func (r *runner) readTurn(f *file) (int64, error) {
	buf := r.buf
	k := copy(buf, f.spill)
	base := f.offset - int64(k)
	var total int64
	eof := false
	var rerr, err error
	for total < turnBudget {
		var n int
		n, rerr = f.fd.Read(buf[k : k+readChunk])
		if n > 0 {
			total += int64(n)
			f.offset += int64(n)
			k += n
			var c int
			c, err = f.sp.feed(buf[:k], base)
			if c < k {
				copy(buf, buf[c:k])
			}
			base += int64(c)
			k -= c
			if err != nil {
				break
			}
		}
		if rerr != nil || n == 0 {
			eof = true
			break
		}
		if n < readChunk {
			break // probably the end: the next turn finds out
		}
	}
	f.spill = append(f.spill[:0], buf[:k]...)
	f.offsetA.Store(f.offset)
	if err != nil {
		return total, err // from emit: the source stops
	}
	if rerr != nil && !errors.Is(rerr, io.EOF) {
		if r.readErrs == nil {
			r.readErrs = map[*file]bool{}
		}
		if !r.readErrs[f] {
			r.readErrs[f] = true
			r.s.log.Warn("read failed; retrying at the next poll", "path", f.path, "error", rerr)
		}
	}
	if total > 0 {
		f.lastGrowth = r.now
		f.turnBytes += total
		f.eof = false
		if f.fp.n < r.cfg.FingerprintBytes && f.offset > int64(f.fp.n) {
			f.size = max(f.size, f.offset)
			r.fingerprint(f)
		}
	}
	if !eof {
		return total, nil
	}
	f.hot = false
	f.eof, f.caughtUp = true, true
	f.size = max(f.size, f.offset)
	if total == 0 {
		if st, err := statFile(f.fd); err == nil {
			r.checkOpen(f, st, false)
		}
	}
	if r.s.set.Once && !f.hot {
		if err := r.flushPending(f); err != nil {
			return total, err
		}
	}
	return total, nil
}

// record takes one record from a file's splitter.
func (r *runner) record(f *file, rec []byte, start, end int64, kind recordKind) error {
	switch kind {
	case kindTruncated:
		r.c.truncated++
	case kindSplit, kindSplitMore:
		r.c.split++
	}
	if ml := r.s.ml; ml != nil {
		return r.mlAdd(f, ml, rec, start, end, kind == kindSplitMore)
	}
	return r.send(f.inc.id, rec, start, end)
}

func (r *runner) send(id string, data []byte, start, end int64) error {
	r.c.records++
	r.c.bytes += uint64(len(data))
	return r.emit(r.ctx, source.Record{Data: data, Cursor: source.Cursor{FileID: id, Start: start, Offset: end}})
}

// mlAdd adds a line to f's multiline record, emitting the previous record
// when this line starts a new one.
func (r *runner) mlAdd(f *file, ml *mlRules, line []byte, start, end int64, cont bool) error {
	st := &f.ml
	join := st.lines > 0 && (cont || ml.joins(line))
	if join && (st.lines+1 > ml.maxLines || len(st.buf)+1+len(line) > ml.maxBytes) {
		join = false
	}
	if !join && st.lines > 0 {
		if err := r.mlFlush(f); err != nil {
			return err
		}
	}
	if st.lines == 0 {
		st.buf = append(st.buf[:0], line...)
		st.start = start
	} else {
		st.buf = append(st.buf, '\n')
		st.buf = append(st.buf, line...)
	}
	st.lines++
	st.end = end
	st.last = r.now
	return nil
}

func (r *runner) mlFlush(f *file) error {
	st := &f.ml
	if st.lines == 0 {
		return nil
	}
	st.lines = 0
	err := r.send(f.inc.id, st.buf, st.start, st.end)
	if cap(st.buf) > mlShrinkAbove {
		st.buf = nil
	} else {
		st.buf = st.buf[:0]
	}
	return err
}

// flushPending emits what f holds: its incomplete last line and its
// multiline record.
func (r *runner) flushPending(f *file) error {
	if len(f.spill) > 0 || f.sp.busy() {
		r.c.partial++
		err := f.sp.flush(f.spill, f.offset-int64(len(f.spill)))
		f.spill = f.spill[:0]
		if err != nil {
			return err
		}
	}
	return r.mlFlush(f)
}

// deferErr keeps an emit error raised where it cannot be returned; the
// loop returns it at the end of the turn.
func (r *runner) deferErr(err error) {
	if err != nil && r.deferred == nil {
		r.deferred = err
	}
}

func (r *runner) takeErr() error {
	err := r.deferred
	r.deferred = nil
	return err
}

// ---- timers ----

// timers flushes idle partial lines and multiline records, releases drained
// rotated files, closes inactive ones and prunes old checkpoints. It records
// the earliest deadline still ahead.
func (r *runner) timers() error {
	now := r.now
	r.nextTimers = now.Add(timerCheckEvery)
	var due time.Time
	next := func(t time.Time) {
		if due.IsZero() || t.Before(due) {
			due = t
		}
	}
	cfg := r.cfg
	for i := 0; i < len(r.live); i++ {
		f := r.live[i]
		atEnd := f.eof && !f.hot && !f.inQueue
		if !atEnd {
			continue
		}
		if len(f.spill) > 0 || f.sp.busy() {
			if t := f.lastGrowth.Add(cfg.FlushPartialAfter); !now.Before(t) {
				if err := r.flushPending(f); err != nil {
					return err
				}
			} else {
				next(t)
			}
		}
		if f.ml.lines > 0 {
			if t := f.ml.last.Add(r.s.ml.timeout); !now.Before(t) {
				if err := r.mlFlush(f); err != nil {
					return err
				}
			} else {
				next(t)
			}
		}
		switch {
		case f.state == stDetached:
			t := f.lastGrowth
			if f.detachedAt.After(t) {
				t = f.detachedAt
			}
			t = t.Add(cfg.RotateWait)
			if r.s.set.Once || !now.Before(t) {
				if err := r.release(f); err != nil {
					return err
				}
				i--
				continue
			}
			next(t)
		case f.state == stOpen && cfg.CloseInactive > 0:
			t := f.lastGrowth.Add(cfg.CloseInactive)
			if !now.Before(t) {
				r.closeFD(f)
				r.setState(f, stIdle)
			} else {
				next(t)
			}
		}
	}
	r.timerDue = due
	r.prune()
	return r.takeErr()
}

// release closes a rotated file that was read to its end.
func (r *runner) release(f *file) error {
	err := r.flushPending(f)
	r.closeFD(f)
	r.setState(f, stGone)
	r.dropLive(f)
	r.s.log.Debug("released rotated file", "path", f.lastPath, "file_id", f.inc.id, "offset", f.offset)
	return err
}

// prune drops files gone for longer than the checkpoint TTL.
func (r *runner) prune() {
	ttl := r.cfg.CheckpointTTL
	if ttl <= 0 || r.now.Before(r.nextPrune) {
		return
	}
	r.nextPrune = r.now.Add(max(min(ttl/8, time.Minute), time.Second))
	cutoff := r.now.Add(-ttl)
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	for id, inc := range r.s.byID {
		f := inc.f
		if f.state != stGone || !f.lastSeen.Before(cutoff) {
			continue
		}
		delete(r.s.byID, id)
		r.s.dropped = append(r.s.dropped, id)
		if r.byKey[f.key] == f {
			delete(r.byKey, f.key)
		}
	}
}

// onceDone reports whether every file was read to its end and flushed.
func (r *runner) onceDone() bool {
	if len(r.waitq) > 0 || r.scanWanted {
		return false
	}
	for _, f := range r.live {
		if f.inQueue || (f.fd != nil && !f.drained()) || len(f.spill) > 0 || f.sp.busy() || f.ml.lines > 0 {
			return false
		}
	}
	return true
}

// shutdown closes every descriptor.
func (r *runner) shutdown() {
	for _, f := range r.live {
		r.closeFD(f)
	}
	if r.watch != nil {
		r.watch.close()
	}
	r.publish()
}
