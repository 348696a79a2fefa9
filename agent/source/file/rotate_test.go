package file

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// rotations is how many times the rotation tests rotate, 100 ms apart.
const rotations = 10

// rotateEvery100ms calls write, and rotate every 100 ms, n times. It counts
// rotations rather than time, so a loaded machine makes it slower, not
// different.
func rotateEvery100ms(n int, write, rotate func()) {
	next := time.Now().Add(100 * time.Millisecond)
	for done := 0; done < n; {
		write()
		pace()
		if time.Now().Before(next) {
			continue
		}
		rotate()
		done++
		next = time.Now().Add(100 * time.Millisecond)
	}
	write()
}

// pace lets a writer of the rotation tests write about 20,000 lines a second
// without owning a core of the shared test machine.
func pace() { time.Sleep(2 * time.Millisecond) }

func TestRotate_RenameCreateEvery100msLosesNothing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pattern string
		// syncWithSource: only the live name is followed, so a file renamed
		// before the source ever saw it is out of reach of any tailer. The
		// writer rotates only once the source has the current file open.
		syncWithSource bool
	}{
		{name: "rotated names followed", pattern: "app.log*"},
		{name: "only the live name followed", pattern: "app.log", syncWithSource: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "app.log")
			w := newLogWriter(t, p, "app")
			r := start(t, testConfig(dir, tc.pattern), Settings{})
			n := 0
			rotateEvery100ms(rotations, func() { w.write(40) }, func() {
				if tc.syncWithSource {
					waitOpen(t, r.src, p)
				}
				n++
				require.NoError(t, os.Rename(p, fmt.Sprintf("%s.%d", p, n)))
				w.write(25) // the application writes on until it reopens
				w.reopen()
			})
			total := w.seq
			r.waitCount(t, total)
			require.NoError(t, r.halt(t))
			checkStream(t, r.col.records(), "app", total, false)
			require.Equal(t, total, r.col.count())
			t.Logf("%d lines, %d rotations, stats %+v", total, n, r.src.Stats())
		})
	}
}

// copyTruncate does what logrotate's copytruncate does.
func copyTruncate(t *testing.T, p, dst string) {
	in, err := os.Open(p)
	require.NoError(t, err)
	out, err := os.Create(dst)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
	require.NoError(t, in.Close())
	require.NoError(t, os.Truncate(p, 0))
}

// With copytruncate, what the application writes between the copy and the
// truncation is lost by logrotate itself, and so is what the source had not
// read when the file was truncated. With the writer paused until the source
// has read everything, nothing may be lost or repeated.
func TestCopyTruncate_SynchronizedLosesNothing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	w := newLogWriter(t, p, "app")
	r := start(t, testConfig(dir, "app.log"), Settings{})
	n := 0
	rotateEvery100ms(rotations, func() { w.write(40) }, func() {
		waitCaughtUp(t, r.src, p)
		n++
		copyTruncate(t, p, fmt.Sprintf("%s.%d", p, n))
	})
	total := w.seq
	r.waitCount(t, total)
	require.Eventually(t, func() bool { return r.src.Stats().Truncations == rotations }, 5*time.Second, time.Millisecond)
	require.NoError(t, r.halt(t))
	checkStream(t, r.col.records(), "app", total, false)
	require.Equal(t, total, r.col.count())
}

// Without synchronization some lines are lost to the copytruncate window;
// what arrives is still in order, never repeated, and every line written
// after the last truncation arrives.
func TestCopyTruncate_UnsynchronizedKeepsOrderWithoutDuplicates(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	w := newLogWriter(t, p, "app")
	r := start(t, testConfig(dir, "app.log"), Settings{})
	n, firstAfterLast := 0, 0
	rotateEvery100ms(rotations, func() { w.write(40) }, func() {
		n++
		copyTruncate(t, p, fmt.Sprintf("%s.%d", p, n))
		firstAfterLast = w.seq
	})
	w.write(10)
	total := w.seq
	require.Eventually(t, func() bool {
		recs := r.col.records()
		return len(recs) > 0 && recs[len(recs)-1].data == line("app", total-1)
	}, 10*time.Second, time.Millisecond)
	require.NoError(t, r.halt(t))
	recs := r.col.records()
	prev := -1
	seen := map[int]bool{}
	for _, rc := range recs {
		_, seq, ok := parseLine(rc.data)
		require.True(t, ok, "malformed record %q", rc.data)
		require.Greater(t, seq, prev, "out of order or repeated")
		prev = seq
		seen[seq] = true
	}
	for i := firstAfterLast; i < total; i++ {
		require.True(t, seen[i], "line %d written after the last truncation is missing", i)
	}
	require.GreaterOrEqual(t, r.src.Stats().Truncations, uint64(1))
	t.Logf("%d of %d lines arrived across %d copytruncates (%d truncations seen)", len(recs), total, n, r.src.Stats().Truncations)
}

// A file deleted while open is read to its end, including what its writer
// adds after the deletion, before it is released.
func TestRotate_DeleteAndRecreateDrainsDeletedFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	w := newLogWriter(t, p, "app")
	r := start(t, testConfig(dir, "app.log"), Settings{})
	rotateEvery100ms(rotations, func() { w.write(40) }, func() {
		waitOpen(t, r.src, p) // a file deleted before anyone opened it is gone for every reader
		require.NoError(t, os.Remove(p))
		w.write(25) // written to the deleted file
		w.reopen()
	})
	total := w.seq
	r.waitCount(t, total)
	require.NoError(t, r.halt(t))
	checkStream(t, r.col.records(), "app", total, false)
	require.Equal(t, total, r.col.count())
	require.GreaterOrEqual(t, r.src.Stats().Rotations, uint64(rotations))
}

// The deleted files are released once drained and RotateWait passed.
func TestRotate_DeletedFileIsReleasedAfterDrain(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	w := newLogWriter(t, p, "app")
	w.write(10)
	cfg := testConfig(dir, "app.log")
	cfg.RotateWait = 100 * time.Millisecond
	r := start(t, cfg, Settings{})
	r.waitCount(t, 10)
	require.NoError(t, os.Remove(p))
	w.write(5)
	w.close()
	r.waitCount(t, 15)
	require.Eventually(t, func() bool { return r.src.Stats().FilesOpen == 0 }, 5*time.Second, time.Millisecond)
	require.NoError(t, r.halt(t))
	checkStream(t, r.col.records(), "app", 15, false)
}

// A path that is replaced by a symlink to the same file (moved elsewhere)
// keeps its position: nothing is read twice.
func TestSymlink_FileReplacedBySymlinkKeepsPosition(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	real := filepath.Join(dir, "data", "app.current")
	require.NoError(t, os.MkdirAll(filepath.Dir(real), 0o755))
	w := newLogWriter(t, p, "app")
	r := start(t, testConfig(dir, "app.log"), Settings{})
	for i := 0; i < 20; i++ {
		w.write(20)
		pace()
	}
	waitOpen(t, r.src, p)
	require.NoError(t, os.Rename(p, real))
	require.NoError(t, os.Symlink(real, p))
	for i := 0; i < 20; i++ {
		w.write(20) // the old descriptor: same file
		pace()
	}
	w.reopen() // through the symlink: same file
	for i := 0; i < 20; i++ {
		w.write(20)
		pace()
	}
	r.waitCount(t, w.seq)
	require.NoError(t, r.halt(t))
	checkStream(t, r.col.records(), "app", w.seq, false)
	require.Equal(t, w.seq, r.col.count())
}

// A symlink that is pointed at a new file: the old target is drained, the
// new one read from its start.
func TestSymlink_RetargetedSymlinkFollowsNewTarget(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "current.log")
	t1, t2 := filepath.Join(dir, "app-1.data"), filepath.Join(dir, "app-2.data")
	w1 := newLogWriter(t, t1, "one")
	require.NoError(t, os.Symlink(t1, p))
	r := start(t, testConfig(dir, "current.log"), Settings{})
	for i := 0; i < 10; i++ {
		w1.write(20)
		pace()
	}
	waitOpen(t, r.src, p)
	w2 := newLogWriter(t, t2, "two")
	w2.write(20)
	tmp := filepath.Join(dir, "current.tmp")
	require.NoError(t, os.Symlink(t2, tmp))
	require.NoError(t, os.Rename(tmp, p)) // atomic retarget
	w1.write(20)                          // late lines of the old target
	for i := 0; i < 10; i++ {
		w2.write(20)
		pace()
	}
	r.waitCount(t, w1.seq+w2.seq)
	require.NoError(t, r.halt(t))
	recs := r.col.records()
	checkStream(t, recs, "one", w1.seq, false)
	checkStream(t, recs, "two", w2.seq, false)
	require.Equal(t, w1.seq+w2.seq, len(recs))
}

// A file that is moved away and back keeps its position.
func TestRotate_FileThatReappearsKeepsPosition(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	away := filepath.Join(dir, "app.away")
	w := newLogWriter(t, p, "app")
	w.write(10)
	cfg := testConfig(dir, "app.log")
	cfg.RotateWait = 50 * time.Millisecond
	r := start(t, cfg, Settings{})
	r.waitCount(t, 10)
	require.NoError(t, os.Rename(p, away))
	require.Eventually(t, func() bool { return r.src.Stats().FilesOpen == 0 }, 5*time.Second, time.Millisecond)
	w.write(10) // while away: read when it is back
	require.NoError(t, os.Rename(away, p))
	w.write(10)
	r.waitCount(t, 30)
	require.NoError(t, r.halt(t))
	checkStream(t, r.col.records(), "app", 30, false)
	require.Equal(t, 30, r.col.count())
}

// A deleted file that reappears under its name is a new file, read from its
// start.
func TestRotate_RecreatedFileIsReadFromStart(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p, "a1\na2\n")
	cfg := testConfig(dir, "app.log")
	cfg.RotateWait = 50 * time.Millisecond
	r := start(t, cfg, Settings{})
	r.waitCount(t, 2)
	require.NoError(t, os.Remove(p))
	require.Eventually(t, func() bool { return r.src.Stats().FilesOpen == 0 }, 5*time.Second, time.Millisecond)
	writeFile(t, p, "b1\nb2\n")
	r.waitCount(t, 4)
	require.NoError(t, r.halt(t))
	require.Equal(t, []string{"a1", "a2", "b1", "b2"}, r.col.lines())
}

// A link to a file that is rotated by rename under the link (as a container
// runtime rotates the file behind /var/log/containers/*.log): the old target
// is drained and the new one found through events in the target's
// directory, long before the next scan.
func TestSymlink_TargetRotatedBehindTheLink(t *testing.T) {
	dir := t.TempDir()
	pods := filepath.Join(dir, "pods")
	require.NoError(t, os.MkdirAll(pods, 0o755))
	target := filepath.Join(pods, "0.log")
	link := filepath.Join(dir, "containers", "app.log")
	require.NoError(t, os.MkdirAll(filepath.Dir(link), 0o755))
	w := newLogWriter(t, target, "app")
	require.NoError(t, os.Symlink(target, link))
	cfg := testConfig(dir, "containers/*.log")
	cfg.ScanInterval = time.Hour
	cfg.PollInterval = time.Hour
	r := start(t, cfg, Settings{})
	for range 3 {
		w.write(50)
		waitOpen(t, r.src, link)
		require.NoError(t, os.Rename(target, fmt.Sprintf("%s.%d", target, w.seq)))
		w.write(10)
		w.reopen()
		w.write(50)
	}
	r.waitCount(t, w.seq)
	require.NoError(t, r.halt(t))
	checkStream(t, r.col.records(), "app", w.seq, false)
	require.Equal(t, w.seq, r.col.count())
}

// Files lists, under one path, the file there now before the file rotated
// away from it that is still draining (the agent's lag metric takes the
// first).
func TestFiles_CurrentFileBeforeRotated(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p, "old\n")
	cfg := testConfig(dir, "app.log")
	cfg.RotateWait = time.Hour
	r := start(t, cfg, Settings{})
	r.waitCount(t, 1)
	require.NoError(t, os.Rename(p, p+".1"))
	writeFile(t, p, "new\n")
	r.waitCount(t, 2)
	waitOpen(t, r.src, p)
	require.Eventually(t, func() bool { return len(r.src.Files()) == 2 }, 5*time.Second, time.Millisecond)
	files := r.src.Files()
	require.Equal(t, p, files[0].Path)
	require.Equal(t, "open", files[0].State)
	require.True(t, strings.HasPrefix(files[0].FileID, inodeOf(t, p)))
	require.Equal(t, p, files[1].Path)
	require.Equal(t, "rotated", files[1].State)
	require.Equal(t, uint64(1), r.src.Stats().Rotations)
	require.Equal(t, 2, r.src.Stats().FilesOpen)
	require.NoError(t, r.halt(t))
}
