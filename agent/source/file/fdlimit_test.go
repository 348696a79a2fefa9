package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/kplagent/agent/agent/source"
)

const (
	fdChildLimit = 256  // RLIMIT_NOFILE of the child (soft and hard)
	fdChildFiles = 2000 // half before the start, half while it runs
	fdChildLines = 5    // per file
	fdChildConns = 16   // connections the "sender" keeps open
)

// Issue 8.3: with far more files than descriptors and the default
// max_open_files (1024) above the process's limit, the source must leave
// descriptors for the rest of the agent (here a stand-in for the sender,
// dialing connections all along) and read every line of every file:
// including the files it could not open at first.
func TestDescriptors_LowLimitReadsEveryFileAndLeavesAReserve(t *testing.T) {
	dir := t.TempDir()
	for i := range fdChildFiles / 2 {
		writeFile(t, filepath.Join(dir, fdChildFileName(i)), fdChildContent(i))
	}
	out := runChildProcess(t, os.Args[0], "fdlimit", dir, nil)
	res := map[string]int{}
	for _, f := range strings.Fields(out) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "child output %q", out)
		res[k] = n
	}
	t.Logf("child: %s", out)
	require.Equal(t, fdChildFiles*fdChildLines, res["lines"], "every line of every file is read")
	require.Zero(t, res["dial_failures"], "the source must leave descriptors for the rest of the process")
	require.Zero(t, res["create_failures"], "the source must leave descriptors for the rest of the process")
	require.Equal(t, int(fdBudgetFor(fdChildLimit)), res["max_open"], "max_open_files is lowered to what the limit leaves")
	require.Positive(t, res["max_open"])
	require.Less(t, res["max_open"], fdChildLimit)
}

func fdChildFileName(i int) string { return fmt.Sprintf("f%04d.log", i) }

func fdChildContent(i int) string {
	var b strings.Builder
	for j := range fdChildLines {
		fmt.Fprintf(&b, "f%04d-l%d\n", i, j)
	}
	return b.String()
}

// childFDLimit is the child of the test above: it lowers its descriptor
// limit, follows dir with the default max_open_files, creates the second
// half of the files while the source runs, and dials connections all along,
// as the sender would. It prints what it saw.
func childFDLimit(dir string, log *slog.Logger) error {
	lim := unix.Rlimit{Cur: fdChildLimit, Max: fdChildLimit}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("setrlimit: %w", err)
	}
	cfg := testConfig(dir, "*.log")
	cfg.MaxOpenFiles = DefaultConfig().MaxOpenFiles
	src, err := New(cfg, Settings{Name: "fdlimit", Logger: log})
	if err != nil {
		return err
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	emit := func(_ context.Context, r source.Record) error {
		mu.Lock()
		seen[string(r.Data)] = true
		mu.Unlock()
		return nil
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}

	// The rest of the agent: a server and a client that keeps
	// fdChildConns connections open, replacing them all along.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // EMFILE: the dialer counts it on its side
			}
			wg.Go(func() {
				var b [1]byte
				_, _ = c.Read(b[:]) // until the client closes
				_ = c.Close()
			})
		}
	})
	var dialFailures int
	var lastDialErr error
	wg.Go(func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err != nil {
				// Only running out of descriptors is the source's fault: a
				// reset from a listen backlog overflowing under load is not.
				if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
					dialFailures++
				}
				lastDialErr = err
				continue
			}
			conns = append(conns, c)
			if len(conns) > fdChildConns {
				_ = conns[0].Close()
				conns = conns[1:]
			}
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, emit) }()
	// The writer is the rest of the process too: a create refused for lack
	// of descriptors is counted and tried again.
	deadline := time.Now().Add(60 * time.Second)
	createFailures := 0
	for i := fdChildFiles / 2; i < fdChildFiles && time.Now().Before(deadline); {
		err := os.WriteFile(filepath.Join(dir, fdChildFileName(i)), []byte(fdChildContent(i)), 0o644)
		switch {
		case err == nil:
			i++
		case isNoDescriptor(err):
			createFailures++
			time.Sleep(time.Millisecond)
		default:
			cancel()
			<-done
			return err
		}
	}
	want := fdChildFiles * fdChildLines
	for count() < want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	runErr := <-done
	close(stop)
	_ = ln.Close()
	wg.Wait()
	if runErr != nil {
		return runErr
	}
	st := src.Stats()
	if lastDialErr != nil {
		log.Warn("dial failed", "failures", dialFailures, "error", lastDialErr)
	}
	fmt.Printf("create_failures=%d lines=%d dial_failures=%d max_open=%d no_descriptor=%d open_errors=%d\n",
		createFailures, count(), dialFailures, st.MaxOpenFiles, st.NoDescriptor, st.OpenErrors)
	return nil
}

// The file sources of a process share one descriptor budget. A source
// whose files wait for it must not starve while another holds descriptors
// of files that have nothing to read: those are given up.
func TestDescriptors_SourcesShareTheBudgetWithoutStarving(t *testing.T) {
	require.Zero(t, processFDs.held.Load(), "a source of another test still holds descriptors")
	dirA, dirB := t.TempDir(), t.TempDir()
	const filesA, filesB = 10, 5
	for i := range filesA {
		writeFile(t, filepath.Join(dirA, fmt.Sprintf("a%02d.log", i)), fmt.Sprintf("a%02d\n", i))
	}
	for i := range filesB {
		writeFile(t, filepath.Join(dirB, fmt.Sprintf("b%02d.log", i)), fmt.Sprintf("b%02d\n", i))
	}
	a := start(t, testConfig(dirA, "*.log"), Settings{Name: "a"})
	restore := processFDs.limit.Load()
	t.Cleanup(func() { processFDs.limit.Store(restore) })
	processFDs.limit.Store(filesA) // as if RLIMIT_NOFILE left the file sources 10
	a.waitCount(t, filesA)
	require.Eventually(t, func() bool { return a.src.Stats().FilesOpen == filesA }, 10*time.Second, 5*time.Millisecond,
		"a holds every descriptor of the budget (its files stay open: close_inactive is 5m)")

	b, err := New(testConfig(dirB, "*.log"), Settings{Name: "b"})
	require.NoError(t, err)
	processFDs.limit.Store(filesA) // New set it from the real limit again
	rb := startWith(t, b, &collector{src: b, commit: true})
	rb.waitCount(t, filesB)
	require.Less(t, a.src.Stats().FilesOpen, filesA, "a gave descriptors up")
	require.LessOrEqual(t, processFDs.held.Load(), int64(filesA))
}

// Files waiting for a descriptor get it as soon as an open file caught up
// with its writer, not at the next poll or scan: with 20 files, 2
// descriptors and nothing else to wake the source (no events, poll and
// scan an hour apart), every file is still read at once.
func TestDescriptors_WaitingFilesDoNotWaitForThePoll(t *testing.T) {
	scanOnly(t)
	dir := t.TempDir()
	const files = 20
	for i := range files {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%02d.log", i)), fmt.Sprintf("f%02d\n", i))
	}
	cfg := testConfig(dir, "*.log")
	cfg.MaxOpenFiles = 2
	cfg.ScanInterval = time.Hour
	cfg.PollInterval = time.Hour
	r := start(t, cfg, Settings{})
	r.waitCount(t, files)
	require.LessOrEqual(t, r.src.Stats().FilesOpen, 2)
}

// A file whose size promises data that reads do not give (stale attributes
// on a network file system) must not make the loop spin handing
// descriptors back and forth between waiting files.
func TestDescriptors_RotationWithoutDataDoesNotSpin(t *testing.T) {
	scanOnly(t)
	dir := t.TempDir()
	for i := range 2 {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%d.log", i)), "data\n")
	}
	orig := readFD
	readFD = func(*os.File, []byte) (int, error) { return 0, io.EOF }
	t.Cleanup(func() { readFD = orig })
	var turns atomic.Int64
	origHook := loopHook
	loopHook = func(r *runner) {
		turns.Add(1)
		origHook(r)
	}
	cfg := testConfig(dir, "*.log")
	cfg.MaxOpenFiles = 1
	cfg.ScanInterval = time.Hour
	r := start(t, cfg, Settings{})
	time.Sleep(500 * time.Millisecond) // what is measured is the absence of work
	require.NoError(t, r.halt(t))
	loopHook = origHook
	// A poll every 50 ms wakes the loop ~10 times, each followed by a few
	// rotations; a spinning loop turns many thousands of times.
	require.Less(t, turns.Load(), int64(500), "loop turns in 500 ms")
}
