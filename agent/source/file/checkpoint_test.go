package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/checkpoint"
	"github.com/kplagent/agent/agent/source"
)

// rotatingWriter drives app.log with rename rotation from the test
// goroutine.
type rotatingWriter struct {
	w         *logWriter
	path      string
	rotations int
}

func (rw *rotatingWriter) rotate(t *testing.T) {
	rw.rotations++
	require.NoError(t, os.Rename(rw.path, fmt.Sprintf("%s.%d", rw.path, rw.rotations)))
	rw.w.write(10)
	rw.w.reopen()
}

func (rw *rotatingWriter) runFor(t *testing.T, d time.Duration) {
	end := time.Now().Add(d)
	next := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(end) {
		rw.w.write(30)
		pace()
		if time.Now().After(next) {
			rw.rotate(t)
			next = time.Now().Add(100 * time.Millisecond)
		}
	}
}

// Stop the source mid-stream with records in flight (emitted, not
// committed), rotate while it is down, start it again from its checkpoints:
// no line is missing, and the only duplicates are records after the
// committed offsets.
func TestRestart_ResumesFromCommittedOffsetNoLineMissing(t *testing.T) {
	dir := t.TempDir()
	cpPath := filepath.Join(t.TempDir(), "state", "checkpoints.json")
	p := filepath.Join(dir, "app.log")
	rw := &rotatingWriter{w: newLogWriter(t, p, "app"), path: p}
	cfg := testConfig(dir, "app.log*")

	st := openStore(t, cpPath)
	src1, err := New(cfg, Settings{Name: "logs", Checkpoints: st})
	require.NoError(t, err)
	col1 := &collector{src: src1, commit: true, lag: 100}
	r1 := startWith(t, src1, col1)
	rw.runFor(t, 600*time.Millisecond)
	require.NoError(t, r1.halt(t)) // mid-stream
	require.NoError(t, st.Close())

	// While the agent is down: more lines, two rotations.
	rw.w.write(50)
	rw.rotate(t)
	rw.w.write(50)
	rw.rotate(t)
	rw.w.write(50)

	st2 := openStore(t, cpPath)
	committed := map[string]int64{}
	for id, e := range st2.Entries("logs") {
		committed[id] = e.Offset
	}
	require.NotEmpty(t, committed)
	if hasBirthTime(t, dir) {
		// Files born while the agent was down are read from their start
		// even when new files otherwise start at the end.
		cfg.StartAt = StartAtEnd
	}
	src2, err := New(cfg, Settings{Name: "logs", Checkpoints: st2})
	require.NoError(t, err)
	col2 := &collector{src: src2, commit: true}
	r2 := startWith(t, src2, col2)
	rw.runFor(t, 600*time.Millisecond)
	total := rw.w.seq
	require.Eventually(t, func() bool {
		got := map[int]bool{}
		for _, rc := range append(col1.records(), col2.records()...) {
			_, seq, _ := parseLine(rc.data)
			got[seq] = true
		}
		return len(got) == total
	}, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, r2.halt(t))

	recs1, recs2 := col1.records(), col2.records()
	checkStream(t, append(recs1, recs2...), "app", total, true)
	// Within a run, nothing repeats.
	for _, recs := range [][]rec{recs1, recs2} {
		seen := map[int]bool{}
		for _, rc := range recs {
			_, seq, _ := parseLine(rc.data)
			require.False(t, seen[seq], "line %d repeated within a run", seq)
			seen[seq] = true
		}
	}
	// Across runs, only what was not committed repeats, and each file
	// resumes exactly at its committed offset.
	first := map[string]rec{}
	for _, rc := range recs2 {
		if _, ok := first[rc.cursor.FileID]; !ok {
			first[rc.cursor.FileID] = rc
		}
	}
	in1 := map[string]rec{}
	for _, rc := range recs1 {
		in1[rc.data] = rc
	}
	dups := 0
	for _, rc := range recs2 {
		if old, ok := in1[rc.data]; ok {
			dups++
			require.Equal(t, old.cursor, rc.cursor, "a repeated record has the same cursor")
			require.GreaterOrEqual(t, rc.cursor.Start, committed[rc.cursor.FileID], "a committed record was emitted again")
		}
	}
	for id, off := range committed {
		if fr, ok := first[id]; ok {
			require.Equal(t, off, fr.cursor.Start, "file %s did not resume at its committed offset", id)
		}
	}
	require.Positive(t, dups, "the uncommitted records should have been emitted again")
	require.LessOrEqual(t, dups, col1.lag)
	t.Logf("%d lines, %d rotations, %d repeated after restart", total, rw.rotations, dups)
}

// The checkpoint holds only what was committed, never the read offset.
func TestCheckpoint_StoresOnlyCommittedOffsets(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	writeFile(t, p, "one\ntwo\nthree\n")
	cpPath := filepath.Join(t.TempDir(), "cp.json")
	st := openStore(t, cpPath)
	src, err := New(testConfig(dir, "*.log"), Settings{Name: "s", Checkpoints: st, CheckpointInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	col := &collector{src: src}
	r := startWith(t, src, col)
	r.waitCount(t, 3)
	id := col.records()[0].cursor.FileID
	readEntry := func() checkpoint.Entry {
		var ff struct {
			Sources map[string]struct {
				Files map[string]checkpoint.Entry `json:"files"`
			} `json:"sources"`
		}
		data, err := os.ReadFile(cpPath)
		if err != nil {
			return checkpoint.Entry{Offset: -1}
		}
		require.NoError(t, json.Unmarshal(data, &ff))
		e, ok := ff.Sources["s"].Files[id]
		if !ok {
			return checkpoint.Entry{Offset: -1}
		}
		return e
	}
	require.Eventually(t, func() bool { return readEntry().Offset == 0 }, 5*time.Second, 5*time.Millisecond)
	src.Commit(id, 4) // "one" is durable
	require.Eventually(t, func() bool { return readEntry().Offset == 4 }, 5*time.Second, 5*time.Millisecond)
	src.Commit(id, 2) // backwards: ignored
	src.Commit("no-such-file", 100)
	require.NoError(t, r.halt(t))
	e := readEntry()
	require.Equal(t, int64(4), e.Offset)
	require.Equal(t, p, e.Path)

	// A commit after Run returned reaches the store; its owner writes it.
	src.Commit(id, 8)
	require.NoError(t, st.Flush())
	require.Equal(t, int64(8), readEntry().Offset)
	files := src.Files()
	require.Len(t, files, 1)
	require.Equal(t, int64(14), files[0].Offset)
	require.Equal(t, int64(8), files[0].Committed)
	require.Equal(t, int64(14), files[0].Size)
}

func TestCheckpoint_CorruptFileStartsFromConfiguredPosition(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	writeFile(t, p, "old1\nold2\n")
	cpPath := filepath.Join(t.TempDir(), "cp.json")
	writeFile(t, cpPath, `{"version":1,"sources":{"s":{"files":{"x":{"offset":`) // torn
	st := openStore(t, cpPath)
	require.Equal(t, uint64(1), st.Stats().LoadErrors)
	require.FileExists(t, cpPath+".corrupt")
	cfg := testConfig(dir, "*.log")
	cfg.StartAt = StartAtEnd
	r := start(t, cfg, Settings{Name: "s", Checkpoints: st})
	waitOpen(t, r.src, p)
	appendFile(t, p, "new1\n")
	r.waitCount(t, 1)
	require.NoError(t, r.halt(t))
	require.Equal(t, []string{"new1"}, r.col.lines())
}

func TestCheckpoint_MissingFileStartsFromConfiguredPosition(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	writeFile(t, p, "old1\nold2\n")
	st := openStore(t, filepath.Join(t.TempDir(), "state", "cp.json"))
	r := start(t, testConfig(dir, "*.log"), Settings{Name: "s", Checkpoints: st})
	r.waitCount(t, 2)
	require.NoError(t, r.halt(t))
	require.Equal(t, []string{"old1", "old2"}, r.col.lines())
}

// Entries of files gone for longer than the TTL are dropped, in memory and
// on disk; files still present keep theirs.
func TestCheckpoint_TTLDropsEntriesOfGoneFiles(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "keep.log")
	gone := filepath.Join(dir, "gone.log")
	writeFile(t, keep, "k\n")
	writeFile(t, gone, "g\n")
	cpPath := filepath.Join(t.TempDir(), "cp.json")
	st := openStore(t, cpPath)
	st.Set("s", "1:2:ancient", checkpoint.Entry{Offset: 5, Dev: 1, Ino: 2, LastSeen: time.Now().Add(-24 * time.Hour)})
	cfg := testConfig(dir, "*.log")
	cfg.CheckpointTTL = 500 * time.Millisecond
	cfg.RotateWait = 50 * time.Millisecond
	r := start(t, cfg, Settings{Name: "s", Checkpoints: st, CheckpointInterval: 20 * time.Millisecond})
	r.waitCount(t, 2)
	require.NoError(t, os.Remove(gone))
	onlyKeep := func() bool {
		es := st.Entries("s")
		for _, e := range es {
			if e.Path != keep {
				return false
			}
		}
		return len(es) == 1
	}
	require.Eventually(t, onlyKeep, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, r.halt(t))
	require.True(t, onlyKeep())
}

// When emit fails, Run returns its error after persisting the committed
// offsets.
func TestEmitError_StopsRunAndPersists(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.log"), "1\n2\n3\n4\n")
	st := openStore(t, filepath.Join(t.TempDir(), "cp.json"))
	src, err := New(testConfig(dir, "*.log"), Settings{Name: "s", Checkpoints: st, CheckpointInterval: time.Hour})
	require.NoError(t, err)
	boom := errors.New("downstream closed")
	n := 0
	err = src.Run(context.Background(), func(_ context.Context, r source.Record) error {
		n++
		if n == 3 {
			return boom
		}
		src.Commit(r.Cursor.FileID, r.Cursor.Offset)
		return nil
	})
	require.ErrorIs(t, err, boom)
	var offsets []int64
	for _, e := range st.Entries("s") {
		offsets = append(offsets, e.Offset)
	}
	require.Equal(t, []int64{4}, offsets) // "1\n2\n" committed
	require.Zero(t, src.Stats().FilesOpen)
}

// Emit may block for a long time (backpressure): nothing is dropped or
// flushed early because of it.
func TestBackpressure_BlockedEmitLosesNothing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	w := newLogWriter(t, p, "a")
	cfg := testConfig(dir, "*.log")
	cfg.FlushPartialAfter = 50 * time.Millisecond
	src, err := New(cfg, Settings{Name: "s"})
	require.NoError(t, err)
	col := &collector{src: src, commit: true, block: make(chan struct{})}
	r := startWith(t, src, col)
	w.write(1000)
	for i := 0; i < 5; i++ {
		w.write(1000)
		pace()
	}
	_, _ = w.f.WriteString("partial")
	blocked := time.Now()
	require.Eventually(t, func() bool { return time.Since(blocked) > 300*time.Millisecond }, time.Second, 10*time.Millisecond)
	close(col.block)
	r.waitCount(t, w.seq+1)
	require.NoError(t, r.halt(t))
	recs := col.records()
	checkStream(t, recs[:len(recs)-1], "a", w.seq, false)
	require.Equal(t, "partial", recs[len(recs)-1].data)
}

// Run returns nil when its context ends while emit blocks.
func TestShutdown_WhileEmitBlocks(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.log"), "1\n")
	src, err := New(testConfig(dir, "*.log"), Settings{Name: "s"})
	require.NoError(t, err)
	col := &collector{src: src, block: make(chan struct{})}
	entered := make(chan struct{})
	col.onEmit = func(source.Record) {}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func(ctx context.Context, r source.Record) error {
			close(entered)
			return col.emit(ctx, r)
		})
	}()
	<-entered
	cancel()
	require.NoError(t, <-done)
	require.Error(t, src.Run(context.Background(), col.emit), "Run twice")
}

// While emit blocks, files are created and rotated away under a pattern
// that follows only the live name: they were held open when they appeared,
// so their lines arrive once emit accepts again.
func TestBackpressure_FilesRotatedWhileBlockedAreRead(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	w := newLogWriter(t, p, "app")
	w.write(10)
	cfg := testConfig(dir, "app.log")
	cfg.ScanInterval = time.Hour // events only
	src, err := New(cfg, Settings{Name: "s"})
	require.NoError(t, err)
	col := &collector{src: src, commit: true, block: make(chan struct{}), blocked: make(chan struct{}, 1)}
	r := startWith(t, src, col)
	<-col.blocked // the loop is stuck in emit
	for i := 1; i <= 3; i++ {
		require.NoError(t, os.Rename(p, fmt.Sprintf("%s.%d", p, i)))
		w.write(5) // late lines to the rotated file
		w.reopen()
		w.write(20)
		// Rotations are minutes apart in life; here, let the event
		// goroutine see the new file before it is rotated in turn.
		// (The writer holds one descriptor of it, the source the other.)
		require.Eventually(t, func() bool { return descriptorsOf(p) >= 2 }, 5*time.Second, time.Millisecond, "new file not held")
	}
	close(col.block)
	r.waitCount(t, w.seq)
	require.NoError(t, r.halt(t))
	checkStream(t, col.records(), "app", w.seq, false)
	require.Equal(t, w.seq, col.count())
}
