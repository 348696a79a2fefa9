package spool

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kplagent/agent/internal/crashfs"
	"github.com/stretchr/testify/require"
)

// crashSeam adapts the power-cut simulator to the spool's file-system seam.
type crashSeam struct{ *crashfs.FS }

func (c crashSeam) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (crashSeam) DiskSpace(string) (int64, int64, error) { return 1 << 40, 1 << 41, nil }

// powerCutIterations is the number of power cuts TestPowerCut runs:
// AGENT_POWERCUT_ITER (`make test-powercut` runs many), or a default that
// takes a few seconds (fewer under -race and -short).
func powerCutIterations(t *testing.T) int {
	if v := os.Getenv("AGENT_POWERCUT_ITER"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "AGENT_POWERCUT_ITER")
		return n
	}
	if testing.Short() || raceEnabled {
		return 200
	}
	return 1500
}

// TestPowerCut cuts the power at random points of a random workload (append,
// read, ack, sync, close, and the rolls, seals, deletions and ack-file writes
// they cause) and of the recovery that follows, on a simulated disk that
// keeps only what was fsynced (internal/crashfs), then checks after each
// reopen what the README's "Loss window of each spool.sync policy" table
// promises:
//
//   - Open never fails.
//   - No entry is invented: every entry read back is one that was appended,
//     intact, under the ID its Append returned (if it returned).
//   - Nothing is lost that was promised: with sync always every entry whose
//     Append returned; with interval every entry up to Durable(); with every
//     policy what Sync or Close returned for, and what the previous Open
//     recovered. Entries acknowledged since may be gone or come again.
//   - An ID that was durable is never handed out again for another entry.
func TestPowerCut(t *testing.T) {
	cuts := powerCutIterations(t)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("AGENT_POWERCUT_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (AGENT_POWERCUT_SEED to replay), %d cuts", seed, cuts)
	dir := t.TempDir() // holds the real lock file; the spool's files are simulated
	done := 0
	for run := uint64(0); done < cuts; run++ {
		pc := newPowerCutRun(t, dir, seed+run, []SyncPolicy{SyncAlways, SyncInterval, SyncNever}[(seed+run)%3])
		for life := 0; life < 3 && done < cuts; life++ {
			pc.life()
			done += pc.cuts
			pc.cuts = 0
		}
	}
}

type powerCutRun struct {
	t      *testing.T
	rng    *rand.Rand
	fs     *crashfs.FS
	cfg    Config
	seed   uint64
	seqOf  map[ID]uint64 // every ID an Append returned, with its entry's seq
	idOf   map[uint64]ID // the reverse
	sizeOf map[uint64]int
	nextSq uint64
	must   map[ID]bool // entries that must be found after the next cut, unless acked
	cur    []ID        // IDs returned since the last Open
	wasDur map[ID]bool // IDs that were durable once: never handed out again
	trMu   sync.Mutex  // the spool's goroutines log into the trace too
	trace  []string    // what this run did, for the failure report
	cuts   int         // power cuts so far (in a workload or in an Open)
}

func newPowerCutRun(t *testing.T, dir string, seed uint64, policy SyncPolicy) *powerCutRun {
	cfg := DefaultConfig()
	cfg.Dir = dir
	cfg.SegmentBytes = MinSegmentBytes // rolls, seals and deletions often
	cfg.MaxBytes = 1 << 30
	cfg.MinFreeBytes = 0
	cfg.Sync = policy
	cfg.SyncInterval = time.Hour // background writes only when asked (Sync, Close)
	return &powerCutRun{t: t, rng: rand.New(rand.NewPCG(seed, 7)), fs: crashfs.New(seed), cfg: cfg, seed: seed,
		seqOf: map[ID]uint64{}, idOf: map[uint64]ID{}, sizeOf: map[uint64]int{}, must: map[ID]bool{}, wasDur: map[ID]bool{}}
}

func (pc *powerCutRun) fail(format string, args ...any) {
	pc.t.Helper()
	pc.trMu.Lock()
	defer pc.trMu.Unlock()
	pc.t.Fatalf("seed %d (sync %s): %s\ntrace:\n%s\nfiles now: %v", pc.seed, pc.cfg.Sync, fmt.Sprintf(format, args...),
		strings.Join(pc.trace[max(0, len(pc.trace)-80):], "\n"), pc.fs.Names(pc.cfg.Dir))
}

// files lists the newest files with their sizes, for the trace.
func (pc *powerCutRun) files() string {
	des, _ := pc.fs.ReadDir(pc.cfg.Dir)
	var b strings.Builder
	for _, de := range des[max(0, len(des)-4):] {
		fi, _ := de.Info()
		fmt.Fprintf(&b, "%s:%d ", de.Name(), fi.Size())
	}
	return b.String()
}

// traceHandler puts the spool's log lines at WARN and above into the trace.
type traceHandler struct{ pc *powerCutRun }

func (h traceHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h traceHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString("log: " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.pc.note("%s", b.String())
	return nil
}
func (h traceHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h traceHandler) WithGroup(string) slog.Handler      { return h }

func (pc *powerCutRun) note(format string, args ...any) {
	pc.trMu.Lock()
	defer pc.trMu.Unlock()
	pc.trace = append(pc.trace, fmt.Sprintf(format, args...))
}

// open opens the spool, maybe with a power cut during recovery (a cut
// scheduled earlier may land there too); after a cut it restarts the disk
// and opens again. Then it checks what the spool holds.
func (pc *powerCutRun) open() *Spool {
	set := Settings{fs: crashSeam{pc.fs}, Logger: slog.New(traceHandler{pc})}
	if pc.rng.IntN(3) == 0 {
		pc.fs.Cut(1 + pc.rng.Int64N(12))
	}
	for {
		pc.note("files before Open: %s", pc.files())
		s, err := Open(pc.cfg, set)
		if !pc.fs.Off() {
			if err != nil {
				pc.fail("Open failed with the power on: %v", err)
			}
			pc.fs.Cut(0)
			pc.note("open")
			pc.check(s)
			return s
		}
		if err == nil {
			s.crash()
		}
		pc.note("power cut during Open (%v)", err)
		pc.fs.Restart()
		pc.cuts++
	}
}

// check reads everything s holds and checks it against the model; what it
// holds is then durable (Open syncs what it recovers).
func (pc *powerCutRun) check(s *Spool) {
	found := map[ID]bool{}
	var last ID
	for {
		id, b, ok, err := s.TryNext(nil)
		if err != nil {
			pc.fail("read after reopen: %v", err)
		}
		if !ok {
			break
		}
		if id <= last {
			pc.fail("ID %d after %d", id, last)
		}
		last = id
		seq, err := checkPayload(b)
		if err != nil {
			pc.fail("entry %d: %v (invented or damaged)", id, err)
		}
		if size, ok := pc.sizeOf[seq]; !ok || size != len(b) {
			pc.fail("entry %d: seq %d was never appended with %d bytes", id, seq, len(b))
		}
		if want, ok := pc.idOf[seq]; ok && want != id {
			pc.fail("entry %d holds seq %d, whose Append returned ID %d", id, seq, want)
		}
		if other, ok := pc.seqOf[id]; ok && other != seq {
			pc.fail("entry %d holds seq %d, but its Append was for seq %d", id, seq, other)
		}
		found[id] = true
	}
	var lost []ID
	for id := range pc.must {
		if !found[id] {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		slices.Sort(lost)
		pc.fail("lost %d promised entries: %v (found %d)", len(lost), lost[:min(len(lost), 20)], len(found))
	}
	pc.must, pc.cur = found, nil
	for id := range found {
		pc.wasDur[id] = true
	}
	pc.note("checked: %d entries, next durable %d", len(found), s.Durable())
}

// life opens the spool, runs a random workload with a power cut somewhere in
// it, and restarts the disk.
func (pc *powerCutRun) life() {
	s := pc.open()
	pc.fs.Cut(1 + pc.rng.Int64N(80))
	var read []ID
	acked := map[ID]bool{}
	promise := func(upTo ID) { // every ID returned since the open, up to upTo, is durable
		for _, id := range pc.cur {
			if id <= upTo && !acked[id] && !pc.must[id] {
				pc.must[id] = true
				pc.wasDur[id] = true
			}
		}
	}
	ctx := context.Background()
	for step := 0; step < 200 && !pc.fs.Off(); step++ {
		switch r := pc.rng.IntN(100); {
		case r < 50:
			pc.nextSq++
			seq := pc.nextSq
			size := 12 + pc.rng.IntN(600)
			pc.sizeOf[seq] = size
			id, err := s.Append(ctx, payload(seq, size))
			if err != nil {
				if !pc.fs.Off() {
					pc.fail("Append failed with the power on: %v", err)
				}
				pc.note("append seq %d: %v", seq, err)
				break
			}
			if old, ok := pc.seqOf[id]; ok && pc.wasDur[id] {
				pc.fail("Append returned ID %d again (seq %d, was seq %d, durable)", id, seq, old)
			}
			pc.seqOf[id], pc.idOf[seq] = seq, id
			pc.cur = append(pc.cur, id)
			pc.note("append seq %d size %d -> %d", seq, size, id)
			if pc.cfg.Sync == SyncAlways {
				promise(id)
			}
		case r < 85:
			id, _, ok, err := s.TryNext(nil)
			if err != nil && !pc.fs.Off() {
				pc.fail("read failed with the power on: %v", err)
			}
			if ok {
				read = append(read, id)
			}
			if len(read) > 0 && pc.rng.IntN(4) != 0 {
				i := pc.rng.IntN(len(read))
				id := read[i]
				read = slices.Delete(read, i, i+1)
				acked[id] = true
				delete(pc.must, id)
				_ = s.Ack(id)
				pc.note("ack %d", id)
			}
		case r < 95:
			upTo := ID(s.lastID.Load())
			if err := s.Sync(); err == nil {
				promise(upTo)
				pc.note("sync up to %d", upTo)
			} else {
				pc.note("sync: %v", err)
			}
		default:
			upTo := ID(s.lastID.Load())
			err := s.Close()
			pc.note("close: %v", err)
			if err == nil && !pc.fs.Off() {
				promise(upTo)
			}
			if pc.fs.Off() {
				break
			}
			s = pc.open()
			read = nil
			acked = map[ID]bool{}
		}
	}
	if pc.cfg.Sync == SyncInterval && s.failure() == nil {
		promise(s.Durable())
	}
	pc.fs.PowerOff() // if the cut was not reached: now
	s.crash()
	pc.note("power cut at op %d", pc.fs.Ops())
	pc.fs.Restart()
	pc.cuts++
}
