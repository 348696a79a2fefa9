package file

import (
	"context"
	"os"
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
	// maxBatch bounds a batch of records (see runner.batch): the flow's
	// lock is held while the batch is added.
	maxBatch = 1024
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

// loopHook, when set (by tests), is called at the end of every turn of the
// loop: the tests check the runner's invariants there.
var loopHook func(*runner)

// counters are the run loop's, published to Source after each turn.
type counters struct {
	records, bytes, truncated, split, truncations, rotations, partial uint64
	openErrors, noDescriptor, readErrors, scanErrors, watchErrors     uint64
	compressedFiles, compressedRecords, compressedErrors              uint64
}

// runner is the state of one Run call. Everything in it belongs to the run
// goroutine.
type runner struct {
	s    *Source
	cfg  *Config
	ctx  context.Context // Run's: passed to emit
	emit source.Emit
	now  time.Time
	// batch, when not nil, takes the records of one splitter feed as
	// batches (pending) while batching is set: their Data point into buf,
	// valid until the feed's leftover is moved to its front.
	batch    source.EmitBatch
	batching bool
	pending  []source.Record

	byKey  map[devIno]*file
	byPath map[string]*file
	byReal map[string]*file
	live   []*file // every file that is not gone
	waitq  []*file
	nOpen  int
	opens  uint64 // successful opens, to tell whether schedule admitted a file
	// idleRotations counts the turns since the last progress or wait that
	// only gave descriptors to waiting files (see rotate).
	idleRotations int
	// nFailed counts the live files whose last open (or read) failed: they
	// are retried at each scan.
	nFailed int
	// fdPaused stops admitting files after the kernel refused a descriptor
	// (EMFILE, ENFILE) until the source frees one or the next scan.
	fdPaused bool
	// starved: the last acquire failed on the process budget (other file
	// sources hold it); counted in processFDs.starved.
	starved bool

	openLog, fdLog, readLog, scanLog, watchLog errLog
	// truncWarn: when a truncated line was last logged (at most once per
	// errLogEvery; the counter has every one).
	truncWarn time.Time

	hints *hints
	spare map[string]fsnotify.Op
	watch *watcher
	// wantWatch: events are wanted (not --once, not disabled); while
	// watch is nil, every scan tries to start the watcher.
	wantWatch bool

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

	// startTaken: the rotations read by the searches at start (each is
	// read once).
	startTaken map[devIno]bool
	// startDirs: the directories those searches listed (see readDir).
	startDirs map[string][]os.DirEntry

	c        counters
	deferred error // an emit error raised where it could not be returned
	tailBuf  []byte
}

func newRunner(s *Source, ctx context.Context, emit source.Emit) *runner {
	r := &runner{
		s: s, cfg: &s.cfg, ctx: ctx, emit: emit,
		byKey: map[devIno]*file{}, byPath: map[string]*file{}, byReal: map[string]*file{},
		hints: newHints(s.fds), spare: map[string]fsnotify.Op{},
		buf:      make([]byte, int(s.cfg.MaxRecordBytes)+1+readChunk),
		fpBuf:    make([]byte, maxFingerprintBytes), // a checkpoint may hold a longer fingerprint than configured now
		openLog:  errLog{msg: "cannot open files; retrying each at every scan"},
		fdLog:    errLog{msg: "no file descriptor left (the process's RLIMIT_NOFILE or the system's file-max); files wait for one, raise the limit (LimitNOFILE=)"},
		readLog:  errLog{msg: "cannot read files; retrying (open files at the next poll, the others after reopening at the next scan)"},
		scanLog:  errLog{msg: "cannot list directories or examine files; retrying at every scan"},
		watchLog: errLog{msg: "cannot watch directories; relying on scans there, retrying at every scan"},
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
	r.startTaken, r.startDirs = map[devIno]bool{}, map[string][]os.DirEntry{}
	r.findRotatedWhileStopped()
	r.findCopiedWhileStopped()
	r.startTaken, r.startDirs = nil, nil
	r.publish()
	if err := r.takeErr(); err != nil {
		return err // from emit, reading a compressed rotation
	}
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
		if loopHook != nil {
			loopHook(r)
		}
		if err != nil {
			return err
		}
		if progressed {
			r.idleRotations = 0
			continue
		}
		if r.rotate() {
			continue
		}
		if r.s.set.Once && r.onceDone() {
			r.now = time.Now()
			r.scan()
			r.poll()
			if r.onceDone() {
				r.s.readAll.Store(true)
				return nil
			}
			continue
		}
		r.wait(timer)
		r.idleRotations = 0
	}
}

// rotate gives the descriptors of files that caught up during this turn
// to waiting files at once, and reports whether it opened any: sleeping
// until the next poll would leave the waiting files waiting for nothing.
func (r *runner) rotate() bool {
	if len(r.waitq) == 0 || r.fdPaused {
		return false
	}
	// Turns that only rotate descriptors, reading nothing, are bounded by
	// about one pass over the queue: a file whose size promises data that
	// reads do not give must not make the loop spin.
	if r.idleRotations > len(r.waitq)/max(int(r.s.fds.max), 1)+1 {
		return false
	}
	n := r.opens
	r.schedule()
	if r.opens == n {
		return false
	}
	r.idleRotations++
	return true
}

// wait blocks until an event, the next deadline or the end.
func (r *runner) wait(timer *time.Timer) {
	next := r.nextScan
	if r.nOpen > 0 || (len(r.waitq) > 0 && !r.fdPaused) {
		// Open files are polled; files waiting for a descriptor that
		// another source may yield try again.
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
	if c.openErrors|c.noDescriptor|c.readErrors|c.scanErrors|c.watchErrors != 0 {
		s.openErrors.Add(c.openErrors)
		s.noDescriptor.Add(c.noDescriptor)
		s.readErrors.Add(c.readErrors)
		s.scanErrors.Add(c.scanErrors)
		s.watchErrors.Add(c.watchErrors)
	}
	if c.compressedFiles|c.compressedRecords|c.compressedErrors != 0 {
		s.compressedFiles.Add(c.compressedFiles)
		s.compressedRecords.Add(c.compressedRecords)
		s.compressedErrors.Add(c.compressedErrors)
	}
	*c = counters{}
	s.filesOpen.Store(int64(r.nOpen))
	s.filesWaiting.Store(int64(len(r.waitq)))
	s.filesUnreadable.Store(int64(r.nFailed))
}

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
				st, err := statFile(f.fd)
				if err != nil {
					// Whether it grew is unknown: its data is reachable
					// only through this descriptor, so it is kept and
					// looked at again.
					r.c.readErrors++
					r.readLog.add(r.s.log, now, f.lastPath, err)
					next(now.Add(cfg.PollInterval))
					continue
				}
				if st.size != f.offset {
					r.checkOpen(f, st, false) // it grew after all: read that first
					continue
				}
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
	for _, l := range []*errLog{&r.openLog, &r.fdLog, &r.readLog, &r.scanLog, &r.watchLog} {
		l.flush(r.s.log, now)
		if l.n > 0 {
			next(l.last.Add(errLogEvery))
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
	r.s.mu.Lock()
	f.end = f.offset // read to its end: nothing to look for after a restart once committed
	r.s.mu.Unlock()
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
	r.hints.release()
	r.setStarved(false)
	r.publish()
}
