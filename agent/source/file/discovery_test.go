package file

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestGlob_Match(t *testing.T) {
	for _, tc := range []struct {
		pattern, path string
		match, prefix bool
	}{
		{"/var/log/*.log", "/var/log/a.log", true, true},
		{"/var/log/*.log", "/var/log/sub/a.log", false, false},
		{"/var/log/**/*.log", "/var/log/a.log", true, true},
		{"/var/log/**/*.log", "/var/log/x/y/z/a.log", true, true},
		{"/var/log/**/*.log", "/var/log/x/y", false, true},
		{"/var/log/**", "/var/log/x/y", true, true},
		{"/var/log/app-*/current", "/var/log/app-1/current", true, true},
		{"/var/log/app-*/current", "/var/log/app-1", false, true},
		{"/var/log/app-*/current", "/var/log/db-1", false, false},
		{"/var/**/x/*.log", "/var/a/x/b/x/c.log", true, true},
	} {
		g := compileGlob(tc.pattern)
		require.Equal(t, tc.match, g.match(tc.path), "%s ~ %s", tc.pattern, tc.path)
		require.Equal(t, tc.prefix, g.matchPrefix(tc.path), "%s prefix %s", tc.pattern, tc.path)
	}
}

func TestDiscovery_DoubleStarExcludeAndSymlinks(t *testing.T) {
	dir := t.TempDir()
	files := []string{"a.log", "x/b.log", "x/y/c.log", "x/y/skip.gz.log", "x/debug/d.log", "x/e.txt"}
	for _, f := range files {
		p := filepath.Join(dir, f)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		writeFile(t, p, f+"\n")
	}
	// A symlinked file is followed; a symlinked directory is not entered by
	// "**" (no cycles), and a link loop does no harm.
	require.NoError(t, os.Symlink(filepath.Join(dir, "x/e.txt"), filepath.Join(dir, "x/linked.log")))
	require.NoError(t, os.Symlink(dir, filepath.Join(dir, "x/loop")))
	cfg := testConfig(dir, "**/*.log")
	cfg.Exclude = []string{"*.gz.log", filepath.Join(dir, "x/debug/**")}
	r := start(t, cfg, Settings{})
	r.waitCount(t, 4)
	require.NoError(t, r.halt(t))
	got := r.col.lines()
	sort.Strings(got)
	require.Equal(t, []string{"a.log", "x/b.log", "x/e.txt", "x/y/c.log"}, got)
}

// With scans an hour apart, a new file is found through events, within a
// second (the bound here is generous for a loaded machine; it is logged).
func TestDiscovery_NewFileFoundThroughEvents(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir, "*.log")
	cfg.ScanInterval = time.Hour
	cfg.PollInterval = time.Hour
	r := start(t, cfg, Settings{})
	waitScanned(t, r.src)
	t0 := time.Now()
	writeFile(t, filepath.Join(dir, "new.log"), "hello\n")
	r.waitCount(t, 1)
	took := time.Since(t0)
	appendFile(t, filepath.Join(dir, "new.log"), "again\n")
	r.waitCount(t, 2)
	require.NoError(t, r.halt(t))
	require.Less(t, took, 3*time.Second)
	t.Logf("found after %v", took)
}

// A directory that does not exist yet is found when it is created (its
// nearest existing ancestor is watched).
func TestDiscovery_DirectoryCreatedLater(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir, "later/*/app.log")
	cfg.ScanInterval = time.Hour
	cfg.PollInterval = time.Hour
	r := start(t, cfg, Settings{})
	waitScanned(t, r.src)
	sub := filepath.Join(dir, "later", "one")
	require.NoError(t, os.MkdirAll(sub, 0o755))
	writeFile(t, filepath.Join(sub, "app.log"), "hello\n")
	r.waitCount(t, 1)
	require.NoError(t, r.halt(t))
}

// Where no events come (NFS), the periodic scan finds new files and the
// poll finds growth.
func TestDiscovery_FallbackScanWithoutEvents(t *testing.T) {
	disableWatch = true
	t.Cleanup(func() { disableWatch = false })
	dir := t.TempDir()
	cfg := testConfig(dir, "*.log")
	cfg.ScanInterval = 50 * time.Millisecond
	r := start(t, cfg, Settings{})
	waitScanned(t, r.src)
	p := filepath.Join(dir, "a.log")
	writeFile(t, p, "one\n")
	r.waitCount(t, 1)
	appendFile(t, p, "two\n")
	r.waitCount(t, 2)
	require.NoError(t, os.Rename(p, p+".1"))
	writeFile(t, p, "three\n")
	r.waitCount(t, 3)
	require.NoError(t, r.halt(t))
	require.Equal(t, []string{"one", "two", "three"}, r.col.lines())
}

func TestDiscovery_IgnoreOlder(t *testing.T) {
	dir := t.TempDir()
	old, fresh := filepath.Join(dir, "old.log"), filepath.Join(dir, "fresh.log")
	writeFile(t, old, "old\n")
	writeFile(t, fresh, "fresh\n")
	long := time.Now().Add(-48 * time.Hour)
	require.NoError(t, os.Chtimes(old, long, long))
	cfg := testConfig(dir, "*.log")
	cfg.IgnoreOlder = 24 * time.Hour
	r := start(t, cfg, Settings{})
	r.waitCount(t, 1)
	appendFile(t, old, "new in old\n") // written again: read from where it was ignored
	r.waitCount(t, 2)
	require.NoError(t, r.halt(t))
	require.Equal(t, []string{"fresh", "new in old"}, r.col.lines())
}

func TestStartAt_EndStartsAfterLastCompleteLine(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	writeFile(t, p, "old1\nold2\nhalf-")
	cfg := testConfig(dir, "*.log")
	cfg.StartAt = StartAtEnd
	r := start(t, cfg, Settings{})
	waitOpen(t, r.src, p)
	appendFile(t, p, "written\nnew\n")
	writeFile(t, filepath.Join(dir, "b.log"), "b1\n") // appeared while running: from its start
	r.waitCount(t, 3)
	require.NoError(t, r.halt(t))
	got := r.col.lines()
	sort.Strings(got)
	require.Equal(t, []string{"b1", "half-written", "new"}, got)
}

func TestOnce_ReturnsWhenEverythingWasRead(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		writeFile(t, filepath.Join(dir, n+".log"), n+"1\n"+n+"2\n"+n+"-partial")
	}
	cfg := testConfig(dir, "*.log")
	cfg.MaxOpenFiles = 2
	cfg.FlushPartialAfter = time.Hour
	cfg.Multiline = &MultilineConfig{Start: `^.1$`, Timeout: time.Hour}
	src, err := New(cfg, Settings{Name: "once", Once: true})
	require.NoError(t, err)
	col := &collector{}
	require.NoError(t, src.Run(t.Context(), col.emit))
	got := col.lines()
	sort.Strings(got)
	require.Equal(t, []string{"a1\na2\na-partial", "b1\nb2\nb-partial", "c1\nc2\nc-partial", "d1\nd2\nd-partial", "e1\ne2\ne-partial"}, got)
	require.Zero(t, src.Stats().FilesOpen)
}

// waitScanned waits for the source's first scan (and its watches).
func waitScanned(t *testing.T, src *Source) {
	t.Helper()
	require.Eventually(t, func() bool {
		src.mu.RLock()
		defer src.mu.RUnlock()
		return !src.scannedAt.IsZero()
	}, 5*time.Second, time.Millisecond)
}

// A file that cannot be opened is reported once and does not keep --once
// from finishing; the others are read.
func TestOnce_UnopenableFileDoesNotHang(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.log")
	writeFile(t, bad, "secret\n")
	writeFile(t, filepath.Join(dir, "good.log"), "fine\n")
	orig := osOpen
	osOpen = func(name string) (*os.File, error) {
		if name == bad {
			return nil, os.ErrPermission
		}
		return orig(name)
	}
	t.Cleanup(func() { osOpen = orig })
	log, logs := testLogger()
	src, err := New(testConfig(dir, "*.log"), Settings{Name: "once", Once: true, Logger: log})
	require.NoError(t, err)
	col := &collector{}
	require.NoError(t, src.Run(t.Context(), col.emit))
	require.Equal(t, []string{"fine"}, col.lines())
	require.Equal(t, 1, strings.Count(logs.String(), "cannot open file"))
}

// The README's pattern 'app.log*' (new matches followed, rotations too)
// matched logrotate's compressed rotations (app.log.1.gz) and shipped their
// bytes as lines: gzip read as text. A compressed file a wildcard matches
// is left out, found by a scan or by an event alike (its content is a
// rotation's, read decompressed when it holds unread lines); a name written
// out, or a pattern that asks for the suffix ('*.gz'), keeps it.
func TestDiscovery_WildcardLeavesCompressedRotationsOut(t *testing.T) {
	for _, tc := range []struct {
		pattern, path string
		skip          bool
	}{
		{"/var/log/app.log*", "/var/log/app.log.1.gz", true},
		{"/var/log/app.log*", "/var/log/app.log-20261206.ZST", true},
		{"/var/log/**", "/var/log/x/app.log.2.bz2", true},
		{"/var/log/app.log*", "/var/log/app.log.1", false},
		{"/var/log/*.gz", "/var/log/app.log.1.gz", false},
		{"/var/log/app.log.1.gz", "/var/log/app.log.1.gz", false},
	} {
		g := compileGlob(tc.pattern)
		require.True(t, g.match(tc.path), "%s ~ %s", tc.pattern, tc.path)
		require.Equal(t, tc.skip, g.skipsCompressed(tc.path), "%s ~ %s", tc.pattern, tc.path)
		m, err := newMatcher([]string{tc.pattern}, nil)
		require.NoError(t, err)
		require.Equal(t, !tc.skip, m.wanted(tc.path), "%s ~ %s", tc.pattern, tc.path)
	}

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "app.log"), "current\n")
	writeFile(t, filepath.Join(dir, "app.log.1"), "rotated\n")
	writeFile(t, filepath.Join(dir, "app.log.2.gz"), string(compressAs(t, ".gz", []byte("old\n"))))
	cfg := testConfig(dir, "app.log*")
	r := start(t, cfg, Settings{})
	r.waitCount(t, 2)
	waitScanned(t, r.src)
	// One compressed by logrotate while running (an event), then a plain
	// file that is read: the compressed one was not read before it.
	writeFile(t, filepath.Join(dir, "app.log.3.gz"), string(compressAs(t, ".gz", []byte("older\n"))))
	time.Sleep(300 * time.Millisecond)
	writeFile(t, filepath.Join(dir, "app.log.new"), "new\n")
	r.waitCount(t, 3)
	require.NoError(t, r.halt(t))
	got := r.col.lines()
	sort.Strings(got)
	require.Equal(t, []string{"current", "new", "rotated"}, got)
	for _, f := range r.src.Files() {
		require.NotContains(t, f.Path, ".gz")
	}
}
