package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/redact"
	"github.com/kplagent/agent/internal/units"
)

// The dead-letter files in the state directory:
//
//	dead-letter.ndjson                      the active file, appended to
//	dead-letter.<UTC time>.ndjson           rotated files, oldest name first
//	dead-letter.replaying.ndjson            what `agent dead-letter replay` is sending
//	dead-letter.replaying.offset            how far it got (bytes of the file above)
//	dead-letter.lock                        flock: writers and replay, across processes
//	dead-letter.replay.lock                 flock: held by the one replay running; holds
//	                                        when the last replay that delivered records
//	                                        finished, and how many it delivered
const (
	// DeadLetterFile is the name of the active dead-letter file.
	DeadLetterFile    = "dead-letter.ndjson"
	deadLetterPrefix  = "dead-letter."
	deadLetterSuffix  = ".ndjson"
	deadLetterReplay  = "dead-letter.replaying.ndjson"
	deadLetterOffset  = "dead-letter.replaying.offset"
	deadLetterLock    = "dead-letter.lock"
	checkpointFile    = "checkpoints.json" // in state_dir, with its lock checkpoints.json.lock
	replayLock        = "dead-letter.replay.lock"
	rotatedTimeLayout = "20060102T150405.000000000Z"
)

// DeadLetterConfig caps the dead-letter files (dead_letter in agent.yaml).
type DeadLetterConfig struct {
	// MaxBytes is the size at which the active file is rotated. A single
	// write (one aggregate's records) may take a file past it. 0 means the
	// default.
	MaxBytes units.ByteSize `yaml:"max_bytes"`
	// MaxFiles is how many rotated files are kept besides the active one.
	// When they are all there and the active file is full, further
	// records are dropped and counted (agent_records_dropped_total{reason=
	// "dead_letter_full"}) until replay or the operator makes room: old
	// evidence is kept rather than new.
	MaxFiles int `yaml:"max_files"`
}

// DefaultDeadLetterConfig: rejections are rare, so 5 × 64 MiB holds a long
// incident's worth while bounding what a misconfigured destination can put
// on a client host's disk.
func DefaultDeadLetterConfig() DeadLetterConfig {
	return DeadLetterConfig{MaxBytes: 64 << 20, MaxFiles: 4}
}

// Validate checks c (keys relative to dead_letter).
func (c DeadLetterConfig) Validate() error {
	var errs []error
	if c.MaxBytes != 0 && c.MaxBytes < 1<<10 {
		errs = append(errs, fmt.Errorf("max_bytes: must be at least 1KiB, got %d", int64(c.MaxBytes)))
	}
	if c.MaxFiles < 0 {
		errs = append(errs, fmt.Errorf("max_files: must not be negative"))
	}
	return errors.Join(errs...)
}

// DeadLetterRecord is one line of the dead-letter file: a user record the
// agent accepted but could not deliver, with the reason. Data is base64; Text
// repeats it as a string when it is valid UTF-8, for reading with jq.
type DeadLetterRecord struct {
	Time            time.Time `json:"time"`
	Flow            string    `json:"flow"`
	Output          string    `json:"output,omitempty"`
	Reason          string    `json:"reason"`
	PartitionKey    string    `json:"pk,omitempty"`
	ExplicitHashKey string    `json:"ehk,omitempty"`
	Data            []byte    `json:"data"`
	Text            *string   `json:"text,omitempty"`
}

// deadLetter appends records to the dead-letter file. Every write is synced
// before it returns: a record's spool entry (or file offset) is released only
// after it is durable here (or counted as dropped when the files are full).
//
// Each write opens the file, appends and closes it under a flock of
// dead-letter.lock, so `agent dead-letter replay` in another process can
// rename files aside safely.
type deadLetter struct {
	dir  string
	path string
	cfg  DeadLetterConfig
	log  *slog.Logger
	// dropped counts records dropped because the files are full.
	dropped func(flow string, n int)

	mu   sync.Mutex
	lock *os.File
	// count is the number of records dead-lettered or dropped (not
	// delivered) by this process.
	count atomic.Int64
	// lastFullLog rate-limits the "full" error.
	lastFullLog time.Time
	// A failure episode (writes failing, a full disk): the first failure
	// is logged, then at most one a minute while it lasts, and its end.
	failing     bool
	failSince   time.Time
	failedWrite int64
	lastFailLog time.Time

	// now and writeSync are seams for tests (a clock; a write that
	// fails as on a full disk). nil: time.Now, and f.Write then f.Sync.
	now       func() time.Time
	writeSync func(f *os.File, b []byte) error
}

// failLogEvery is how often a failure episode of the dead-letter file is
// logged again while it lasts.
const failLogEvery = time.Minute

func openDeadLetter(stateDir string) *deadLetter {
	return &deadLetter{dir: stateDir, path: filepath.Join(stateDir, DeadLetterFile), cfg: DefaultDeadLetterConfig(),
		log: slog.New(slog.DiscardHandler), dropped: func(string, int) {}}
}

// configure sets the caps, the logger and the drop counter.
func (d *deadLetter) configure(cfg DeadLetterConfig, m *metrics, log *slog.Logger) {
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultDeadLetterConfig().MaxBytes
	}
	d.cfg = cfg
	if log != nil {
		d.log = log
	}
	if m != nil {
		d.dropped = func(flow string, n int) { m.dropped.WithLabelValues(flow, "dead_letter_full").Add(float64(n)) }
	}
}

// locked runs fn holding the cross-process lock (and d.mu).
func (d *deadLetter) locked(fn func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lock == nil {
		if err := os.MkdirAll(d.dir, 0o700); err != nil {
			return fmt.Errorf("dead-letter: %w", err)
		}
		f, err := os.OpenFile(filepath.Join(d.dir, deadLetterLock), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("dead-letter: lock: %w", err)
		}
		d.lock = f
	}
	if err := flock(d.lock); err != nil {
		return fmt.Errorf("dead-letter: lock: %w", err)
	}
	defer funlock(d.lock)
	return fn()
}

// write encodes the records emitted by recs and appends them to the active
// file in one synced write, rotating it first when it is full. flow names
// the records' flow for the drop counter.
func (d *deadLetter) write(flow string, recs func(emit func(DeadLetterRecord) error) error) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	n := 0
	err := recs(func(r DeadLetterRecord) error {
		n++
		return enc.Encode(d.prepare(r))
	})
	if err != nil {
		return fmt.Errorf("dead-letter: %w", err)
	}
	if n == 0 {
		return nil
	}
	wrote, err := d.appendLines(buf.Bytes(), false)
	if err != nil {
		return err
	}
	d.count.Add(int64(n))
	if !wrote {
		d.dropped(flow, n)
	}
	return nil
}

// prepare scrubs r's reason of secrets and fills Text.
func (d *deadLetter) prepare(r DeadLetterRecord) DeadLetterRecord {
	r.Reason = redact.String(r.Reason)
	r.Text = nil
	if utf8.Valid(r.Data) {
		t := string(r.Data)
		r.Text = &t
	}
	return r
}

// appendLines appends whole JSON lines to the active file, rotating it when
// they would take it past max_bytes. It reports false when the files are
// full and the lines were dropped; with force (lines that were in the
// dead-letter files already, put back by replay) they are written anyway.
func (d *deadLetter) appendLines(lines []byte, force bool) (bool, error) {
	wrote := true
	err := d.locked(func() error {
		f, err := os.OpenFile(d.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("dead-letter: %w", err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("dead-letter: %w", err)
		}
		start := st.Size()
		if start > 0 && start+int64(len(lines)) > int64(d.cfg.MaxBytes) {
			f.Close()
			rotated, err := d.rotate()
			if err != nil {
				return err
			}
			if !rotated && !force {
				wrote = false
				return nil
			}
			if f, err = os.OpenFile(d.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
				return fmt.Errorf("dead-letter: %w", err)
			}
			if start = 0; !rotated {
				st, err := f.Stat()
				if err != nil {
					f.Close()
					return fmt.Errorf("dead-letter: %w", err)
				}
				start = st.Size()
			}
		}
		if start > 0 && !endsWithNewline(d.path, start) {
			// A torn last line (a crash or a full disk in the middle
			// of another process's write, a hand edit): ended first,
			// or the first record would join it, and both be one line
			// that is not a record (shown as such, and kept by replay).
			lines = append([]byte{'\n'}, lines...)
			d.log.Warn("the dead-letter file ended in a torn line (not a record; agent dead-letter names it): ended it before the new records", "file", d.path)
		}
		if d.writeSync != nil {
			err = d.writeSync(f, lines)
		} else if _, err = f.Write(lines); err == nil {
			err = f.Sync()
		}
		if err != nil {
			// Cut a failed write (a full disk) off again, so the file stays
			// one whole JSON object per line.
			if terr := f.Truncate(start); terr != nil {
				err = errors.Join(err, terr)
			}
			f.Close()
			// The *os.PathError names the operation and the file.
			return fmt.Errorf("dead-letter: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("dead-letter: %w", err)
		}
		if start == 0 {
			return syncDir(d.dir) // a new file: its name must last too
		}
		return nil
	})
	d.noteResult(err)
	if err == nil && !wrote {
		d.logFull()
	}
	return wrote, err
}

// endsWithNewline reports whether the file at path, size bytes long, ends
// with a newline; true when that cannot be read (nothing to mend then).
func endsWithNewline(path string, size int64) bool {
	f, err := os.Open(path)
	if err != nil {
		return true
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], size-1); err != nil {
		return true
	}
	return b[0] == '\n'
}

// noteResult logs failure episodes of the dead-letter file: its first
// failed write (the callers keep the records and retry with backoff, so
// one line per attempt would flood the log while a disk stays full), then
// at most one line every failLogEvery while writes keep failing, and the
// first write that works again.
func (d *deadLetter) noteResult(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if d.now != nil {
		now = d.now()
	}
	switch {
	case err == nil && d.failing:
		d.failing = false
		d.log.Info("dead-letter file written again", "dir", d.dir, "failing_for", now.Sub(d.failSince).Round(time.Second).String(), "failed_writes", d.failedWrite)
	case err == nil:
	case !d.failing:
		d.failing, d.failSince, d.failedWrite, d.lastFailLog = true, now, 1, now
		d.log.Error("cannot write the dead-letter file: the records it should take are kept (in the spool, or in memory with their files' checkpoints held back) and the write is retried; logged again at most once a minute until it works",
			"dir", d.dir, "error", err)
	default:
		d.failedWrite++
		if now.Sub(d.lastFailLog) >= failLogEvery {
			d.lastFailLog = now
			d.log.Error("the dead-letter file still cannot be written", "dir", d.dir,
				"failing_for", now.Sub(d.failSince).Round(time.Second).String(), "failed_writes", d.failedWrite, "error", err)
		}
	}
}

// rotate renames the active file aside when fewer than max_files rotated
// files exist, and reports whether it did. Called with the lock held.
func (d *deadLetter) rotate() (bool, error) {
	rotated, err := rotatedFiles(d.dir)
	if err != nil {
		return false, err
	}
	if len(rotated) >= d.cfg.MaxFiles {
		return false, nil
	}
	name := deadLetterPrefix + time.Now().UTC().Format(rotatedTimeLayout) + deadLetterSuffix
	for i := 1; fileExists(filepath.Join(d.dir, name)); i++ {
		name = deadLetterPrefix + time.Now().UTC().Format(rotatedTimeLayout) + "-" + strconv.Itoa(i) + deadLetterSuffix
	}
	if err := os.Rename(d.path, filepath.Join(d.dir, name)); err != nil {
		return false, fmt.Errorf("dead-letter: rotate: %w", err)
	}
	if err := syncDir(d.dir); err != nil {
		return false, err
	}
	d.log.Warn("dead-letter file rotated", "file", name, "max_bytes", d.cfg.MaxBytes, "rotated_files", len(rotated)+1, "max_files", d.cfg.MaxFiles)
	return true, nil
}

func (d *deadLetter) logFull() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Since(d.lastFullLog) < time.Minute {
		return
	}
	d.lastFullLog = time.Now()
	d.log.Error("dead-letter files full: rejected records are dropped (agent_records_dropped_total{reason=\"dead_letter_full\"}); replay or remove them, or raise dead_letter.max_bytes/max_files",
		"dir", d.dir, "max_bytes", d.cfg.MaxBytes, "max_files", d.cfg.MaxFiles)
}

func (d *deadLetter) writeRecord(flow, output, reason, pk, ehk string, data []byte) error {
	return d.write(flow, func(emit func(DeadLetterRecord) error) error {
		return emit(DeadLetterRecord{Time: time.Now().UTC(), Flow: flow, Output: output, Reason: reason,
			PartitionKey: pk, ExplicitHashKey: ehk, Data: data})
	})
}

func (d *deadLetter) writeAggregate(flow, output, reason string, a *aggregate.Aggregate) error {
	now := time.Now().UTC()
	return d.write(flow, func(emit func(DeadLetterRecord) error) error {
		err := aggregate.ForEach(a, func(pk, ehk, data []byte) error {
			return emit(DeadLetterRecord{Time: now, Flow: flow, Output: output, Reason: reason,
				PartitionKey: string(pk), ExplicitHashKey: string(ehk), Data: data})
		})
		if err != nil {
			// Keep the undecodable bytes whole rather than lose them.
			return emit(DeadLetterRecord{Time: now, Flow: flow, Output: output,
				Reason: reason + "; aggregate undecodable: " + err.Error(), Data: a.Body})
		}
		return nil
	})
}

func (d *deadLetter) writeRaw(flow, output, reason string, data []byte) error {
	return d.writeRecord(flow, output, reason, "", "", data)
}

func (d *deadLetter) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lock == nil {
		return nil
	}
	err := d.lock.Close()
	d.lock = nil
	return err
}

// rotatedFiles lists the rotated dead-letter files, oldest first.
func rotatedFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("dead-letter: %w", err)
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, deadLetterPrefix) && strings.HasSuffix(n, deadLetterSuffix) &&
			len(n) > len(deadLetterPrefix) && n[len(deadLetterPrefix)] >= '0' && n[len(deadLetterPrefix)] <= '9' {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// DeadLetterPart is one dead-letter file to read, from Offset on.
type DeadLetterPart struct {
	Path   string
	Offset int64
}

// DeadLetterFiles lists the dead-letter files of a state directory in the
// order their records were written: a replay's remainder, the rotated
// files, the active file. Files that do not exist are left out.
func DeadLetterFiles(stateDir string) ([]DeadLetterPart, error) {
	var parts []DeadLetterPart
	snap := filepath.Join(stateDir, deadLetterReplay)
	if fileExists(snap) {
		off, err := readOffset(filepath.Join(stateDir, deadLetterOffset))
		if err != nil {
			return nil, err
		}
		parts = append(parts, DeadLetterPart{Path: snap, Offset: off})
	}
	rotated, err := rotatedFiles(stateDir)
	if err != nil {
		return nil, err
	}
	for _, n := range rotated {
		parts = append(parts, DeadLetterPart{Path: filepath.Join(stateDir, n)})
	}
	if p := filepath.Join(stateDir, DeadLetterFile); fileExists(p) {
		parts = append(parts, DeadLetterPart{Path: p})
	}
	return parts, nil
}

// CheckStateDir reports an error when dir does not exist or holds no agent
// state (no checkpoints, spool or dead-letter file): a mistyped --state-dir
// must not read as "nothing was dead-lettered".
func CheckStateDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("agent: state directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("agent: state directory %s: not a directory", dir)
	}
	for _, n := range []string{"checkpoints.json", "checkpoints.json.lock", "spool", DeadLetterFile, deadLetterReplay, deadLetterLock} {
		if fileExists(filepath.Join(dir, n)) {
			return nil
		}
	}
	if rotated, err := rotatedFiles(dir); err == nil && len(rotated) > 0 {
		return nil
	}
	return fmt.Errorf("agent: %s holds no agent state (no checkpoints.json, spool/ or %s): wrong state directory?", dir, DeadLetterFile)
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func readOffset(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("dead-letter: %w", err)
	}
	off, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || off < 0 {
		return 0, fmt.Errorf("dead-letter: %s: bad offset %q", path, b)
	}
	return off, nil
}

// syncDir makes the directory's entries (a new or renamed file) durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("dead-letter: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("dead-letter: sync %s: %w", dir, err)
	}
	return nil
}
