package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// formatVersion is written into every file; a file with another version is
// treated as corrupt (moved aside) rather than misread.
const formatVersion = 1

// ErrCorrupt is wrapped by Load's error when the file exists but cannot be
// used.
var ErrCorrupt = errors.New("checkpoint: corrupt file")

// ErrLocked is returned by Open when another Store (in this or another
// process) holds the file.
var ErrLocked = errors.New("checkpoint: state is locked by another agent")

// ErrClosed is returned by Flush after Close.
var ErrClosed = errors.New("checkpoint: store closed")

// Entry is the persisted state of one file.
type Entry struct {
	// Offset is where reading resumes: the end of the last record that is
	// durable downstream.
	Offset int64 `json:"offset"`
	// Path is where the file was last seen (informational).
	Path string `json:"path,omitempty"`
	// LastSeen is when the source last saw the file; entries not seen for
	// longer than the source's TTL are pruned.
	LastSeen time.Time `json:"last_seen"`
	// Dev, Ino, Birth and the fingerprint identify the file. Birth is in
	// nanoseconds since the epoch, 0 where the file system has no birth time.
	Dev            uint64 `json:"dev"`
	Ino            uint64 `json:"ino"`
	Birth          int64  `json:"birth,omitempty"`
	Fingerprint    string `json:"fingerprint,omitempty"`
	FingerprintLen int    `json:"fingerprint_len,omitempty"`
	// End is where a file that can grow no more ended when the source read
	// it to its end: a file rotated away and let go, or a compressed
	// rotation. An entry whose Offset reached End has nothing left to read,
	// and is not looked for at the next start. 0: not known (the file was
	// followed at its path, or the entry was written before End existed).
	End int64 `json:"end,omitempty"`
	// Cursor is where a source whose position is not a byte offset resumes
	// (the systemd journal's cursor string); "" for files. Files written
	// before it existed load with "".
	Cursor string `json:"cursor,omitempty"`
}

// Settings are set in code.
type Settings struct {
	Logger *slog.Logger // nil discards

	fs fileSystem // tests inject faults here; nil is the real file system
}

// Stats are the store's counters.
type Stats struct {
	Entries     int    // entries across all sources
	Writes      uint64 // successful writes of the file
	WriteErrors uint64 // failed writes (the state stays in memory and is retried)
	LoadErrors  uint64 // loads that found a corrupt or unreadable file
}

type sourceState struct {
	ScannedAt time.Time        `json:"scanned_at,omitzero"`
	Files     map[string]Entry `json:"files"`
}

type fileFormat struct {
	Version int                     `json:"version"`
	SavedAt time.Time               `json:"saved_at"`
	Sources map[string]*sourceState `json:"sources"`
}

// Store holds checkpoints in memory and writes them to one file on Flush. All
// methods are safe for concurrent use. After Close, Flush returns ErrClosed
// and changes are ignored.
type Store struct {
	path string
	log  *slog.Logger
	fs   fileSystem

	writeMu sync.Mutex // serializes writes (and Load's renames) of the file
	lock    *os.File   // flock held while open

	mu      sync.Mutex
	sources map[string]*sourceState
	gen     uint64 // bumped by every change
	written uint64 // gen of the last successful write
	aside   bool   // the file could not be read nor moved aside: move it before writing
	closed  bool
	stats   Stats
}

// Open locks the state at path, creating its directory, and loads it. A
// missing file is a first start (logged at info); a corrupt or unreadable
// one is logged, moved aside (see Load), and the store starts empty. Neither
// makes Open fail: it fails only when the directory cannot be created or the
// state is locked by another Store.
func Open(path string, set Settings) (*Store, error) {
	if path == "" {
		return nil, errors.New("checkpoint: empty path")
	}
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fsys := set.fs
	if fsys == nil {
		fsys = osFS{}
	}
	if err := fsys.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, log: log, fs: fsys, lock: lock, sources: map[string]*sourceState{}}
	s.removeTemps()
	if onTmpfs(filepath.Dir(path)) {
		log.Warn("checkpoint file is on tmpfs: it is lost at reboot and files will start over", "path", path)
	}
	err = s.Load()
	switch {
	case err == nil:
	case errors.Is(err, os.ErrNotExist):
		log.Info("no checkpoint file: sources start at their configured position", "path", path)
	default:
		log.Error("checkpoints unusable: sources start at their configured position", "path", path, "error", err)
	}
	return s, nil
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Load replaces the in-memory state with the file's. A missing file returns
// an error wrapping os.ErrNotExist. A file that cannot be parsed wraps
// ErrCorrupt and is renamed to path+".corrupt"; one that cannot be read (an
// I/O error, a permission, a directory there) wraps ErrCorrupt and the read
// error, and is renamed to path+".unreadable": the next Flush must not
// destroy what may be a good file. If it cannot be moved aside, Flush tries
// again and writes nothing (returning an error) until it can. In all these
// cases the state is empty afterwards.
func (s *Store) Load() error {
	s.writeMu.Lock() // it may rename the file
	defer s.writeMu.Unlock()
	data, rerr := s.fs.ReadFile(s.path)
	var ff fileFormat
	err := rerr
	if err == nil {
		err = decode(data, &ff)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sources = map[string]*sourceState{}
	s.gen++
	s.written = s.gen // the file holds what memory holds (or nothing worth keeping)
	s.aside = false
	if err == nil {
		s.sources = ff.Sources
		s.stats.Entries = countEntries(s.sources)
		return nil
	}
	s.stats.Entries = 0
	if errors.Is(err, os.ErrNotExist) {
		return err
	}
	s.stats.LoadErrors++
	s.written = 0 // write a good file at the next Flush
	if rerr == nil {
		if mverr := s.fs.Rename(s.path, s.path+".corrupt"); mverr == nil {
			return fmt.Errorf("%w %s (moved to %s.corrupt): %v", ErrCorrupt, s.path, s.path, err)
		}
		return fmt.Errorf("%w %s: %v", ErrCorrupt, s.path, err)
	}
	if mverr := s.fs.Rename(s.path, s.path+unreadableSuffix); mverr != nil {
		s.aside = true
		return fmt.Errorf("%w %s: %w (cannot move it aside, not writing over it: %v)", ErrCorrupt, s.path, rerr, mverr)
	}
	return fmt.Errorf("%w %s (moved to %s%s): %w", ErrCorrupt, s.path, s.path, unreadableSuffix, rerr)
}

// unreadableSuffix names a state file moved aside because it could not be
// read.
const unreadableSuffix = ".unreadable"

// moveAside renames the file that Load could not read, before it is written
// over; a file gone since is fine.
func (s *Store) moveAside() error {
	err := s.fs.Rename(s.path, s.path+unreadableSuffix)
	if err == nil {
		s.log.Warn("moved the unreadable checkpoint file aside", "path", s.path, "to", s.path+unreadableSuffix)
	}
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return fmt.Errorf("%s could not be read and cannot be moved aside; not writing over it: %w", s.path, err)
}

func decode(data []byte, ff *fileFormat) error {
	if err := json.Unmarshal(data, ff); err != nil {
		return err
	}
	if ff.Version != formatVersion {
		return fmt.Errorf("unknown version %d", ff.Version)
	}
	if ff.Sources == nil {
		ff.Sources = map[string]*sourceState{}
	}
	for name, st := range ff.Sources {
		if st == nil {
			return fmt.Errorf("source %q: null", name)
		}
		if st.Files == nil {
			st.Files = map[string]Entry{}
		}
		for id, e := range st.Files {
			if e.Offset < 0 || e.FingerprintLen < 0 || e.End < 0 {
				return fmt.Errorf("source %q file %q: negative offset, end or fingerprint length", name, id)
			}
		}
	}
	return nil
}

func countEntries(m map[string]*sourceState) int {
	n := 0
	for _, st := range m {
		n += len(st.Files)
	}
	return n
}

// Get returns the entry of a source's file.
func (s *Store) Get(source, fileID string) (Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.sources[source]
	if st == nil {
		return Entry{}, false
	}
	e, ok := st.Files[fileID]
	return e, ok
}

// Entries returns a copy of a source's entries by file ID.
func (s *Store) Entries(source string) map[string]Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Entry{}
	if st := s.sources[source]; st != nil {
		for id, e := range st.Files {
			out[id] = e
		}
	}
	return out
}

// Set stores a source's file entry; it is written at the next Flush.
func (s *Store) Set(source, fileID string, e Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	st := s.source(source)
	if old, ok := st.Files[fileID]; ok && old == e {
		return
	}
	if _, ok := st.Files[fileID]; !ok {
		s.stats.Entries++
	}
	st.Files[fileID] = e
	s.gen++
}

// Delete removes a source's file entry.
func (s *Store) Delete(source, fileID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.sources[source]
	if s.closed || st == nil {
		return
	}
	if _, ok := st.Files[fileID]; ok {
		delete(st.Files, fileID)
		s.stats.Entries--
		s.gen++
	}
}

// ScannedAt returns when the source last completed a look at its files, as
// recorded by SetScannedAt; zero if never.
func (s *Store) ScannedAt(source string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.sources[source]; st != nil {
		return st.ScannedAt
	}
	return time.Time{}
}

// SetScannedAt records when the source last completed a look at its files.
// A file born after this time appeared while the source was not looking.
func (s *Store) SetScannedAt(source string, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	st := s.source(source)
	if !st.ScannedAt.Equal(t) {
		st.ScannedAt = t
		s.gen++
	}
}

// Prune deletes the source's entries last seen before cutoff and returns how
// many it deleted. An empty source is removed.
func (s *Store) Prune(source string, cutoff time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.sources[source]
	if s.closed || st == nil {
		return 0
	}
	n := 0
	for id, e := range st.Files {
		if e.LastSeen.Before(cutoff) {
			delete(st.Files, id)
			n++
		}
	}
	if n > 0 {
		s.stats.Entries -= n
		s.gen++
	}
	return n
}

// Sources returns the names of the sources that have state.
func (s *Store) Sources() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.sources))
	for name := range s.sources {
		out = append(out, name)
	}
	return out
}

// DropSource removes all state of a source (one that left the config).
func (s *Store) DropSource(source string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.sources[source]; st != nil && !s.closed {
		s.stats.Entries -= len(st.Files)
		delete(s.sources, source)
		s.gen++
	}
}

func (s *Store) source(name string) *sourceState {
	st := s.sources[name]
	if st == nil {
		st = &sourceState{Files: map[string]Entry{}}
		s.sources[name] = st
	}
	return st
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Flush writes the state if it changed since the last write. On error the
// state stays in memory and the next Flush tries again.
func (s *Store) Flush() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	err := s.flushLocked()
	return err
}

// flushLocked is called with writeMu and mu held; it returns with mu
// released.
func (s *Store) flushLocked() error {
	if s.gen == s.written {
		s.mu.Unlock()
		return nil
	}
	gen := s.gen
	ff := fileFormat{Version: formatVersion, SavedAt: time.Now().UTC(), Sources: s.sources}
	data, err := json.MarshalIndent(&ff, "", " ")
	aside := s.aside
	s.mu.Unlock()
	if err == nil && aside {
		err = s.moveAside()
	}
	if err == nil {
		err = s.writeAtomic(data)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if aside && err == nil {
		s.aside = false
	}
	if err != nil {
		s.stats.WriteErrors++
		return fmt.Errorf("checkpoint: write %s: %w", s.path, err)
	}
	s.stats.Writes++
	s.written = gen
	return nil
}

// Close writes the state a final time and releases the lock. It is
// idempotent; later calls return nil.
func (s *Store) Close() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	err := s.flushLocked()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	if s.lock != nil {
		if cerr := s.lock.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("checkpoint: unlock: %w", cerr)
		}
	}
	return err
}

// tempPrefix starts the name of a temporary state file: path + tempPrefix +
// a random suffix.
const tempPrefix = ".tmp-"

// writeAtomic replaces the state file with data: temp file, fsync, rename,
// fsync the directory. On error the old file is untouched (or already
// replaced whole, when only the directory fsync failed) and the temporary
// file is removed if it can be.
func (s *Store) writeAtomic(data []byte) (err error) {
	dir := filepath.Dir(s.path)
	tmp := fmt.Sprintf("%s%s%016x", s.path, tempPrefix, rand.Uint64())
	f, err := s.fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = s.fs.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = s.fs.Rename(tmp, s.path); err != nil {
		return err
	}
	return s.fs.SyncDir(dir)
}

// removeTemps deletes temporary state files left by a process that stopped
// between creating one and renaming it (a crash, a power cut, a write that
// failed in a directory that then refused the removal). Only the lock holder
// writes them, and Open holds the lock.
func (s *Store) removeTemps() {
	dir, base := filepath.Dir(s.path), filepath.Base(s.path)+tempPrefix
	des, err := s.fs.ReadDir(dir)
	if err != nil {
		return // the next Open tries again
	}
	for _, de := range des {
		if strings.HasPrefix(de.Name(), base) {
			_ = s.fs.Remove(filepath.Join(dir, de.Name()))
		}
	}
}

var _ io.Closer = (*Store)(nil)
