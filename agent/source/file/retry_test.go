package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/stretchr/testify/require"
)

// failOpen makes osOpen fail with errno for the paths fail selects, while
// on is set, for the rest of the test.
func failOpen(t *testing.T, on *atomic.Bool, errno syscall.Errno, fail func(path string) bool) {
	t.Helper()
	orig := osOpen
	osOpen = func(path string) (*os.File, error) {
		if on.Load() && fail(path) {
			return nil, &os.PathError{Op: "open", Path: path, Err: errno}
		}
		return orig(path)
	}
	t.Cleanup(func() { osOpen = orig })
}

// scanOnly runs the rest of the test without file events, as on NFS: what
// the source finds, it finds by scanning.
func scanOnly(t *testing.T) {
	t.Helper()
	disableWatch = true
	t.Cleanup(func() { disableWatch = false })
}

// waitFor polls cond until it holds or d passed.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// unreadableScenario follows dir, where a.log is readable and b.log cannot
// be opened until unblock is called. b.log must be tried again at every
// scan, counted, logged once (rate-limited), and read once it can be,
// although it did not change.
func unreadableScenario(dir string, out io.Writer, unblock func() error) error {
	buf := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(buf, out), nil))
	src, err := New(testConfig(dir, "*.log"), Settings{Name: "retry", Logger: log})
	if err != nil {
		return err
	}
	col := &collector{src: src, commit: true}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, col.emit) }()
	defer func() {
		cancel()
		<-done
	}()
	// Three failed opens: the file is tried at every scan, not once.
	if !waitFor(10*time.Second, func() bool {
		st := src.Stats()
		return col.count() >= 1 && st.OpenErrors >= 3 && st.FilesUnreadable == 1
	}) {
		return fmt.Errorf("b.log not retried at each scan: lines %q, stats %+v", col.lines(), src.Stats())
	}
	if got := col.lines(); !slices.Equal(got, []string{"a1"}) {
		return fmt.Errorf("before unblock: lines %q, want [a1]", got)
	}
	if err := unblock(); err != nil {
		return err
	}
	if !waitFor(10*time.Second, func() bool { return col.count() >= 3 }) {
		return fmt.Errorf("b.log not read after it became readable: lines %q, stats %+v", col.lines(), src.Stats())
	}
	if got := col.lines(); !slices.Equal(got, []string{"a1", "b1", "b2"}) {
		return fmt.Errorf("lines %q, want [a1 b1 b2]", got)
	}
	if st := src.Stats(); st.FilesUnreadable != 0 {
		return fmt.Errorf("files unreadable %d after b.log was read", st.FilesUnreadable)
	}
	if n := strings.Count(buf.String(), "cannot open files"); n != 1 {
		return fmt.Errorf("%d log lines for the failed opens, want 1 (rate-limited):\n%s", n, buf.String())
	}
	return nil
}

// chmodScenario is issue 8.4: b.log has mode 000 when the source starts and
// 644 later, without growing (chmod changes its ctime, not its mtime or
// size). It runs without events: the scan must find it.
func chmodScenario(dir string, out io.Writer) error {
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	if err := os.WriteFile(a, []byte("a1\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(b, []byte("b1\nb2\n"), 0o644); err != nil {
		return err
	}
	if err := os.Chmod(b, 0); err != nil {
		return err
	}
	if f, err := os.Open(b); err == nil {
		_ = f.Close()
		return errors.New("mode 000 does not deny reads to this user")
	}
	disableWatch = true
	defer func() { disableWatch = false }()
	return unreadableScenario(dir, out, func() error { return os.Chmod(b, 0o644) })
}

// Issue 8.4 with real permissions. Root reads files of mode 000, so as root
// the scenario runs in a child process as nobody.
func TestRetry_ChmodMakesAFileReadableAtTheNextScan(t *testing.T) {
	runPermissionScenario(t, "chmod", chmodScenario)
}

// runPermissionScenario runs a scenario that needs permissions to deny
// access: in this process, or as root (who is never denied) in a child
// running as nobody.
func runPermissionScenario(t *testing.T, role string, scenario func(dir string, out io.Writer) error) {
	t.Helper()
	if os.Geteuid() != 0 {
		require.NoError(t, scenario(t.TempDir(), t.Output()))
		return
	}
	const nobody = 65534
	bin := copyTestBinary(t)
	dir, err := os.MkdirTemp("", "filesrc-"+role+"-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chown(dir, nobody, nobody))
	runChildProcess(t, bin, role, dir, &syscall.Credential{Uid: nobody, Gid: nobody})
}

// A directory that cannot be listed (mode 000) hides its files: the scan
// says so (counted, logged once) and lists it again at every scan, so its
// files are read once it can be listed.
func TestRetry_UnlistableDirectoryIsListedAgainAtEveryScan(t *testing.T) {
	runPermissionScenario(t, "listdir", unlistableScenario)
}

func unlistableScenario(dir string, out io.Writer) error {
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(sub, "x.log"), []byte("x1\n"), 0o644); err != nil {
		return err
	}
	if err := os.Chmod(sub, 0); err != nil {
		return err
	}
	defer func() { _ = os.Chmod(sub, 0o755) }() // so that it can be removed
	if _, err := os.ReadDir(sub); err == nil {
		return errors.New("mode 000 does not deny listing to this user")
	}
	disableWatch = true
	defer func() { disableWatch = false }()
	buf := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(buf, out), nil))
	src, err := New(testConfig(dir, "*/*.log"), Settings{Name: "listdir", Logger: log})
	if err != nil {
		return err
	}
	col := &collector{src: src, commit: true}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, col.emit) }()
	defer func() {
		cancel()
		<-done
	}()
	if !waitFor(10*time.Second, func() bool { return src.Stats().ScanErrors >= 3 }) {
		return fmt.Errorf("unlistable directory not reported at each scan: stats %+v", src.Stats())
	}
	if err := os.Chmod(sub, 0o755); err != nil {
		return err
	}
	if !waitFor(10*time.Second, func() bool { return col.count() >= 1 }) {
		return fmt.Errorf("x.log not read once its directory could be listed: stats %+v", src.Stats())
	}
	if got := col.lines(); !slices.Equal(got, []string{"x1"}) {
		return fmt.Errorf("lines %q, want [x1]", got)
	}
	if n := strings.Count(buf.String(), "cannot list directories"); n != 1 {
		return fmt.Errorf("%d log lines for the failed listings, want 1 (rate-limited):\n%s", n, buf.String())
	}
	return nil
}

// The same through the open seam, for every user (root included) and for
// errors other than permissions: a failed open is retried at every scan,
// not only once the file changes.
func TestRetry_FailedOpenIsRetriedAtEveryScan(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EACCES, syscall.EPERM, syscall.EIO, syscall.ELOOP} {
		t.Run(errno.Error(), func(t *testing.T) {
			scanOnly(t)
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "a.log"), "a1\n")
			b := filepath.Join(dir, "b.log")
			writeFile(t, b, "b1\nb2\n")
			var on atomic.Bool
			on.Store(true)
			failOpen(t, &on, errno, func(p string) bool { return p == b })
			require.NoError(t, unreadableScenario(dir, t.Output(), func() error {
				on.Store(false)
				return nil
			}))
		})
	}
}

// With events, a chmod is an event: the file is tried again at once, not
// only at the next scan.
func TestRetry_ChmodEventRetriesAtOnce(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.log"), "a1\n")
	b := filepath.Join(dir, "b.log")
	writeFile(t, b, "b1\nb2\n")
	var on atomic.Bool
	on.Store(true)
	failOpen(t, &on, syscall.EACCES, func(p string) bool { return p == b })
	cfg := testConfig(dir, "*.log")
	cfg.ScanInterval = time.Hour // only the event can bring it
	r := start(t, cfg, Settings{})
	r.waitCount(t, 1)
	require.Eventually(t, func() bool { return r.src.Stats().FilesUnreadable == 1 }, 10*time.Second, 5*time.Millisecond)
	on.Store(false)
	require.NoError(t, os.Chmod(b, 0o640))
	r.waitCount(t, 3)
	require.Equal(t, []string{"a1", "b1", "b2"}, r.col.lines())
}

// Opens refused for lack of descriptors (EMFILE, ENFILE: here from another
// part of the process) are not the files' fault: every file stays in the
// queue, none is given up on, and all are read once descriptors return,
// although none of them changed.
func TestDescriptors_NoDescriptorKeepsFilesQueued(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE} {
		t.Run(errno.Error(), func(t *testing.T) {
			scanOnly(t)
			dir := t.TempDir()
			const files = 20
			for i := range files {
				writeFile(t, filepath.Join(dir, fmt.Sprintf("f%02d.log", i)), fmt.Sprintf("f%02d\n", i))
			}
			var on atomic.Bool
			on.Store(true)
			failOpen(t, &on, errno, func(string) bool { return true })
			log, logs := testLogger()
			r := start(t, testConfig(dir, "*.log"), Settings{Logger: log})
			require.Eventually(t, func() bool {
				st := r.src.Stats()
				return st.NoDescriptor >= 3 && st.FilesWaiting == files
			}, 10*time.Second, 5*time.Millisecond, "files wait in the queue")
			st := r.src.Stats()
			require.Zero(t, st.FilesUnreadable, "no file is given up on")
			require.Zero(t, st.OpenErrors)
			// Each try stops at the first refusal: one attempt per scan (or
			// freed descriptor), not one per file.
			require.Less(t, st.NoDescriptor, uint64(files))
			require.Zero(t, r.col.count())
			on.Store(false)
			r.waitCount(t, files)
			require.Len(t, r.col.lines(), files)
			require.Equal(t, 1, strings.Count(logs.String(), "no file descriptor left"))
			require.Zero(t, strings.Count(logs.String(), "cannot open files"))
		})
	}
}

// start_at: end starts after a file's last complete line. When the file
// cannot be read at the start, that line end is found once it is opened:
// the incomplete last line is not cut in two (its tail sent as a record of
// its own).
func TestRetry_StartAtEndOfAFileUnreadableAtTheStart(t *testing.T) {
	scanOnly(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	writeFile(t, p, "old1\nold2\npart")
	var on atomic.Bool
	on.Store(true)
	failOpen(t, &on, syscall.EACCES, func(string) bool { return true })
	cfg := testConfig(dir, "*.log")
	cfg.StartAt = StartAtEnd
	r := start(t, cfg, Settings{})
	require.Eventually(t, func() bool { return r.src.Stats().OpenErrors >= 1 }, 10*time.Second, 5*time.Millisecond)
	on.Store(false)
	require.Eventually(t, func() bool { return r.src.Stats().FilesUnreadable == 0 && r.src.Stats().FilesOpen == 1 },
		10*time.Second, 5*time.Millisecond)
	appendFile(t, p, "ial\nnew\n")
	r.waitCount(t, 2)
	require.Equal(t, []string{"partial", "new"}, r.col.lines())
}

// A read error (EIO; ESTALE on NFS) closes a followed file, which is opened
// again at its position at the next scan: nothing is skipped or read twice,
// and the error is counted and logged once.
func TestRetry_ReadErrorReopensAtTheNextScan(t *testing.T) {
	scanOnly(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	writeFile(t, p, "l1\n")
	var on atomic.Bool
	orig := readFD
	readFD = func(f *os.File, b []byte) (int, error) {
		if on.Load() {
			return 0, &os.PathError{Op: "read", Path: f.Name(), Err: syscall.EIO}
		}
		return orig(f, b)
	}
	t.Cleanup(func() { readFD = orig })
	log, logs := testLogger()
	r := start(t, testConfig(dir, "*.log"), Settings{Logger: log})
	r.waitCount(t, 1)
	on.Store(true)
	appendFile(t, p, "l2\n")
	require.Eventually(t, func() bool {
		st := r.src.Stats()
		return st.ReadErrors >= 3 && st.FilesUnreadable == 1
	}, 10*time.Second, 5*time.Millisecond, "read again at every scan")
	appendFile(t, p, "l3\n")
	on.Store(false)
	r.waitCount(t, 3)
	require.Eventually(t, func() bool { return r.src.Stats().FilesUnreadable == 0 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, []string{"l1", "l2", "l3"}, r.col.lines())
	require.Equal(t, 1, strings.Count(logs.String(), "cannot read files"))
}

// A watcher that cannot be started (inotify_init: EMFILE, the per-user
// instance limit) is started at a later scan; meanwhile scans find the
// changes. It was tried once, at the start, and given up on for the run.
func TestRetry_WatcherStartedAtALaterScan(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	var calls, started atomic.Int64
	orig := newFSWatcher
	newFSWatcher = func() (*fsnotify.Watcher, error) {
		calls.Add(1)
		if fail.Load() {
			return nil, syscall.EMFILE
		}
		started.Add(1)
		return orig()
	}
	t.Cleanup(func() { newFSWatcher = orig })
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	writeFile(t, p, "a1\n")
	log, logs := testLogger()
	r := start(t, testConfig(dir, "*.log"), Settings{Logger: log})
	r.waitCount(t, 1)
	require.Eventually(t, func() bool { return r.src.Stats().WatchErrors >= 3 }, 10*time.Second, 5*time.Millisecond,
		"tried at every scan")
	appendFile(t, p, "a2\n") // found by a scan meanwhile
	r.waitCount(t, 2)
	fail.Store(false)
	require.Eventually(t, func() bool { return started.Load() == 1 }, 10*time.Second, 5*time.Millisecond)
	n := calls.Load()
	appendFile(t, p, "a3\n")
	r.waitCount(t, 3)
	require.Never(t, func() bool { return calls.Load() != n }, 3*testConfig(dir).ScanInterval, 10*time.Millisecond,
		"a started watcher is kept: scans do not start another")
	require.Equal(t, []string{"a1", "a2", "a3"}, r.col.lines())
	require.Equal(t, 1, strings.Count(logs.String(), "cannot watch directories"))
}
