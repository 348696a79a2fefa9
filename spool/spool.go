package spool

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// ID identifies an entry. IDs grow by one per appended entry and keep growing
// across restarts; 0 is never a valid ID.
type ID uint64

var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("spool: closed")
	// ErrFull is returned (wrapped) by Append when the spool is full and
	// WhenFull is drop_newest, or when nothing can be dropped to make room.
	ErrFull = errors.New("spool: full")
	// ErrTooLarge is returned (wrapped) by Append for an entry larger than
	// max_entry_bytes.
	ErrTooLarge = errors.New("spool: entry too large")
	// ErrLocked is returned (wrapped, naming the holder) by Open when another
	// process has the directory open.
	ErrLocked = errors.New("spool: directory locked")
	// ErrUnknownID is returned (wrapped) by Ack for an ID never appended.
	ErrUnknownID = errors.New("spool: unknown id")
)

// Settings are what the code that opens a spool provides.
type Settings struct {
	// Logger receives the recovery summary, corruption and drop reports.
	// Nil discards them.
	Logger *slog.Logger

	fs          fileSystem    // tests inject faults here; nil is the real file system
	errLogEvery time.Duration // tests shorten it; 0 is errLogEvery
	// lossLogEvery: tests shorten the drop lines' interval, and the quiet
	// time that ends a drop episode; 0 is lossLogEvery.
	lossLogEvery time.Duration
	// syncWrites makes Append write its frame itself with every sync
	// policy, as it does for sync: always (tests of that path).
	syncWrites bool
	// beforeTake, when set, is called by the writer before it takes the
	// stage, with no lock held: tests hold the writer there.
	beforeTake func()
	// idleRelease: tests shorten how long an idle writer keeps its
	// buffers; 0 is stageIdleRelease.
	idleRelease time.Duration
}

// Stats are the spool's gauges and counters. Counters count from Open.
type Stats struct {
	Entries         int64  // entries on disk not yet acknowledged, dropped or found lost
	Bytes           int64  // bytes on disk: segments and ack files (what max_bytes caps)
	Segments        int64  // segment files
	Appended        uint64 // entries appended
	Acked           uint64 // entries acknowledged
	DroppedOldest   uint64 // unacknowledged entries deleted by when_full: drop_oldest
	DroppedNewest   uint64 // Append calls refused with ErrFull
	CorruptEntries  uint64 // entries lost to corrupt frames (found at recovery or on read)
	CorruptSegments uint64 // segment files moved aside as *.corrupt at recovery
	TornTails       uint64 // incomplete writes cut off the end of a segment at recovery
	BytesLost       uint64 // bytes cut, skipped or moved aside because of the above
	Fsyncs          uint64 // fsync/fdatasync calls on segment and ack files
	WriteErrors     uint64 // writes, creations and deletions the file system refused (retried)
	BlockedAppends  int64  // Append calls waiting for room now (when_full: block)
	Staged          int64  // entries accepted and not yet written to a segment (in Entries too)
	Unwritten       uint64 // entries accepted but never written: the disk refused them until Close, or an fsync failed first
	Full            bool   // a full episode is on: logged as started ("disk full", "appends wait for room"), not yet as ended ("room again")
	Durable         ID     // see Durable
}

// Spool is a crash-safe FIFO of opaque entries on disk. All methods are safe
// for concurrent use by several appenders and several readers. After Close,
// every method but Stats, Durable and Close returns ErrClosed.
type Spool struct {
	cfg      Config
	log      *slog.Logger
	fs       fileSystem
	dir      string
	lockFile *os.File
	maxEntry int64

	// Acceptance state, guarded by wmu: what Append decides (room,
	// when_full, IDs) and the write-behind stage. Lock order: wmu, fmu,
	// rmu, ackMu, delMu, mu; wmu before syncMu, fmu before syncMu, roundMu before
	// syncMu, syncMu before mu.
	wmu     sync.Mutex
	nextID  ID // the next ID Append hands out
	closed  bool
	minFree int64       // the free-disk floor in force (min_free_bytes resolved at Open)
	full    fullEpisode // a "full" episode logged and not yet ended (full.go)
	// A spool that fills again and again (a small one in front of a
	// slower destination) logs its "full" episodes at most once per
	// fullLogEvery: fullLogAt is when one was last logged, fullQuiet how
	// many were not since (full.go, logFullLocked).
	fullLogAt time.Time
	fullQuiet int

	// Write-behind (writebehind.go): with sync: interval and never, Append
	// copies the frame into stage and returns; the writer goroutine
	// writes staged frames in runs of up to stageMax bytes. Guarded by wmu.
	wb           bool
	stage        []byte // frames accepted, not yet taken by the writer
	stageFirst   ID     // ID of stage's first frame
	stageEv      event  // the writer took the stage (appenders waiting for room in it)
	writtenEv    event  // the writer published frames or failed (Sync waits on it)
	failedEv     event  // a write of the writer failed (appenders waiting for the stage)
	kickWrite    chan struct{}
	idleRelease  time.Duration // see stageIdleRelease
	wIdle        atomic.Bool   // the writer sleeps with nothing staged: the next Append wakes it
	flushWaiters atomic.Int32  // callers waiting for staged entries to be written: no linger
	wfailing     atomic.Bool   // the writer's last attempt failed; it retries
	beforeTake   func()        // Settings.beforeTake
	lostFrom     atomic.Uint64 // the lowest ID lost unwritten (loseStaged); Durable stays below it

	// File state, guarded by fmu: the active segment and what goes into
	// it. The writer goroutine holds fmu across its write(2)s, not wmu, so
	// appenders do not wait for the disk.
	fmu    sync.Mutex
	active *segment // nil until rolled after a failed create
	wf     file     // the active segment, open for append
	wnext  ID       // the ID of the next frame written to a segment
	wbuf   []byte   // frame and seal assembly
	broken bool     // wf's tail may hold a partial frame: roll before writing

	// recent is the last run of frames the writer wrote, kept in memory:
	// a reader right behind the writer copies it from there instead of
	// reading it back from the page cache (writebehind.go, readRecent).
	recentMu sync.RWMutex
	recent   recentRun

	free   atomic.Int64 // free disk bytes: last statfs minus bytes accepted since
	staged atomic.Int64 // bytes accepted and not yet written (room is counted for them)

	// A refused write (see refused.go): the error, when to try again and
	// the current backoff. Guarded by wmu.
	refErr     error
	refUntil   time.Time
	refBackoff time.Duration

	// roundMu serialises sync rounds (syncData, Close's last one): the
	// fsyncs, and the closing of sealed files, which only a round does, so
	// a round never syncs a file another one closed. It is held across
	// fsyncs; the writer never takes it, so a roll does not wait for the
	// disk. Lock order: roundMu before syncMu.
	roundMu sync.Mutex
	// syncMu guards the hand-over of segment files from the writer to the
	// rounds: sealed, and (with fmu) active and wf, which change under
	// both, so either is enough to read them. Held only briefly.
	syncMu sync.Mutex
	// sealed are segment files sealed but not yet fsynced and closed, oldest
	// first: the syncer does that off the appenders' path (sync.go).
	// Guarded by syncMu.
	sealed []sealedFile

	// rmu guards the read cursor. A reader holds it across its read(2)s.
	rmu sync.Mutex
	rd  cursor
	// rdRemoved asks the reader holding rmu to close the cursor's file if
	// its segment was removed (releaseRemovedCursor does not wait for a
	// busy reader); see unlockRead.
	rdRemoved atomic.Bool

	// ackMu serialises ack-file writes (flushAcks, held across their
	// fsyncs). Deleting a segment does not take it: an ack write that
	// finds its segment removed once it is done removes the file it wrote
	// and counts nothing (ledger.go, ackWritten).
	ackMu sync.Mutex
	// delMu serialises the deletion of finished segments (deleteDone), so
	// that a caller that finds one in progress waits for its room. Never
	// held across an fsync.
	delMu sync.Mutex

	// mu guards the segment table and every segment's mutable fields.
	mu       sync.Mutex
	segs     []*segment // by first ID; the last one is active
	toDelete []*segment // done and out of the table; files not yet removed
	deleting bool       // a deleteDone has taken toDelete and not finished

	lastID     atomic.Uint64 // highest ID written to a segment (readers and Ack see up to it)
	durable    atomic.Uint64
	synced     atomic.Uint64 // highest ID fsynced; Durable too except with SyncNever
	closedFlag atomic.Bool
	fullOn     atomic.Bool           // full.on, for a look without wmu
	deletions  atomic.Uint64         // segment files deleted (room made: see full.go)
	freeAt     atomic.Int64          // when free was last measured (Unix ns)
	noSpace    atomic.Bool           // a write failed with ENOSPC; cleared by a deletion or a free-space check
	finished   atomic.Bool           // Close has done its final sync
	failed     atomic.Pointer[error] // sticky fsync failure

	dataEv    event // an entry was appended (readers)
	spaceEv   event // bytes were freed or free space was re-measured (blocked appenders)
	durableEv event // durable moved (or the spool failed or closed)
	blockedEv event // an append started waiting for room (for tests and metrics)

	closing   chan struct{} // closed by Close: stops background goroutines and waiters
	kickSync  chan struct{}
	kickMaint chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	st counters
	lg lossLog

	appendErrLog, ackErrLog, deleteErrLog errLog
}

type counters struct {
	entries, bytes, segments                      atomic.Int64
	appended, acked, droppedOldest, droppedNewest atomic.Uint64
	corruptEntries, corruptSegments, tornTails    atomic.Uint64
	bytesLost, fsyncs, writeErrors                atomic.Uint64
	blocked, stagedEntries                        atomic.Int64
	unwritten                                     atomic.Uint64
}

// segment is one segment file's state. first, salt and path never change;
// everything else is guarded by Spool.mu.
type segment struct {
	hdr  segHeader
	path string

	last    ID    // ID of the last frame; hdr.first-1 when empty
	end     int64 // readable bytes: the end of the last committed frame
	size    int64 // bytes on disk, the seal included
	sealed  bool  // no more frames will be added
	removed bool  // out of the table: fully done or dropped
	done    bitmap
	pending []idRange // acks not yet written to the ack file
	rewrite bool      // an ack write failed: rewrite the file from done
	ackSize int64     // bytes of the ack file on disk
	ackRecs int64     // records in the ack file
	logged  int       // corruption reports logged for this segment
}

func (g *segment) count() int64  { return int64(g.last - g.hdr.first + 1) }
func (g *segment) allDone() bool { return g.done.n >= g.count() }
func (g *segment) isDone(id ID) bool {
	return g.done.get(uint64(id - g.hdr.first))
}

// queueAck queues id, just set in done, for the ack file. While the file is
// due for a rewrite from done, nothing is queued: what waits for a failing
// disk does not grow with the acks.
func (g *segment) queueAck(id ID) {
	if !g.rewrite {
		g.pending = addID(g.pending, id)
	}
}

func segName(first ID) string { return fmt.Sprintf("%016x.seg", uint64(first)) }
func ackName(first ID) string { return fmt.Sprintf("%016x.ack", uint64(first)) }

// Open opens the spool in cfg.Dir, creating it if needed, and recovers what
// is there: a torn tail is cut, an unreadable segment is moved aside, and
// each loss is logged and counted. It fails for invalid configuration, for
// I/O errors such as permissions or a failed read, and with ErrLocked when
// another process has the directory open; never because of what the files
// contain.
func Open(cfg Config, set Settings) (*Spool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("spool: invalid config: %w", err)
	}
	s := &Spool{
		cfg:         cfg,
		log:         set.Logger,
		fs:          set.fs,
		dir:         cfg.Dir,
		maxEntry:    int64(cfg.MaxEntryBytes),
		closing:     make(chan struct{}),
		kickSync:    make(chan struct{}, 1),
		kickMaint:   make(chan struct{}, 1),
		kickWrite:   make(chan struct{}, 1),
		wb:          cfg.Sync != SyncAlways && !set.syncWrites,
		idleRelease: cmp.Or(set.idleRelease, stageIdleRelease),
		beforeTake:  set.beforeTake,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.fs == nil {
		s.fs = osFS{}
	}
	if fit := maxFitEntry(cfg); s.maxEntry > fit {
		// A larger entry could never be written: it would wait (block),
		// or be refused (drop_newest) or drop everything (drop_oldest)
		// in vain.
		s.maxEntry = fit
		s.log.Warn("spool: max_entry_bytes is more than fits under max_bytes; larger entries are refused",
			"max_entry_bytes", cfg.MaxEntryBytes, "max_bytes", cfg.MaxBytes, "effective_max_entry_bytes", fit)
	}
	s.lg.log, s.lg.every = s.log, lossLogEvery
	if set.lossLogEvery > 0 {
		s.lg.every = set.lossLogEvery
	}
	every := set.errLogEvery
	if every <= 0 {
		every = errLogEvery
	}
	s.appendErrLog = errLog{log: s.log, every: every,
		msg: "spool: the directory refuses writes; appends wait and retry"}
	s.ackErrLog = errLog{log: s.log, every: every,
		msg: "spool: writing acknowledgements failed; retrying every sync_interval (a crash would deliver them again)"}
	s.deleteErrLog = errLog{log: s.log, every: every,
		msg: "spool: cannot delete finished segments; retrying (their space stays in use)"}
	if err := s.fs.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create directory: %w", err)
	}
	s.minFree = int64(cfg.MinFreeBytes)
	if cfg.MinFreeBytes == MinFreeAuto {
		_, total, err := s.fs.DiskSpace(s.dir)
		if err != nil {
			total = 0 // then the floor is not enforced anyway (measureFree)
		}
		s.minFree = autoFloor(total)
	}
	lf, err := lockDir(s.dir)
	if err != nil {
		return nil, err
	}
	s.lockFile = lf
	if err := s.recover(); err != nil {
		s.releaseFiles()
		return nil, err
	}
	s.warnIfFullAtStart()
	s.wg.Add(2)
	go s.runSyncer()
	go s.runMaintainer()
	if s.wb {
		s.wg.Add(1)
		go s.runWriter()
	}
	return s, nil
}

// warnIfFullAtStart says once, with the numbers, when the spool cannot take
// even the smallest entry as it opens: the backlog on disk fills max_bytes,
// or free disk is below the floor. Appends then follow when_full until
// room comes back; the warning tells the operator why the sources wait.
func (s *Spool) warnIfFullAtStart() {
	need := int64(frameHeaderSize + 1 + sealFrameSize)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	bytes := s.st.bytes.Load()
	switch {
	case bytes+need > int64(s.cfg.MaxBytes):
		s.log.Warn("spool: cannot accept anything at start: the entries on disk fill max_bytes; appends follow when_full until the destination takes some",
			"dir", s.dir, "bytes", bytes, "max_bytes", int64(s.cfg.MaxBytes), "when_full", s.cfg.WhenFull)
	case s.minFree > 0 && s.free.Load()-need < s.minFree:
		free, total, err := s.fs.DiskSpace(s.dir)
		if err != nil {
			free = s.free.Load()
		}
		s.log.Warn("spool: cannot accept anything at start: free disk is below min_free_bytes; appends follow when_full until space is freed",
			"dir", s.dir, "free_bytes", free, "min_free_bytes", s.minFree, "min_free_bytes_setting", s.cfg.MinFreeBytes.String(),
			"file_system_bytes", total, "when_full", s.cfg.WhenFull)
	}
}

// Close stops the spool: blocked calls return ErrClosed, the active segment
// is sealed and synced, acknowledgements are written, and the directory is
// unlocked. Close is idempotent; later calls return the first call's result.
func (s *Spool) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Spool) close() error {
	s.wmu.Lock()
	s.closed = true
	s.closedFlag.Store(true)
	close(s.closing)
	s.wmu.Unlock()
	s.wg.Wait()

	var errs []error
	// The writer has written what it could of the stage before it ended
	// (runWriter); nothing is staged any more.
	s.fmu.Lock()
	if s.active != nil {
		// Its only error is the sticky failure, reported below.
		_ = s.sealActiveLocked()
	}
	s.fmu.Unlock()
	s.roundMu.Lock()
	s.syncSealed(s.takeSealed())
	s.roundMu.Unlock()
	if s.failure() == nil {
		advance(&s.synced, ID(s.lastID.Load()))
		s.advanceDurable(ID(s.lastID.Load()))
	}
	s.finished.Store(true)
	s.durableEv.broadcast()
	s.dataEv.broadcast()
	s.spaceEv.broadcast()

	if err := s.flushAcks(); err != nil {
		errs = append(errs, err)
	}
	if s.deleteDone() && s.cfg.Sync != SyncNever {
		if err := s.fs.SyncDir(s.dir); err != nil {
			errs = append(errs, fmt.Errorf("spool: sync directory: %w", err))
		}
	}
	if err := s.failure(); err != nil {
		errs = append(errs, err)
	}
	if n := s.st.unwritten.Load(); n > 0 {
		errs = append(errs, fmt.Errorf("spool: %d accepted entries could not be written", n))
	}
	s.releaseFiles()
	return errors.Join(errs...)
}

// releaseFiles closes the reader's file, sealed files never synced (a
// crash in tests) and the lock.
func (s *Spool) releaseFiles() {
	s.roundMu.Lock()
	s.syncMu.Lock()
	for _, p := range s.sealed {
		p.f.Close()
	}
	s.sealed = nil
	s.syncMu.Unlock()
	s.roundMu.Unlock()
	s.rmu.Lock()
	s.rd.release()
	if s.rd.buf != nil {
		b := s.rd.buf
		readBufs.Put(&b)
		s.rd.buf = nil
	}
	s.rmu.Unlock()
	if s.wf != nil { // only after a failed Open
		s.wf.Close()
		s.wf = nil
	}
	if s.lockFile != nil {
		s.lockFile.Close()
		s.lockFile = nil
	}
}

// Stats returns the current gauges and counters. It only reads atomics.
func (s *Spool) Stats() Stats {
	return Stats{
		Entries:         s.st.entries.Load(),
		Bytes:           s.st.bytes.Load(),
		Segments:        s.st.segments.Load(),
		Appended:        s.st.appended.Load(),
		Acked:           s.st.acked.Load(),
		DroppedOldest:   s.st.droppedOldest.Load(),
		DroppedNewest:   s.st.droppedNewest.Load(),
		CorruptEntries:  s.st.corruptEntries.Load(),
		CorruptSegments: s.st.corruptSegments.Load(),
		TornTails:       s.st.tornTails.Load(),
		BytesLost:       s.st.bytesLost.Load(),
		Fsyncs:          s.st.fsyncs.Load(),
		WriteErrors:     s.st.writeErrors.Load(),
		BlockedAppends:  s.st.blocked.Load(),
		Staged:          s.st.stagedEntries.Load(),
		Unwritten:       s.st.unwritten.Load(),
		Full:            s.fullOn.Load(),
		Durable:         s.Durable(),
	}
}

// Ack marks id as delivered. Acks may come in any order; acking an ID twice,
// or one that was dropped or lost, is not an error. A segment is deleted once
// all of its entries are done. Acks reach the disk every sync_interval (and
// on Sync and Close); a crash may deliver recently acked entries again.
func (s *Spool) Ack(id ID) error {
	if s.closedFlag.Load() {
		return ErrClosed
	}
	if id == 0 {
		return fmt.Errorf("%w: ack of %d", ErrUnknownID, id)
	}
	if uint64(id) > s.lastID.Load() {
		// Accepted and still staged (acked before it was read): its
		// segment is not known until it is written.
		if err := s.waitWritten(id); err != nil {
			return err
		}
	}
	s.mu.Lock()
	g := s.findLocked(id)
	if g == nil || id > g.last || !g.done.set(uint64(id-g.hdr.first)) {
		s.mu.Unlock()
		return nil
	}
	g.queueAck(id)
	s.st.acked.Add(1)
	s.st.entries.Add(-1)
	kick := s.retireIfDoneLocked(g)
	// A blocked append rolls an active segment that is all done, to free it.
	wake := !kick && !g.sealed && g.allDone() && s.st.blocked.Load() > 0
	s.mu.Unlock()
	if kick {
		s.kick(s.kickMaint)
	}
	if wake {
		s.spaceEv.broadcast()
	}
	return nil
}

// findLocked returns the segment whose ID range may hold id, or nil.
func (s *Spool) findLocked(id ID) *segment {
	i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].hdr.first > id })
	if i == 0 {
		return nil
	}
	return s.segs[i-1]
}

// retireIfDoneLocked moves a sealed, fully done segment out of the table
// and queues its files for removal. It reports whether it did. The newest
// segment stays (it is sealed and newest only after Close or a failed roll):
// its file is what keeps IDs growing across restarts.
func (s *Spool) retireIfDoneLocked(g *segment) bool {
	if !g.sealed || g.removed || !g.allDone() || g == s.segs[len(s.segs)-1] {
		return false
	}
	s.removeLocked(g)
	s.toDelete = append(s.toDelete, g)
	return true
}

func (s *Spool) removeLocked(g *segment) {
	g.removed = true
	g.pending = nil
	for i, x := range s.segs {
		if x == g {
			s.segs = append(s.segs[:i], s.segs[i+1:]...)
			break
		}
	}
}

// deleteDone removes the files of retired segments and reports whether it
// removed any. A segment's acks are dropped when it is retired (see
// retireIfDoneLocked): until its files are gone, a crash delivers it again.
// A segment whose file cannot be deleted (a directory made read-only) stays
// queued and is tried again at the next call: its space must come back once
// the directory is writable, or a blocked append would wait for ever.
func (s *Spool) deleteDone() bool {
	removed := s.deleteDoneFiles()
	if removed {
		s.releaseRemovedCursor()
	}
	return removed
}

func (s *Spool) deleteDoneFiles() bool {
	// Nothing to delete, nor being deleted: nothing to wait for. Deleting
	// never waits for ackMu, which flushAcks holds across its fsyncs: an
	// appender about to refuse or drop an entry must not wait for the
	// disk's fsyncs to find room.
	s.mu.Lock()
	idle := len(s.toDelete) == 0 && !s.deleting
	s.mu.Unlock()
	if idle {
		return false
	}
	s.delMu.Lock()
	defer s.delMu.Unlock()
	s.mu.Lock()
	gs := s.toDelete
	s.toDelete = nil
	s.deleting = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.deleting = false
		s.mu.Unlock()
	}()
	var failed []*segment
	var ferr error
	for _, g := range gs {
		if err := s.removeFilesLocked(g); err != nil {
			failed, ferr = append(failed, g), err
		}
	}
	if len(failed) > 0 {
		s.mu.Lock()
		s.toDelete = append(failed, s.toDelete...)
		s.mu.Unlock()
		s.st.writeErrors.Add(1)
		s.deleteErrLog.failed(ferr, "dir", s.dir, "segments", len(failed))
	} else if len(gs) > 0 {
		s.deleteErrLog.ok("spool: finished segments deleted again", "dir", s.dir)
	}
	removed := len(gs) > len(failed)
	if removed {
		s.noSpace.Store(false)
		s.spaceEv.broadcast()
	}
	return removed
}

// releaseRemovedCursor closes the read cursor's file when its segment was
// deleted or dropped: a reader that caught up at a segment's end keeps it
// open until its next read, which may not come before the space does (an
// append waiting for room on a small disk, with nothing left to read), and
// an open file keeps its blocks allocated. A busy reader (one in a read,
// holding rmu, perhaps on a slow disk) is not waited for: it is asked to
// close the file as it releases rmu (unlockRead). Appenders call this on
// their way to drop or wait; they must not wait for a read.
func (s *Spool) releaseRemovedCursor() {
	s.rdRemoved.Store(true)
	if !s.rmu.TryLock() {
		return // the holder sees rdRemoved in unlockRead
	}
	s.unlockRead()
}

// unlockRead releases rmu, closing first the cursor's file if its segment
// was removed and releaseRemovedCursor asked for it. A request made while
// this holder was between its look and its unlock is seen after the
// unlock, and served by whoever then holds rmu.
func (s *Spool) unlockRead() {
	for {
		if s.rdRemoved.Swap(false) {
			if g := s.rd.g; g != nil {
				s.mu.Lock()
				removed := g.removed
				s.mu.Unlock()
				if removed {
					// Only the file: the cursor stays on g, so the next
					// read moves to the segment after it (older segments
					// may hold entries handed out and not yet
					// acknowledged).
					s.rd.closeFile()
				}
			}
		}
		s.rmu.Unlock()
		if !s.rdRemoved.Load() || !s.rmu.TryLock() {
			return
		}
	}
}

// removeFilesLocked deletes the files of a segment out of the table
// (removed), which the caller alone deletes: delMu is held (deleteDone), or
// the caller took it out itself (dropOldestLocked, recovery). The segment
// goes first: if the ack file went first and we crashed, the whole segment
// would be delivered again. It returns the error that kept the segment
// file (a file already gone is not one). An ack write in progress for it
// removes what it wrote when it is done (ackWritten).
func (s *Spool) removeFilesLocked(g *segment) error {
	if err := s.fs.Remove(g.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: delete %s: %w", g.path, err)
	}
	// Once removed, g.size and g.ackSize no longer change.
	s.mu.Lock()
	size, ackSize := g.size, g.ackSize
	s.mu.Unlock()
	s.deletions.Add(1)
	s.st.bytes.Add(-size)
	s.st.segments.Add(-1)
	// Free at once, not only at the next free-space check: drop_oldest
	// under the floor would drop one segment after another until then.
	s.free.Add(size + ackSize)
	// Whatever ackSize says: a first write that failed after creating the
	// file leaves one that ackSize does not count. One left behind is
	// removed at the next Open (its segment is gone).
	if err := s.fs.Remove(s.ackPath(g)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("spool: cannot delete an ack file; the next start removes it", "segment", g.path, "error", err)
	}
	s.st.bytes.Add(-ackSize)
	return nil
}

func (s *Spool) kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// failure returns the sticky error after a failed fsync, or nil.
func (s *Spool) failure() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// fail records a failed fsync. After one, the kernel may have dropped the
// dirty pages it could not write, so nothing written since the last good
// sync can be called durable: the spool refuses appends until it is
// reopened, and recovery then reads back what really is on disk.
func (s *Spool) fail(err error) {
	err = fmt.Errorf("spool: sync failed, reopen the spool to recover: %w", err)
	if s.failed.CompareAndSwap(nil, &err) {
		s.log.Error("spool: fsync failed; appends are refused until restart", "error", err)
	}
	s.durableEv.broadcast()
	s.spaceEv.broadcast()
}

// lossLog rate-limits drop reports: at most one line per lossLogEvery,
// carrying the counts since the last one. It also keeps the drop episode
// (full.go), whose end is logged once.
type lossLog struct {
	mu            sync.Mutex
	log           *slog.Logger
	every         time.Duration // lossLogEvery; tests shorten it
	last          time.Time
	oldest, newer uint64
	ep            dropEpisode
}

const lossLogEvery = 10 * time.Second

// dropped counts entries dropped by when_full (oldest: deleted unacked;
// newest: refused) for an entry of need bytes that met a full spool, and
// logs them at most once per interval.
func (l *lossLog) dropped(oldest, newest uint64, reason string, need int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.oldest += oldest
	l.newer += newest
	now := time.Now()
	l.ep.drop(oldest, newest, need, now)
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		return
	}
	l.log.Error("spool: full, dropping entries", "when_full_reason", reason,
		"dropped_oldest", l.oldest, "dropped_newest", l.newer)
	l.last, l.oldest, l.newer = now, 0, 0
	l.ep.logged = true
}
