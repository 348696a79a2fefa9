package journald

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kplagent/agent/agent/checkpoint"
	"github.com/kplagent/agent/agent/source"
)

// FileID is the Cursor.FileID of every record: the journal is one stream.
// Cursor.Offset is the record's sequence number within one Run (from 1),
// Start the one before; the source maps committed numbers back to journal
// cursors.
const FileID = "journal"

// Settings are set in code, not in the config file.
type Settings struct {
	// Name is the source's name: its checkpoint namespace, its label in
	// logs and metrics. Required.
	Name   string
	Logger *slog.Logger // nil discards
	// Checkpoints persists the committed cursor; nil keeps it in memory
	// only (every start is a first start).
	Checkpoints *checkpoint.Store
	// CheckpointInterval is how often the committed cursor is written;
	// 0 means every second.
	CheckpointInterval time.Duration
}

// Stats are the source's counters since New.
type Stats struct {
	Records     uint64 // records emitted
	Bytes       uint64 // their data bytes
	Restarts    uint64 // journalctl restarted after it ended or failed
	ParseErrors uint64 // export streams that were not in the export format (journalctl restarted)
	Truncated   uint64 // records cut to max_record_bytes
	CkptErrors  uint64 // failed checkpoint writes
	Committed   string // the cursor of the last record durable downstream
}

// Restart delays after journalctl ends: doubling from restartMin to
// restartMax, back to restartMin once a journalctl delivered records.
var (
	restartMin = 200 * time.Millisecond
	restartMax = 30 * time.Second
)

// maxInFlight bounds the cursors kept for records emitted and not yet
// committed. Past it every other older cursor is forgotten: a commit then
// persists an earlier cursor (records after it are read again after a
// restart, never skipped).
const maxInFlight = 1 << 14

type seqCursor struct {
	seq    int64
	cursor string
}

// Source follows the systemd journal through journalctl. Run it once.
type Source struct {
	cfg Config
	set Settings
	log *slog.Logger

	started, finished atomic.Bool

	mu        sync.Mutex
	inFlight  []seqCursor // ascending seq
	committed int64
	cursor    string // committed cursor
	saved     string // the cursor last handed to the store

	persistMu  sync.Mutex
	lastCPWarn time.Time

	records, bytes, restarts, parseErrors, truncated, cpErrors atomic.Uint64

	// lastTruncWarn: when a cut entry was last logged (unix nanos).
	lastTruncWarn atomic.Int64
}

// truncWarnEvery is how often a cut entry is logged at most: a unit that
// logs large entries would repeat it for each (the counter has every one).
const truncWarnEvery = time.Minute

// New checks cfg and prepares a source; journalctl is started by Run.
func New(cfg Config, set Settings) (*Source, error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if set.Name == "" {
		errs = append(errs, errors.New("name: required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("journald source %q: %w", set.Name, err)
	}
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if set.CheckpointInterval <= 0 {
		set.CheckpointInterval = time.Second
	}
	return &Source{cfg: cfg, set: set, log: log}, nil
}

// Name returns the source's name.
func (s *Source) Name() string { return s.set.Name }

// Stats returns the counters; safe for concurrent use with Run.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	c := s.cursor
	s.mu.Unlock()
	return Stats{Records: s.records.Load(), Bytes: s.bytes.Load(), Restarts: s.restarts.Load(),
		ParseErrors: s.parseErrors.Load(), Truncated: s.truncated.Load(), CkptErrors: s.cpErrors.Load(), Committed: c}
}

// Commit records that every record up to sequence number offset is durable
// downstream: its cursor becomes the checkpoint (written within
// CheckpointInterval, and when Run returns; after Run returned, handed to
// the store at once). Offsets that go backwards and other file IDs are
// ignored. Safe for concurrent use with Run.
func (s *Source) Commit(fileID string, offset int64) {
	if fileID != FileID {
		return
	}
	s.mu.Lock()
	if offset <= s.committed {
		s.mu.Unlock()
		return
	}
	s.committed = offset
	i := sort.Search(len(s.inFlight), func(i int) bool { return s.inFlight[i].seq > offset })
	if i > 0 {
		s.cursor = s.inFlight[i-1].cursor
		n := copy(s.inFlight, s.inFlight[i:])
		clear(s.inFlight[n:])
		s.inFlight = s.inFlight[:n]
	}
	s.mu.Unlock()
	if s.finished.Load() {
		s.persist(false)
	}
}

// track notes the cursor of the record about to be emitted as seq.
func (s *Source) track(seq int64, cursor string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.inFlight) >= maxInFlight {
		// Keep every other of the older ones and the newest.
		last := len(s.inFlight) - 1
		n := 0
		for i := 0; i < last; i += 2 {
			s.inFlight[n] = s.inFlight[i]
			n++
		}
		s.inFlight[n] = s.inFlight[last]
		n++
		clear(s.inFlight[n:])
		s.inFlight = s.inFlight[:n]
	}
	s.inFlight = append(s.inFlight, seqCursor{seq, cursor})
}

// persist hands the committed cursor to the store if it changed and, unless
// only handing it over (after Run), writes the store.
func (s *Source) persist(write bool) {
	st := s.set.Checkpoints
	if st == nil {
		return
	}
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	s.mu.Lock()
	c, changed := s.cursor, s.cursor != s.saved
	s.saved = c
	s.mu.Unlock()
	if changed {
		st.Set(s.set.Name, FileID, checkpoint.Entry{Cursor: c, LastSeen: time.Now().UTC().Truncate(time.Second)})
	}
	if !write {
		return
	}
	if err := st.Flush(); err != nil && !errors.Is(err, checkpoint.ErrClosed) {
		s.cpErrors.Add(1)
		if time.Since(s.lastCPWarn) >= time.Minute {
			s.lastCPWarn = time.Now()
			s.log.Error("writing checkpoints failed; retrying", "error", err)
		}
	}
}

// ErrNoJournalctl is wrapped by Run's error when journalctl cannot be found
// or started.
var ErrNoJournalctl = errors.New("journald: journalctl not available")

// Run follows the journal until ctx is done. It starts journalctl after the
// checkpointed cursor (or at start_at), emits one record per entry, and
// starts journalctl again, with a growing delay, after the last emitted
// cursor when it ends or fails. It returns an error when journalctl cannot
// be started or fails before the first entry (a missing program, an
// unreadable journal, a bad filter), or emit's error; nil when ctx ends it.
func (s *Source) Run(ctx context.Context, emit source.Emit) error {
	if !s.started.CompareAndSwap(false, true) {
		return fmt.Errorf("journald source %q: Run called twice", s.set.Name)
	}
	path, err := exec.LookPath(s.cfg.JournalctlPath)
	if err != nil {
		return fmt.Errorf("journald source %q: %w: %w (install systemd's journalctl or set journalctl_path)", s.set.Name, ErrNoJournalctl, err)
	}
	after := ""
	if st := s.set.Checkpoints; st != nil {
		if e, ok := st.Get(s.set.Name, FileID); ok && e.Cursor != "" {
			after = e.Cursor
			s.mu.Lock()
			s.cursor, s.saved = after, after
			s.mu.Unlock()
			s.log.Info("resuming after the checkpointed journal cursor", "cursor", after)
		}
	}

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
					s.persist(true)
				}
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
		s.finished.Store(true)
		s.persist(true)
	}()

	var (
		seq     int64
		since   string // for restarts before any cursor was seen
		delay   = restartMin
		started bool      // a journalctl wrote entries
		first   time.Time // when the first journalctl started
	)
	en := newEncoder(s.cfg.ExcludeFields, int(s.cfg.MaxRecordBytes))
	for children := 1; ; children++ {
		if after == "" && since == "" && children > 1 && s.cfg.StartAt == StartAtEnd {
			// No entry seen yet: go on from when the first one started
			// (from the beginning, start_at: beginning starts over).
			since = "@" + strconv.FormatInt(first.Unix(), 10)
		}
		if children == 1 {
			first = time.Now()
		}
		res := s.runChild(ctx, emit, path, s.cfg.args(after, since), en, &seq)
		if res.last != "" {
			after = res.last
		}
		if res.output {
			started = true
		}
		if res.emitted > 0 {
			delay = restartMin
		}
		if ctx.Err() != nil {
			return nil
		}
		if res.emitErr != nil {
			return res.emitErr
		}
		if res.startErr != nil && children == 1 {
			return fmt.Errorf("journald source %q: %w: %w", s.set.Name, ErrNoJournalctl, res.startErr)
		}
		if !started && children == 1 && res.exitCode > 0 {
			return fmt.Errorf("journald source %q: journalctl %s failed at start (exit status %d): %s",
				s.set.Name, joinArgs(res.args), res.exitCode, res.stderr)
		}
		s.restarts.Add(1)
		if res.err == nil {
			res.err = res.startErr
		}
		s.log.Warn("journalctl ended; starting it again", "exit_code", res.exitCode, "error", res.err,
			"after_cursor", after, "in", delay, "stderr", res.stderr)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(delay*2, restartMax)
	}
}

type childResult struct {
	args     []string
	emitted  int
	last     string // cursor of the last emitted record
	exitCode int    // -1 when killed by a signal or by us
	err      error  // why reading stopped (parse error, read error), for the log
	emitErr  error
	startErr error
	stderr   string // the last lines journalctl wrote to stderr
	output   bool   // journalctl wrote something on stdout
}

// runChild runs one journalctl until it ends, ctx ends, the stream breaks
// or emit fails.
func (s *Source) runChild(ctx context.Context, emit source.Emit, path string, args []string, en *encoder, seq *int64) (res childResult) {
	res.args = args
	childCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(childCtx, path, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	errw := newStderrLog(s.log)
	cmd.Stderr = errw
	r, w, err := os.Pipe()
	if err != nil {
		res.startErr = err
		return res
	}
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		res.startErr = fmt.Errorf("start %s: %w", path, err)
		return res
	}
	waited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		// The process is gone: what it wrote is in the pipe; do not wait
		// for a descendant that may hold the pipe open.
		_ = r.SetReadDeadline(time.Now().Add(2 * time.Second))
		waited <- err
	}()
	defer r.Close()

	maxValue := int(s.cfg.MaxRecordBytes)
	cr := &countingReader{r: r}
	p := newExportReader(cr, maxValue, 2*maxValue)
	var buf []byte
	for {
		e, err := p.next()
		if err != nil {
			if errors.Is(err, errMalformed) {
				s.parseErrors.Add(1)
				s.log.Error("journalctl's output is not in the export format; starting it again after the last record", "error", err)
			}
			if err != io.EOF {
				res.err = err
			}
			break
		}
		var cut bool
		buf, cut = en.encode(buf, e)
		if cut {
			s.truncated.Add(1)
			s.warnTruncated(e, len(buf))
		}
		*seq++
		if e.cursor != "" {
			s.track(*seq, e.cursor)
		}
		if err := emit(ctx, source.Record{Data: buf, Cursor: source.Cursor{FileID: FileID, Start: *seq - 1, Offset: *seq}}); err != nil {
			if ctx.Err() == nil {
				res.emitErr = err
			}
			break
		}
		s.records.Add(1)
		s.bytes.Add(uint64(len(buf)))
		res.emitted++
		if e.cursor != "" {
			res.last = e.cursor
		}
	}
	var werr error
	killed := true
	if res.emitErr == nil && ctx.Err() == nil && (res.err == nil || errors.Is(res.err, io.ErrUnexpectedEOF) || errors.Is(res.err, os.ErrDeadlineExceeded)) {
		// The output ended: journalctl is exiting.
		select {
		case werr = <-waited:
			killed = false
		case <-time.After(5 * time.Second):
		}
	}
	if killed {
		cancel() // SIGTERM, SIGKILL after WaitDelay
		werr = <-waited
	}
	res.exitCode = -1
	var ee *exec.ExitError
	switch {
	case killed:
	case errors.As(werr, &ee):
		res.exitCode = ee.ExitCode() // -1 for a signal
	case werr == nil:
		res.exitCode = 0
	}
	res.stderr = errw.tail()
	res.output = cr.n > 0
	return res
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func joinArgs(a []string) string {
	out := ""
	for i, s := range a {
		if i > 0 {
			out += " "
		}
		out += strconv.Quote(s)
	}
	return out
}

// warnTruncated says that an entry had values cut to fit max_record_bytes,
// at most once a minute: only a counter and the record's own
// "_AGENT_TRUNCATED" said it. It names the entry's writer (its unit and
// identifier) and its size in journalctl's export stream.
func (s *Source) warnTruncated(e *entry, kept int) {
	now := time.Now().UnixNano()
	last := s.lastTruncWarn.Load()
	if last != 0 && now-last < int64(truncWarnEvery) || !s.lastTruncWarn.CompareAndSwap(last, now) {
		return
	}
	attrs := make([]any, 0, 14)
	for _, f := range e.fields {
		switch f.name {
		case "_SYSTEMD_UNIT":
			attrs = append(attrs, "unit", string(f.value))
		case "SYSLOG_IDENTIFIER":
			attrs = append(attrs, "identifier", string(f.value))
		}
	}
	attrs = append(attrs, "cursor", e.cursor, "max_record_bytes", int64(s.cfg.MaxRecordBytes), "entry_bytes", e.size, "kept_bytes", kept,
		"truncated_records", s.truncated.Load(),
		"hint", "raise max_record_bytes (up to the output's record limit less 4KiB), or exclude_fields the large ones; logged at most once a minute, agent_journald_truncated_records_total counts every one")
	s.log.Warn("a journal entry longer than max_record_bytes had its longest values cut (\"_AGENT_TRUNCATED\": true)", attrs...)
}
