package file

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// reuseInode creates a file at path holding content whose inode is ino (a
// freed inode), by creating files under names the source does not follow
// until the file system hands out ino again. It skips the test when the file
// system does not reuse the inode.
func reuseInode(t *testing.T, dir string, ino uint64, path, content string) {
	t.Helper()
	var fillers []string
	defer func() {
		for _, f := range fillers {
			_ = os.Remove(f)
		}
	}()
	for i := 0; i < 2000; i++ {
		name := filepath.Join(dir, fmt.Sprintf("filler-%d", i))
		writeFile(t, name, content)
		st, err := statPath(name)
		require.NoError(t, err)
		if st.key.ino == ino {
			require.NoError(t, os.Rename(name, path))
			return
		}
		fillers = append(fillers, name)
	}
	t.Skip("the file system did not reuse the inode")
}

func withoutBirthTime(t *testing.T) {
	useBirthTime = false
	t.Cleanup(func() { useBirthTime = true })
}

func hasBirthTime(t *testing.T, dir string) bool {
	st, err := statPath(dir)
	require.NoError(t, err)
	return st.birth != 0
}

func numbered(stream string, from, n int) string {
	var b strings.Builder
	for i := from; i < from+n; i++ {
		b.WriteString(line(stream, i))
		b.WriteByte('\n')
	}
	return b.String()
}

// A deleted file's inode reused by a new file: the new file is read from
// its start, not from the old file's offset. Checked with birth times (where
// the file system has them) and with the fingerprint alone.
func TestInodeReuse_NewFileWithSameInodeIsReadFromStart(t *testing.T) {
	for _, birth := range []bool{true, false} {
		t.Run(fmt.Sprintf("birth_time=%v", birth), func(t *testing.T) {
			dir := t.TempDir()
			if !birth {
				withoutBirthTime(t)
			} else if !hasBirthTime(t, dir) {
				t.Skip("no birth times on this file system")
			}
			a := filepath.Join(dir, "a.log")
			writeFile(t, a, numbered("old", 0, 200))
			old, err := statPath(a)
			require.NoError(t, err)
			cfg := testConfig(dir, "*.log")
			cfg.RotateWait = 50 * time.Millisecond
			log, logs := testLogger()
			r := start(t, cfg, Settings{Logger: log})
			r.waitCount(t, 200)
			require.NoError(t, os.Remove(a))
			require.Eventually(t, func() bool { return r.src.Stats().FilesOpen == 0 }, 5*time.Second, time.Millisecond)
			// Shorter than the old file's offset, and longer: neither may
			// resume at the old offset.
			reuseInode(t, dir, old.key.ino, filepath.Join(dir, "b.log"), numbered("new", 0, 300))
			r.waitCount(t, 500)
			require.NoError(t, r.halt(t))
			require.Contains(t, logs.String(), "inode reused by a new file")
			recs := r.col.records()
			checkStream(t, recs, "old", 200, false)
			checkStream(t, recs, "new", 300, false)
			require.Len(t, recs, 500)
		})
	}
}

// The same across a restart: the checkpoint of the deleted file must not
// apply to the new file that got its inode while the agent was down.
func TestInodeReuse_WhileStoppedNewFileIsReadFromStart(t *testing.T) {
	for _, birth := range []bool{true, false} {
		t.Run(fmt.Sprintf("birth_time=%v", birth), func(t *testing.T) {
			dir := t.TempDir()
			if !birth {
				withoutBirthTime(t)
			} else if !hasBirthTime(t, dir) {
				t.Skip("no birth times on this file system")
			}
			cpPath := filepath.Join(t.TempDir(), "cp.json")
			a := filepath.Join(dir, "a.log")
			writeFile(t, a, numbered("old", 0, 200))
			old, err := statPath(a)
			require.NoError(t, err)
			cfg := testConfig(dir, "*.log")
			st := openStore(t, cpPath)
			r := start(t, cfg, Settings{Checkpoints: st})
			r.waitCount(t, 200)
			require.NoError(t, r.halt(t))
			require.NoError(t, st.Close())

			require.NoError(t, os.Remove(a))
			reuseInode(t, dir, old.key.ino, filepath.Join(dir, "b.log"), numbered("new", 0, 300))

			cfg.StartAt = StartAtEnd // even so: the checkpointed inode holds a new file
			st2 := openStore(t, cpPath)
			r2 := start(t, cfg, Settings{Checkpoints: st2})
			r2.waitCount(t, 300)
			require.NoError(t, r2.halt(t))
			checkStream(t, r2.col.records(), "new", 300, false)
			require.Equal(t, 300, r2.col.count())
		})
	}
}

// Two files with the same first bytes (a CSV header, a banner) are two
// files: identity is device and inode first, the fingerprint only confirms.
func TestIdentity_IdenticalHeadersAreDifferentFiles(t *testing.T) {
	dir := t.TempDir()
	header := strings.Repeat("timestamp,level,message,host,service,region\n", 40) // > FingerprintBytes
	writeFile(t, filepath.Join(dir, "a.log"), header+"a-only\n")
	writeFile(t, filepath.Join(dir, "b.log"), header+"b-only\n")
	r := start(t, testConfig(dir, "*.log"), Settings{})
	r.waitCount(t, 82)
	require.NoError(t, r.halt(t))
	lines := r.col.lines()
	require.Contains(t, lines, "a-only")
	require.Contains(t, lines, "b-only")
	require.Len(t, lines, 82)
}

// A file shorter than the fingerprint is read, grows, and keeps its
// identity (and position) across a restart.
func TestIdentity_ShortFileIsReadAndKeepsIdentity(t *testing.T) {
	for _, birth := range []bool{true, false} {
		t.Run(fmt.Sprintf("birth_time=%v", birth), func(t *testing.T) {
			if !birth {
				withoutBirthTime(t)
			}
			dir := t.TempDir()
			p := filepath.Join(dir, "a.log")
			writeFile(t, p, "x\n")
			cpPath := filepath.Join(t.TempDir(), "cp.json")
			st := openStore(t, cpPath)
			r := start(t, testConfig(dir, "*.log"), Settings{Checkpoints: st})
			r.waitCount(t, 1)
			appendFile(t, p, "y\n")
			r.waitCount(t, 2)
			require.NoError(t, r.halt(t))
			require.NoError(t, st.Close())

			appendFile(t, p, strings.Repeat("z\n", 1000)) // now far longer than the fingerprint
			st2 := openStore(t, cpPath)
			r2 := start(t, testConfig(dir, "*.log"), Settings{Checkpoints: st2})
			r2.waitCount(t, 1000)
			require.NoError(t, r2.halt(t))
			lines := r2.col.lines()
			require.Len(t, lines, 1000)
			require.Equal(t, "z", lines[0])
		})
	}
}

func TestFingerprint_ParseRoundTrip(t *testing.T) {
	fp := fingerprint{n: 1024, sum: sumBytes([]byte("hello"))}
	got, err := parseFingerprint(fp.String(), fp.n)
	require.NoError(t, err)
	require.Equal(t, fp, got)
	_, err = parseFingerprint("zz", 3)
	require.Error(t, err)
	got, err = parseFingerprint("", 0)
	require.NoError(t, err)
	require.Equal(t, fingerprint{}, got)
}

// Checkpoints taken with a longer fingerprint still work after
// fingerprint_bytes was lowered.
func TestIdentity_FingerprintBytesChangedBetweenRuns(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	writeFile(t, p, numbered("a", 0, 100))
	cpPath := filepath.Join(t.TempDir(), "cp.json")
	cfg := testConfig(dir, "*.log")
	cfg.FingerprintBytes = 4096
	st := openStore(t, cpPath)
	r := start(t, cfg, Settings{Checkpoints: st})
	r.waitCount(t, 100)
	require.NoError(t, r.halt(t))
	require.NoError(t, st.Close())
	appendFile(t, p, numbered("a", 100, 10))
	cfg.FingerprintBytes = 16
	st2 := openStore(t, cpPath)
	r2 := start(t, cfg, Settings{Checkpoints: st2})
	r2.waitCount(t, 10)
	require.NoError(t, r2.halt(t))
	require.Equal(t, line("a", 100), r2.col.lines()[0])
	require.Len(t, r2.col.lines(), 10)
}
