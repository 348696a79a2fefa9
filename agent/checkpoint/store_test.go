package checkpoint

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path, Settings{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func entry(off int64) Entry {
	return Entry{Offset: off, Path: "/var/log/a.log", LastSeen: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC), Dev: 1, Ino: 2,
		Birth: 7, Fingerprint: "0011223344556677", FingerprintLen: 1024}
}

func TestStore_RoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "checkpoints.json") // the directory is created
	s := open(t, path)
	s.Set("src", "1:2:x", entry(10))
	s.Set("other", "3:4:y", entry(20))
	scanned := time.Date(2025, 2, 3, 4, 5, 6, 7, time.UTC)
	s.SetScannedAt("src", scanned)
	require.NoError(t, s.Flush())
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is idempotent")
	require.ErrorIs(t, s.Flush(), ErrClosed)

	s2 := open(t, path)
	e, ok := s2.Get("src", "1:2:x")
	require.True(t, ok)
	require.Equal(t, entry(10), e)
	require.Equal(t, map[string]Entry{"3:4:y": entry(20)}, s2.Entries("other"))
	require.True(t, scanned.Equal(s2.ScannedAt("src")))
	require.ElementsMatch(t, []string{"src", "other"}, s2.Sources())
	require.Equal(t, 2, s2.Stats().Entries)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

// Flush writes only when something changed; no temp files are left.
func TestStore_FlushWritesOnlyChangesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cp.json")
	s := open(t, path)
	require.NoError(t, s.Flush())
	require.Zero(t, s.Stats().Writes, "nothing to write")
	s.Set("s", "a", entry(1))
	require.NoError(t, s.Flush())
	require.NoError(t, s.Flush())
	s.Set("s", "a", entry(1)) // same value
	require.NoError(t, s.Flush())
	require.Equal(t, uint64(1), s.Stats().Writes)
	s.Set("s", "a", entry(2))
	require.NoError(t, s.Flush())
	require.Equal(t, uint64(2), s.Stats().Writes)
	names, err := filepath.Glob(filepath.Join(dir, "*"))
	require.NoError(t, err)
	require.ElementsMatch(t, []string{path, path + ".lock"}, names)
	var ff map[string]any
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &ff))
	require.Equal(t, float64(1), ff["version"])
}

func TestCheckpoint_CorruptFileIsMovedAsideAndStoreStartsEmpty(t *testing.T) {
	for _, tc := range []struct{ name, content string }{
		{"torn", `{"version":1,"sources":{"s":{"files":{"a":{"offset":1`},
		{"garbage", "\x00\x01not json"},
		{"wrong version", `{"version":99,"sources":{}}`},
		{"negative offset", `{"version":1,"sources":{"s":{"files":{"a":{"offset":-5}}}}}`},
		{"null source", `{"version":1,"sources":{"s":null}}`},
		{"empty", ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cp.json")
			require.NoError(t, os.WriteFile(path, []byte(tc.content), 0o600))
			s := open(t, path) // never fails over content
			require.Empty(t, s.Sources())
			require.Equal(t, uint64(1), s.Stats().LoadErrors)
			kept, err := os.ReadFile(path + ".corrupt")
			require.NoError(t, err)
			require.Equal(t, tc.content, string(kept))
			require.ErrorIs(t, s.Load(), os.ErrNotExist, "moved aside")
			// The next flush writes a good file.
			s.Set("s", "a", entry(3))
			require.NoError(t, s.Flush())
			require.NoError(t, s.Close())
			s2 := open(t, path)
			e, ok := s2.Get("s", "a")
			require.True(t, ok)
			require.Equal(t, int64(3), e.Offset)
		})
	}
}

// A state file that cannot be read may still be good (a transient I/O
// error, a permission): it is moved aside to .unreadable, not written over,
// and the store starts empty (Open does not fail).
func TestCheckpoint_UnreadableFileIsMovedAsideNotOverwritten(t *testing.T) {
	t.Run("directory at the path", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "cp.json")
		require.NoError(t, os.Mkdir(path, 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(path, "keep"), []byte("x"), 0o600))
		s := open(t, path)
		require.Empty(t, s.Sources())
		require.Equal(t, uint64(1), s.Stats().LoadErrors)
		_, err := os.Stat(filepath.Join(path+".unreadable", "keep"))
		require.NoError(t, err, "moved aside whole")
		s.Set("s", "a", entry(3))
		require.NoError(t, s.Flush())
		require.NoError(t, s.Close())
		e, ok := open(t, path).Get("s", "a")
		require.True(t, ok)
		require.Equal(t, int64(3), e.Offset)
	})
	t.Run("I/O error", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "cp.json")
		good := writeGood(t, path)
		failReads(t)
		s := open(t, path)
		require.Empty(t, s.Sources())
		require.Equal(t, uint64(1), s.Stats().LoadErrors)
		kept, err := os.ReadFile(path + ".unreadable")
		require.NoError(t, err)
		require.Equal(t, good, kept)
		s.Set("s", "b", entry(4))
		require.NoError(t, s.Flush())
		require.NoError(t, s.Close())
		readFile = os.ReadFile
		s2 := open(t, path)
		require.Equal(t, []string{"b"}, keys(s2.Entries("s")))
	})
}

// If the unreadable file cannot even be moved aside, nothing is written over
// it: Flush fails (and counts a write error) until it can be moved.
func TestCheckpoint_UnreadableFileThatCannotBeMovedIsNeverOverwritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.json")
	good := writeGood(t, path)
	failReads(t)
	// A non-empty directory where it would be moved makes the rename fail.
	require.NoError(t, os.MkdirAll(filepath.Join(path+".unreadable", "x"), 0o700))
	s := open(t, path)
	err := s.Load()
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorIs(t, err, syscall.EIO)
	s.Set("s", "b", entry(4))
	require.Error(t, s.Flush())
	require.Equal(t, uint64(1), s.Stats().WriteErrors)
	now, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, good, now, "not written over")

	require.NoError(t, os.RemoveAll(path+".unreadable"))
	require.NoError(t, s.Flush())
	kept, err := os.ReadFile(path + ".unreadable")
	require.NoError(t, err)
	require.Equal(t, good, kept)
	require.NoError(t, s.Close())
	readFile = os.ReadFile
	require.Equal(t, []string{"b"}, keys(open(t, path).Entries("s")))
}

// writeGood writes a valid state file with entry "a" of source "s".
func writeGood(t *testing.T, path string) []byte {
	t.Helper()
	s := open(t, path)
	s.Set("s", "a", entry(1))
	require.NoError(t, s.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return data
}

// failReads makes reading the state file fail with EIO, as a bad disk does.
func failReads(t *testing.T) {
	readFile = func(name string) ([]byte, error) {
		return nil, &os.PathError{Op: "read", Path: name, Err: syscall.EIO}
	}
	t.Cleanup(func() { readFile = os.ReadFile })
}

func TestStore_LoadReportsCorruption(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.json")
	s := open(t, path)
	require.ErrorIs(t, s.Load(), os.ErrNotExist)
	require.NoError(t, os.WriteFile(path, []byte("{"), 0o600))
	require.ErrorIs(t, s.Load(), ErrCorrupt)
}

func TestStore_SecondOpenIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.json")
	s := open(t, path)
	_, err := Open(path, Settings{})
	require.ErrorIs(t, err, ErrLocked)
	require.NoError(t, s.Close())
	s2, err := Open(path, Settings{})
	require.NoError(t, err)
	require.NoError(t, s2.Close())
}

func TestStore_PruneDeleteAndDropSource(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "cp.json"))
	now := time.Now()
	old, fresh := entry(1), entry(2)
	old.LastSeen, fresh.LastSeen = now.Add(-48*time.Hour), now
	s.Set("s", "old", old)
	s.Set("s", "fresh", fresh)
	s.Set("t", "x", old)
	require.Equal(t, 1, s.Prune("s", now.Add(-24*time.Hour)))
	require.Equal(t, []string{"fresh"}, keys(s.Entries("s")))
	s.Delete("s", "fresh")
	s.Delete("s", "missing")
	require.Empty(t, s.Entries("s"))
	s.DropSource("t")
	require.Empty(t, s.Entries("t"))
	require.Zero(t, s.Stats().Entries)
}

func keys(m map[string]Entry) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// A failed write is returned and counted; the state stays in memory and the
// next Flush writes it.
func TestStore_WriteErrorIsRetried(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cp.json")
	s := open(t, path)
	s.Set("s", "a", entry(1))
	// A directory where the file should be makes the rename fail.
	require.NoError(t, os.Mkdir(path, 0o700))
	require.Error(t, s.Flush())
	require.Equal(t, uint64(1), s.Stats().WriteErrors)
	require.NoError(t, os.Remove(path))
	require.NoError(t, s.Flush())
	require.Equal(t, uint64(1), s.Stats().Writes)
	names, err := filepath.Glob(filepath.Join(dir, "*.tmp-*"))
	require.NoError(t, err)
	require.Empty(t, names, "temp files are cleaned up")
}

func TestStore_ConcurrentUse(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "cp.json"))
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 200 {
				s.Set("s", string(rune('a'+i)), entry(int64(j)))
				if j%50 == 0 {
					_ = s.Flush()
				}
				_, _ = s.Get("s", "a")
			}
		})
	}
	wg.Wait()
	require.NoError(t, s.Flush())
	require.Len(t, s.Entries("s"), 4)
}

func TestStore_EmptyPath(t *testing.T) {
	_, err := Open("", Settings{})
	require.Error(t, err)
}

// Checkpoints on a tmpfs (/run, /dev/shm) vanish at reboot: Open says so.
func TestStore_WarnsOnTmpfs(t *testing.T) {
	if !onTmpfs("/dev/shm") {
		t.Skip("no tmpfs at /dev/shm")
	}
	dir, err := os.MkdirTemp("/dev/shm", "checkpoint-test-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	var logs strings.Builder
	s, err := Open(filepath.Join(dir, "cp.json"), Settings{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.Contains(t, logs.String(), "tmpfs")
}

// A source positioned by a string (the journal's cursor) keeps it across a
// restart, and a file written before the field existed still loads.
func TestStore_CursorRoundTripAndOlderFilesLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "checkpoints.json")
	s := open(t, path)
	cur := "s=0123456789abcdef;i=2a;b=fedcba;m=1f;t=5e;x=99"
	s.Set("journal", "journal", Entry{Cursor: cur, LastSeen: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)})
	require.NoError(t, s.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(data), `"cursor": "`+cur+`"`)
	s2 := open(t, path)
	e, ok := s2.Get("journal", "journal")
	require.True(t, ok)
	require.Equal(t, cur, e.Cursor)
	require.NoError(t, s2.Close())

	old := filepath.Join(dir, "old.json")
	require.NoError(t, os.WriteFile(old, []byte(`{"version":1,"saved_at":"2025-01-01T00:00:00Z","sources":{"f":{"files":{"1:2:x":{"offset":5,"last_seen":"2025-01-01T00:00:00Z","dev":1,"ino":2}}}}}`), 0o600))
	s3 := open(t, old)
	e, ok = s3.Get("f", "1:2:x")
	require.True(t, ok)
	require.Equal(t, int64(5), e.Offset)
	require.Empty(t, e.Cursor)
	out, err := json.Marshal(e)
	require.NoError(t, err)
	require.NotContains(t, string(out), "cursor", "file entries are written as before")
}

// End (where a file that can grow no more ended) is kept across a write
// and a load; entries written without it load with 0 (not known), and a
// negative End makes the file corrupt, as a negative offset does.
func TestStore_EndRoundTripAndNegativeIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "checkpoints.json")
	s := open(t, path)
	e := entry(10)
	e.End = 4096
	s.Set("f", "1:2:x", e)
	require.NoError(t, s.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(data), `"end": 4096`)
	s2 := open(t, path)
	got, ok := s2.Get("f", "1:2:x")
	require.True(t, ok)
	require.Equal(t, e, got)
	require.NoError(t, s2.Close())

	out, err := json.Marshal(entry(10))
	require.NoError(t, err)
	require.NotContains(t, string(out), `"end"`, "entries of files followed at their path are written as before")

	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"version":1,"saved_at":"2025-01-01T00:00:00Z","sources":{"f":{"files":{"1:2:x":{"offset":5,"end":-1,"last_seen":"2025-01-01T00:00:00Z","dev":1,"ino":2}}}}}`), 0o600))
	s3 := open(t, bad) // moved aside, the store starts empty
	_, ok = s3.Get("f", "1:2:x")
	require.False(t, ok)
	require.EqualValues(t, 1, s3.Stats().LoadErrors)
}
