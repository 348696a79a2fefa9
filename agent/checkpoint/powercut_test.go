package checkpoint

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kplagent/agent/internal/crashfs"
	"github.com/stretchr/testify/require"
)

// crashSeam adapts the power-cut simulator to the store's file-system seam.
type crashSeam struct{ *crashfs.FS }

func (c crashSeam) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// crash stops the store the way a power cut does: nothing more is written,
// the lock is released.
func (s *Store) crash() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	if s.lock != nil {
		s.lock.Close()
	}
}

// TestPowerCut_CheckpointsAreOldOrNewNeverTorn cuts the power at random
// points of checkpoint writes (and of the clean-up at Open), on a simulated
// disk that keeps only what was fsynced, and checks after each restart that
// Open succeeds and loads exactly the state of the last Flush that returned
// nil, or of a later Flush that was cut short: never a torn or corrupt file,
// never an older state, and no temporary file left behind.
func TestPowerCut_CheckpointsAreOldOrNewNeverTorn(t *testing.T) {
	cuts := 2000
	if raceEnabled || testing.Short() {
		cuts = 300
	}
	if v := os.Getenv("AGENT_POWERCUT_ITER"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "AGENT_POWERCUT_ITER")
		cuts = n
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("AGENT_POWERCUT_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (AGENT_POWERCUT_SEED to replay), %d cuts", seed, cuts)
	path := filepath.Join(t.TempDir(), "cp.json") // the lock file is real, the rest simulated
	for run := uint64(0); cuts > 0; run++ {
		cuts -= checkpointPowerCutRun(t, path, seed+run)
	}
}

// checkpointPowerCutRun runs a few lives on one simulated disk and returns
// the number of power cuts.
func checkpointPowerCutRun(t *testing.T, path string, seed uint64) int {
	rng := rand.New(rand.NewPCG(seed, 3))
	fsys := crashfs.New(seed)
	var (
		durable    map[string]int64   // the state of the last Flush that returned nil
		candidates []map[string]int64 // states of Flushes since, cut short
		trace      []string
		cuts       int
	)
	failf := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d: %s\ntrace:\n%s", seed, fmt.Sprintf(format, args...), strings.Join(trace, "\n"))
	}
	for life := 0; life < 3; life++ {
		// Open, maybe with a cut in its clean-up.
		var s *Store
		for s == nil {
			if rng.IntN(3) == 0 {
				fsys.Cut(1 + rng.Int64N(3))
			}
			st, err := Open(path, Settings{fs: crashSeam{fsys}})
			if err != nil {
				failf("Open failed: %v", err)
			}
			if fsys.Off() {
				trace = append(trace, "power cut during Open")
				st.crash()
				fsys.Restart()
				cuts++
				continue
			}
			fsys.Cut(0)
			s = st
		}
		got := offsets(s.Entries("s"))
		if s.Stats().LoadErrors != 0 {
			failf("the state file was unusable after a power cut")
		}
		ok := durable == nil && len(got) == 0 || maps.Equal(got, durable)
		for _, c := range candidates {
			ok = ok || maps.Equal(got, c)
		}
		if !ok {
			failf("loaded %v; want %v or one of %v", got, durable, candidates)
		}
		for _, n := range fsys.Names(filepath.Dir(path)) {
			if strings.Contains(n, tempPrefix) {
				failf("temporary file %s left after Open", n)
			}
		}
		trace = append(trace, fmt.Sprintf("open: %v", got))
		durable, candidates = got, nil

		fsys.Cut(1 + rng.Int64N(25))
		for step := 0; step < 40 && !fsys.Off(); step++ {
			id := strconv.Itoa(rng.IntN(5))
			off := rng.Int64N(1 << 20)
			if rng.IntN(8) == 0 {
				s.Delete("s", id)
			} else {
				s.Set("s", id, Entry{Offset: off, Path: "/var/log/" + id})
			}
			if rng.IntN(3) != 0 {
				continue
			}
			state := offsets(s.Entries("s"))
			err := s.Flush()
			trace = append(trace, fmt.Sprintf("flush %v: %v", state, err))
			if err == nil && !fsys.Off() {
				durable, candidates = state, nil
			} else {
				candidates = append(candidates, state)
			}
		}
		fsys.PowerOff()
		s.crash()
		fsys.Restart()
		cuts++
		trace = append(trace, "power cut")
	}
	return cuts
}

func offsets(m map[string]Entry) map[string]int64 {
	out := map[string]int64{}
	for id, e := range m {
		out[id] = e.Offset
	}
	return out
}

// refusingFS is the real file system in a directory made read-only:
// creating, renaming and removing files fail with err while it is set.
type refusingFS struct {
	osFS
	err error
}

func (r *refusingFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	if r.err != nil && flag&os.O_CREATE != 0 {
		return nil, &os.PathError{Op: "open", Path: name, Err: r.err}
	}
	return r.osFS.OpenFile(name, flag, perm)
}

func (r *refusingFS) Rename(o, n string) error {
	if r.err != nil {
		return &os.LinkError{Op: "rename", Old: o, New: n, Err: r.err}
	}
	return r.osFS.Rename(o, n)
}

func (r *refusingFS) Remove(name string) error {
	if r.err != nil {
		return &os.PathError{Op: "remove", Path: name, Err: r.err}
	}
	return r.osFS.Remove(name)
}

// A state directory made read-only while running: Flush fails (counted),
// the last good file stays as it was, and the next Flush after the directory
// is writable again writes the newest state.
func TestCheckpoint_ReadOnlyDirectoryKeepsTheOldFileAndRetries(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EACCES, syscall.EROFS} {
		t.Run(errno.Error(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cp.json")
			fsys := &refusingFS{}
			s, err := Open(path, Settings{fs: fsys})
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			s.Set("s", "a", entry(1))
			require.NoError(t, s.Flush())
			good, err := os.ReadFile(path)
			require.NoError(t, err)

			fsys.err = errno
			s.Set("s", "a", entry(2))
			for range 3 {
				require.ErrorIs(t, s.Flush(), errno)
			}
			require.Equal(t, uint64(3), s.Stats().WriteErrors)
			now, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, good, now, "the old checkpoint is kept")

			fsys.err = nil
			require.NoError(t, s.Flush())
			require.NoError(t, s.Close())
			s2 := open(t, path)
			e, ok := s2.Get("s", "a")
			require.True(t, ok)
			require.Equal(t, int64(2), e.Offset)
		})
	}
}

// The same with a real chmod. Root ignores permission bits, so this runs
// only as another user; the test above covers it through the seam.
func TestCheckpoint_ChmodReadOnlyDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores permission bits; covered by TestCheckpoint_ReadOnlyDirectoryKeepsTheOldFileAndRetries")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "cp.json")
	s := open(t, path)
	s.Set("s", "a", entry(1))
	require.NoError(t, s.Flush())
	require.NoError(t, os.Chmod(dir, 0o500))
	t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	s.Set("s", "a", entry(2))
	require.Error(t, s.Flush())
	require.NoError(t, os.Chmod(dir, 0o700))
	require.NoError(t, s.Flush())
	require.NoError(t, s.Close())
	e, _ := open(t, path).Get("s", "a")
	require.Equal(t, int64(2), e.Offset)
}

// Regression: a crash between creating the temporary file and renaming it
// left the temporary file for ever (one more at every such crash). Open
// removes them; they are never a state anyone needs (the rename did not
// happen).
func TestCheckpoint_OpenRemovesTemporaryFilesLeftByACrash(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cp.json")
	writeGood(t, path)
	left := path + tempPrefix + "0123456789abcdef"
	require.NoError(t, os.WriteFile(left, []byte(`{"version":1,"sources":{}}`), 0o600))
	other := filepath.Join(dir, "other.json.tmp-1")
	require.NoError(t, os.WriteFile(other, nil, 0o600))
	s := open(t, path)
	_, err := os.Stat(left)
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = os.Stat(other)
	require.NoError(t, err, "files that are not the store's are left alone")
	require.Equal(t, []string{"a"}, keys(s.Entries("s")))
}
