package spool

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The test binary doubles as the child process of these tests: TestMain runs
// runChild instead of the tests when childRoleEnv is set.
const (
	childRoleEnv = "SPOOL_TEST_CHILD"
	childDirEnv  = "SPOOL_TEST_DIR"
	childSeedEnv = "SPOOL_TEST_SEED"
	childSyncEnv = "SPOOL_TEST_SYNC"
)

// crashConfig is the spool configuration parent and child share: small
// segments so that kills land in rolls, seals and deletions too.
func crashConfig(dir string, sync SyncPolicy) Config {
	cfg := DefaultConfig()
	cfg.Dir = dir
	cfg.SegmentBytes = 256 << 10
	cfg.MaxBytes = 1 << 30
	cfg.MinFreeBytes = 0
	cfg.Sync = sync
	cfg.SyncInterval = 5 * time.Millisecond
	return cfg
}

// runChild is the child's side. Roles:
//
//	append: four goroutines append and report "A <id> <seq>" once Append
//	        returned; one reads and acks some, reporting "K <id>" just
//	        before Ack. It runs until it is killed.
//	lock:   opens the spool, reports "L <pid>", and closes it when its stdin
//	        is closed.
func runChild(role string) int {
	dir := os.Getenv(childDirEnv)
	cfg := crashConfig(dir, SyncPolicy(os.Getenv(childSyncEnv)))
	s, err := Open(cfg, Settings{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		return 1
	}
	var outMu sync.Mutex
	report := func(format string, args ...any) {
		line := fmt.Sprintf(format+"\n", args...)
		outMu.Lock()
		_, _ = os.Stdout.WriteString(line) // unbuffered: a line out is a line reported
		outMu.Unlock()
	}
	switch role {
	case "lock":
		report("L %d", os.Getpid())
		_, _ = io.Copy(io.Discard, os.Stdin)
		if err := s.Close(); err != nil {
			return 1
		}
		return 0
	case "append":
		seed, _ := strconv.ParseUint(os.Getenv(childSeedEnv), 10, 64)
		report("R")
		ctx := context.Background()
		go func() {
			for {
				id, _, err := s.Next(ctx)
				if err != nil {
					return
				}
				if id%3 == 0 { // leave most for the parent
					report("K %d", id) // before: the ack may reach the disk before a report after it would
					_ = s.Ack(id)
				}
			}
		}()
		var wg sync.WaitGroup
		for g := range uint64(4) {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(seed, g))
				var unreported [][2]uint64 // appended, not yet known to be written
				for i := uint64(0); ; i++ {
					seq := seed<<32 | g<<24 | i
					size := 12 + rng.IntN(20000)
					if rng.IntN(40) == 0 {
						size = wbufMax + rng.IntN(wbufMax) // written in two parts
					}
					id, err := s.Append(ctx, payload(seq, size))
					if err == nil && rng.IntN(2) == 0 {
						// Write-behind (sync: interval): kill -9 keeps what
						// was written, not what was staged. Half the
						// reports wait for the write; the others are
						// reported once a later entry of this goroutine
						// is written (below).
						err = s.waitWritten(id)
					}
					if err != nil {
						fmt.Fprintln(os.Stderr, "child: append:", err)
						os.Exit(1)
					}
					if s.wb && ID(s.lastID.Load()) < id {
						unreported = append(unreported, [2]uint64{uint64(id), seq})
						continue
					}
					for _, u := range unreported {
						report("A %d %d", u[0], u[1])
					}
					unreported = unreported[:0]
					report("A %d %d", id, seq)
				}
			})
		}
		wg.Wait()
	}
	return 2
}

type crashChild struct {
	cmd   *exec.Cmd
	lines *bufio.Scanner
	stdin io.WriteCloser
}

func startChild(t *testing.T, role, dir string, sync SyncPolicy, seed uint64) *crashChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childRoleEnv+"="+role, childDirEnv+"="+dir,
		childSeedEnv+"="+strconv.FormatUint(seed, 10), childSyncEnv+"="+string(sync))
	cmd.Stderr = t.Output()
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(out)
	return &crashChild{cmd: cmd, lines: sc, stdin: in}
}

func TestCrash_KillDashNineNeverLosesAReportedEntry(t *testing.T) {
	rounds := 12
	if testing.Short() {
		rounds = 3
	}
	if v, err := strconv.Atoi(os.Getenv("SPOOL_CRASH_ROUNDS")); err == nil {
		rounds = v
	}
	for _, sync := range []SyncPolicy{SyncAlways, SyncInterval} {
		t.Run(string(sync), func(t *testing.T) {
			n := rounds
			if sync != SyncAlways {
				n = max(1, rounds/3) // kill -9 keeps the page cache: the same guarantee
			}
			crashRounds(t, sync, n)
		})
	}
}

func crashRounds(t *testing.T, sync SyncPolicy, rounds int) {
	dir := t.TempDir()
	cfg := crashConfig(dir, sync)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	seqOf := map[ID]uint64{}   // every ID a child reported, with its entry's seq
	mayBeGone := map[ID]bool{} // acked by a child: the ack may or may not have reached the disk
	gone := map[ID]bool{}      // acked by the parent, then closed cleanly
	var maxSeen ID
	var kills, appended, torn int
	for round := range rounds {
		c := startChild(t, "append", dir, sync, uint64(round+1))
		killAfter := rng.IntN(200)
		var reports int
		var roundIDs []ID
		killed := false
		for c.lines.Scan() {
			f := strings.Fields(c.lines.Text())
			switch f[0] {
			case "A":
				id, _ := strconv.ParseUint(f[1], 10, 64)
				seq, _ := strconv.ParseUint(f[2], 10, 64)
				require.NotContains(t, seqOf, ID(id), "ID %d handed out twice", id)
				seqOf[ID(id)] = seq
				roundIDs = append(roundIDs, ID(id))
				reports++
			case "K":
				id, _ := strconv.ParseUint(f[1], 10, 64)
				mayBeGone[ID(id)] = true
			}
			if !killed && reports >= killAfter {
				require.NoError(t, c.cmd.Process.Signal(syscall.SIGKILL))
				killed = true // keep reading what it wrote before dying
			}
		}
		err := c.cmd.Wait()
		require.Error(t, err)
		require.Contains(t, err.Error(), "killed", "the child died of something else")
		kills++
		appended += len(roundIDs)
		for _, id := range roundIDs {
			require.Greater(t, id, maxSeen, "IDs keep growing across restarts")
		}

		// Reopen: every reported, unacked entry is there, intact, once.
		log, rec := newLog(t)
		s, err := Open(cfg, Settings{Logger: log})
		require.NoError(t, err)
		torn += int(s.Stats().TornTails)
		require.Zero(t, s.Stats().CorruptEntries+s.Stats().CorruptSegments, "kill -9 is not corruption")
		require.Zero(t, rec.count(0, "corrupt"))
		delivered := map[ID]bool{}
		var last ID
		for {
			id, b, ok, err := s.TryNext(nil)
			require.NoError(t, err)
			if !ok {
				break
			}
			require.Greater(t, id, last, "in ID order")
			last = id
			seq, err := checkPayload(b)
			require.NoError(t, err, "entry %d is damaged or invented", id)
			if want, ok := seqOf[id]; ok {
				require.Equal(t, want, seq, "entry %d holds another entry's data", id)
			} else {
				// Appended and fsynced, but killed before it reported: it must
				// be this round's, and newer than anything reported before.
				require.Equal(t, uint64(round+1), seq>>32, "entry %d was never appended", id)
				require.Greater(t, id, maxSeen)
				seqOf[id] = seq
			}
			require.False(t, gone[id], "entry %d was acknowledged and closed cleanly, yet came back", id)
			delivered[id] = true
			maxSeen = max(maxSeen, id)
		}
		for id := range seqOf {
			if !gone[id] && !mayBeGone[id] {
				require.True(t, delivered[id], "round %d: reported entry %d is lost", round, id)
			}
		}
		for _, id := range roundIDs {
			maxSeen = max(maxSeen, id)
		}
		// Acknowledge about half; the rest must come again next round.
		for id := range delivered {
			if rng.IntN(2) == 0 {
				require.NoError(t, s.Ack(id))
				gone[id] = true
			}
			delete(mayBeGone, id) // delivered again: its ack was lost; it is pending
		}
		require.NoError(t, s.Close())
	}
	t.Logf("%s: %d kills, %d entries reported, %d torn tails cut", sync, kills, appended, torn)
}

func TestOpen_SecondProcessGetsErrLockedNamingPID(t *testing.T) {
	dir := t.TempDir()
	c := startChild(t, "lock", dir, SyncInterval, 0)
	require.True(t, c.lines.Scan())
	f := strings.Fields(c.lines.Text())
	require.Equal(t, "L", f[0])
	pid := f[1]

	_, err := Open(crashConfig(dir, SyncInterval), Settings{})
	require.ErrorIs(t, err, ErrLocked)
	require.Contains(t, err.Error(), "process "+pid)
	require.Contains(t, err.Error(), dir)
	t.Log(err)

	require.NoError(t, c.stdin.Close())
	require.NoError(t, c.cmd.Wait())
	s, err := Open(crashConfig(dir, SyncInterval), Settings{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
}
