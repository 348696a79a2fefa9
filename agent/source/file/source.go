package file

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kplagent/agent/agent/checkpoint"
	"github.com/kplagent/agent/agent/source"
)

// Settings are set in code, not in the config file.
type Settings struct {
	// Name is the source's name: its checkpoint namespace, and a label in
	// logs and metrics. Required.
	Name   string
	Logger *slog.Logger // nil discards
	// Checkpoints persists committed offsets; nil keeps them in memory only.
	Checkpoints *checkpoint.Store
	// Once makes Run return nil once every matched file (those present at
	// the start and any found before the end) has been read to its end with
	// its partial last line and multiline record flushed, and no new data
	// arrived (`agent tail --once`).
	Once bool
	// CheckpointInterval is how often committed offsets are written to
	// Checkpoints; 0 means every second.
	CheckpointInterval time.Duration
}

// Stats are the source's counters since New.
type Stats struct {
	Records               uint64 // records emitted
	Bytes                 uint64 // their data bytes
	TruncatedRecords      uint64 // oversize lines truncated
	SplitRecords          uint64 // records that are pieces of an oversize line
	Truncations           uint64 // files truncated under the reader (copytruncate) and read again from 0
	Rotations             uint64 // files renamed away or deleted while followed
	FilesOpen             int    // descriptors held
	FilesWaiting          int    // files with data waiting for a descriptor (max_open_files)
	PartialFlushes        uint64 // last lines emitted without their newline (idle, rotated away, --once)
	CheckpointWriteErrors uint64
	// OpenErrors counts failed opens of matched files (permission, I/O,
	// ...), each attempt; the file is tried again at every scan.
	OpenErrors uint64
	// NoDescriptor counts opens the kernel refused for lack of descriptors
	// (EMFILE, ENFILE); the file keeps its place in the queue.
	NoDescriptor uint64
	// ReadErrors counts failed reads (not end of file); reading is retried.
	ReadErrors uint64
	// ScanErrors counts directories that could not be listed and matched
	// paths that could not be examined (stat), other than because they
	// are gone; they are tried again at the next scan.
	ScanErrors uint64
	// WatchErrors counts directories whose watch could not be added (the
	// inotify limit, permissions); changes there are found by scanning, and
	// the watch is tried again at each scan.
	WatchErrors uint64
	// FilesUnreadable is the number of files whose last open or read
	// failed, waiting for the next scan to try again.
	FilesUnreadable int
	// MaxOpenFiles is the source's bound on descriptors: max_open_files,
	// or less when the file sources' share of RLIMIT_NOFILE is smaller.
	MaxOpenFiles int
	// CompressedRotations counts compressed rotated files (logrotate's
	// compress) read for the lines after a checkpoint (at start) or read
	// offset (a compressed copytruncate copy, while running), or whole (a
	// version never seen); CompressedRecords the records read from them.
	CompressedRotations, CompressedRecords uint64
	// CompressedErrors counts compressed rotated files found corrupt or
	// truncated: what was read before the error was sent, the rest is lost.
	CompressedErrors uint64
}

// FileStatus describes one file the source follows.
type FileStatus struct {
	Path      string // where it was last seen
	FileID    string
	Size      int64 // last size seen
	Offset    int64 // read offset
	Committed int64 // durable downstream: Size-Committed is the checkpoint lag
	State     string
}

// Source follows the files that match its patterns and emits one record per
// line (or per multiline record). See the package documentation.
type Source struct {
	cfg Config
	set Settings
	log *slog.Logger
	m   *matcher
	ml  *mlRules

	started  atomic.Bool
	finished atomic.Bool
	readAll  atomic.Bool // with Once: Run ended because every file was read to its end

	mu        sync.RWMutex
	byID      map[string]*incarnation
	dropped   []string // IDs to delete from the checkpoint store
	scannedAt time.Time

	persistMu  sync.Mutex
	lastCPWarn time.Time
	scanSaved  time.Time // scannedAt last handed to the store

	fds *fdPool

	records, bytes, truncatedRecords, splitRecords, truncations, rotations, partialFlushes, cpErrors atomic.Uint64
	openErrors, noDescriptor, readErrors, scanErrors, watchErrors                                    atomic.Uint64
	compressedFiles, compressedRecords, compressedErrors                                             atomic.Uint64
	filesOpen, filesWaiting, filesUnreadable                                                         atomic.Int64
}

// New checks cfg and prepares a source; nothing runs until Run.
func New(cfg Config, set Settings) (*Source, error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if set.Name == "" {
		errs = append(errs, errors.New("name: required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("file source %q: %w", set.Name, err)
	}
	if cfg.Multiline != nil {
		m := cfg.Multiline.withDefaults(cfg.MaxRecordBytes)
		cfg.Multiline = &m
	}
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMatcher(cfg.Include, cfg.Exclude)
	if err != nil {
		return nil, fmt.Errorf("file source %q: %w", set.Name, err)
	}
	ml, err := newMLRules(cfg.Multiline, int(cfg.MaxRecordBytes))
	if err != nil {
		return nil, fmt.Errorf("file source %q: multiline: %w", set.Name, err)
	}
	if set.CheckpointInterval <= 0 {
		set.CheckpointInterval = time.Second
	}
	return &Source{cfg: cfg, set: set, log: log, m: m, ml: ml, byID: map[string]*incarnation{}, fds: newFDPool(cfg.MaxOpenFiles, log)}, nil
}

// newFDPool sizes a source's descriptor bound: max_open_files, within what
// the process's RLIMIT_NOFILE leaves the file sources after the reserve (see
// fdbudget.go).
func newFDPool(maxOpen int, log *slog.Logger) *fdPool {
	soft, err := rlimitNofile()
	budget := int64(fdLimitCap)
	if err == nil {
		budget = fdBudgetFor(soft)
	}
	processFDs.limit.Store(budget)
	p := &fdPool{max: min(int64(maxOpen), budget), proc: &processFDs}
	if p.max < int64(maxOpen) {
		log.Info("max_open_files lowered to leave descriptors for outputs and the spool",
			"max_open_files", maxOpen, "used", p.max, "rlimit_nofile", soft, "reserved", int64(min(soft, fdLimitCap))-budget)
	}
	return p
}

// Name returns the source's name.
func (s *Source) Name() string { return s.set.Name }

// Run follows the files until ctx is done (or, with Settings.Once, until
// everything was read). It emits from one goroutine, in order per file;
// emit may block as long as it needs to. Run returns nil when ctx ends it,
// emit's error when emit fails; either way after closing every file and
// writing the committed offsets a final time. Run may be called once.
func (s *Source) Run(ctx context.Context, emit source.Emit) error {
	return s.RunBatch(ctx, emit, nil)
}

// RunBatch is Run with a batch emit (nil: none): the records that one read
// completes go downstream in batches of at most maxBatch, taking the
// flow's locks once per batch instead of once per line (multiline records,
// which are assembled in a buffer of their own, go one by one).
func (s *Source) RunBatch(ctx context.Context, emit source.Emit, batch source.EmitBatch) error {
	if !s.started.CompareAndSwap(false, true) {
		return fmt.Errorf("file source %q: Run called twice", s.set.Name)
	}
	r := newRunner(s, ctx, emit)
	r.batch = batch
	s.load(r)
	// Events are wanted; the first scan starts the watcher (and every scan
	// after it while it cannot be started).
	r.wantWatch = !s.set.Once && !disableWatch
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if s.set.Checkpoints != nil {
		wg.Go(func() {
			t := time.NewTicker(s.set.CheckpointInterval)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					s.persist(false)
				}
			}
		})
	}
	err := r.loop()
	r.shutdown()
	close(stop)
	wg.Wait()
	s.finished.Store(true)
	s.persist(true)
	if err != nil && ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return nil // emit gave up because we are stopping
	}
	return err
}

// ReadToEnd reports, with Settings.Once, whether Run ended because every
// file was read to its end; false while it runs and after a stop that came
// first (also one in the middle of a rotation read at start, whose size the
// file statuses cannot tell: a compressed one).
func (s *Source) ReadToEnd() bool { return s.readAll.Load() }

// load takes the source's entries from the checkpoint store.
func (s *Source) load(r *runner) {
	st := s.set.Checkpoints
	if st == nil {
		return
	}
	r.prevScan = st.ScannedAt(s.set.Name)
	entries := st.Entries(s.set.Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, e := range entries {
		fp, err := parseFingerprint(e.Fingerprint, e.FingerprintLen)
		if err != nil || e.Ino == 0 || fp.n > maxFingerprintBytes {
			s.log.Warn("dropping unusable checkpoint entry", "file_id", id, "path", e.Path)
			s.dropped = append(s.dropped, id)
			continue
		}
		key := devIno{dev: e.Dev, ino: e.Ino}
		if old := r.byKey[key]; old != nil {
			// Two entries for one inode: the older is a file that was
			// deleted. Unless one of them was read to its end (a compressed
			// rotation may get the inode of the file it was made of): the
			// other is kept, which may have lines left to read.
			oldDone, newDone := old.done(), e.End > 0 && e.Offset >= e.End
			dropNew := !e.LastSeen.After(old.lastSeen)
			if oldDone != newDone {
				dropNew = newDone
			}
			if dropNew {
				s.dropped = append(s.dropped, id)
				continue
			}
			delete(s.byID, old.inc.id)
			s.dropped = append(s.dropped, old.inc.id)
		}
		f := &file{key: key, birth: e.Birth, lastPath: e.Path, lastSeen: e.LastSeen, state: stGone, offset: e.Offset, eof: true, midLine: e.Offset > 0, resumed: true, end: e.End}
		f.setFingerprint(fp)
		f.sp = r.newSplitter(f)
		f.offsetA.Store(e.Offset)
		f.sizeA.Store(e.Offset)
		inc := &incarnation{id: id, f: f, saved: e}
		inc.committed.Store(e.Offset)
		f.inc = inc
		s.byID[id] = inc
		r.byKey[key] = f
	}
	if len(entries) > 0 {
		s.log.Info("resuming from checkpoints", "files", len(entries))
	}
}

// Commit records that every record of fileID up to offset is durable
// downstream. It is safe for concurrent use, cheap, and ignores offsets that
// go backwards and unknown IDs (a file truncated or forgotten since). The
// offset is written to the checkpoint store within CheckpointInterval and
// when Run returns; after Run returned, it goes to the store at once (its
// owner writes it on Flush or Close).
func (s *Source) Commit(fileID string, offset int64) {
	s.mu.RLock()
	inc := s.byID[fileID]
	s.mu.RUnlock()
	if inc == nil {
		return
	}
	for {
		cur := inc.committed.Load()
		if offset <= cur {
			return
		}
		if inc.committed.CompareAndSwap(cur, offset) {
			break
		}
	}
	if s.finished.Load() {
		s.persistOne(inc)
	}
}

// persistOne hands one incarnation's entry to the store (after Run).
func (s *Source) persistOne(inc *incarnation) {
	st := s.set.Checkpoints
	if st == nil {
		return
	}
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	s.mu.RLock()
	e, current := inc.f.entry(inc), inc.f.inc == inc
	s.mu.RUnlock()
	if current && !sameEntry(e, inc.saved) {
		st.Set(s.set.Name, inc.id, e)
		inc.saved = e
	}
}

// scanSaveEvery is how often the time of the last scan is written on its
// own: an idle source writes its checkpoints once a minute, not every scan.
const scanSaveEvery = time.Minute

// persist hands changed entries to the checkpoint store and writes it; final
// also records the time of the last scan.
func (s *Source) persist(final bool) {
	st := s.set.Checkpoints
	if st == nil {
		return
	}
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	name := s.set.Name
	changed := false
	s.mu.Lock()
	for id, inc := range s.byID {
		if inc.f.inc != inc {
			continue
		}
		if e := inc.f.entry(inc); !sameEntry(e, inc.saved) {
			st.Set(name, id, e)
			inc.saved = e
			changed = true
		}
	}
	dropped := s.dropped
	s.dropped = nil
	scanned := s.scannedAt
	s.mu.Unlock()
	for _, id := range dropped {
		st.Delete(name, id)
		changed = true
	}
	if !scanned.IsZero() && (changed || final || scanned.Sub(s.scanSaved) >= scanSaveEvery) {
		st.SetScannedAt(name, scanned)
		s.scanSaved = scanned
	}
	if err := st.Flush(); err != nil && !errors.Is(err, checkpoint.ErrClosed) {
		s.cpErrors.Add(1)
		if time.Since(s.lastCPWarn) >= time.Minute {
			s.lastCPWarn = time.Now()
			s.log.Error("writing checkpoints failed; retrying", "error", err)
		}
	}
}

func sameEntry(a, b checkpoint.Entry) bool {
	lt := a.LastSeen.Equal(b.LastSeen)
	a.LastSeen, b.LastSeen = time.Time{}, time.Time{}
	return lt && a == b
}

// Stats returns the source's counters.
func (s *Source) Stats() Stats {
	return Stats{
		Records:               s.records.Load(),
		Bytes:                 s.bytes.Load(),
		TruncatedRecords:      s.truncatedRecords.Load(),
		SplitRecords:          s.splitRecords.Load(),
		Truncations:           s.truncations.Load(),
		Rotations:             s.rotations.Load(),
		FilesOpen:             int(s.filesOpen.Load()),
		FilesWaiting:          int(s.filesWaiting.Load()),
		PartialFlushes:        s.partialFlushes.Load(),
		CheckpointWriteErrors: s.cpErrors.Load(),
		OpenErrors:            s.openErrors.Load(),
		NoDescriptor:          s.noDescriptor.Load(),
		ReadErrors:            s.readErrors.Load(),
		ScanErrors:            s.scanErrors.Load(),
		WatchErrors:           s.watchErrors.Load(),
		FilesUnreadable:       int(s.filesUnreadable.Load()),
		MaxOpenFiles:          int(s.fds.max),
		CompressedRotations:   s.compressedFiles.Load(),
		CompressedRecords:     s.compressedRecords.Load(),
		CompressedErrors:      s.compressedErrors.Load(),
	}
}

// Files describes the files the source follows (and those it no longer
// follows whose records are not all committed), sorted by path; under one
// path, the file there now comes before files rotated away from it.
func (s *Source) Files() []FileStatus {
	s.mu.RLock()
	out := make([]FileStatus, 0, len(s.byID))
	for id, inc := range s.byID {
		f := inc.f
		off, committed := f.offsetA.Load(), inc.committed.Load()
		if f.state == stGone && committed >= off {
			continue
		}
		path := f.path
		if path == "" {
			path = f.lastPath
		}
		out = append(out, FileStatus{Path: path, FileID: id, Size: f.sizeA.Load(), Offset: off, Committed: committed, State: f.state.String()})
	}
	s.mu.RUnlock()
	// Under one path, the file that is there now comes first, then files
	// rotated away from it.
	rank := func(st string) int {
		switch st {
		case stDetached.String():
			return 1
		case stGone.String():
			return 2
		}
		return 0
	}
	slices.SortFunc(out, func(a, b FileStatus) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		if c := rank(a.State) - rank(b.State); c != 0 {
			return c
		}
		return strings.Compare(a.FileID, b.FileID)
	})
	return out
}

var (
	_ source.Source    = (*Source)(nil)
	_ source.Committer = (*Source)(nil)
)
